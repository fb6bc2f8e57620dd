r"""Region constants of a run, measured exactly on the synthetic GLM tasks (DERIVATIONS.md §10).

The data-dependent bound (:mod:`theory.data_dependent`) needs, for every round k, sups over the points the run
visits in that round: the users' iterates w^i_t, their average u_t, the inner points w̃ and (for HF) the
per-sample gradient norms there.  :func:`virtual_run` is Algorithm 1 with **every** user running its τ local
steps each round and the server averaging a uniform draw A_k of r·n of them (the "virtual clients" of
DERIVATIONS.md §7: the sampled users' trajectories have the law of Algorithm 1's), recording every point the proof
evaluates; the directions are the engine's own (:func:`perfedavg.engine.local.meta_gradient`), several seeds at
once.  The per-user quantities at those points are exact (:class:`synthetic.glm.GLM`).

:func:`region_constants` turns a virtual run into :class:`theory.data_dependent.RegionConstants` (per round: sup
over the seeds and the local steps), with Δ₀ = F(w₀) − F* (:func:`synthetic.glm.minimum_F`).  The rows of
``perfedavg check --tightness`` and the curve a figure draws are in :mod:`synthetic.tightness`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from perfedavg.engine.config import RunConfig
from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.sampling import Batch, draw_batch, num_sampled_clients, sample_clients
from perfedavg.engine.task import Task
from perfedavg.errors import UsageError
from theory import data_dependent as dd

from .glm import CHUNK, GLM, minimum_F, objective_F, op_norm


# ----------------------------------------------------------------------------- the virtual run
@dataclass
class VirtualRun:
    r"""What :func:`virtual_run` records, per seed s: ``server (S, K+1, d)`` the models w_k; ``clients
    (S, K, τ+1, n, d)`` every user's iterates w^i_{k+1,t}; ``inner (S, K, τ, n, d)`` the inner points
    w̃ = w − α∇̃f_i(w, D) of every local step; ``sampled (S, K, m)`` the users A_k; ``phi (S, K)`` round k's
    (1/τ)Σ_t‖∇F(w̄_{k+1,t})‖² with w̄ the mean over A_k (w̄_{k+1,0} = w_k)."""

    server: Tensor
    clients: Tensor
    inner: Tensor
    sampled: Tensor
    phi: np.ndarray

    @property
    def stationarity(self) -> np.ndarray:
        r"""``(S, K)``: column K−1 is Φ_K = (1/K)Σ_{k<K} phi_k."""
        return np.cumsum(self.phi, 1) / np.arange(1, self.phi.shape[1] + 1)


def virtual_run(task: Task, cfg: RunConfig, seeds: list[int]) -> VirtualRun:
    r"""Algorithm 1 (``cfg.algorithm`` exact / fo / hf) with every user running each round (module docstring),
    float64, one generator per seed; the users in A_k are drawn uniformly without replacement."""
    if cfg.algorithm == "fedavg":
        raise UsageError("the data-dependent bound is Per-FedAvg's (exact, fo or hf), not FedAvg's")
    task = task.to(torch.float64)
    glm = GLM(task)
    oracle = make_oracle(task)
    n, tau, K = task.n_clients, cfg.tau, cfg.K
    m = num_sampled_clients(cfg.r, n)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    S = len(seeds)
    W = torch.stack([task.init_params(g).double() for g in gens])  # (S, d)
    everyone = torch.arange(n)
    h = StepSizes(alpha=cfg.alpha, beta=cfg.beta, delta=cfg.delta)
    server, clients, inner, sampled, phi = [W], [], [], [], []
    for _ in range(K):
        chosen = torch.stack([sample_clients(g, n, m) for g in gens])  # (S, m)
        local = W.unsqueeze(1).expand(S, n, -1).reshape(S * n, -1).clone()
        path, inner_k = [local.view(S, n, -1).clone()], []
        for _ in range(tau):
            batches = tuple(
                Batch.stack([draw_batch(g, task.train, everyone, size, task.batch_with_replacement) for g in gens])
                for size in (cfg.D, cfg.D1, cfg.D2)
            )
            inner_k.append((local - cfg.alpha * oracle.grad(local, batches[0].x, batches[0].y)).view(S, n, -1))
            local = local - cfg.beta * meta_gradient(oracle, local, batches, h, cfg.algorithm)  # type: ignore[arg-type]
            path.append(local.view(S, n, -1).clone())
        traj = torch.stack(path, 1)  # (S, tau+1, n, d)
        w_bar = torch.stack([traj[s][:, chosen[s]].mean(1) for s in range(S)])  # (S, tau+1, d)
        grads = objective_F(glm, w_bar[:, :tau].reshape(S * tau, -1), cfg.alpha)[1]
        phi.append(grads.square().sum(-1).view(S, tau).mean(1))
        W = w_bar[:, tau]
        server.append(W)
        clients.append(traj)
        inner.append(torch.stack(inner_k, 1))
        sampled.append(chosen)
    return VirtualRun(
        torch.stack(server, 1),
        torch.stack(clients, 1),
        torch.stack(inner, 1),
        torch.stack(sampled, 1),
        torch.stack(phi, 1).numpy(),
    )


# ----------------------------------------------------------------------------- constants of each round
def _chunked(fn, W: Tensor) -> dict[str, Tensor]:
    """``fn`` over the first dimension of ``W`` in chunks of :data:`CHUNK`, results concatenated."""
    parts = [fn(W[j : j + CHUNK]) for j in range(0, W.shape[0], CHUNK)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _per_user(values: list[float], K: int, n: int) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).view(K, n)


def _rounds(glm: GLM, task: Task, cfg: RunConfig, run: VirtualRun) -> tuple[list[dd.RoundConstants], float]:
    r"""Every round's :class:`theory.data_dependent.RoundConstants` (sups over seeds and local steps t < τ,
    DERIVATIONS.md §10.2) and the largest ‖∇²F‖ over the run (at the users' averages u_t, t ≤ τ, the sampled
    averages and the server models).  Vectorized over rounds (points in chunks of :data:`CHUNK`)."""
    alpha, beta, tau, n, d = cfg.alpha, cfg.beta, cfg.tau, glm.n, glm.d
    S, K = run.clients.shape[0], run.clients.shape[1]
    rho = float(task.constants["rho"])

    def per_round(x: Tensor) -> Tensor:  # (K*S*tau, n, ...) rows in (k, s, t) order -> (K, S*tau, n, ...)
        return x.reshape(K, S * tau, *x.shape[1:])

    # w^i_t (t < tau), inner points, users' averages u_t: rows in (k, s, t) order
    pts = run.clients[:, :, :tau].transpose(0, 1).reshape(-1, n, d)
    at_w = {k: per_round(v) for k, v in _chunked(lambda V: glm.personalized(V, alpha), pts).items()}
    at_in = {k: per_round(v) for k, v in _chunked(glm.at, run.inner.transpose(0, 1).reshape(-1, n, d)).items()}
    u_all = run.clients.mean(3)  # (S, K, tau+1, d)
    u = u_all[:, :, :tau].transpose(0, 1).reshape(-1, d)
    at_u = {k: per_round(v) for k, v in _chunked(lambda V: glm.personalized(V, alpha), glm.shared(u)).items()}
    hessF_u = at_u["hessF"].mean(2)  # (K, S*tau, d, d) = ∇²F(u_t)
    # smoothness of F: u_t (t <= tau), the sampled averages and the server models
    w_bar = torch.stack([run.clients[s, k][:, run.sampled[s, k]].mean(1) for s in range(S) for k in range(K)])
    extra = torch.cat([u_all.reshape(-1, d), w_bar.reshape(-1, d), run.server.reshape(-1, d)])
    hess_extra = torch.cat([objective_F(glm, extra[j : j + CHUNK], alpha)[2] for j in range(0, len(extra), CHUNK)])
    L_F = max(float(op_norm(hess_extra).max()), float(op_norm(hessF_u).max()))
    # per round and user, sups over the round's points
    sig_in = at_in["sigma_G2"].amax(1)
    B_in2 = at_in["grad"].square().sum(-1).amax(1)
    L_in = torch.maximum(op_norm(at_in["hess"]).amax(1), op_norm(at_w["hess_inner"]).amax(1))
    B_s2 = at_in["B_s2"].amax(1)
    eye = torch.eye(d, dtype=torch.float64)
    A_norm = op_norm(eye - alpha * at_w["hess"]).amax(1)
    sig_w = at_w["sigma_G2"].amax(1)
    sig_H = at_w["sigma_H2"].amax(1)
    var, rest = [], []
    for k in range(K):
        for i in range(n):
            inner_bias = dd.inner_bias_region(float(L_in[k, i]), rho, alpha, float(sig_w[k, i]), cfg.D)
            mse_out = dd.outer_mse_region(
                float(L_in[k, i]), alpha, float(sig_w[k, i]), float(sig_in[k, i]), cfg.D, cfg.D1
            )
            if cfg.algorithm == "fo":
                var.append(mse_out)
                rest.append(inner_bias)
                continue
            second = float(sig_in[k, i]) / cfg.D1 + float(B_in2[k, i])
            v_exact = dd.variance_exact_region(float(A_norm[k, i]), alpha, mse_out, float(sig_H[k, i]), second, cfg.D2)
            bias = dd.bias_exact_region(float(A_norm[k, i]), inner_bias)
            if cfg.algorithm == "hf":
                err = dd.hf_error_region(alpha, rho, cfg.delta, float(B_s2[k, i]))
                var.append(dd.variance_hf_region(v_exact, err))
                rest.append(bias + err)
            else:
                var.append(v_exact)
                rest.append(bias)
    var_t, rest_t = _per_user(var, K, n), _per_user(rest, K, n)
    if cfg.algorithm == "fo":  # FO's bias is the known vector alpha H_i v_i plus a part bounded in norm by rest_i
        known = alpha * (at_w["hess"] @ at_w["v"].unsqueeze(-1)).squeeze(-1)  # (K, S*tau, n, d)
        b_mean = known.mean(2).norm(dim=-1).amax(1) + rest_t.mean(1)
        b_rms = (known.norm(dim=-1) + rest_t[:, None]).square().mean(2).sqrt().amax(1)
    else:
        b_mean, b_rms = rest_t.mean(1), rest_t.square().mean(1).sqrt()
    # Hessian dissimilarity and contraction: M_i lies between u_t and w^i_t, taken at its end points
    dev = torch.maximum(op_norm(at_w["hessF"] - hessF_u[:, :, None]), op_norm(at_u["hessF"] - hessF_u[:, :, None]))
    gamma_HF = dev.square().mean(2).sqrt().amax(1)
    eig = torch.cat([torch.linalg.eigvalsh(at_w["hessF"]), torch.linalg.eigvalsh(at_u["hessF"])], 2)
    contraction = torch.maximum((1 - beta * eig.amin(-1)).abs(), (1 - beta * eig.amax(-1)).abs()).amax((1, 2))
    gF = at_u["gradF"]
    gamma_F = (gF - gF.mean(2, keepdim=True)).square().sum(-1).mean(2).sqrt().amax(1)
    rounds = [
        dd.RoundConstants(
            s2=float(var_t[k].mean()),
            gamma_F=float(gamma_F[k]),
            gamma_HF=float(gamma_HF[k]),
            contraction=float(contraction[k]),
            b_mean=float(b_mean[k]),
            b_rms=float(b_rms[k]),
        )
        for k in range(K)
    ]
    return rounds, L_F


def region_constants(task: Task, cfg: RunConfig, run: VirtualRun) -> dd.RegionConstants:
    r""":class:`theory.data_dependent.RegionConstants` of ``run`` (made by :func:`virtual_run` with ``cfg``):
    per round the sups of :func:`_rounds`, L_F their largest, Δ₀ = F(w₀) − F* (:func:`minimum_F`;
    w₀ the first seed's, every synthetic start being deterministic or drawn near 0)."""
    task = task.to(torch.float64)
    glm = GLM(task)
    rounds, L_F = _rounds(glm, task, cfg, run)
    w0 = run.server[:, 0]
    F0 = float(objective_F(glm, w0, cfg.alpha)[0].max())
    F_star = minimum_F(task, cfg.alpha, w0[0])
    return dd.RegionConstants(
        L_F=L_F,
        Delta0=max(F0 - F_star, 0.0),
        beta=cfg.beta,
        tau=cfg.tau,
        r=cfg.r,
        n=glm.n,
        rounds=tuple(rounds),
    )


def sup_over_rounds(region: dd.RegionConstants) -> dd.RegionConstants:
    """The same region with every round's constants replaced by their sup over all rounds (one region for the
    whole run: what the per-round sups gain is this bound minus the per-round one)."""
    fields = ("s2", "gamma_F", "gamma_HF", "contraction", "b_mean", "b_rms")
    top = dd.RoundConstants(**{f: max(getattr(rc, f) for rc in region.rounds) for f in fields})
    return dd.RegionConstants(
        L_F=region.L_F,
        Delta0=region.Delta0,
        beta=region.beta,
        tau=region.tau,
        r=region.r,
        n=region.n,
        rounds=(top,) * len(region.rounds),
    )


# ----------------------------------------------------------------------------- E Φ_K on the quadratic task
def expected_directions(glm: GLM, W: Tensor, alpha: float, algorithm: str) -> Tensor:
    r""":math:`\mathbb E d_i(w)` on the quadratic task at ``W (N, n, d)``, exactly: ∇F_i(w) for the exact and HF
    directions (unbiased: the outer gradient is affine and the central difference exact), ∇f_i(w̃*) for FO."""
    out = glm.personalized(W, alpha)
    return out["v"] if algorithm == "fo" else out["gradF"]


def expected_stationarity(task: Task, cfg: RunConfig, run: VirtualRun) -> np.ndarray:
    r"""``(S, K)``: per seed an unbiased estimate of E Φ_K (column K−1) on the quadratic task, with far less
    variance than Φ_K itself.  There every expected direction is affine in w (:func:`expected_directions`), so
    m_{k+1,t} = E w̄_{k+1,t} follows the noise-free recursion of the expected directions (every user; the mean
    over A_k of the users' iterates is their mean over all users), and ∇F(w) = ∇F(m) + ∇²F (w − m) with a
    constant ∇²F, so E‖∇F(w̄)‖² = ‖∇F(m)‖² + E‖∇²F (w̄ − m)‖²: the estimate keeps the first term exact and
    measures the second on the seed's w̄_{k+1,t} (the cross term, of mean zero, is what makes Φ_K noisy)."""
    if task.name != "quadratic":
        raise UsageError("expected_stationarity needs the quadratic task (affine expected directions)")
    task = task.to(torch.float64)
    glm = GLM(task)
    tau = cfg.tau
    S, K = run.clients.shape[0], run.clients.shape[1]
    G = objective_F(glm, run.server[:1, 0], cfg.alpha)[2][0]
    m = run.server[0, 0]
    if not bool((run.server[:, 0] == m).all()):
        raise UsageError("expected_stationarity needs one deterministic w_0 for every seed")
    est = np.zeros((S, K))
    for k in range(K):
        local = glm.shared(m[None])[0].clone()  # (n, d)
        for t in range(tau):
            mean_t = local.mean(0)
            w_bar = torch.stack([run.clients[s, k, t][run.sampled[s, k]].mean(0) for s in range(S)])
            dev = (w_bar - mean_t) @ G.T
            grad_mean = objective_F(glm, mean_t[None], cfg.alpha)[1][0]
            est[:, k] += (float(grad_mean.square().sum()) + dev.square().sum(-1).numpy()) / tau
            local = local - cfg.beta * expected_directions(glm, local[None], cfg.alpha, cfg.algorithm)[0]
        m = local.mean(0)
    return np.cumsum(est, 1) / np.arange(1, K + 1)


__all__ = [
    "VirtualRun",
    "expected_directions",
    "expected_stationarity",
    "region_constants",
    "sup_over_rounds",
    "virtual_run",
]
