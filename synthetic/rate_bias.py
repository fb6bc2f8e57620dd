r"""The rate table's exact-bias row: the bias of Per-FedAvg's exact direction against the inner batch D, on a
task with ρ > 0, computed exactly by enumerating every inner batch.

With D', D'' drawn independently of D, the exact direction d = (I − α∇²f_{D''}(w))∇f_{D'}(w − α∇f_D(w)) has
mean (I − α∇²f(w))·E_D∇f(w − α g_D), so its bias against ∇F(w) = (I − α∇²f(w))∇f(w − α∇f(w)) is
(I − α∇²f(w))(E_D∇f(w − α g_D) − ∇f(w − α g)).  Expanding ∇f around w − α g, the first-order term has mean 0
(E g_D = g) and the second is (α²/2)∇³f[Cov g_D] with Cov g_D = Σ/D: the bias is **second order, ∝ 1/D**,
whenever the third derivative is non-zero (ρ > 0), while the derived bound b_F = (1+αL)αLσ_G/√D
(DERIVATIONS.md §2, ``lemmas.bias_derived``) is first order, ∝ 1/√D: an upper bound whose D-exponent is
loose by 1/2.  The row judges the exact exponent against the Taylor law D⁻¹ with the bound's D^-1/2 as the
competitor (no sampling: an exact row).

The user's distribution is a few support points of the logistic task (so every batch with replacement can be
enumerated: the multinomial compositions of D into S parts, C(D + S − 1, S − 1) of them).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from perfedavg.runs.registry import build_task

#: support points of the enumerated user distribution (compositions of D = 64 into 3 parts: 2145 batches)
SUPPORT = 3
#: inner batch sizes: large enough that the bias's 1/D² correction moves the local exponent by less than the
#: row's margin (it is ≈ c/D relative, c = O(1)), small enough to enumerate
BATCH_SIZES = (8, 16, 32, 64)
#: the inner step α and the seed of the point w (standard normal) at which the bias is computed
ALPHA, POINT_SEED = 1.0, 0


def compositions(D: int, S: int) -> np.ndarray:
    """Every count vector n ∈ ℕ^S with Σn = D (the distinct batches of size D drawn with replacement from S
    points, up to order): shape ``(C(D + S − 1, S − 1), S)``."""
    rows = []
    for bars in itertools.combinations(range(D + S - 1), S - 1):
        edges = (-1, *bars, D + S - 1)
        rows.append([edges[k + 1] - edges[k] - 1 for k in range(S)])
    return np.array(rows, dtype=np.int64)


def multinomial_weights(counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Probability of each count vector under Multinomial(D, p)."""
    D = int(counts[0].sum())
    log = math.lgamma(D + 1) - np.vectorize(math.lgamma)(counts + 1).sum(1) + (counts * np.log(p)).sum(1)
    return np.exp(log)


def _grads(loss, W: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """∇f at each row of ``W (M, d)`` for f = Σ_s p_s l(·; θ_s); also returns per-sample gradients when M = 1."""
    with torch.enable_grad():
        Wv = W.detach().clone().requires_grad_(True)
        f = (p * loss(Wv, X.expand(len(W), *X.shape), Y.expand(len(W), -1))).sum()
        (g,) = torch.autograd.grad(f, Wv)
    return g


def exact_bias(loss, w: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, p: torch.Tensor, alpha: float, D: int):
    r"""‖(I − α∇²f(w))(E_D∇f(w − α g_D) − ∇f(w − α∇f(w)))‖ exactly: E_D over every batch of size D drawn with
    replacement from the support (``X``, ``Y``, probabilities ``p``), weighted by its multinomial probability."""
    S = len(p)
    G = torch.stack(
        [_grads(loss, w[None], X[s : s + 1], Y[s : s + 1], torch.ones(1, dtype=w.dtype))[0] for s in range(S)]
    )
    counts = compositions(D, S)
    weights = torch.as_tensor(multinomial_weights(counts, p.numpy()), dtype=w.dtype)
    g_D = torch.as_tensor(counts, dtype=w.dtype) @ G / D
    mean_grad = (weights[:, None] * _grads(loss, w - alpha * g_D, X, Y, p)).sum(0)
    g = (p[:, None] * G).sum(0)
    exact = _grads(loss, (w - alpha * g)[None], X, Y, p)[0]
    H = torch.autograd.functional.hessian(lambda v: (p * loss(v, X, Y)).sum(), w)
    A = torch.eye(len(w), dtype=w.dtype) - alpha * H
    return float((A @ (mean_grad - exact)).norm())


def bias_curve() -> tuple[list[int], list[float], dict]:
    """The exact bias at each of :data:`BATCH_SIZES` on the logistic task's first :data:`SUPPORT` samples with
    unequal probabilities, and the task's constants (for the derived bound's values)."""
    task = build_task({"name": "logistic"}).to(torch.float64)
    X, Y = task.train.x[:SUPPORT].double(), task.train.y[:SUPPORT]
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)[:SUPPORT]
    p = p / p.sum()
    gen = torch.Generator().manual_seed(POINT_SEED)
    w = torch.randn(task.init_params(gen).shape, generator=gen, dtype=torch.float64)
    Ds = list(BATCH_SIZES)
    return Ds, [exact_bias(task.per_sample_loss, w, X, Y, p, ALPHA, D) for D in Ds], dict(task.constants)


def exact_bias_row():
    """The row "exact bias vs D (rho > 0)": the exact exponent of :func:`bias_curve` relative to the Taylor law
    D⁻¹, judged against a margin of a quarter of the gap to the derived bound's D^-1/2 (``lemmas.bias_derived``
    evaluated on the task's constants at each D: its exponent, not a hard-coded one)."""
    from theory import lemmas

    from . import rate_stats
    from .rate_rows import TAYLOR_ASSUMPTION, RateRow

    Ds, bias, c = bias_curve()
    bound = [float(lemmas.bias_derived()(alpha=ALPHA, L=c["L"], sigma_G=c["sigma_G"], D=D)) for D in Ds]
    taylor = [1.0 / D for D in Ds]
    margin = rate_stats.margin(Ds, taylor, bound)
    return RateRow(
        "exact bias vs D (rho > 0)",
        rate_stats.local_slope(Ds, taylor),
        list(map(float, Ds)),
        bias,
        [0.0] * len(Ds),
        rate_stats.judge_exact(rate_stats.local_slope(Ds, np.divide(bias, taylor)), margin),
        "the derived bound b_F's D^-1/2",
        f"‖E d − ∇F_i‖ of the exact direction, every inner batch enumerated (logistic, {SUPPORT} support points, "
        f"α = {ALPHA:g}, ρ = {c['rho']:.3g}); Taylor: second order, (α²/2)∇³f[Σ]/D; D·bias = "
        f"{', '.join(f'{b * D:.4g}' for b, D in zip(bias, Ds))}; the derived b_F (first order, an upper bound) "
        f"has exponent {rate_stats.local_slope(Ds, bound):+.2f}",
        {"recalled_shape_slope": rate_stats.local_slope(Ds, bound), "bound": bound},
        TAYLOR_ASSUMPTION,
    )
