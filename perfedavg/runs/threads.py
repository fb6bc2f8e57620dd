"""How many torch threads a command's runs use.

The synthetic tasks' models have a few to a few hundred parameters: their matrix products are too small to
share between threads, so a second thread only adds synchronization, and on a busy machine each thread's
spin-waiting makes a run several times slower (benchmarks/README.md). Their runs therefore use one thread;
MNIST, CIFAR-10 and a registered task keep torch's default (one per core). ``--threads N`` overrides both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from perfedavg.runs.registry import TASKS

#: torch threads for a synthetic task's run
SYNTHETIC_THREADS = 1


def threads_for(task_name: str, requested: int | None = None) -> int | None:
    """The thread count for a run of ``task_name``: ``requested`` when given (0: torch's default), else
    :data:`SYNTHETIC_THREADS` for a synthetic task and ``None`` (torch's default) for the others."""
    if requested is not None:
        return requested or None
    return SYNTHETIC_THREADS if TASKS.get(task_name, "").startswith("synthetic.") else None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (``None``: leave them), then restore the previous count (a
    command called in-process, by a test or a notebook, leaves the caller's setting as it found it)."""
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
