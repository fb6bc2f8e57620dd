"""Where a run directory stands, and whether two configs train the same model.

**Status.**  ``summary.json`` names one of :data:`STATUSES`.  The one rule for "done":

* :func:`is_done`: nothing more to run, the run ``finished`` or ``diverged``.  A diverged run is a
  result, not a failure: running it again repeats the same divergence bit for bit.  Whoever decides
  what to run asks this (the sweep's plan and worker, the seed-batched synthetic runs).
* :func:`is_finished`: the run reached round K and its records are a usable result.  Whoever reads a
  final model or a final metric asks this (the figures' runs, the Table 1 cells, the twin a FedAvg
  cell is evaluated from).

**Same training.**  Two configs that differ only in :data:`TRAINING_NEUTRAL` (and in the task options
:data:`TASK_NEUTRAL`) train the same model from the same draws: the rounds they share are identical,
so one can continue the other (:func:`same_training`).  :func:`same_config` is stricter, for "is this
directory this very run": the saved ``config.toml`` equals the config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perfedavg.errors import UsageError
from perfedavg.runs.config import read_toml
from perfedavg.runs.rundir import CONFIG, SUMMARY

RUNNING, FINISHED, DIVERGED, INTERRUPTED, FAILED = "running", "finished", "diverged", "interrupted", "failed"
#: what ``summary.json``'s ``status`` says
STATUSES = (RUNNING, FINISHED, DIVERGED, INTERRUPTED, FAILED)
#: statuses after which there is nothing more to run
DONE = (FINISHED, DIVERGED)

#: run options that do not change the trained model: how many rounds (the first rounds do not depend
#: on K), and how often it is evaluated and checkpointed (evaluations draw from a stream of their own)
TRAINING_NEUTRAL = ("K", "eval_every", "checkpoint_every")
#: task options that say where the data are read from, not what they are
TASK_NEUTRAL = ("data_dir", "download")
#: task options added after runs were saved without them, with the value their absence means (the default,
#: which changes nothing): a saved table without ``holdout_users`` trains what one with 0 trains
TASK_ADDED = {"holdout_users": 0.0}


def is_done(status: str | None) -> bool:
    """Nothing more to run: ``status`` is ``finished`` or ``diverged``."""
    return status in DONE


def is_finished(status: str | None) -> bool:
    """A usable result: ``status`` is ``finished`` (every round ran, the records reach round K)."""
    return status == FINISHED


def read_summary(run_dir: str | Path) -> dict | None:
    """``summary.json`` of ``run_dir``; ``None`` when it is missing, damaged or not an object
    (a run that never started, or was killed before its first summary)."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def run_status(run_dir: str | Path) -> str | None:
    """The status ``run_dir``'s summary names (``None``: no readable summary)."""
    summary = read_summary(run_dir)
    return None if summary is None else summary.get("status")


def training_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The options (``task`` for any task option) in which run configs ``a`` and ``b`` (``to_dict()``
    form) differ, leaving out :data:`TRAINING_NEUTRAL` and :data:`TASK_NEUTRAL`; sorted."""
    keys = (set(a) | set(b)) - set(TRAINING_NEUTRAL) - {"task"}
    differing = sorted(k for k in keys if a.get(k) != b.get(k))
    task_a, task_b = a.get("task") or {}, b.get("task") or {}
    task_keys = (set(task_a) | set(task_b)) - set(TASK_NEUTRAL)
    if any(task_a.get(k, TASK_ADDED.get(k)) != task_b.get(k, TASK_ADDED.get(k)) for k in task_keys):
        differing = sorted([*differing, "task"])
    return differing


def same_training(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Run configs ``a`` and ``b`` train the same model (they differ at most in neutral options)."""
    return not training_differences(a, b)


def same_config(run_dir: str | Path, config: Mapping[str, Any]) -> bool:
    """``run_dir``'s saved ``config.toml`` is ``config`` exactly (``False`` when it is missing or damaged)."""
    try:
        return read_toml(Path(run_dir) / CONFIG) == config
    except UsageError:
        return False
