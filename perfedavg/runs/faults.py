"""Numbered kill points at every file-system step of a run directory, for the tests that show a run
survives a kill at any of them (``tests/test_kill_points.py``); nothing calls this in a normal run.

:func:`arm` makes the process SIGKILL itself at its ``n``-th point.  The points, in the order a run
meets them: inside every atomic write (its temporary half written and flushed), after the temporary is
complete and fsynced but before the rename, right after the rename; inside every ``metrics.jsonl``
record (half a line flushed), and right after the record.  :func:`passed` counts the points met.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from perfedavg.runs import rundir

_state = {"kill_at": 0, "passed": 0}


def passed() -> int:
    """How many points this process has met since :func:`arm`."""
    return _state["passed"]


def _point() -> None:
    _state["passed"] += 1
    if _state["passed"] == _state["kill_at"]:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class _HalfThenPoint:
    """A file whose first write stops halfway at a point (the rest follows if the process lives)."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.first = fh, True

    def write(self, data: bytes) -> int:
        if self.first and len(data) > 1:
            self.first = False
            half = len(data) // 2
            self.fh.write(data[:half])
            self.fh.flush()
            _point()
            return half + self.fh.write(data[half:])
        return self.fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def arm(kill_at: int) -> None:
    """Count points from now on and die at the ``kill_at``-th (0: count only).  Patches the run
    directory's writer (:mod:`perfedavg.runs.rundir`) and ``os.replace`` for the rest of the process."""
    _state.update(kill_at=kill_at, passed=0)
    real_atomic_write, real_replace, real_append = rundir.atomic_write, os.replace, rundir.MetricsLog.append

    @contextlib.contextmanager
    def atomic_write(path: str | os.PathLike[str]) -> Iterator[Any]:
        with real_atomic_write(path) as fh:
            yield _HalfThenPoint(fh)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        _point()  # temporary complete and fsynced, not yet renamed
        real_replace(src, dst, *args, **kwargs)
        _point()

    def append(self: rundir.MetricsLog, record: Mapping[str, Any]) -> None:
        line = rundir.metrics_line(record)
        assert self._file is not None
        self._file.write(line[: len(line) // 2])
        self._file.flush()
        _point()  # half a record on disk
        self._file.truncate(self._file.tell() - len(line) // 2)  # lived: undo the half, write it whole
        real_append(self, record)
        _point()

    rundir.atomic_write = atomic_write  # type: ignore[assignment]
    os.replace = replace
    rundir.MetricsLog.append = append  # type: ignore[method-assign]
