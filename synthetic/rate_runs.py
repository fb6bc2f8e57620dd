r"""The runs of the rate table (``perfedavg check --rates``): configurations, the seed-vectorized sweep, the
stationary floors, the derived bound's terms, and the derived bound checked against the measured Φ_K.

Task: the **quadratic** task (:mod:`synthetic.quadratic`: least squares, d = 2, n = 10 users on 5 balanced
cones, 200 support points, exact L, ρ = 0, B and σ_G on the stated domain ‖w‖ ≤ W = 2, checked against the
recorded max ‖w̄‖ of every run), where F is a well-conditioned quadratic with a finite minimiser w*_α known
in closed form (:func:`synthetic.quadratic.minimizer_F`), so stationary floors are reached in tens of rounds.
Per-FedAvg with exact Hessian-vector products unless said; float64; seeds vectorized
(:mod:`synthetic.batched`); every seed is a run directory under ``--out`` (finished ones are reused: the
sweep resumes).

Floors are measured in the stationary regime: the run starts *at* w*_α (task option ``init = "minimizer"``),
discards a burn-in of ``BURN`` mixing times T = 1/(βτμ_F) (μ_F = smallest eigenvalue of ∇²F, exact), then
averages the theorem's own integrand φ_k = (1/τ)Σ_t ‖∇F(w̄_{k+1,t})‖² over ``MEASURE`` mixing times; its
standard error is by batch means (``BATCHES`` consecutive blocks per seed, each ≥ 3 T long, so the block
means are nearly independent; the blocks of all seeds are the independent values, n − 1 degrees of freedom).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from perfedavg.engine.config import RunConfig
from perfedavg.runs.names import seed_batch_name, seed_dir_name
from perfedavg.runs.resolve import resolve
from perfedavg.runs.rundir import SUMMARY, read_json
from perfedavg.runs.status import is_done, run_status
from theory import distances, lemmas
from theory.checks_api import convergence, fedavg_convergence, upper_bound_holds

from .batched import run_seeds, write_run_dirs
from .measure import global_constants
from .quadratic import client_moments, theta_lipschitz
from .rate_stats import Point, mean_se

#: burn-in and measurement length of a floor run, in mixing times T = 1/(β τ μ_F)
BURN = 2
MEASURE = {"smoke": 6, "quick": 12, "full": 40}
#: swept values per length ("smoke": the default-test version; "quick": ``--rates``; "full": ``--rates --full``)
GRID = {
    "smoke": {
        "K": (32, 64, 128),
        "beta": (0.04, 0.16),
        "tau": (2, 4),
        "D": (1, 16),
        "h": (0.5, 1.0),
        "alpha": (0.125, 0.5),
        "shift": (1.0, 4.0),
    },
    "quick": {
        "K": (64, 128, 256),
        "beta": (0.04, 0.08, 0.16),
        "tau": (2, 4, 8),
        "D": (1, 4, 16),
        "h": (0.25, 0.5, 1.0),
        "alpha": (0.125, 0.25, 0.5),
        "shift": (0.5, 1.0, 2.0, 4.0),
    },
    "full": {
        "K": (64, 128, 256, 512, 1024),
        "beta": (0.02, 0.04, 0.08, 0.16),
        "tau": (2, 4, 8, 16),
        "D": (1, 2, 4, 8, 16),
        "h": (0.125, 0.25, 0.5, 1.0),
        "alpha": (0.0625, 0.125, 0.25, 0.5),
        "shift": (0.25, 0.5, 1.0, 2.0, 4.0),
        "tau_gamma1": (2, 4, 8),
    },
}
#: batch-means blocks per seed
BATCHES = 8
BASE = {
    "algorithm": "exact",
    "alpha": 0.5,
    "beta": 0.16,
    "tau": 1,
    "r": 1.0,
    "D": 100,
    "D1": 100,
    "D2": 100,
    "dtype": "float64",
    "eval_every": 10,
    "task": {"name": "quadratic", "dim": 2, "n_clients": 10, "clusters": 5, "support": 200, "w_radius": 2.0},
}


def _config(changes: dict):
    """A RunConfig: ``BASE`` updated by ``changes`` (its ``task`` table merged; a different task name starts
    from that task's defaults)."""

    data = json.loads(json.dumps(BASE))
    task = dict(data.pop("task"))
    changes = json.loads(json.dumps(changes))
    new_task = changes.pop("task", {})
    if new_task.get("name", task["name"]) != task["name"]:
        task = {}
    task.update(new_task)
    data.update(changes)
    return RunConfig(**data, task=task)


def seed_dirs(out: Path, cfg, seeds: list[int]) -> list[Path]:
    """The run directories of ``cfg``'s seeds under ``out`` (:mod:`perfedavg.runs.names`)."""
    return [Path(out) / seed_batch_name(cfg) / seed_dir_name(s) for s in seeds]


def run_config(cfg, seeds: list[int], dirs: list[Path], track_inner: bool) -> None:
    """Run ``cfg`` for all ``seeds`` (vectorized) and write one run directory per seed into ``dirs``: one config of
    :func:`run_sweep`, a piece of work that another process may do (what it writes does not depend on where)."""
    torch.set_num_threads(1)  # tiny tensors: threads only contend on a shared machine
    cfg_r, task = resolve(cfg)
    runs = run_seeds(task, cfg_r, seeds, track_inner=track_inner)
    write_run_dirs(runs, cfg_r, dirs, task.label or task.name)


def run_ahead(
    planned: list[tuple], seeds: list[int], executor, track_inner: bool = True, progress: bool = False
) -> None:
    """Run every ``(config, sweep directory)`` of ``planned`` whose seeds' run directories are not all done, all
    at once with ``executor`` (anything with :meth:`concurrent.futures.Executor.map`; one after the other without
    one), the longest (K·τ rounds) first; a config listed twice runs once.  :func:`run_sweep` then reads them back."""
    todo: dict[Path, tuple] = {}  # first directory -> (config, directories)
    for cfg, out in planned:
        dirs = seed_dirs(out, cfg, seeds)
        if not all(is_done(run_status(d)) for d in dirs):
            todo.setdefault(dirs[0], (cfg, dirs))
    pieces = sorted(todo.values(), key=lambda piece: -piece[0].K * piece[0].tau)
    mapper = map if executor is None else executor.map
    with tqdm(total=len(pieces), desc="rates", unit="config", disable=not progress, leave=False) as bar:
        for _ in mapper(run_config, [c for c, _ in pieces], repeat(seeds), [d for _, d in pieces], repeat(track_inner)):
            bar.update(1)


def run_sweep(
    configs: list, seeds: list[int], out: Path, track_inner: bool = False, progress: bool = True, executor=None
) -> list[dict]:
    """Run each config for all ``seeds`` (vectorized), store run dirs ``out/<slug>/seed<s>``, skip finished
    ones; returns, per config, ``{"grad_norm_sq_F": (S, K+1), "stationarity": (S, K), "phi": (S, K) or None,
    "max_w_norm": (S,), "dirs": [...]}``, read back from the run directories.  ``executor``: anything with
    :meth:`concurrent.futures.Executor.map` (e.g. :meth:`figures.pool.Pool.at`) runs the unfinished configs
    (:func:`run_config`) side by side; by default they run here, one after the other, in the order given."""

    torch.set_num_threads(1)  # tiny tensors: threads only contend on a shared machine
    if executor is None:
        with tqdm(total=len(configs), desc="rates", unit="config", disable=not progress, leave=False) as bar:
            for cfg in configs:  # in order (a sweep interrupted keeps its first configs)
                run_ahead([(cfg, out)], seeds, None, track_inner)
                bar.update(1)
    else:
        run_ahead([(cfg, out) for cfg in configs], seeds, executor, track_inner, progress)
    results = []
    for dirs in (seed_dirs(out, cfg, seeds) for cfg in configs):
        sums = [read_json(d / SUMMARY) for d in dirs]
        phi = [s.get("phi_by_round") for s in sums]
        st_f = [s.get("stationarity_f_by_round") for s in sums]
        results.append(
            {
                "grad_norm_sq_F": np.array([s["grad_norm_sq_F_by_round"] for s in sums]),
                "stationarity": np.array([s["stationarity_by_round"] for s in sums], dtype=float),
                "phi": np.array(phi, dtype=float) if all(p is not None for p in phi) else None,
                "max_w_norm": np.array([s.get("max_w_norm") or math.nan for s in sums], dtype=float),
                "stationarity_f": np.array(st_f, dtype=float) if all(v is not None for v in st_f) else None,
                "dirs": [str(d) for d in dirs],
            }
        )
    return results


# ----------------------------------------------------------------------------- stationary floors
def mu_F(cfg) -> float:
    r"""Smallest eigenvalue of :math:`\nabla^2F = \frac1n\sum_iA_iH_iA_i` (quadratic task, exact)."""

    _, task = resolve(cfg)
    H, _ = client_moments(task.train)
    A = torch.eye(H.shape[-1], dtype=H.dtype) - cfg.alpha * H
    return float(torch.linalg.eigvalsh((A @ H @ A).mean(0)).min())


def floor_config(changes: dict, length: str):
    r"""A stationary-floor config: starts at w*_α (``init = "minimizer"``), K = (BURN + MEASURE) mixing times."""
    changes = json.loads(json.dumps(changes))
    changes.setdefault("task", {}).update({"init": "minimizer", "init_alpha": changes.get("alpha", BASE["alpha"])})
    probe = _config({**changes, "K": 1})
    T = 1.0 / (probe.beta * probe.tau * mu_F(probe))
    return _config({**changes, "K": math.ceil((BURN + MEASURE[length]) * T)}), math.ceil(BURN * T)


def stationary_floor(res: dict, burn: int) -> tuple[Point, float]:
    r"""Mean of :math:`\varphi_k` over rounds ≥ ``burn`` and all seeds with its batch-means standard error
    (module docstring), and the lag-1 autocorrelation of the block means (≈ 0 when blocks are independent)."""
    phi = res["phi"][:, burn:]
    usable = phi.shape[1] - phi.shape[1] % BATCHES
    blocks = phi[:, :usable].reshape(phi.shape[0], BATCHES, -1).mean(2)
    point = mean_se(blocks)
    b = blocks - blocks.mean(1, keepdims=True)
    lag1 = float((b[:, 1:] * b[:, :-1]).sum() / max((b * b).sum(), 1e-300))
    return point, lag1


def bound_terms(cfg, gamma_from: str = "tv", w1: float | None = None, w_at=None, noise_free: bool = False):
    r"""``(derived_terms, recalled_terms)`` of the convergence bound for ``cfg`` with the task's exact constants
    (``theory.checks_api.convergence``).  ``gamma_from="w1"``: γ_G, γ_H from the W1 statements
    (``theory.distances``) with :math:`L_\theta, \rho_\theta` at ``w_at`` instead of the TV ones.
    ``noise_free``: the bound for batches that are the users' whole distributions, as K → ∞
    (σ_G = σ_H = 0, so s = b = 0 for the exact variant; the optimization term, which K → ∞ removes, is left to
    the caller)."""

    _, task = resolve(cfg)
    consts = global_constants(
        task, cfg.alpha, beta=cfg.beta, tau=cfg.tau, K=cfg.K, r=cfg.r, D=cfg.D, D1=cfg.D1, D2=cfg.D2, delta=cfg.delta
    )
    if gamma_from == "w1":
        if w1 is None:
            raise ValueError("bound_terms(gamma_from='w1') needs w1")
        L_theta, rho_theta = theta_lipschitz(task, w_at)
        g2 = distances.w1_gradient_bound()(L_theta=L_theta, w1=w1) if w1 > 0 else 0.0
        h2 = distances.w1_hessian_bound()(rho_theta=rho_theta, w1=w1) if w1 > 0 else 0.0
        consts = replace(consts, gamma_G=math.sqrt(g2), gamma_H=math.sqrt(h2))
    elif gamma_from == "none":
        consts = replace(consts, gamma_G=0.0, gamma_H=0.0)
    if noise_free:
        consts = replace(consts, sigma_G=0.0, sigma_H=0.0)
    report = convergence(consts, cfg.algorithm if cfg.algorithm != "fedavg" else "exact")
    return report.derived_terms, report.recalled_terms


def theory_LF(cfg) -> float:
    """The derived L_F = L(1+αL)² + αρB (``theory.lemmas.smoothness_derived``) on ``cfg``'s task constants."""

    _, task = resolve(cfg)
    return float(lemmas.smoothness_derived()(global_constants(task, cfg.alpha)))


def _domain_ok(results, cfgs) -> bool:
    return all(np.nanmax(r["max_w_norm"]) <= c.task["w_radius"] for r, c in zip(results, cfgs))


def derived_bound_check(cfg, stationarity: np.ndarray, Ks: list[int]) -> dict:
    r"""The derived explicit bound on Φ_K (theory.checks_api.convergence) with the task's exact
    constants at each K, against the measured Φ_K (mean over seeds and the upper end of its interval;
    verdict :func:`theory.checks_api.upper_bound_holds`)."""

    _, task = resolve(cfg)
    rows, ok = [], True
    base = global_constants(
        task, cfg.alpha, beta=cfg.beta, tau=cfg.tau, K=1, r=cfg.r, D=cfg.D, D1=cfg.D1, D2=cfg.D2, delta=cfg.delta
    )
    for K in Ks:
        consts = replace(base, K=float(K))
        report = convergence(consts, cfg.algorithm if cfg.algorithm != "fedavg" else "exact")
        point = mean_se(stationarity[:, K - 1])
        mean, half = point.mean, point.halfwidth()
        holds = upper_bound_holds(mean, report.derived, mean + half)
        ok &= holds
        rows.append(
            {
                "K": K,
                "measured": mean,
                "halfwidth": half,
                "derived_bound": report.derived,
                "dominant_term": report.dominant(report.derived_terms),
                "holds": bool(holds),
                "margin": report.derived / (mean + half) if mean + half > 0 else math.inf,
            }
        )
    return {"provenance": "derived", "holds_at_every_K": bool(ok), "rows": rows}


def fedavg_bound_check(cfg, res: dict, Ks: list[int]) -> dict:
    r"""FedAvg's own stationarity against the derived FedAvg bound (``theory.theorem.fedavg_bound``, the α → 0
    form of the derived bound, via ``theory.checks_api.fedavg_convergence``) at every K: measured
    :math:`\frac1{\tau K}\sum_k\sum_t\|\nabla f(\bar w_{k+1,t})\|^2` exactly (full data, closed form),
    mean over seeds with its 95 % interval, HOLDS by :func:`theory.checks_api.upper_bound_holds`.  Also
    reported, not bounded: the same average of :math:`\|\nabla F(\bar w)\|^2` (Per-FedAvg's objective at
    FedAvg's iterates, α of ``cfg``)."""

    _, task = resolve(cfg)
    base = global_constants(task, 0.0, beta=cfg.beta, tau=cfg.tau, K=1, r=cfg.r, D=cfg.D, D1=cfg.D1, D2=cfg.D2)
    rows, ok = [], True
    for K in Ks:
        bound = fedavg_convergence(replace(base, K=float(K)))
        own, of_F = mean_se(res["stationarity_f"][:, K - 1]), mean_se(res["stationarity"][:, K - 1])
        mean, half = own.mean, own.halfwidth()
        mean_F, half_F = of_F.mean, of_F.halfwidth()
        holds = upper_bound_holds(mean, bound, mean + half)
        ok &= holds
        rows.append(
            {
                "K": K,
                "measured": mean,
                "halfwidth": half,
                "derived_bound": bound,
                "holds": bool(holds),
                "margin": bound / (mean + half) if mean + half > 0 else math.inf,
                "measured_grad_F": mean_F,
                "halfwidth_grad_F": half_F,
            }
        )
    return {
        "provenance": "derived",
        "statement": "convergence bound, FedAvg (α = 0) [derived]",
        "holds_at_every_K": bool(ok),
        "rows": rows,
        "config": {"beta": cfg.beta, "tau": cfg.tau, "r": cfg.r, "D": cfg.D, "alpha_of_F": cfg.alpha},
    }
