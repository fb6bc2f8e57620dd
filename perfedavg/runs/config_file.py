"""A run config file given to a command: a sweep file or a constants file in its place gets one line naming what
reads it, instead of "unknown option".

Kept out of :mod:`perfedavg.runs.config` on purpose: recognising a constants file needs theory's field names, and
every module a run imports is part of its source digest (:mod:`perfedavg.runs.provenance`), which theory is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from perfedavg.engine.config import RunConfig
from perfedavg.errors import UsageError
from perfedavg.runs.config import build_config, load_run_config, read_toml


def load_command_config(config_path: str | None, overrides: list[str]) -> RunConfig:
    """:func:`perfedavg.runs.config.load_run_config`, after :func:`refuse_other_kinds` on the file."""
    if not config_path:
        return load_run_config(None, overrides)
    data = read_toml(config_path)  # read once: checked here, then built
    refuse_other_kinds(config_path, data)
    return build_config(data, overrides)


def refuse_other_kinds(path: str | Path, data: Mapping[str, Any]) -> None:
    """A sweep file or a constants file given where a run config is expected: one line naming what reads it
    (``perfedavg sweep FILE``; ``--constants FILE``), instead of an unknown option."""
    if isinstance(data.get("sweep"), Mapping):
        raise UsageError(f"{path} is a sweep file (it has a [sweep] table): run it with `perfedavg sweep {path}`")
    from theory.constants import Constants

    problem = sorted(set(data) & set(Constants.field_names()) - {f.name for f in fields(RunConfig)}, key=str)
    if problem:
        raise UsageError(
            f"{path} is a constants file (it sets {', '.join(problem)}): pass it as --constants {path} "
            "(perfedavg explain or perfedavg bounds)"
        )
