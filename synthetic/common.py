r"""Shared pieces of the synthetic tasks: the heterogeneity dial, exact distances, exact
per-sample statistics.

Heterogeneity dial (every synthetic task)
-----------------------------------------
All users share one finite support :math:`\{\theta_1,\dots,\theta_S\}`; user :math:`i`'s
distribution is the probability vector

.. math:: p_i = (1-h)\,u + h\,q_i, \qquad h\in[0,1],

with :math:`u` uniform on the support and :math:`q_i` a task-specific "own" distribution
(uniform on a cluster, or on a set of classes).  With :math:`\bar p = \frac1n\sum_i p_i`,
:math:`p_i - \bar p = h\,(q_i - \bar q)`, hence exactly

.. math:: \mathrm{TV}(p_i,\bar p) = h\,\mathrm{TV}(q_i,\bar q), \qquad
          W_1(p_i,\bar p) = h\,W_1(q_i,\bar q)

(the second because :math:`W_1` with a metric cost depends on :math:`p-q` only, by
Kantorovich–Rubinstein duality, and is positively homogeneous in it): both distances
grow *linearly* in ``h`` from 0 (identical users).

Distances (docs/paper.md §6)
-----------------------
:func:`tv_distance` is :math:`\frac12\sum_s|p_s-q_s|`.  :func:`w1_distance` solves the
Kantorovich linear program on the support with a given ground metric (by default the
Euclidean distance between the rows of ``points``, i.e. between the task's
:math:`\theta` coordinates; each task module says what :math:`\theta` is) with
:func:`scipy.optimize.linprog` (HiGHS): because the cost is a metric, it transports the
positive part of :math:`p-q` onto its negative part, an exact reduction.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


# ----------------------------------------------------------------------------- the dial
def dial_distributions(own: Tensor, h: float) -> Tensor:
    r"""Rows :math:`p_i = (1-h)u + h q_i` with :math:`q_i` = ``own[i]`` normalised (``own (n, S)`` >= 0)."""
    own = own.to(torch.float64)
    q = own / own.sum(1, keepdim=True)
    u = torch.full_like(q, 1.0 / q.shape[1])
    return (1.0 - h) * u + h * q


def mixture(P: Tensor) -> Tensor:
    r"""The mixture :math:`\bar p = \frac1n\sum_i p_i` of the rows of ``P (n, S)``."""
    return P.mean(0)


# ----------------------------------------------------------------------------- distances
def tv_distance(p, q) -> float:
    r"""Total variation :math:`\mathrm{TV}(p,q) = \frac12\sum_s |p_s - q_s|` of two probability vectors."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return 0.5 * float(np.abs(p - q).sum())


def euclidean_costs(points_a, points_b) -> np.ndarray:
    r"""Ground metric :math:`c(\theta,\theta') = \|\theta-\theta'\|_2` between rows."""
    a, b = np.asarray(points_a, dtype=float), np.asarray(points_b, dtype=float)
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def w1_distance(p, q, points=None, cost=None, tol: float = 1e-14) -> float:
    r"""Exact 1-Wasserstein distance between ``p`` and ``q`` on one finite support.

    .. math:: W_1(p,q) = \min_{\pi\ge0}\sum_{a,b}\pi_{ab}\,c(\theta_a,\theta_b)
              \ \text{s.t.}\ \sum_b \pi_{ab} = (p-q)^+_a,\ \sum_a\pi_{ab} = (p-q)^-_b,

    which equals the usual coupling program when ``c`` is a metric (mass common to
    ``p`` and ``q`` stays put at zero cost).  ``points (S, k)`` gives the Euclidean
    metric; alternatively ``cost (S, S)`` a metric matrix.  Solved with
    :func:`scipy.optimize.linprog` (HiGHS).
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    diff = np.asarray(p, dtype=float) - np.asarray(q, dtype=float)
    pos = np.flatnonzero(diff > tol)
    neg = np.flatnonzero(diff < -tol)
    if len(pos) == 0 or len(neg) == 0:
        return 0.0
    supply, demand = diff[pos], -diff[neg]
    demand = demand * (supply.sum() / demand.sum())  # exact balance despite round-off
    if cost is not None:
        C = np.asarray(cost, dtype=float)[np.ix_(pos, neg)]
    else:
        pts = np.asarray(points, dtype=float)
        C = euclidean_costs(pts[pos], pts[neg])
    a, b = len(pos), len(neg)
    cols = np.arange(a * b)
    rows_a = np.repeat(np.arange(a), b)
    rows_b = np.tile(np.arange(b), a)
    A = vstack(
        [
            coo_matrix((np.ones(a * b), (rows_a, cols)), shape=(a, a * b)),
            coo_matrix((np.ones(a * b), (rows_b, cols)), shape=(b, a * b)),
        ]
    ).tocsr()
    res = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([supply, demand]), bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - a balanced transport problem is always feasible
        raise RuntimeError(f"W1 linear program failed: {res.message}")
    return float(res.fun)


def distances_to_mixture(P: Tensor, points=None, cost=None) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Per-user :math:`\mathrm{TV}(p_i,\bar p)` and (if a metric is given) :math:`W_1(p_i,\bar p)`."""
    Pn = P.detach().cpu().double().numpy()
    pbar = Pn.mean(0)
    tv = np.array([tv_distance(p, pbar) for p in Pn])
    if points is None and cost is None:
        return tv, None
    unique, inverse = np.unique(Pn, axis=0, return_inverse=True)  # users sharing a distribution: one LP
    w1_unique = np.array([w1_distance(p, pbar, points=points, cost=cost) for p in unique])
    return tv, w1_unique[np.asarray(inverse).ravel()]


def rms(values) -> float:
    r"""Root mean square :math:`\sqrt{\frac1n\sum_i v_i^2}` (the ``tv``/``w1`` of theory.distances)."""
    v = np.asarray(values, dtype=float)
    return float(np.sqrt(np.mean(v**2)))


# ----------------------------------------------------------------------------- exact per-sample statistics
def per_sample_grads(loss, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    r"""Per-sample gradients :math:`\nabla l(w;\theta_s)`, ``(S, P)``, for the pooled samples ``x, y``."""
    S = x.shape[0]
    with torch.enable_grad():
        W = w.detach().expand(S, -1).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(W, x.unsqueeze(1), y.unsqueeze(1)).sum(), W)
    return g


def per_sample_hessians(loss, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    r"""Per-sample Hessians :math:`\nabla^2 l(w;\theta_s)`, ``(S, P, P)``, by ``P`` double-backward passes."""
    S, P = x.shape[0], w.shape[-1]
    with torch.enable_grad():
        W = w.detach().expand(S, -1).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(W, x.unsqueeze(1), y.unsqueeze(1)).sum(), W, create_graph=True)
        rows = [torch.autograd.grad(g[:, k].sum(), W, retain_graph=k < P - 1)[0] for k in range(P)]
    return torch.stack(rows, dim=1)


def client_hessians(loss, w: Tensor, data) -> Tensor:
    r""":math:`\nabla^2 f_i(w) = \sum_j p_{ij}\nabla^2 l(w;\theta_{ij})` for every client, ``(n, P, P)``."""
    X, Y, Pw = data.gather()
    n, P = X.shape[0], w.shape[-1]
    with torch.enable_grad():
        W = w.detach().expand(n, -1).clone().requires_grad_(True)
        (g,) = torch.autograd.grad((Pw * loss(W, X, Y)).sum(), W, create_graph=True)
        rows = [torch.autograd.grad(g[:, k].sum(), W, retain_graph=k < P - 1)[0] for k in range(P)]
    return torch.stack(rows, dim=1)


def _client_weights_on_pool(data) -> Tensor:
    """``(n, S)`` matrix of p_i on the pooled samples (duplicates in an index row add up)."""
    n, S = data.n_clients, data.x.shape[0]
    W = torch.zeros(n, S, dtype=data.weight.dtype)
    return W.scatter_add_(1, data.index, data.weight)


def sigma_G2_at(loss, w: Tensor, data) -> Tensor:
    r"""Exact per-sample gradient variance of every client at ``w`` (docs/paper.md §3.4):

    .. math:: \sigma_{G,i}^2(w) = \mathbb E_{\theta\sim p_i}\|\nabla l(w;\theta)-\nabla f_i(w)\|^2
              = \sum_s p_{is}\|\nabla l(w;\theta_s)\|^2 - \|\nabla f_i(w)\|^2 .
    """
    G = per_sample_grads(loss, w, data.x, data.y)
    Pm = _client_weights_on_pool(data).to(G.dtype)
    mean = Pm @ G
    return Pm @ G.square().sum(1) - mean.square().sum(1)


def sigma_H2_at(loss, w: Tensor, data) -> Tensor:
    r"""Exact per-sample Hessian variance of every client at ``w``, operator norm:

    .. math:: \sigma_{H,i}^2(w) = \mathbb E_{\theta\sim p_i}\|\nabla^2 l(w;\theta)-\nabla^2 f_i(w)\|_{op}^2 .
    """
    H = per_sample_hessians(loss, w, data.x, data.y)
    Pm = _client_weights_on_pool(data).to(H.dtype)
    mean = torch.einsum("is,spq->ipq", Pm, H)
    out = []
    for i in range(Pm.shape[0]):
        norms = torch.linalg.matrix_norm(H - mean[i], ord=2)  # (S,) spectral norms
        out.append((Pm[i] * norms.square()).sum())
    return torch.stack(out)


def gradient_dissimilarity(grads: Tensor) -> float:
    r""":math:`\frac1n\sum_i\|\nabla f_i - \nabla f\|^2` with :math:`\nabla f = \frac1n\sum_i\nabla f_i`
    (rows of ``grads``)."""
    return float((grads - grads.mean(0)).square().sum(1).mean())


def hessian_dissimilarity(hessians: Tensor) -> float:
    r""":math:`\frac1n\sum_i\|\nabla^2 f_i - \nabla^2 f\|_{op}^2` (``hessians (n, P, P)``, symmetric: the operator
    norm is the largest |eigenvalue|, by ``eigvalsh``, much cheaper than the SVD of ``matrix_norm(ord=2)``)."""
    diff = hessians - hessians.mean(0)
    diff = 0.5 * (diff + diff.transpose(-1, -2))  # exact symmetry despite round-off
    return float(torch.linalg.eigvalsh(diff).abs().amax(-1).square().mean())
