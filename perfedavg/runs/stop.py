"""Stopping a run on SIGINT or SIGTERM at a round boundary (:func:`perfedavg.runs.runner.run_config`)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Literal


class StopOnSignal:
    """SIGINT and SIGTERM: the first asks the run to stop at the next round boundary, the
    second raises :class:`KeyboardInterrupt` at once.  Installed in the main thread only
    (elsewhere the caller's handling applies)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, after: str = "this round") -> None:
        self.after = after  # where the work stops, for the message
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nperfedavg: {signal.Signals(signum).name} received: stopping after {self.after} "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: object) -> Literal[False]:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False
