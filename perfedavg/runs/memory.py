"""A run in memory: the rounds of a config and their records, with no run directory.

What the Python API (:func:`perfedavg.api.run`) and ``perfedavg run``'s comparison with FedAvg use:
the same resolution (:func:`perfedavg.runs.resolve.resolve`) and the same rounds
(:func:`perfedavg.engine.rounds.train`) as :func:`perfedavg.runs.runner.run_config`, so the records
equal a run directory's ``metrics.jsonl`` for the same config; nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perfedavg.engine.config import RunConfig
from perfedavg.runs.resolve import resolve


def train_in_memory(
    cfg: RunConfig, on_record: Callable[[dict[str, Any]], None] | None = None
) -> tuple[RunConfig, Any, list[dict[str, Any]]]:
    """``(resolved config, task, records)``: every evaluated round's record of ``cfg``, round 0 first.

    ``on_record`` is called with each record as it comes (a progress display). Raises
    :class:`perfedavg.errors.UsageError` on bad input and :class:`perfedavg.errors.Diverged` when the
    run diverges.
    """
    from perfedavg.engine.rounds import train  # torch

    cfg, task = resolve(cfg)
    records = []
    for _state, record in train(task, cfg):
        if record is not None:
            records.append(record)
            if on_record is not None:
                on_record(record)
    return cfg, task, records
