r"""``perfedavg check --speed-sweep``: the 100-configuration logistic sweep that times the seed-vectorized runner."""

from __future__ import annotations

import time
from pathlib import Path

from perfedavg.runs.status import is_done, run_status

from .rate_runs import _config, run_sweep, seed_dirs

#: where ``perfedavg check --speed-sweep`` writes by default (runs/ is outside version control)
SPEED_OUT = "runs/speed"


def speed_grid(K: int = 50) -> list:
    r"""A 100-configuration grid on the logistic task (β × D × h × algorithm, 5 × 4 × 5 × 1 = 100; τ = 2,
    r = 0.2, K = 50, Per-FedAvg exact, track_inner): the workload that times the seed-vectorized sweep
    against its target of 100 configurations × 5 seeds in under 10 minutes, with progress, resumable
    (``perfedavg check --speed-sweep [DIR]``, :func:`speed_sweep`)."""
    return [
        _config(
            {
                "K": K,
                "tau": 2,
                "r": 0.2,
                "alpha": 1.0,
                "beta": b,
                "D": d,
                "D1": d,
                "D2": d,
                "task": {"name": "logistic", "dim": 3, "h": h},
            }
        )
        for b in (0.05, 0.1, 0.2, 0.4, 0.8)
        for d in (1, 5, 20, 50)
        for h in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]


def speed_sweep(out: Path, seeds: int = 5, progress: bool = True, configs: list | None = None) -> dict:
    r"""Run :func:`speed_grid` for ``seeds`` seeds into ``out`` (one run directory per seed; finished ones are
    reused, so an interrupted sweep resumes) and return the timing record printed as JSON: ``configs``,
    ``seeds``, ``runs``, ``already_finished`` (configs found complete), ``seconds``,
    ``seconds_per_run``, ``out``, ``under_10_minutes``."""
    configs = speed_grid() if configs is None else configs
    seed_list = list(range(seeds))
    done = sum(all(is_done(run_status(d)) for d in seed_dirs(out, c, seed_list)) for c in configs)
    start = time.perf_counter()
    run_sweep(configs, seed_list, Path(out), track_inner=True, progress=progress)
    seconds = time.perf_counter() - start
    runs = len(configs) * len(seed_list)
    return {
        "configs": len(configs),
        "seeds": len(seed_list),
        "runs": runs,
        "already_finished": done,
        "seconds": round(seconds, 2),
        "seconds_per_run": round(seconds / runs, 4),
        "out": str(out),
        "under_10_minutes": seconds < 600,
        "grid": "logistic, beta x D x h = 5 x 4 x 5, tau = 2, r = 0.2, K = 50",
    }
