r"""Worker processes for ``perfedavg figures``: independent pieces of work run on every core, the most urgent first.

:class:`Pool` keeps ``jobs`` single-threaded worker processes (a ``forkserver`` with torch and the figure modules
preloaded, so a worker starts in milliseconds) busy with the highest-priority piece submitted so far: the rate
table's sweeps (the longest chain of work, :data:`URGENT`) before the rest.  A piece is a module-level function
with picklable arguments that writes its own files (a run directory, a figure) or returns picklable data; what it
computes does not depend on which process runs it, so the figures and the index are the same whatever ``jobs`` is.

:func:`active` is the pool :func:`figures.build.build` works with (``None`` when it works in one process): the
figure modules' ``run`` hand their sweeps to it through :meth:`Pool.at`.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

#: priority of the rate table's sweeps: every figure 2 and 3 waits on them, so they go first
URGENT = 10
#: priority of everything else (run in the order submitted)
NORMAL = 0

_ACTIVE: Pool | None = None


def active() -> Pool | None:
    """The pool of the build in progress, or ``None`` (one process)."""
    return _ACTIVE


@contextlib.contextmanager
def activate(pool: Pool | None) -> Iterator[Pool | None]:
    """Make ``pool`` the :func:`active` one for the ``with`` block."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, pool
    try:
        yield pool
    finally:
        _ACTIVE = previous


def _init_worker(threads: int, environment: dict[str, str]) -> None:
    import torch

    # a forkserver child inherits the server's environment, which may predate the build's (PERFEDAVG_DATA ...)
    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in a reused forkserver child
        torch.set_num_interop_threads(1)


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    started = time.perf_counter()
    return fn(*args), time.perf_counter() - started


class Pool:
    """``jobs`` worker processes of ``threads`` torch threads each, fed by priority (module docstring)."""

    def __init__(self, jobs: int, threads: int = 1, preload: Iterable[str] = ()):
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["torch", "figures.pool", *preload])
        self.jobs = jobs
        self._executor = ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init_worker, initargs=(threads, dict(os.environ))
        )
        self._pending: list[tuple[int, int, Future, Callable[..., Any], tuple]] = []
        self._running = 0
        self._lock = threading.Lock()
        self._order = itertools.count()
        # start the workers now, from another thread: starting one waits for the forkserver to import its preload,
        # which the caller's own imports can overlap
        self._warming = threading.Thread(target=self._warm, name="figures-pool-warm", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        with contextlib.suppress(Exception):  # a pool closed meanwhile: nothing to warm
            for ping in [self._executor.submit(os.getpid) for _ in range(self.jobs)]:
                ping.result()

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Future:
        """Run ``fn(*args)`` in a worker once no piece of higher priority waits; the future's ``seconds`` attribute
        is set to the time the piece took in its worker."""
        future: Future = Future()
        with self._lock:
            heapq.heappush(self._pending, (-priority, next(self._order), future, fn, args))
            self._start_ready()
        return future

    def _start_ready(self) -> None:
        """Hand pending pieces to idle workers, most urgent first (the caller holds the lock)."""
        while self._running < self.jobs and self._pending:
            _, _, future, fn, args = heapq.heappop(self._pending)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                inner = self._executor.submit(_timed, fn, args)
            except Exception as exc:  # a broken or closed pool: the piece fails, never hangs
                future.set_exception(exc)
                continue
            self._running += 1
            inner.add_done_callback(functools.partial(self._finished, future))

    def _finished(self, future: Future, done: Future) -> None:
        with self._lock:
            self._running -= 1
            self._start_ready()
        error = done.exception()
        if error is not None:
            future.set_exception(error)
            return
        result, seconds = done.result()
        future.seconds = seconds  # type: ignore[attr-defined]
        future.set_result(result)

    def after(self, futures: list[Future], fn: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Future:
        """Submit ``fn(*args)`` once every one of ``futures`` has ended; the first of their exceptions instead if
        one failed.  The returned future is the piece's (its ``seconds`` too)."""
        result: Future = Future()
        left = [len(futures)]
        lock = threading.Lock()

        def start() -> None:
            if any(f.cancelled() for f in futures):
                result.cancel()
                return
            failed = next((f.exception() for f in futures if f.exception() is not None), None)
            if failed is not None:
                result.set_exception(failed)
                return
            self.submit(fn, *args, priority=priority).add_done_callback(functools.partial(_pass_on, result))

        def one_ended(_: Future) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                start()

        if not futures:
            start()
        for f in futures:
            f.add_done_callback(one_ended)
        return result

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], priority: int = NORMAL) -> Iterator[Any]:
        """``fn`` over ``zip(*iterables)`` in the workers, results in order (as :meth:`Executor.map`)."""
        futures = [self.submit(fn, *args, priority=priority) for args in zip(*iterables)]
        return (f.result() for f in futures)

    def at(self, priority: int) -> _Prioritized:
        """This pool seen as an executor whose :meth:`map` submits at ``priority``."""
        return _Prioritized(self, priority)

    def close(self) -> None:
        """Drop what has not started and stop the workers once the running pieces end."""
        self._warming.join()
        with self._lock:
            for _, _, future, _, _ in self._pending:
                future.cancel()
            self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pass_on(result: Future, piece: Future) -> None:
    """Give ``result`` what ``piece`` ended with."""
    if piece.cancelled():
        result.cancel()
    elif piece.exception() is not None:
        result.set_exception(piece.exception())
    else:
        result.seconds = getattr(piece, "seconds", 0.0)  # type: ignore[attr-defined]
        result.set_result(piece.result())


class _Prioritized:
    """What :meth:`Pool.at` returns: an object with ``map`` at a fixed priority (what a sweep runner takes)."""

    def __init__(self, pool: Pool, priority: int):
        self.pool, self.priority = pool, priority

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        return self.pool.map(fn, *iterables, priority=self.priority)
