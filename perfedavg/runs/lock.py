"""One writer per run directory: an advisory lock held for a run's whole life.

The lock is ``flock`` on the run directory itself, so taking it writes nothing (a refused run leaves
the directory as it was), and the operating system releases it when its holder exits, however it
exits (SIGKILL included): a lock whose holder died is never stale, the next run simply takes it.
Whoever writes a run directory (``perfedavg run``, ``--resume``, a sweep's worker, a Table 1 cell)
holds it; a second writer is refused in one line that names the holder's process, which the
running run's ``summary.json`` records.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from perfedavg.errors import UsageError
from perfedavg.runs.status import read_summary


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` (an existing directory) for this process, or raises a
    one-line :class:`UsageError` naming the process that holds it."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire_if_present(self) -> None:
        """Take the lock if the directory exists already (before anything reads what it holds)."""
        if self.run_dir.is_dir():
            self.acquire()

    def ensure(self) -> None:
        """Hold the lock (once the directory exists: after it was created)."""
        if self._fd is None:
            self.acquire()

    def acquire(self) -> None:
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            summary = read_summary(self.run_dir) or {}
            holder = f"process {summary['pid']}" if isinstance(summary.get("pid"), int) else "another process"
            raise UsageError(
                f"{self.run_dir} is in use by {holder} (another perfedavg run or sweep worker writes it): "
                "wait for it to end or stop it, then run again"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
