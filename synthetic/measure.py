r"""Measurement harness: each lemma's quantity measured on a task with exact constants.

Everything is computed from the task's full local data (:mod:`perfedavg.engine.objective`) or
by Monte Carlo over Algorithm 1's own batches (:func:`perfedavg.engine.local.meta_gradient`);
every bound value comes from :mod:`theory` (``theory.checks_api.lemma_bounds`` and the
statements behind it) — this module never writes a bound formula.

What each constant means here (docs/paper.md §3):

* ``L``, ``rho``, ``B``: per-sample sup bounds valid for every w (task docstrings), so
  they bound every f_i too: they are given both as the per-user fields and as the per-sample ones
  (``L_sample``, ``rho_sample``, ``B_sample``), which the TV statements of §6 and the HF direction need.
* ``sigma_G``, ``sigma_H``: the task's per-sample variance bounds valid for every w
  (``Task.constants``).  The bias lemma only needs the inner-batch variance *at the point
  w*, so its check also uses the exact :math:`\sigma_{G,i}(w)` of the client
  (:func:`synthetic.common.sigma_G2_at`).
* ``gamma_G``, ``gamma_H``: bounds valid for every w, from the TV statements of
  ``theory.distances`` with the exact RMS total variation of the task's users
  (:func:`global_constants`); the values at a point are measured separately.
* ``F0_gap``: :math:`F(w_0) - F^* \le F(w_0)` because every synthetic loss is >= 0.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from perfedavg.algorithms import DEFAULT_DELTA, PerFedAvgAlgorithm
from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.objective import client_objectives, client_objectives_grad_f
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.sampling import draw_batch
from perfedavg.engine.task import Task
from theory import distances
from theory.constants import Constants

from .common import client_hessians, gradient_dissimilarity, hessian_dissimilarity, rms

#: z of the two-sided 99.7 % normal interval used for every Monte Carlo estimate
Z = 3.0
#: power iterations of :func:`hessian_norm_F`: the users' Hessians have P <= 55 rows on the default tasks, and
#: 30 iterations bring the Rayleigh quotient within 1e-3 of the top eigenvalue there (pinned to a full
#: eigendecomposition by a test); fewer only lowers the estimate, which stays a valid lower one
POWER_ITERATIONS = 30


def task_module(task: Task):
    """The synthetic module that built ``task`` (for its ``theta_lipschitz`` and ``w1_to_mixture``)."""
    return importlib.import_module(f"synthetic.{task.name}")


def global_constants(task: Task, alpha: float, **algorithm: float) -> Constants:
    r"""A :class:`theory.constants.Constants` with the task's exact constants (module
    docstring); ``algorithm`` sets β, τ, K, r, n, D, D1, D2, δ (theory's defaults otherwise).

    :math:`\gamma_G^2` and :math:`\gamma_H^2` are the TV bounds of ``theory.distances``
    evaluated at the task's RMS total variation (valid for all w).
    """
    c = task.constants
    tv = c["tv_rms"]
    gamma_G2 = distances.tv_gradient_bound()(B_sample=c["B"], tv=tv) if tv > 0 else 0.0
    gamma_H2 = distances.tv_hessian_bound()(L_sample=c["L"], tv=tv) if tv > 0 else 0.0
    w0 = task.init_params(torch.Generator().manual_seed(0)).to(torch.float64)
    F0 = (
        float(client_objectives(task.per_sample_loss, w0, task.train, alpha).F.mean())
        if alpha > 0
        else float((task.train.weight * task.per_sample_loss(w0, *task.train.gather()[:2])).sum(1).mean())
    )
    algorithm.setdefault("n", float(task.n_clients))
    if "r" not in algorithm:
        algorithm["r"] = 1.0
    return Constants(
        L=c["L"],
        rho=c["rho"],
        B=c["B"],
        sigma_G=c["sigma_G"],
        sigma_H=c["sigma_H"],
        gamma_G=math.sqrt(gamma_G2),
        gamma_H=math.sqrt(gamma_H2),
        F0_gap=max(F0, 0.0),
        B_sample=c["B"],
        L_sample=c["L"],
        rho_sample=c["rho"],
        alpha=alpha,
        **{k: float(v) for k, v in algorithm.items()},
    )


# ----------------------------------------------------------------------------- smoothness
def smoothness_F(task: Task, alpha: float, pairs: list[tuple[Tensor, Tensor]]) -> float:
    r"""Largest :math:`\|\nabla F_i(u)-\nabla F_i(v)\|/\|u-v\|` over users i and the given pairs (exact ∇F_i)."""
    worst = 0.0
    for u, v in pairs:
        gu = client_objectives(task.per_sample_loss, u, task.train, alpha).grad_F
        gv = client_objectives(task.per_sample_loss, v, task.train, alpha).grad_F
        worst = max(worst, float((gu - gv).norm(dim=1).max()) / float((u - v).norm()))
    return worst


def hessian_norm_F(task: Task, w: Tensor, alpha: float, iters: int = POWER_ITERATIONS) -> float:
    r"""Largest :math:`\|\nabla^2F_i(w)\|` (operator norm) over users i at one w: power iteration on every user's
    exact Hessian of :math:`F_i(w) = f_i(w-\alpha\nabla f_i(w))` (Hessian-vector products by autograd through the
    inner step, all users stacked), the largest :math:`|v^\top\nabla^2F_i v|` of the iterates.  A Rayleigh quotient
    never exceeds the top eigenvalue's size, which never exceeds :math:`\sup_w\|\nabla^2F_i(w)\| = L_F`: a lower
    estimate of L_F, like :func:`smoothness_F`, but at the point itself, where random pairs see only an average
    curvature along their segment."""
    X, Y, Pw = task.train.gather()
    n, P = X.shape[0], w.shape[-1]
    W = w.detach().to(torch.float64).expand(n, P).clone().requires_grad_(True)
    v = torch.randn(n, P, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=1, keepdim=True)
    best = torch.zeros(n, dtype=torch.float64)
    with torch.enable_grad():
        f = (Pw * task.per_sample_loss(W, X, Y)).sum(-1)
        (g,) = torch.autograd.grad(f.sum(), W, create_graph=True)
        F = (Pw * task.per_sample_loss(W - alpha * g, X, Y)).sum(-1)
        (gF,) = torch.autograd.grad(F.sum(), W, create_graph=True)
        for _ in range(iters):
            (hv,) = torch.autograd.grad((gF * v).sum(), W, retain_graph=True)  # users are independent rows
            best = torch.maximum(best, (hv * v).sum(1).abs())
            v = hv / hv.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float(best.max())


def sample_pairs(dim: int, count: int, scales=(0.0, 0.5, 2.0), gaps=(1e-3, 0.3, 2.0), seed: int = 0):
    """Pairs ``(u, u + gap * unit)`` around points of several scales (near and far pairs)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for j in range(count):
        u = torch.randn(dim, generator=g, dtype=torch.float64) * scales[j % len(scales)]
        d = torch.randn(dim, generator=g, dtype=torch.float64)
        pairs.append((u, u + gaps[j % len(gaps)] * d / d.norm()))
    return pairs


# ----------------------------------------------------------------------------- stochastic direction
@dataclass(frozen=True)
class DirectionStats:
    r"""Monte Carlo statistics of a local-step direction :math:`d_i(w)` of one user.

    ``bias``: :math:`\|\bar d - \nabla F_i(w)\|` with ``bias_halfwidth`` :math:`= Z\sqrt{\mathrm{tr}\,\hat\Sigma/N}`
    (the size of :math:`\|\bar d - \mathbb E d\|`); ``mse``: the mean of
    :math:`\|d-\nabla F_i(w)\|^2` with ``mse_halfwidth`` = Z standard errors; ``samples`` N.
    """

    bias: float
    bias_halfwidth: float
    mse: float
    mse_halfwidth: float
    samples: int
    grad_F_norm: float


def direction_stats(
    task: Task,
    w: Tensor,
    client: int,
    *,
    alpha: float,
    D: int,
    D1: int,
    D2: int,
    algorithm: PerFedAvgAlgorithm = "exact",
    delta: float = DEFAULT_DELTA,
    samples: int = 10000,
    seed: int = 0,
) -> DirectionStats:
    r"""Bias and mean squared error of Algorithm 1's direction (``algorithm`` exact / fo / hf)
    at ``w`` for user ``client``, from ``samples`` independent draws of the three batches
    :math:`\mathcal D,\mathcal D',\mathcal D''` (sizes ``D``, ``D1``, ``D2``, i.i.d. from
    :math:`p_i`), all evaluated in one stacked call of :func:`perfedavg.engine.local.meta_gradient`."""
    gen = torch.Generator().manual_seed(seed)
    oracle = make_oracle(task)
    clients = torch.full((samples,), client, dtype=torch.long)
    batches = (
        draw_batch(gen, task.train, clients, D, True),
        draw_batch(gen, task.train, clients, D1, True),
        draw_batch(gen, task.train, clients, D2, True),
    )
    W = w.detach().expand(samples, -1).clone()
    d = meta_gradient(oracle, W, batches, StepSizes(alpha=alpha, beta=1.0, delta=delta), algorithm)
    grad_F = client_objectives(task.per_sample_loss, w, task.train, alpha).grad_F[client]
    mean = d.mean(0)
    cov_trace = float((d - mean).square().sum(1).mean()) * samples / (samples - 1)
    sq = (d - grad_F).square().sum(1)
    return DirectionStats(
        bias=float((mean - grad_F).norm()),
        bias_halfwidth=Z * math.sqrt(cov_trace / samples),
        mse=float(sq.mean()),
        mse_halfwidth=Z * float(sq.std()) / math.sqrt(samples),
        samples=samples,
        grad_F_norm=float(grad_F.norm()),
    )


# ----------------------------------------------------------------------------- dissimilarity
def dissimilarity_F(task: Task, w: Tensor, alpha: float) -> float:
    r""":math:`\frac1n\sum_i\|\nabla F_i(w)-\nabla F(w)\|^2`, exact."""
    return gradient_dissimilarity(client_objectives(task.per_sample_loss, w, task.train, alpha).grad_F)


@dataclass(frozen=True)
class Heterogeneity:
    r"""At one w: :math:`\gamma_G^2(w)=\frac1n\sum\|\nabla f_i-\nabla f\|^2`, :math:`\gamma_H^2(w)`
    (operator norm), the RMS distances ``tv``, ``w1`` of the users to the mixture and the
    Lipschitz constants in θ at w (``L_theta``, ``rho_theta``)."""

    gamma_G2: float
    gamma_H2: float
    tv: float
    w1: float
    L_theta: float
    rho_theta: float


def heterogeneity_at(task: Task, w: Tensor, w1_per_user=None) -> Heterogeneity:
    """Measured dissimilarities at ``w`` and what the TV / W1 statements need (module docstring)."""
    module = task_module(task)
    if w1_per_user is None:
        w1_per_user = module.w1_to_mixture(task.train)
    grads = client_objectives_grad_f(task.per_sample_loss, w, task.train)
    hessians = client_hessians(task.per_sample_loss, w, task.train)
    L_theta, rho_theta = module.theta_lipschitz(task, w)
    return Heterogeneity(
        gamma_G2=gradient_dissimilarity(grads),
        gamma_H2=hessian_dissimilarity(hessians),
        tv=task.constants["tv_rms"],
        w1=rms(w1_per_user),
        L_theta=L_theta,
        rho_theta=rho_theta,
    )


# ----------------------------------------------------------------------------- HF finite difference
def hf_error(task: Task, w: Tensor, client: int, g: Tensor, delta: float) -> float:
    r""":math:`\|(\nabla f_i(w+\delta g)-\nabla f_i(w-\delta g))/(2\delta) - \nabla^2 f_i(w)g\|` on the
    user's full data (h = f_i; its Hessian is ρ-Lipschitz like every per-sample Hessian)."""
    oracle_loss = task.per_sample_loss
    X, Y, P = task.train.gather(torch.tensor([client]))
    stack = torch.stack([w + delta * g, w - delta * g, w])
    with torch.enable_grad():
        Wv = stack.detach().clone().requires_grad_(True)
        f = (P * oracle_loss(Wv, X.expand(3, *X.shape[1:]), Y.expand(3, -1))).sum()
        (grads,) = torch.autograd.grad(f, Wv, create_graph=True)
        (hv,) = torch.autograd.grad((grads[2] * g).sum(), Wv)
    fd = (grads[0] - grads[1]).detach() / (2 * delta)
    return float((fd - hv[2]).norm())


def fit_exponent(x, y) -> tuple[float, float, float]:
    r"""Least-squares slope of :math:`\log y` on :math:`\log x` with a 95 % interval
    (Student t on the residuals): ``(slope, low, high)``."""
    from scipy import stats

    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    res = stats.linregress(lx, ly)
    dof = len(lx) - 2
    t = stats.t.ppf(0.975, dof) if dof > 0 else math.inf
    half = t * res.stderr if dof > 0 else math.inf
    return float(res.slope), float(res.slope - half), float(res.slope + half)
