r"""Exact measurements on tasks with a tiny support: no Monte Carlo, no random pairs.

* :func:`direction_moments`: the mean and the mean squared error of Algorithm 1's direction
  (exact / FO / HF, :func:`perfedavg.engine.local.meta_gradient`) around :math:`\nabla F_i(w)`,
  computed by **enumerating every batch** :math:`(\mathcal D,\mathcal D',\mathcal D'')` of i.i.d.
  draws from :math:`p_i` with its probability :math:`\prod_j p_{i,j}` (support m, sizes D, D', D'':
  :math:`m^{D+D'+D''}` batches, all in one stacked call).  It also returns every point the
  step evaluates a gradient or a Hessian at (w, the inner points :math:`\tilde w_{\mathcal D}`, the
  HF points :math:`w\pm\delta g`), so a constant stated on a domain can be checked to cover them.
* :func:`smoothness_F`: :math:`\sup_w\max_i\|\nabla^2F_i(w)\|` for one-dimensional models, the exact
  Hessian of :math:`F_i` (autograd through the inner step) maximised over a grid and refined by a
  bounded scalar search; this is the smallest L_F for which :math:`F_i` is L_F-smooth on the
  interval (in d = 1, :math:`\sup|F_i''|` is the Lipschitz constant of :math:`F_i'`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from perfedavg.algorithms import PerFedAvgAlgorithm
from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.objective import client_objectives
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.sampling import Batch
from perfedavg.engine.task import Task

#: the most batches :func:`direction_moments` enumerates (support^(D+D'+D'')): a witness is tiny
MAX_BATCHES = 1 << 16


@dataclass(frozen=True)
class DirectionMoments:
    r"""Exact moments of a direction d around :math:`\nabla F_i(w)`: ``bias`` :math:`\|\mathbb Ed-\nabla F_i\|`,
    ``mse`` :math:`\mathbb E\|d-\nabla F_i\|^2`, ``batches`` enumerated, ``points`` ``(k, P)`` every model the
    step evaluated a gradient or Hessian-vector product at."""

    bias: float
    mse: float
    batches: int
    points: Tensor


def _all_positions(count: int, size: int) -> Tensor:
    """Every ordered tuple of ``size`` positions into ``count`` entries, ``(count**size, size)``."""
    return torch.tensor(list(itertools.product(range(count), repeat=size)), dtype=torch.long).reshape(-1, size)


def direction_moments(
    task: Task,
    w: Tensor,
    client: int,
    *,
    alpha: float,
    D: int,
    D1: int,
    D2: int,
    algorithm: PerFedAvgAlgorithm = "exact",
    delta: float = 1e-2,
) -> DirectionMoments:
    r"""Exact bias and MSE of Algorithm 1's ``algorithm`` direction at ``w`` for user ``client``
    (module docstring): every batch of sizes ``D``, ``D1``, ``D2`` drawn i.i.d. from :math:`p_i`."""
    data = task.train
    count = int(data.count[client])
    if count ** (D + D1 + D2) > MAX_BATCHES:
        raise ValueError(f"{count}^{D + D1 + D2} batches: too many to enumerate (at most {MAX_BATCHES})")
    index = data.index[client, :count]
    prob = data.weight[client, :count].to(torch.float64)
    blocks = [_all_positions(count, size) for size in (D, D1, D2)]
    total = len(blocks[0]) * len(blocks[1]) * len(blocks[2])
    pick = np.unravel_index(np.arange(total), tuple(len(b) for b in blocks))  # every (D, D', D'') combination
    positions = [blocks[k][torch.from_numpy(pick[k])] for k in range(3)]  # (C, size) each
    weight = torch.ones(total, dtype=torch.float64)
    for pos in positions:
        weight = weight * prob[pos].prod(1)
    batches = [Batch(data.x[index[pos]], data.y[index[pos]]) for pos in positions]
    oracle = make_oracle(task)
    W = w.detach().to(torch.float64).expand(total, -1).clone()
    h = StepSizes(alpha=alpha, beta=1.0, delta=delta)
    d = meta_gradient(oracle, W, (batches[0], batches[1], batches[2]), h, algorithm)
    grad_F = client_objectives(task.per_sample_loss, w.to(torch.float64), data, alpha).grad_F[client]
    mean = (weight.unsqueeze(1) * d).sum(0)
    err = (d - grad_F).square().sum(1)
    inner = W - alpha * oracle.grad(W, batches[0].x, batches[0].y)
    g = oracle.grad(inner, batches[1].x, batches[1].y)
    points = [W[:1], inner]
    if algorithm == "hf":
        points += [W + delta * g, W - delta * g]
    return DirectionMoments(
        bias=float((mean - grad_F).norm()),
        mse=float((weight * err).sum()),
        batches=total,
        points=torch.cat(points),
    )


def hessian_F_1d(task: Task, w: Tensor, alpha: float) -> Tensor:
    r""":math:`F_i''(w)` of every user at every point of ``w (G,)`` (one-dimensional models), ``(G, n)``,
    exact: autograd through :math:`F_i(w) = f_i(w-\alpha f_i'(w))`."""
    X, Y, P = task.train.gather()
    n = X.shape[0]
    with torch.enable_grad():
        W = w.detach().to(torch.float64).reshape(-1, 1, 1).expand(-1, n, 1).clone().requires_grad_(True)
        f = (P * task.per_sample_loss(W, X, Y)).sum(-1)
        (g,) = torch.autograd.grad(f.sum(), W, create_graph=True)
        F = (P * task.per_sample_loss(W - alpha * g, X, Y)).sum(-1)
        (gF,) = torch.autograd.grad(F.sum(), W, create_graph=True)
        (hF,) = torch.autograd.grad(gF.sum(), W)
    return hF[..., 0].detach()


def smoothness_F(task: Task, alpha: float, low: float, high: float, grid: int = 4001) -> tuple[float, float]:
    r"""``(sup, argmax)`` of :math:`\max_i|F_i''(w)|` over :math:`w\in[\text{low},\text{high}]` (module
    docstring): the grid maximum, refined by a bounded scalar search around it (to 1e-12 in w)."""
    ws = torch.linspace(low, high, grid, dtype=torch.float64)
    values = hessian_F_1d(task, ws, alpha).abs().amax(1)
    k = int(values.argmax())
    step = (high - low) / (grid - 1)

    def negative(x: float) -> float:
        return -float(hessian_F_1d(task, torch.tensor([x], dtype=torch.float64), alpha).abs().max())

    a, b = max(low, float(ws[k]) - step), min(high, float(ws[k]) + step)
    res = minimize_scalar(negative, bounds=(a, b), method="bounded", options={"xatol": 1e-12})
    best = max(float(values[k]), -float(res.fun))
    where = float(res.x) if -float(res.fun) >= float(values[k]) else float(ws[k])
    return best, where


def grid_sup(fn, low: float, high: float, lipschitz: float, grid: int = 20001) -> float:
    r"""A rigorous upper bound on :math:`\sup_{[low, high]}|fn|` for a ``lipschitz``-Lipschitz ``fn``
    (numpy-vectorized): the grid maximum plus ``lipschitz`` times half the grid step."""
    xs = np.linspace(low, high, grid)
    return float(np.abs(fn(xs)).max()) + lipschitz * (high - low) / (grid - 1) / 2
