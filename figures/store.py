r"""Saved results the figures read: run directories, manifests, and running what is missing.

Runs write, figures read (no figure module trains a model itself): a figure module first makes sure the runs it
needs exist (:func:`ensure_run` runs a :class:`perfedavg.engine.config.RunConfig` through the
normal runner :func:`perfedavg.runs.runner.run_config` into a run directory, unless a
finished one with the same config is there), records what it ran in a *manifest*
(``<runs>/<figure>/manifest.json``), and then draws from the manifest and the run
directories only.  A run directory's name ends with a hash of its config
(:func:`perfedavg.runs.names.figure_run_name`), so changing an experiment never reuses a stale
result, and re-running reuses every finished one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config, read_toml
from perfedavg.runs.runner import run_config
from perfedavg.runs.status import is_finished, run_status

#: scales of an experiment: ``tiny`` (tests: seconds), ``quick`` (a draft of everything: ~minutes), ``full``
LEVELS = ("tiny", "quick", "full")
MANIFEST = "manifest.json"


class Skip(Exception):
    """A figure cannot be drawn (its inputs are missing): the message says why and what to run."""


def ensure_run(config: dict, directory: Path) -> Path:
    """Run ``config`` (a run-config dict: top-level options plus ``task``) into ``directory``
    with :func:`perfedavg.runs.runner.run_config` unless a finished run is already there (a figure
    draws from the run's final records, so a diverged one is run again and reported)."""
    directory = Path(directory)
    if is_finished(run_status(directory)):
        return directory
    cfg = build_config(config)
    resume = (directory / rundir.CHECKPOINT).exists()
    result = run_config(cfg, directory, resume=resume, force=True, progress=False)
    if not is_finished(result.status):
        raise UsageError(f"run {directory} ended {result.status}: {result.summary.get('message', '')}")
    return directory


def write_manifest(root: Path, figure: str, level: str, entries: list[dict], **extra) -> Path:
    """``<root>/<figure>/manifest.json``: the level and one entry per run (``dir`` relative to ``root``)."""
    path = Path(root) / figure / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_json(path, {"figure": figure, "level": level, "entries": entries, **extra})
    return path


def read_manifest(root: Path, figure: str) -> dict:
    """The manifest of ``figure`` under ``root``; :class:`Skip` when there is none."""
    path = Path(root) / figure / MANIFEST
    if not path.is_file():
        raise Skip(f"no saved results for '{figure}' in {root} (run `perfedavg figures {figure} --runs {root}`)")
    return rundir.read_json(path)


@dataclass(frozen=True)
class Run:
    """One run directory read back: resolved config, metric records, summary."""

    directory: Path
    config: dict
    records: list
    summary: dict

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Rounds and values of ``key`` over the records that hold it."""
        pairs = [(r["round"], r[key]) for r in self.records if key in r]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    def tail_mean(self, key: str = "grad_norm_sq_F", fraction: float = 0.5) -> float:
        r"""Mean of ``key`` over the evaluated rounds :math:`k \ge (1-\text{fraction})K` (the stationary floor)."""
        K = self.config["K"]
        values = [
            float(r[key]) for r in self.records if key in r and r["round"] >= (1 - fraction) * K and r["round"] > 0
        ]
        if not values:
            raise UsageError(f"{self.directory}: no '{key}' in the last {fraction:.0%} of the rounds")
        return sum(values) / len(values)


def load_run(directory: str | Path) -> Run:
    """Read ``config.toml``, ``metrics.jsonl`` and ``summary.json`` of a run directory."""
    directory = Path(directory)
    return Run(
        directory,
        read_toml(directory / rundir.CONFIG),
        rundir.read_metrics(directory),
        rundir.read_json(directory / rundir.SUMMARY),
    )


def mean_and_halfwidth(values) -> tuple[float, float]:
    r"""Mean over seeds and the half-width of its Student-t 95 % interval (0 for one seed)."""
    from scipy import stats

    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, 0.0
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, float(stats.t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v)))


def fit_slope(x, y) -> tuple[float, float, float]:
    r"""Least-squares slope of :math:`\log y` on :math:`\log x` with its 95 % interval ``(slope, low, high)``
    (Student t on the residuals; an infinite interval with two points)."""
    import numpy as np
    from scipy import stats

    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    res = stats.linregress(lx, ly)
    dof = len(lx) - 2
    half = float(stats.t.ppf(0.975, dof) * res.stderr) if dof > 0 else math.inf
    return float(res.slope), float(res.slope - half), float(res.slope + half)
