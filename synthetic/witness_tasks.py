r"""The witness tasks: for every derived statement, a tiny task where its bound is attained within a factor 2.

A check "measured ≤ bound" on the default tasks cannot tell a right formula from a wrong one
that is still above the measurement (their margins reach 10-1000).  A *witness* is a task built
so that the inequalities of the derivation (theory/DERIVATIONS.md §1-§6) are (nearly) equalities:
one dimension, one or two users, two-point distributions, curvature −L where the spectral bound
‖I − αH‖ ≤ 1 + αL is used, a kink where a first-order Taylor step is used.  Its measured side is
computed **exactly** (:mod:`synthetic.exact`: every batch enumerated; L_F as the maximised |F_i''|),
so a row's margin bound / measured is the true slack of the bound on that task, and a formula
that is too small by more than the margin FAILS (:mod:`synthetic.mutations` plants such errors).

Each witness declares the constants its statements read and why they are valid: ``L``, ``rho``
are sups over all w; ``B``, ``sigma_G``, ``gamma_G`` of the tasks whose gradients grow with w are
sups over the witness's ``domain`` (an interval), and :func:`synthetic.witnesses.measure_witness` checks that every
point the step evaluates a gradient or Hessian at (w, the inner points, the HF points) lies in it.
Where a bound is attained with equality in exact arithmetic, the declared constant is a factor
``1 + EXACT_SLACK`` above the attained value, so that float64 round-off cannot turn the equality
into a FAIL (margins 1.00-1.02).

The witnesses (name: statements it is tight for; why):

* ``cos``: L_F (curvature term).  l = cos w, α = 1/L: F'' (0) = −(1+αL)² L (curvature −L at w and at
  w̃ = w); the αρB term is not attained (f''' = 0 there): factor (4 + 1)/4 = 1.25.  At α = 0, FedAvg's
  L_F = L (attained).
* ``tilted_cos``: L_F (αρB term).  l = b₀w + sin w, b₀ = 8: where f'' = 0 and |f'''| = ρ, F'' ≈ −αf'''f'(w̃)
  ≈ αρB.
* ``kink``: bias (exact), bias_fo.  l = −B₀w + L·S₁(w − u₀) + θw, θ = ±σ (two points): f'' = −L at w and f'
  has a (smoothed) kink at w̃* = u₀, so E f'(w̃_D) − f'(w̃*) = αL E|θ̄| ≈ αLσ/√D · √(2/π)-like; with D = 4,
  E|θ̄| = 3σ/8 against σ/2: factor 4/3.  FO adds αL|f'(u₀)| = αLB, attained.
* ``concave_noise``: σ_F² (gradient-noise term), mse_hf (HF is exact on a quadratic, so its extra term is 0),
  mse_fo (noise part, α = 1/(4L)) and, at α = 0, FedAvg's s² = σ_G²/D'.  l = −κw²/2 + θw, θ = ±σ: the
  spectral bound and both batch variances are equalities.
* ``concave_drift``: bias_fo, mse_fo (the dropped Hessian term αLB).  l = −κw²/2 + bw, no noise.
* ``hessian_noise``: σ_F² (Hessian-noise term).  l = θw²/2 + bw, θ = ±s (mean Hessian 0): E‖(H̃−H)ṽ‖² =
  σ_H² E‖ṽ‖²/D'' with E‖ṽ‖² = B² + σ_G²/D' on the domain.
* ``offsets``: γ_F² ((1+αL)²γ_G term), and at α = 0 FedAvg's γ² = γ_G².  Two users l = −κw²/2 ± γw.
* ``opposite_curvature``: γ_F² (αBγ_H term).  Two users l = ±s w²/2 + bw at αs = 1/16.
* ``hessian_kink``: hf_hvp_error, bias_hf, mse_hf (HF term).  l = ρS₂(w) + bw: ∇²l = ρ·|w| (smoothed), the
  one shape for which the central difference errs by exactly ρδ‖g‖²/2 (a smooth third derivative makes
  it O(δ²)).
* ``two_point_gradients`` / ``two_point_curvatures``: the TV and W1 statements.  Users δ_{+1} and δ_{−1}
  with l = θw (resp. θw²/2): ‖∇f_i − ∇f‖ = 2B_s·TV = L_θ·W1 exactly.  ``mixed_gradients`` /
  ``mixed_curvatures``: the same with users (3/4, 1/4) and (1/4, 3/4), still exact, where the per-user B, L
  (1/2) are half the per-sample B_s, L_s: a TV statement with the per-user constants fails there.

S₁, S₂ are the first and second antiderivatives of the smoothed absolute value √(x² + ε²) − ε (closed
forms in :func:`smooth_abs_antiderivatives`), so every witness loss is C^∞ with the stated ρ.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from perfedavg.engine.task import ClientData, Task

from . import exact

#: relative slack of a declared constant where the bound is attained with equality (module docstring):
#: 2^-8 keeps the margin under 1.02 while float64 round-off (1e-16 relative) cannot reach it
EXACT_SLACK = 2.0**-8
#: width ε of the smoothed kinks: small against every step (ασ, δ‖g‖ >= 0.1) so the kink is attained to 0.1 %
KINK = 1e-4
#: how far above its margin a witness may be: the target factor of a witness (tests: 1 <= margin <= FACTOR)
FACTOR = 2.0
#: the witnesses' "task" column
TASK = "witness"


def smooth_abs_antiderivatives(x: Tensor, eps: float = KINK) -> tuple[Tensor, Tensor]:
    r"""``(S1, S2)``: :math:`S_1' = \sqrt{x^2+\varepsilon^2}-\varepsilon` (a smoothed |x|, so :math:`S_1'' =
    x/\sqrt{x^2+\varepsilon^2}\in(-1,1)`) and :math:`S_2' = S_1`, in closed form (asinh), both 0 at 0."""
    q = torch.sqrt(x * x + eps * eps)
    a = torch.asinh(x / eps)
    s1 = (x * q + eps * eps * a) / 2 - eps * x
    s2 = q**3 / 6 + eps * eps / 2 * (x * a - q) - eps * x * x / 2 - (eps**3 / 6 - eps**3 / 2)
    return s1, s2


def one_dim_task(
    name: str, loss: Callable[[Tensor, Tensor], Tensor], thetas: list[float], users: list[list[float]]
) -> Task:
    r"""A one-dimensional task: per-sample loss ``loss(w, θ)`` (w ``(..., 1)``, θ ``(..., B)``), support ``thetas``,
    user i's distribution ``users[i]`` over it."""
    x = torch.tensor(thetas, dtype=torch.float64).unsqueeze(1)

    def per_sample_loss(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return loss(W[..., :1], X[..., 0])

    n = len(users)
    data = ClientData.from_lists(x, torch.zeros(len(thetas)), [list(range(len(thetas)))] * n, users)
    data = ClientData(data.x, data.y, data.index, data.weight.to(torch.float64), data.count)
    return Task(
        name=name,
        per_sample_loss=per_sample_loss,
        scores=lambda W, X: X,
        init_params=lambda g: torch.zeros(1, dtype=torch.float64),
        train=data,
        test=data,
        description=f"witness {name}",
    )


@dataclass(frozen=True)
class Case:
    """One setting of a witness: the step sizes and batches, the keys measured, a tag for the row."""

    alpha: float
    keys: tuple[str, ...]
    tag: str = ""
    D: int = 1
    D1: int = 1
    D2: int = 1
    delta: float = 0.1
    #: constants and domain of this case where they differ from the witness's (a smaller step, a smaller domain)
    constants: dict[str, float] = field(default_factory=dict)
    domain: tuple[float, float] | None = None


@dataclass(frozen=True)
class Witness:
    """A tiny task, the point w, the constants its statements read (module docstring), its cases."""

    name: str
    task: Task
    w: float
    constants: dict[str, float]
    cases: tuple[Case, ...]
    domain: tuple[float, float] | None = None
    lf_interval: tuple[float, float] = (-math.pi, math.pi)
    factor: dict[str, float] = field(default_factory=dict)
    note: str = ""


# ----------------------------------------------------------------------------- the witnesses
def _cos() -> Witness:
    task = one_dim_task("cos", lambda w, t: torch.cos(w) + 0 * t, [0.0], [[1.0]])
    return Witness(
        "cos",
        task,
        0.0,
        {"L": 1.0, "rho": 1.0, "B": 1.0},
        (Case(1.0, ("L_F",), "alpha=1/L"), Case(0.0, ("L_F",), "FedAvg (alpha=0)")),
        note="F'' = -(1+aL)^2 L at w = 0; the aRhoB term is not attained: factor 5/4",
    )


def _tilted_cos() -> Witness:
    b0 = 8.0
    task = one_dim_task("tilted_cos", lambda w, t: b0 * w + torch.sin(w) + 0 * t, [0.0], [[1.0]])
    return Witness(
        "tilted_cos",
        task,
        0.0,
        {"L": 1.0, "rho": 1.0, "B": b0 + 1.0},
        (Case(1.0, ("L_F",), "alpha=1/L"),),
        note="where f'' = 0 and |f'''| = rho, F'' = -a f''' f'(w~) ~ a rho B",
    )


def _kink() -> Witness:
    L, B0, sigma, alpha, u0 = 1.0, 1.0, 1.0, 1.0, 0.0

    def loss(w: Tensor, t: Tensor) -> Tensor:
        s1, _ = smooth_abs_antiderivatives(w - u0)
        return -B0 * w + L * s1 + t * w

    def grad_f(u):  # the user's f' (numpy)
        return -B0 + L * (np.sqrt((u - u0) ** 2 + KINK**2) - KINK)

    # w left of the kink with w - alpha f'(w) = u0: the inner step lands on the kink
    x = brentq(lambda s: s - alpha * -grad_f(u0 - s), 1e-9, 10.0)
    w = u0 - x
    domain = (min(w, u0 - alpha * sigma), u0 + alpha * sigma)  # w and the inner points u0 - alpha*mean(theta)
    task = one_dim_task("kink", loss, [-sigma, sigma], [[0.5, 0.5]])
    return Witness(
        "kink",
        task,
        w,
        {
            "L": L,
            "rho": L / KINK,  # sup |S1'''| = 1/eps
            "B": exact.grid_sup(grad_f, *domain, lipschitz=L),
            "sigma_G": sigma,
            "sigma_H": 0.0,
        },
        (Case(alpha, ("bias", "bias_fo"), "alpha=1/L, D=4", D=4),),
        domain=domain,
        note="f'' = -L at w, kink of f' at the inner point: E|mean of 4 signs| = 3/8 vs 1/2 (factor 4/3)",
    )


def _concave_noise() -> Witness:
    L, sigma = 1.0, 1.0
    kappa = L * (1 - EXACT_SLACK)
    task = one_dim_task("concave_noise", lambda w, t: -kappa * w * w / 2 + t * w, [-sigma, sigma], [[0.5, 0.5]])
    a_fo = 0.25 / L
    domain = (-sigma / L, sigma / L)  # inner points w - a*theta with a <= 1/L
    return Witness(
        "concave_noise",
        task,
        0.0,
        # per-sample |l'| = |-kappa u + theta| <= kappa |u| + sigma on the domain; a quadratic: rho = 0
        {
            "L": L,
            "rho": 0.0,
            "B": kappa * sigma / L,
            "B_sample": kappa * sigma / L + sigma,
            "rho_sample": 0.0,
            "sigma_G": sigma,
            "sigma_H": 0.0,
        },
        (
            Case(1.0 / L, ("sigma_F2", "mse_hf"), "alpha=1/L"),
            # inner points within a_fo*sigma of w = 0, where |f'| <= kappa a_fo sigma
            Case(
                a_fo,
                ("mse_fo",),
                "alpha=1/(4L)",
                constants={"B": kappa * a_fo * sigma},
                domain=(-a_fo * sigma, a_fo * sigma),
            ),
            Case(0.0, ("sigma_F2",), "FedAvg (alpha=0)"),
        ),
        domain=domain,
        note="curvature -kappa = -L(1-2^-8): the spectral bound and both batch variances are equalities",
    )


def _concave_drift() -> Witness:
    L, b = 1.0, 1.0
    kappa = L * (1 - EXACT_SLACK)
    alpha = 1.0 / L
    task = one_dim_task("concave_drift", lambda w, t: -kappa * w * w / 2 + b * w + 0 * t, [0.0], [[1.0]])
    domain = (-alpha * b, 0.0)
    return Witness(
        "concave_drift",
        task,
        0.0,
        {"L": L, "rho": 0.0, "B": b * (1 + alpha * kappa), "sigma_G": 0.0, "sigma_H": 0.0},
        (Case(alpha, ("bias_fo", "mse_fo"), "alpha=1/L"),),
        domain=domain,
        note="FO drops a H v with H = -kappa, |v| = B at the inner point",
    )


def _hessian_noise() -> Witness:
    s, b = 1.0, 1.0
    alpha = 0.25 / s
    task = one_dim_task("hessian_noise", lambda w, t: t * w * w / 2 + b * w, [-s, s], [[0.5, 0.5]])
    domain = (-alpha * b, 0.0)
    return Witness(
        "hessian_noise",
        task,
        0.0,
        # per-sample gradient theta*u + b: std s|u| <= s*alpha*b on the domain; f' = b
        {"L": s, "rho": 0.0, "B": b, "sigma_G": s * alpha * b, "sigma_H": s},
        (Case(alpha, ("sigma_F2",), "alpha=1/(4L), D=4, D'=8, D''=1", D=4, D1=8, D2=1),),
        domain=domain,
        note="mean Hessian 0, Hessian noise s: the Hessian-noise term dominates",
    )


def _offsets() -> Witness:
    L, gamma = 1.0, 1.0
    kappa = L * (1 - EXACT_SLACK)
    alpha = 1.0 / L
    task = one_dim_task("offsets", lambda w, t: -kappa * w * w / 2 + t * w, [gamma, -gamma], [[1.0, 0.0], [0.0, 1.0]])
    return Witness(
        "offsets",
        task,
        0.0,
        {"L": L, "rho": 0.0, "B": gamma * (1 + alpha * kappa), "gamma_G": gamma, "gamma_H": 0.0},
        (Case(alpha, ("gamma_F2",), "alpha=1/L"), Case(0.0, ("gamma_F2",), "FedAvg (alpha=0)")),
        domain=(-alpha * gamma, alpha * gamma),
        note="same Hessian -kappa, gradients +-gamma: (1+a kappa)^4 gamma^2",
    )


def _opposite_curvature() -> Witness:
    s, b = 1.0, 1.0
    alpha = 1.0 / (16 * s)
    task = one_dim_task("opposite_curvature", lambda w, t: t * w * w / 2 + b * w, [s, -s], [[1.0, 0.0], [0.0, 1.0]])
    return Witness(
        "opposite_curvature",
        task,
        0.0,
        # f_i' = +-s u + b on [-a b, 0]: |f_i'| <= b + s a b, |f_i' - f'| <= s a b
        {"L": s, "rho": 0.0, "B": b * (1 + s * alpha), "gamma_G": s * alpha * b, "gamma_H": s},
        (Case(alpha, ("gamma_F2",), "alpha=1/(16L)"),),
        domain=(-alpha * b, 0.0),
        note="Hessians +-s, equal gradients at w: the a B gamma_H term dominates",
    )


def _hessian_kink() -> Witness:
    rho, b, alpha, delta = 1.0, 2.0, 0.25, 0.1

    def loss(w: Tensor, t: Tensor) -> Tensor:
        _, s2 = smooth_abs_antiderivatives(w)
        return rho * s2 + b * w + 0 * t

    def grad_f(u):
        q = np.sqrt(u * u + KINK**2)
        return rho * ((u * q + KINK**2 * np.arcsinh(u / KINK)) / 2 - KINK * u) + b

    lo, hi = -alpha * b - 0.1, delta * (b + 0.1)  # w~* = -a b (f'' >= 0 shrinks |f'| there), HF points +-delta v
    L = rho * max(abs(lo), abs(hi))  # |l''| = rho * smoothed |u| <= rho |u|
    B = exact.grid_sup(grad_f, lo, hi, lipschitz=L)
    task = one_dim_task("hessian_kink", loss, [0.0], [[1.0]])
    return Witness(
        "hessian_kink",
        task,
        0.0,
        # one sample: the per-sample bounds (the HF terms) equal the per-user ones
        {"L": L, "rho": rho, "B": B, "B_sample": B, "rho_sample": rho, "sigma_G": 0.0, "sigma_H": 0.0, "g_norm": b},
        (Case(alpha, ("hf_hvp_error", "bias_hf", "mse_hf"), f"alpha={alpha:g}, delta={delta:g}", delta=delta),),
        domain=(lo, hi),
        note="Hessian rho|w| (smoothed): the central difference errs by rho delta |g|^2 / 2",
    )


def _two_point(name: str, power: int, mixed: float = 0.0) -> Witness:
    """Users p = (1 - mixed, mixed) and (mixed, 1 - mixed) on θ = ±1, l = θw (power 1) or θw²/2 (power 2)."""
    users = [[1.0 - mixed, mixed], [mixed, 1.0 - mixed]]
    task = one_dim_task(name, lambda w, t: t * w**power / power, [1.0, -1.0], users)
    c = 1 + EXACT_SLACK
    keys = ("gamma_G2_tv", "gamma_G2_w1") if power == 1 else ("gamma_H2_tv", "gamma_H2_w1")
    # per-sample |grad l| = 1 (power 1) and |hess l| = |theta| = 1 (power 2); theta -> grad/hess l is 1-Lipschitz;
    # per user |E theta| = 1 - 2 mixed: the per-user B, L are that much smaller than the per-sample ones
    user = c * (1 - 2 * mixed)
    tag = (
        "users delta_{+1}, delta_{-1}"
        if mixed == 0
        else f"users ({1 - mixed:g}, {mixed:g}) and ({mixed:g}, {1 - mixed:g})"
    )
    return Witness(
        name,
        task,
        0.5,
        {"B": user, "L": user, "B_sample": c, "L_sample": c, "L_theta": c, "rho_theta": c},
        (Case(0.0, keys, tag),),
        note="||grad f_i - grad f|| = 2 B_s TV = L_theta W1 exactly; with mixed users the per-user B, L are smaller",
    )


@functools.cache
def witnesses() -> tuple[Witness, ...]:
    """Every witness (module docstring)."""
    return (
        _cos(),
        _tilted_cos(),
        _kink(),
        _concave_noise(),
        _concave_drift(),
        _hessian_noise(),
        _offsets(),
        _opposite_curvature(),
        _hessian_kink(),
        _two_point("two_point_gradients", 1),
        _two_point("two_point_curvatures", 2),
        _two_point("mixed_gradients", 1, mixed=0.25),
        _two_point("mixed_curvatures", 2, mixed=0.25),
    )
