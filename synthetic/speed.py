r"""``perfedavg check --speed-sweep``: the 100-configuration logistic sweep that times the seed-vectorized runner."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tqdm import tqdm

from perfedavg.errors import Interrupted
from perfedavg.runs.status import is_done, run_status
from perfedavg.runs.stop import StopOnSignal

from .rate_runs import _config, run_sweep, seed_dirs

#: where ``perfedavg check --speed-sweep`` writes by default (runs/ is outside version control)
SPEED_OUT = "runs/speed"
#: the sweep's target: all of its runs in under 10 minutes
TARGET_SECONDS = 600.0


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
    reused, so an interrupted sweep resumes) and return the timing record printed as JSON.

    Counts are in runs (one configuration for one seed): ``runs`` in the sweep, ``already_finished`` found
    complete (a configuration counts once all its seeds are; one with a seed missing is rerun whole, its seeds
    vectorized), ``ran`` run now.  ``seconds`` is the time of those ``ran`` runs and ``seconds_per_run`` =
    ``seconds / ran`` (None when nothing ran).  ``under_10_minutes`` judges the target of the whole sweep,
    so only a sweep that ran every run (nothing already finished) is judged; otherwise it is None and
    ``estimated_seconds`` extrapolates ``seconds_per_run`` to all runs (an estimate: configurations differ
    in cost).  SIGINT or SIGTERM stops after the configuration running (a second one at once) and raises
    :class:`perfedavg.errors.Interrupted`: one line, and the same command resumes."""
    configs = speed_grid() if configs is None else configs
    seed_list = list(range(seeds))
    unique = list({str(seed_dirs(out, c, seed_list)[0]): c for c in configs}.values())  # a config listed twice: once
    finished = [all(is_done(run_status(d)) for d in seed_dirs(out, c, seed_list)) for c in unique]
    todo = [c for c, done in zip(unique, finished) if not done]
    runs, already = len(unique) * len(seed_list), sum(finished) * len(seed_list)
    seconds, n_done = 0.0, sum(finished)
    stop = StopOnSignal(after="this configuration")
    try:
        with stop, tqdm(total=len(unique), initial=n_done, desc="speed", unit="config", disable=not progress) as bar:
            for cfg in todo:
                if stop.signum is not None:
                    raise KeyboardInterrupt
                start = time.perf_counter()
                run_sweep([cfg], seed_list, Path(out), track_inner=True, progress=False)
                seconds += time.perf_counter() - start
                n_done += 1
                bar.update(1)
    except KeyboardInterrupt:  # the first signal, between configurations, or a second one, at once
        name = signal.Signals(stop.signum or signal.SIGINT)
        raise Interrupted(
            name,
            f"interrupted by {name.name} ({n_done} of {len(unique)} configurations finished); "
            f"continue with: perfedavg check --speed-sweep {out}",
        ) from None
    ran = runs - already
    per_run = seconds / ran if ran else None
    full = already == 0
    return {
        "configs": len(unique),
        "seeds": len(seed_list),
        "runs": runs,
        "already_finished": already,
        "ran": ran,
        "seconds": round(seconds, 2),
        "seconds_per_run": round(per_run, 4) if per_run is not None else None,
        "out": str(out),
        "under_10_minutes": seconds < TARGET_SECONDS if full else None,
        "estimated_seconds": None if full or per_run is None else round(per_run * runs, 1),
        "note": ""
        if full
        else f"{already} of {runs} runs were already finished: timed on the other {ran}; "
        "under_10_minutes is judged on a sweep run in full (a new DIR), estimated_seconds extrapolates",
        "grid": "logistic, beta x D x h = 5 x 4 x 5, tau = 2, r = 0.2, K = 50",
    }
