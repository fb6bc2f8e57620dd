"""The synthetic tasks' constants, distances and heterogeneity dial, pinned."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from perfedavg.runs.registry import build_task
from synthetic.common import (
    dial_distributions,
    distances_to_mixture,
    per_sample_grads,
    per_sample_hessians,
    sigma_G2_at,
    sigma_H2_at,
    tv_distance,
    w1_distance,
)

SMALL = {
    "logistic": {"n_clients": 6, "dim": 4, "support": 40, "clusters": 3, "h": 0.7},
    "nonconvex": {"n_clients": 6, "dim": 4, "support": 40, "clusters": 3, "h": 0.7},
    "softmax": {"n_clients": 6, "dim": 4, "classes": 3, "support": 40, "h": 0.7},
}
#: float64 round-off allowance on a claimed "never exceeds" (relative)
ROUNDOFF = 1e-9


def small_task(name, **changes):
    return build_task({"name": name, **SMALL[name], **changes})


def _points(task, count, seed):
    """Pairs (u, v) at several scales and separations: where curvature changes fastest."""
    g = torch.Generator().manual_seed(seed)
    P = task.init_params(g).shape[0]
    pairs = []
    for j in range(count):
        scale = (0.0, 0.3, 1.0, 3.0, 10.0)[j % 5]
        u = torch.randn(P, generator=g, dtype=torch.float64) * scale
        gap = (1e-3, 0.1, 1.0)[j % 3]
        d = torch.randn(P, generator=g, dtype=torch.float64)
        pairs.append((u, u + gap * d / d.norm()))
    return pairs


@pytest.mark.parametrize("name", ["logistic", "nonconvex", "softmax"])
def test_per_sample_constants_are_never_exceeded_and_not_vacuous(name):
    r"""For every support point: ‖∇l‖ ≤ B, ‖∇²l‖ ≤ L, ‖∇l(u)−∇l(v)‖ ≤ L‖u−v‖,
    ‖∇²l(u)−∇²l(v)‖ ≤ ρ‖u−v‖; per-sample bounds imply the same for every f_i."""
    task = small_task(name)
    c = task.constants
    x, y, loss = task.train.x, task.train.y, task.per_sample_loss
    worst = {"B": 0.0, "L_hess": 0.0, "L": 0.0, "rho": 0.0}
    for u, v in _points(task, 30, seed=3):
        gu, gv = per_sample_grads(loss, u, x, y), per_sample_grads(loss, v, x, y)
        Hu, Hv = per_sample_hessians(loss, u, x, y), per_sample_hessians(loss, v, x, y)
        gap = float((u - v).norm())
        worst["B"] = max(worst["B"], float(gu.norm(dim=1).max()) / c["B"])
        worst["L_hess"] = max(worst["L_hess"], float(torch.linalg.matrix_norm(Hu, ord=2).max()) / c["L"])
        worst["L"] = max(worst["L"], float((gu - gv).norm(dim=1).max()) / (c["L"] * gap))
        worst["rho"] = max(worst["rho"], float(torch.linalg.matrix_norm(Hu - Hv, ord=2).max()) / (c["rho"] * gap))
    for key, ratio in worst.items():
        assert ratio <= 1 + ROUNDOFF, (name, key, ratio)
    # not vacuous: the gradient and Hessian bounds are attained up to a factor 3 somewhere
    # (they are sup bounds of phi', phi'' times R, R^2: tight at the right margin)
    assert worst["B"] > 1 / 3 and worst["L_hess"] > 1 / 3, worst


@pytest.mark.parametrize("name", ["logistic", "nonconvex", "softmax"])
def test_sigma_G2_exact_equals_monte_carlo_within_its_interval(name):
    task = small_task(name)
    w = torch.randn(
        task.init_params(torch.Generator()).shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    exact = sigma_G2_at(task.per_sample_loss, w, task.train)
    G = per_sample_grads(task.per_sample_loss, w, task.train.x, task.train.y)
    gen = torch.Generator().manual_seed(11)
    N = 20000
    for i in (0, 1):
        draws = torch.multinomial(task.train.weight[i], N, replacement=True, generator=gen)
        g = G[task.train.index[i, draws]]
        sq = (g - g.mean(0)).square().sum(1)
        estimate = float(sq.mean()) * N / (N - 1)
        se = float(sq.std()) / math.sqrt(N)
        # 4 standard errors: a false alarm has probability ~6e-5 per comparison
        assert abs(estimate - float(exact[i])) <= 4 * se, (i, estimate, float(exact[i]), se)
    # the task's global constants bound the exact values at this w (and are valid for all w)
    assert float(exact.max()) <= task.constants["sigma_G"] ** 2 * (1 + ROUNDOFF)
    assert float(sigma_H2_at(task.per_sample_loss, w, task.train).max()) <= task.constants["sigma_H"] ** 2 * (
        1 + ROUNDOFF
    )


# ------------------------------------------------------------------ distances, hand-computed
def test_tv_hand_values():
    assert tv_distance([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5, abs=1e-15)
    assert tv_distance([1, 0], [0, 1]) == pytest.approx(1.0, abs=1e-15)
    assert tv_distance([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_w1_hand_values():
    line = np.array([[0.0], [1.0], [3.0]])
    assert w1_distance([1, 0, 0], [0, 0, 1], points=line) == pytest.approx(3.0, abs=1e-9)
    # half the mass moves 0 -> 3: 1.5
    assert w1_distance([0.5, 0.5, 0], [0, 0.5, 0.5], points=line) == pytest.approx(1.5, abs=1e-9)
    plane = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    # delta_0 -> 1/2 delta_(3,4) + 1/2 delta_(0,1): 0.5 * 5 + 0.5 * 1 = 3
    assert w1_distance([1, 0, 0], [0, 0.5, 0.5], points=plane) == pytest.approx(3.0, abs=1e-9)
    # a custom metric (label flip costs kappa = 1 on top of the feature distance)
    cost = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    assert w1_distance([0.25, 0.75, 0], [0, 0.25, 0.75], cost=cost) == pytest.approx(1.0, abs=1e-9)


def test_w1_equals_scipy_on_the_line():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    pts = rng.normal(size=25)
    p, q = rng.random(25), rng.random(25)
    p, q = p / p.sum(), q / q.sum()
    expected = wasserstein_distance(pts, pts, p, q)
    assert w1_distance(p, q, points=pts[:, None]) == pytest.approx(expected, rel=1e-7)


def test_dial_hand_values_two_users():
    r"""n = 2, support {0, 1, 2, 3} on a line, q_1 uniform on {0, 1}, q_2 on {2, 3}:
    p̄ is uniform, p_1 − p̄ = h(1/4, 1/4, −1/4, −1/4), so TV = h/2 and W1 = h·(1/4·2 + 1/4·2) = h."""
    own = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    line = np.arange(4.0)[:, None]
    for h in (0.0, 0.3, 1.0):
        P = dial_distributions(own, h)
        assert torch.allclose(P.sum(1), torch.ones(2, dtype=torch.float64))
        tv, w1 = distances_to_mixture(P, points=line)
        np.testing.assert_allclose(tv, [h / 2, h / 2], atol=1e-12)
        np.testing.assert_allclose(w1, [h, h], atol=1e-9)


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_task_distances_grow_linearly_in_h(name):
    r"""p_i − p̄ = h(q_i − q̄): TV and W1 (the task's own metric) are h times their h = 1 values."""
    module = importlib.import_module(f"synthetic.{name}")
    full = small_task(name, h=1.0)
    tv1, w11 = np.array(full.constants["tv"]), module.w1_to_mixture(full.train)
    assert tv1.min() > 0.1 and w11.min() > 0.05  # users far apart at h = 1
    for h in (0.0, 0.4):
        task = small_task(name, h=h)
        np.testing.assert_allclose(task.constants["tv"], h * tv1, atol=1e-12)
        np.testing.assert_allclose(module.w1_to_mixture(task.train), h * w11, atol=1e-7)


def test_bad_task_options_name_the_option():
    from perfedavg.errors import UsageError

    with pytest.raises(UsageError, match=r"task\.h"):
        build_task({"name": "logistic", "h": 1.5})
    with pytest.raises(UsageError, match=r"task\.clusters"):
        build_task({"name": "nonconvex", "clusters": 0})


@pytest.mark.parametrize(
    "options, option",
    [
        ({"name": "logistic", "dim": 10**9}, "task.dim"),
        ({"name": "nonconvex", "n_clients": 10**7}, "task.n_clients"),
        ({"name": "softmax", "support": 10**8}, "task.support"),
        ({"name": "softmax", "classes": 10**6}, "task.classes"),
        ({"name": "quadratic", "n_clients": 5000, "support": 90000}, "task.support"),
        ({"name": "quadratic", "dim": 5000, "support": 50000}, "task.support"),
        ({"name": "quadratic", "w_radius": float("inf")}, "task.w_radius"),
    ],
)
def test_huge_task_sizes_are_refused_before_allocating(options, option):
    """Upfront caps (synthetic.options.check_task_options): a one-line error naming the option and its range,
    raised while the options are parsed, before any tensor is built."""
    import time

    from perfedavg.errors import UsageError

    start = time.perf_counter()
    with pytest.raises(UsageError, match=option) as err:
        build_task(options)
    assert "\n" not in str(err.value) and ("must be" in str(err.value))
    assert time.perf_counter() - start < 5.0  # nothing terabyte-sized was attempted
