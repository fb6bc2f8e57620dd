r"""Run configuration from files and the command line.

A config is TOML: top-level keys plus a ``[task]`` table whose ``name`` picks the task and
whose other keys are that task's options, overridable with ``--set key=value``
(``--set task.h=0.5`` for a task option); the resolved
:class:`perfedavg.engine.config.RunConfig` (every default filled in) is saved with every run.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from perfedavg.algorithms import ALGORITHMS
from perfedavg.engine.config import RunConfig, check_value_type
from perfedavg.errors import UsageError
from perfedavg.words import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: str | Path, allow_empty: bool = False) -> dict:
    """Parse a TOML file; any problem (missing, a directory, unreadable, not UTF-8, not
    TOML, empty unless ``allow_empty``) is one :class:`UsageError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"not UTF-8 text ({type(exc).__name__})"
        raise UsageError(f"config file {path} cannot be read: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {path} is not valid TOML: nested too deeply") from None
    if not data and not allow_empty:
        raise UsageError(f"config file {path} is empty (sets no option); leave out --config to run the defaults")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with ``value`` read as a TOML literal (a bare word is a string)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep and key and " " not in key:
        raise UsageError(f"--set {item!r} has no '=': write --set {key}=VALUE (e.g. --set alpha=0.01)")
    if not sep or not key:
        raise UsageError(f"--set {item!r} must look like key=value (e.g. --set alpha=0.01)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def build_config(base: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """The resolved config: defaults, then ``base`` (a parsed TOML dict), then ``--set`` overrides.

    ``--set task=NAME`` is ``--set task.name=NAME``; ``--set task.KEY=VALUE`` sets a task option.
    """
    data: dict[str, Any] = dict(base or {})
    task = data.pop("task", {"name": "softmax"})
    if not isinstance(task, Mapping):
        raise UsageError(f"task must be a table ([task] with name = ...), not a {type(task).__name__}")
    task = dict(task)
    for item in overrides:
        key, value = parse_override(item)
        if key == "task":
            if not isinstance(value, str):
                raise UsageError(f"--set task={value!r}: the task is chosen by name, e.g. --set task.name=softmax")
            task["name"] = value
        elif key.startswith("task."):
            task[key[len("task.") :]] = value
        else:
            data[key] = value
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        hint = did_you_mean(unknown[0], known - {"task"})
        if hint:
            raise UsageError(f"unknown option {unknown[0]!r}{hint}; `perfedavg run --help` lists every option")
        raise UsageError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(known - {'task'}))}")
    algorithm = data.get("algorithm")
    if isinstance(algorithm, str) and algorithm not in ALGORITHMS:
        raise UsageError(
            f"algorithm={algorithm!r} is not one of {', '.join(ALGORITHMS)}{did_you_mean(algorithm, ALGORITHMS)}"
        )
    for f in fields(RunConfig):
        if f.name in data:
            data[f.name] = checked_number(f.name, data[f.name], str(f.type), f.metadata.get("doc", ""))
    bad_keys = [k for k in task if not isinstance(k, str) or not k]
    if bad_keys:
        raise UsageError(f"task option {bad_keys[0]!r} is not a valid option name")
    task.setdefault("name", "softmax")
    return RunConfig(**data, task=task)


def checked_number(name: str, value: Any, annotation: str, doc: str = "") -> Any:
    """``value`` for an option annotated ``annotation`` (``"int"``, ``"float"``, ...), as the option's type.

    A whole number written as a float is an integer (``K=1e3`` is 1000; ``K=1.5`` is refused); a
    boolean is never a number (TOML ``L = true`` is refused, not read as 1); other values, and other
    annotations, are returned as given for the option's own checks.
    """
    if annotation not in ("int", "float"):
        return value
    where = f" ({doc})" if doc else ""
    if isinstance(value, bool):
        raise UsageError(f"{name}={toml_value(value)} is a boolean, not a number{where}")
    if annotation == "int" and isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            raise UsageError(f"{name}={value:g} is not a whole number{where}")
        value = int(value)
    return check_value_type(name, value, int if annotation == "int" else float, doc)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for flat scalars plus one level of tables (what configs hold)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (also what a ``--set key=VALUE`` override reads back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


#: The first run: what ``perfedavg run`` (and ``explain``) run without ``--config``. Per-FedAvg (HF) on the
#: softmax task where personalization has something to do (two favoured classes per user, h = 0.8) with
#: steps inside both step-size conditions ``perfedavg explain`` checks: alpha = 1 <= 1/L (L <= 1 at radius
#: 1), beta = 0.015 below the recalled 1/(10 tau L_F) ~ 0.018 and the derived 1/(sqrt(6) tau L_F) ~ 0.07;
#: tau = 1 so that the recalled condition leaves a usable beta, K = 500 rounds for it to show. The option
#: defaults of :class:`RunConfig` are unchanged (they are every other task's and every config file's).
FIRST_RUN: dict[str, Any] = {
    "algorithm": "hf",
    "K": 500,
    "tau": 1,
    "alpha": 1.0,
    "beta": 0.015,
    "eval_every": 50,
    "checkpoint_every": 50,
    "task": {"name": "softmax", "dim": 5, "classes_per_client": 2, "h": 0.8},
}


def first_run_base(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The base of a run given no config file: :data:`FIRST_RUN`, unless an override picks another task
    (``--set task=logistic``), which then starts from the option defaults and that task's own."""
    for item in overrides:
        key, value = parse_override(item)
        if key in ("task", "task.name") and value != FIRST_RUN["task"]["name"]:
            return {}
    return {**FIRST_RUN, "task": dict(FIRST_RUN["task"])}


def load_run_config(config_path: str | None, overrides: list[str]) -> RunConfig:
    """Defaults <- TOML file (without one: :data:`FIRST_RUN`, :func:`first_run_base`) <- ``--set`` overrides."""
    base = read_toml(config_path) if config_path else first_run_base(overrides)
    return build_config(base, overrides)
