"""A command's output options (``--out``, ``--json-out``, ...), checked before any work, so that a bad
path is one line naming the option rather than a failure after minutes of computing."""

from __future__ import annotations

import os
from pathlib import Path

from perfedavg.errors import UsageError


def output_dir(path: str | Path, option: str) -> Path:
    """``path`` made a folder (parents too, an existing one kept) for a command's output option
    ``option`` (e.g. ``"--out"``), checked before any work: when it cannot be, one
    :class:`UsageError` naming the option and the reason (a file in the way, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: choose another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not writable")
    return path


def output_file(path: str | Path, option: str) -> Path:
    """``path`` checked as a file a command will write atomically
    (:func:`perfedavg.runs.rundir.atomic_write_bytes`) for its option ``option``, before any work: its
    folder exists and is writable and ``path`` is not a folder; else one :class:`UsageError` naming the
    option."""
    path = Path(path)
    folder = path.absolute().parent
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder, not a file")
    if not folder.is_dir():
        reason = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {path} cannot be written: {folder} {reason}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} cannot be written: {folder} is not writable")
    return path
