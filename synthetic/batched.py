r"""Algorithm 1 vectorized over seeds: many runs of one configuration in one stacked loop.

:func:`run_seeds` drives :func:`perfedavg.engine.rounds.local_rounds` for several seeds at
once: the sampled clients of every seed are stacked into one ``(S*m, P)`` block, so each
local step is one call of the fast path's ``per_fedavg_step`` (or ``fedavg_step``;
:class:`perfedavg.engine.oracle.FastPath`).
Each seed keeps its own ``torch.Generator`` and draws in the engine's order (clients,
then for each local step the batches D, D', D''), so seed s gives the same iterates as
``perfedavg run --set seed=s`` up to floating-point summation order (tested).

The theorem's quantity is tracked exactly at every local step:
:math:`\|\nabla F(\bar w_{k+1,t})\|^2` with :math:`\bar w_{k+1,t}` the mean of the sampled
users' iterates (:math:`\bar w_{k+1,0}=w_k`) and :math:`\nabla F` from full local data,
for all seeds in one batched double-backward (:func:`grad_F_batched`).

:func:`write_run_dirs` stores each seed as a run directory (``config.toml``,
``metrics.jsonl``, ``summary.json``) through :mod:`perfedavg.runs.rundir`, as the runner does, with the
objective metrics (``F``, ``grad_norm_sq_F``, ``f``, ``grad_norm_sq_f``,
``stationarity_avg``) at every evaluated round (no personalized test metrics, no
checkpoint: a batched run is short and is redone whole if interrupted).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from perfedavg.engine.config import RunConfig
from perfedavg.engine.local import Oracle
from perfedavg.engine.objective import client_objectives_grad_f
from perfedavg.engine.oracle import LocalSteps, make_oracle
from perfedavg.engine.rounds import DTYPES, check_config_against_task, local_rounds
from perfedavg.engine.sampling import num_sampled_clients
from perfedavg.engine.task import Task
from perfedavg.runs import rundir
from perfedavg.runs.status import DIVERGED, FINISHED

from .common import client_hessians, gradient_dissimilarity, hessian_dissimilarity
from .quadratic import exact_objectives, objective_moments

_GATHER_CACHE: dict = {}
_MOMENTS_CACHE: dict = {}


def _gathered(task: Task):
    """``task.train.gather()`` computed once per task object."""
    key = id(task.train)
    hit = _GATHER_CACHE.get(key)
    if hit is None or hit[0] is not task.train:
        _GATHER_CACHE.clear()
        hit = _GATHER_CACHE[key] = (task.train, task.train.gather())
    return hit[1]


def _moments(task: Task) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`synthetic.quadratic.objective_moments` of ``task.train``, computed once per task object (a run
    evaluates the objectives at every round and local step)."""
    key = id(task.train)
    hit = _MOMENTS_CACHE.get(key)
    if hit is None or hit[0] is not task.train:
        _MOMENTS_CACHE.clear()
        hit = _MOMENTS_CACHE[key] = (task.train, objective_moments(task.train))
    return hit[1]


def grad_F_batched(task: Task, W: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""For shared models ``W (S, P)``: :math:`F(w_s)`, :math:`\|\nabla F(w_s)\|^2`, :math:`f(w_s)`,
    :math:`\|\nabla f(w_s)\|^2`, each ``(S,)``, exactly from full local data (all users at once)."""
    if task.name == "quadratic":  # closed form (synthetic.quadratic.exact_objectives): same values, no autograd
        F, gF, f, gf = exact_objectives(task.train, W, alpha, _moments(task))
        return F.to(W.dtype), gF.to(W.dtype), f.to(W.dtype), gf.to(W.dtype)
    X, Y, Pw = _gathered(task)
    S, n, P = W.shape[0], X.shape[0], W.shape[1]
    # one leading (model) dimension, as every task's loss supports: rows s*n + i = (seed s, client i)
    X, Y, Pw = (t.expand(S, *t.shape).reshape(S * n, *t.shape[1:]) for t in (X, Y, Pw))
    with torch.enable_grad():
        Wc = W.detach()[:, None, :].expand(S, n, P).reshape(S * n, P).clone().requires_grad_(True)
        f = (Pw * task.per_sample_loss(Wc, X, Y)).sum(-1)  # (S*n,)
        (g,) = torch.autograd.grad(f.sum(), Wc, create_graph=alpha != 0)
        if alpha != 0:
            F = (Pw * task.per_sample_loss(Wc - alpha * g, X, Y)).sum(-1)
            (gF,) = torch.autograd.grad(F.sum(), Wc)
        else:
            F, gF = f, g
    F, f, gF, g = F.detach().view(S, n), f.detach().view(S, n), gF.view(S, n, P), g.detach().view(S, n, P)
    return (F.mean(1), gF.mean(1).square().sum(1), f.mean(1), g.mean(1).square().sum(1))


def heterogeneity_batched(task: Task, W: Tensor) -> tuple[Tensor, Tensor]:
    r"""For shared models ``W (S, P)``: :math:`\gamma_G^2(w_s)=\frac1n\sum_i\|\nabla f_i(w_s)-\nabla f(w_s)\|^2`
    and :math:`\gamma_H^2(w_s)=\frac1n\sum_i\|\nabla^2f_i(w_s)-\nabla^2f(w_s)\|_{op}^2`, each ``(S,)``, exactly
    from full local data (closed form for the quadratic task, where :math:`\nabla f_i = H_iw - c_i` and the
    Hessians :math:`H_i` do not depend on w; autograd, one double backward per parameter, otherwise)."""
    if task.name == "quadratic":
        H, c, _ = _moments(task)
        grads = torch.einsum("nab,sb->sna", H, W.double()) - c  # (S, n, d)
        gG = (grads - grads.mean(1, keepdim=True)).square().sum(-1).mean(1)
        gH = torch.full_like(gG, hessian_dissimilarity(H))
        return gG, gH
    module = importlib.import_module(f"synthetic.{task.name}")
    hessians = getattr(module, "client_hessians", None)  # a closed form, where the task module has one
    gradient_gaps, hessian_gaps = [], []
    for w in W:
        gradient_gaps.append(gradient_dissimilarity(client_objectives_grad_f(task.per_sample_loss, w, task.train)))
        H = hessians(task, w) if hessians is not None else client_hessians(task.per_sample_loss, w, task.train)
        hessian_gaps.append(hessian_dissimilarity(H))
    return torch.tensor(gradient_gaps, dtype=torch.float64), torch.tensor(hessian_gaps, dtype=torch.float64)


def theta_lipschitz_batched(task: Task, W: Tensor) -> Tensor:
    r"""``(S, 2)``: :math:`(L_\theta(w_s), \rho_\theta(w_s))`, the Lipschitz constants in θ of ∇l and ∇²l at
    each model (the task module's ``theta_lipschitz``; they enter the W1 statements of docs/paper.md §6)."""
    module = importlib.import_module(f"synthetic.{task.name}")
    return torch.tensor([module.theta_lipschitz(task, w) for w in W], dtype=torch.float64)


class DomainRecorder(LocalSteps):
    r"""The generic fast path over ``oracle`` that also records, per seed, the largest :math:`\|w\|` of every model
    a local step evaluates a gradient or a Hessian-vector product at: the users' iterates :math:`w^i_{k+1,t}`,
    the inner points :math:`\tilde w = w - \alpha\tilde\nabla f_i(w,\mathcal D)` and, for HF, the points
    :math:`w\pm\delta g`.  A task whose constants hold on a domain :math:`\|w\|\le W` (``w_radius``, the
    quadratic task's B and σ_G) is inside its domain only if all of these are, not only the averages
    :math:`\bar w`.  Rows are ``S`` runs of ``m`` users (:meth:`LocalSteps.stack`'s layout), repeated blocks of
    them for HF's stacked :math:`w\pm\delta g`."""

    def __init__(self, oracle: Oracle, runs: int, users: int):
        self.oracle, self.runs, self.users = oracle, runs, users
        self.max_norm = torch.zeros(runs, dtype=torch.float64)

    def _record(self, W: Tensor) -> None:
        norms = W.detach().reshape(-1, self.runs, self.users, W.shape[-1]).norm(dim=-1).amax(dim=(0, 2))
        self.max_norm = torch.maximum(self.max_norm, norms.double().cpu())

    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        self._record(W)
        return self.oracle.grad(W, X, Y)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        self._record(W)
        return self.oracle.hvp(W, V, X, Y)


@dataclass
class SeedRuns:
    """Results of :func:`run_seeds`: per seed (rows) and per round k = 0..K (columns)."""

    seeds: list[int]
    F: np.ndarray  # (S, K+1)  F(w_k)
    grad_norm_sq_F: np.ndarray  # (S, K+1)
    f: np.ndarray
    grad_norm_sq_f: np.ndarray
    stationarity: np.ndarray  # (S, K+1): column k = (1/(tau k)) sum_{k'<k} sum_t ||grad F(w_bar)||^2 (nan at k=0)
    w: Tensor  # (S, P) final models
    phi: np.ndarray | None = None  # (S, K): round k's (1/tau) sum_t ||grad F(w_bar_{k+1,t})||^2 (track_inner)
    # (S,): max ||w|| over every w_bar and, for a task stated on a domain (``w_radius``), every point a local step
    # evaluates (DomainRecorder): the domain check of its constants
    max_w_norm: np.ndarray | None = None
    wall_seconds: float = 0.0
    # (track_heterogeneity) at every recorded w_bar (w_k, and the inner w_bar_{k+1,t} when track_inner), in order:
    gamma_G2: np.ndarray | None = None  # (S, N) exact gamma_G^2(w_bar)
    gamma_H2: np.ndarray | None = None  # (S, N) exact gamma_H^2(w_bar)
    theta_lipschitz: np.ndarray | None = None  # (S, N, 2) (L_theta, rho_theta) at w_bar
    # (track_inner) FedAvg's own quantity: (S, K) round k's (1/tau) sum_t ||grad f(w_bar_{k+1,t})||^2
    phi_f: np.ndarray | None = None
    stationarity_f: np.ndarray | None = None  # (S, K+1): (1/(tau k)) sum sum ||grad f(w_bar)||^2 (nan at k=0)


def run_seeds(
    task: Task, cfg: RunConfig, seeds: list[int], track_inner: bool = True, track_heterogeneity: bool = False
) -> SeedRuns:
    r"""Run ``cfg`` for every seed in ``seeds`` at once (module docstring).  ``track_heterogeneity``: also record
    the exact :math:`\gamma_G^2, \gamma_H^2` and :math:`(L_\theta, \rho_\theta)` at every recorded
    :math:`\bar w` (:func:`heterogeneity_batched`, :func:`theta_lipschitz_batched`)."""
    check_config_against_task(cfg, task)
    dtype = DTYPES[cfg.dtype]
    task = task.to(dtype)
    oracle = make_oracle(task)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    W = torch.stack([task.init_params(g).to(dtype) for g in gens])  # (S, P)
    S = W.shape[0]
    recorder = None
    if "w_radius" in task.constants and isinstance(oracle, LocalSteps):
        oracle = recorder = DomainRecorder(oracle, S, num_sampled_clients(cfg.r, task.n_clients))
    hist = {k: [v] for k, v in zip(("F", "gF", "f", "gf"), grad_F_batched(task, W, cfg.alpha))}
    inner = torch.zeros(S, dtype=torch.float64)
    inner_f = torch.zeros(S, dtype=torch.float64)
    nan = torch.full((S,), float("nan"), dtype=torch.float64)
    station, station_f = [nan], [nan]
    phi, phi_f = [], []
    het: dict[str, list[Tensor]] = {"gG": [], "gH": [], "lip": []}

    def record_heterogeneity(w_bar):
        if track_heterogeneity:
            gG, gH = heterogeneity_batched(task, w_bar)
            het["gG"].append(gG)
            het["gH"].append(gH)
            het["lip"].append(theta_lipschitz_batched(task, w_bar))

    record_heterogeneity(W)
    max_norm = W.norm(dim=1).double()
    started = time.perf_counter()
    for k in range(cfg.K):
        W_next, _, trajectory = local_rounds(task, oracle, cfg, W, gens, track=track_inner)
        round_sum = torch.zeros(S, dtype=torch.float64)
        round_sum_f = torch.zeros(S, dtype=torch.float64)
        if track_inner:  # w_bar_{k+1,0} = w_k was evaluated at the end of the previous round
            round_sum += hist["gF"][-1].double()
            round_sum_f += hist["gf"][-1].double()
            for w_bar in trajectory[1:]:
                _, gF, _, gf = grad_F_batched(task, w_bar, cfg.alpha)
                round_sum += gF.double()
                round_sum_f += gf.double()
                max_norm = torch.maximum(max_norm, w_bar.norm(dim=1).double())
                record_heterogeneity(w_bar)
        W = W_next
        max_norm = torch.maximum(max_norm, W.norm(dim=1).double())
        inner += round_sum
        inner_f += round_sum_f
        phi.append(round_sum / cfg.tau)
        phi_f.append(round_sum_f / cfg.tau)
        for key, v in zip(("F", "gF", "f", "gf"), grad_F_batched(task, W, cfg.alpha)):
            hist[key].append(v)
        record_heterogeneity(W)
        station.append(inner / (cfg.tau * (k + 1)) if track_inner else nan)
        station_f.append(inner_f / (cfg.tau * (k + 1)) if track_inner else nan)
    as_np = lambda xs: torch.stack(xs, 1).double().cpu().numpy()  # noqa: E731
    tracked = track_inner and bool(phi)
    return SeedRuns(
        list(seeds),
        as_np(hist["F"]),
        as_np(hist["gF"]),
        as_np(hist["f"]),
        as_np(hist["gf"]),
        as_np(station),
        W,
        phi=as_np(phi) if tracked else None,
        max_w_norm=(max_norm if recorder is None else torch.maximum(max_norm.cpu(), recorder.max_norm)).cpu().numpy(),
        wall_seconds=time.perf_counter() - started,
        gamma_G2=as_np(het["gG"]) if track_heterogeneity else None,
        gamma_H2=as_np(het["gH"]) if track_heterogeneity else None,
        theta_lipschitz=as_np(het["lip"]) if track_heterogeneity else None,
        phi_f=as_np(phi_f) if tracked else None,
        stationarity_f=as_np(station_f) if tracked else None,
    )


def eval_rounds(cfg: RunConfig) -> list[int]:
    """Rounds recorded in metrics.jsonl: 0, every ``eval_every``, and K (as the engine)."""
    return [k for k in range(cfg.K + 1) if k == 0 or k == cfg.K or k % cfg.eval_every == 0]


def write_run_dirs(runs: SeedRuns, cfg: RunConfig, out_dirs: list[Path], task_label: str) -> None:
    r"""One run directory per seed, written by :mod:`perfedavg.runs.rundir` as the runner writes its own, so
    figures read both alike: ``config.toml`` (the resolved config with that seed), ``metrics.jsonl`` (one record
    per evaluated round: ``round``, ``F``, ``grad_norm_sq_F``, ``f``, ``grad_norm_sq_f`` and, from round 1 when
    tracked, ``stationarity_avg``) and ``summary.json`` (:func:`perfedavg.runs.rundir.run_summary`, with
    ``wall_seconds`` the batched loop's time divided by the number of seeds and no ``cpu_seconds``; plus this
    engine's per-round series ``grad_norm_sq_F_by_round``, ``stationarity_by_round``, ``phi_by_round``,
    ``stationarity_f_by_round`` (FedAvg's (1/(τk))ΣΣ‖∇f(w̄)‖²) and ``max_w_norm``, and with heterogeneity
    tracking ``gamma_G2_trajectory``, ``gamma_H2_trajectory``, ``theta_lipschitz_trajectory``).  Summary last:
    a directory whose summary says ``finished`` is complete."""
    origin = rundir.provenance(cfg.task["name"], task_label)
    for s, (seed, out) in enumerate(zip(runs.seeds, out_dirs)):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        c = cfg.replace(seed=seed)
        rundir.write_config(out, c.to_dict())
        records = []
        for k in eval_rounds(c):
            rec = {
                "round": k,
                "F": runs.F[s, k],
                "grad_norm_sq_F": runs.grad_norm_sq_F[s, k],
                "f": runs.f[s, k],
                "grad_norm_sq_f": runs.grad_norm_sq_f[s, k],
            }
            if k > 0 and np.isfinite(runs.stationarity[s, k]):
                rec["stationarity_avg"] = runs.stationarity[s, k]
            records.append({key: float(v) if key != "round" else int(v) for key, v in rec.items()})
        rundir.write_metrics(out, records)
        not_finite = ~np.isfinite(runs.F[s]) | ~np.isfinite(runs.grad_norm_sq_F[s])
        bad = int(np.flatnonzero(not_finite)[0]) if not_finite.any() else None
        extra = {
            "engine": "synthetic.batched (seeds vectorized)",
            "stationarity_by_round": runs.stationarity[s].tolist()[1:],
            "grad_norm_sq_F_by_round": runs.grad_norm_sq_F[s].tolist(),
            "phi_by_round": runs.phi[s].tolist() if runs.phi is not None else None,
            "max_w_norm": float(runs.max_w_norm[s]) if runs.max_w_norm is not None else None,
            "stationarity_f_by_round": runs.stationarity_f[s].tolist()[1:] if runs.stationarity_f is not None else None,
        }
        if runs.gamma_G2 is not None and runs.gamma_H2 is not None and runs.theta_lipschitz is not None:
            extra.update(
                gamma_G2_trajectory=runs.gamma_G2[s].tolist(),
                gamma_H2_trajectory=runs.gamma_H2[s].tolist(),
                theta_lipschitz_trajectory=runs.theta_lipschitz[s].tolist(),
            )
        summary = rundir.run_summary(
            FINISHED if bad is None else DIVERGED,
            message="" if bad is None else f"F or its gradient norm is not finite at round {bad}",
            rounds_completed=c.K if bad is None else bad - 1,
            checkpoint_round=None,
            diverged_at_round=bad,
            signal=None,
            final=records[-1],
            metrics_records=len(records),
            wall_seconds=runs.wall_seconds / len(runs.seeds),
            cpu_seconds=None,
            origin=origin,
            **extra,
        )
        rundir.write_summary(out, summary)
