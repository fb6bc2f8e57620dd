r"""Least squares on bounded features with a heterogeneity dial (task ``quadratic``).

Per-sample loss :math:`l(w;\theta) = \tfrac12(x^\top w - y)^2`, :math:`\theta = (x, y)`,
:math:`x\in\mathbb R^d`, :math:`y\in\mathbb R` (stored as float).  Everything about the
objective is a quadratic, so it is known in closed form:

.. math::
    f_i(w) = \tfrac12 w^\top H_i w - c_i^\top w + e_i,\quad
    H_i = \mathbb E_{p_i}[xx^\top],\ c_i = \mathbb E_{p_i}[y\,x],

    \nabla F_i(w) = A_i H_i A_i\,w - A_i^2 c_i,\quad A_i = I - \alpha H_i,

so the minimiser of the personalized objective :math:`F = \frac1n\sum_i F_i` is
:math:`w^*_\alpha = (\sum_i A_iH_iA_i)^{-1}\sum_i A_i^2c_i` (:func:`minimizer_F`; a linear
solve, exact to round-off; ``alpha = 0`` gives FedAvg's minimiser of f).

Constants (docs/paper.md §3), with :math:`R = \max_s\|x_s\|`, :math:`Y = \max_s|y_s|` over the
training support:

* :math:`\nabla^2 l = xx^\top`, so :math:`L = R^2` (exact: attained at the largest
  :math:`\|x\|`), and :math:`\rho = 0` (the Hessian does not depend on w);
* :math:`\sigma_H^2 = \max_i\mathbb E_{p_i}\|xx^\top - H_i\|_{op}^2` exactly (it does not
  depend on w);
* :math:`\nabla l = (x^\top w - y)\,x` is **unbounded over all w**: Assumption 2's B holds
  only on a bounded domain.  We state the domain :math:`\|w\|\le W` (option
  ``w_radius``) and give :math:`B = R(RW + Y)` and
  :math:`\sigma_G^2 = \max_i\mathbb E_{p_i}[(\|x\|W + |y|)^2\|x\|^2]\ge\max_i\mathbb E_{p_i}\|\nabla l-\nabla f_i\|^2`
  valid on it.  A run that uses these constants must check that every point its steps evaluate
  stayed in the domain: the users' iterates, the inner points and HF's :math:`w\pm\delta g`, not only
  the averages :math:`\bar w` (:class:`synthetic.batched.DomainRecorder`, whose largest norm
  :mod:`synthetic.rates` compares with W).

Lipschitz constants in :math:`\theta` (ground metric :math:`\|\theta-\theta'\|_2` on
:math:`(x, y)\in\mathbb R^{d+1}`), at a given w: with
:math:`\nabla l(\theta)-\nabla l(\theta') = (x^\top w-y)(x-x') + ((x-x')^\top w-(y-y'))x'`,
:math:`\|\cdot\|\le(2R\|w\|+Y)\|x-x'\| + R|y-y'|\le L_\theta(w)\|\theta-\theta'\|` with
:math:`L_\theta(w) = \sqrt{(2R\|w\|+Y)^2+R^2}` (Cauchy–Schwarz), and
:math:`\|xx^\top-x'x'^\top\|\le 2R\|x-x'\|`, so :math:`\rho_\theta = 2R`.

Data.  ``support`` points x with norms uniform in :math:`[0.7R, R]`, point s in cone
``s mod clusters`` (in d = 2 a uniform angle in the cone's sector of the circle, so the
mixture is well conditioned, :math:`\mathbb E_u xx^\top\approx 0.4R^2 I`; in d > 2 the
direction of a random unit centre plus Gaussian noise), so the users' Hessians
:math:`H_i` differ (Hessian heterogeneity, which the FO floor needs).  Labels :math:`y = x^\top(w_\circ + s\,v_c) +
\epsilon` with a unit teacher :math:`w_\circ`, a per-cluster unit shift :math:`v_c` of
size s = ``shift`` and Gaussian noise of standard deviation ``noise`` clipped at 3σ
(finite support, so y is bounded and the minimiser is finite: F is strongly convex when
:math:`\sum_iA_iH_iA_i\succ0`).  User i's own distribution is uniform on cluster
``i mod clusters`` and :math:`p_i = (1-h)u + hq_i` (:mod:`synthetic.common`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.registry import TaskSpec, option_field

from .common import dial_distributions, distances_to_mixture, rms
from .options import Rule, SyntheticOptions, dial_field, shared_field


@dataclass(frozen=True)
class QuadraticOptions(SyntheticOptions):
    """Options of the least-squares synthetic task: the shared ones (d = 2 by default), cones, teacher, domain."""

    TASK: ClassVar[str] = "quadratic"

    dim: int = shared_field("dim", 2)
    h: float = dial_field("each user on its own cone")
    clusters: int = option_field("feature cones G (>= 1); user i favours cone i mod G", 4)
    noise: float = option_field("label noise standard deviation (>= 0, clipped at 3 sigma)", 0.3)
    shift: float = option_field("size s of the per-cone teacher shift (>= 0): label heterogeneity", 0.5)
    w_radius: float = option_field("radius W of the domain ||w|| <= W on which B and sigma_G hold (> 0)", 4.0)
    init: str = option_field(
        "initial model: 'zero', or 'minimizer' (the exact minimiser of F with inner step init_alpha)", "zero"
    )
    init_alpha: float = option_field("inner step alpha of the F whose minimiser init='minimizer' starts at (>= 0)", 0.0)

    def own_rules(self) -> list[Rule]:
        finite = float("inf")
        return [
            ("noise", 0 <= self.noise < finite, "must be a finite number >= 0"),
            ("shift", 0 <= self.shift < finite, "must be a finite number >= 0"),
            ("w_radius", 0 < self.w_radius < finite, "must be a finite number > 0"),
            ("init", self.init in ("zero", "minimizer"), "must be 'zero' or 'minimizer'"),
            ("init_alpha", 0 <= self.init_alpha < finite, "must be a finite number >= 0"),
        ]


def squared_loss(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    r"""Per-sample loss :math:`\tfrac12(x^\top w - y)^2`, shape ``(..., B)``."""
    return 0.5 * ((X * W.unsqueeze(-2)).sum(-1) - Y.to(X.dtype)).square()


def prediction_scores(W: Tensor, X: Tensor) -> Tensor:
    r"""``(..., B, 1)``: the prediction :math:`x^\top w` (a regression task: the engine's
    "accuracy" is not meaningful here)."""
    return (X * W.unsqueeze(-2)).sum(-1, keepdim=True)


def _centres(o: QuadraticOptions, gen: torch.Generator) -> Tensor:
    c = torch.randn(o.clusters, o.dim, generator=gen, dtype=torch.float64)
    return c / c.norm(dim=1, keepdim=True)


def _support(
    gen: torch.Generator, o: QuadraticOptions, centres: Tensor, teacher: Tensor, shifts: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Point s lies in cone ``s mod G`` (balanced cones: with S a multiple of G the mixture of the users'
    own distributions is uniform when n is a multiple of G, so the mixture p̄ does not move with h)."""
    cluster = torch.arange(o.support) % o.clusters
    if o.dim == 2:  # uniform angle inside the cone's sector
        width = 2 * math.pi / o.clusters
        angle = width * (cluster.double() + torch.rand(o.support, generator=gen, dtype=torch.float64))
        direction = torch.stack([angle.cos(), angle.sin()], 1)
    else:
        noise = torch.randn(o.support, o.dim, generator=gen, dtype=torch.float64) / math.sqrt(o.dim)
        direction = centres[cluster] + noise
        direction = direction / direction.norm(dim=1, keepdim=True)
    norm = o.radius * (0.7 + 0.3 * torch.rand(o.support, 1, generator=gen, dtype=torch.float64))
    x = direction * norm
    eps = torch.randn(o.support, generator=gen, dtype=torch.float64).clamp(-3.0, 3.0)
    y = (x * (teacher + o.shift * shifts[cluster])).sum(1) + o.noise * eps
    return x, y, cluster


def _client_data(x: Tensor, y: Tensor, cluster: Tensor, o: QuadraticOptions) -> ClientData:
    own = torch.stack([(cluster == (i % o.clusters)).to(torch.float64) for i in range(o.n_clients)])
    empty = own.sum(1) == 0
    own[empty] = 1.0  # a cone with no support point: that user falls back to the uniform distribution
    P = dial_distributions(own, o.h)
    index = torch.arange(len(y)).expand(o.n_clients, -1).contiguous()
    return ClientData(x=x, y=y, index=index, weight=P, count=torch.full((o.n_clients,), len(y)))


def client_moments(data: ClientData) -> tuple[Tensor, Tensor]:
    r""":math:`H_i = \mathbb E_{p_i}[xx^\top]` ``(n, d, d)`` and :math:`c_i = \mathbb E_{p_i}[yx]` ``(n, d)``."""
    X, Y, P = data.gather()
    X, Y, P = X.double(), Y.double(), P.double()
    H = torch.einsum("ns,nsa,nsb->nab", P, X, X)
    c = torch.einsum("ns,ns,nsa->na", P, Y, X)
    return H, c


def minimizer_F(data: ClientData, alpha: float) -> Tensor:
    r"""The exact minimiser :math:`w^*_\alpha = (\sum_iA_iH_iA_i)^{-1}\sum_iA_i^2c_i` of F (module docstring)."""
    H, c = client_moments(data)
    eye = torch.eye(H.shape[-1], dtype=H.dtype)
    A = eye - alpha * H
    M = (A @ H @ A).sum(0)
    v = (A @ A @ c.unsqueeze(-1)).sum(0).squeeze(-1)
    return torch.linalg.solve(M, v)


class QuadraticOracle:
    r"""Closed-form oracle (``Task.oracle_factory``): :math:`\tilde\nabla f_i(w) = \frac1B\sum_b(x_b^\top w-y_b)x_b`,
    :math:`\tilde\nabla^2 f_i(w)v = \frac1B\sum_b(x_b^\top v)x_b` (exact; equal to autograd's to round-off)."""

    @staticmethod
    def grad(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        res = (X * W.unsqueeze(-2)).sum(-1) - Y.to(X.dtype)
        return (res.unsqueeze(-1) * X).mean(-2)

    @staticmethod
    def hvp(W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return ((X * V.unsqueeze(-2)).sum(-1).unsqueeze(-1) * X).mean(-2)


def objective_moments(data: ClientData) -> tuple[Tensor, Tensor, Tensor]:
    r"""What :func:`exact_objectives` needs of the data: :math:`H_i`, :math:`c_i` (:func:`client_moments`) and
    :math:`e_i = \tfrac12\mathbb E_{p_i}y^2` ``(n,)``."""
    H, c = client_moments(data)
    _, Y, P = data.gather()
    return H, c, 0.5 * (P.double() * Y.double().square()).sum(1)


def exact_objectives(
    data: ClientData, W: Tensor, alpha: float, moments: tuple[Tensor, Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""For shared models ``W (S, P)``, in closed form (module docstring; :math:`e_i = \tfrac12\mathbb E_{p_i}y^2`):
    :math:`F(w)`, :math:`\|\nabla F(w)\|^2`, :math:`f(w)`, :math:`\|\nabla f(w)\|^2`, each ``(S,)``, with
    :math:`u_i = w - \alpha(H_iw - c_i)`, :math:`F = \frac1n\sum_if_i(u_i)`,
    :math:`\nabla F = \frac1n\sum_iA_i(H_iu_i - c_i)`.  ``moments``: :func:`objective_moments` of ``data``, for a
    caller that evaluates many ``W`` on the same data (computed here when not given)."""
    H, c, e = objective_moments(data) if moments is None else moments
    W = W.double()

    def f_i(U):  # U (S, n, d) -> (S, n)
        return 0.5 * torch.einsum("sna,nab,snb->sn", U, H, U) - (U * c).sum(-1) + e

    g_i = torch.einsum("nab,sb->sna", H, W) - c  # (S, n, d): grad f_i(w)
    U = W.unsqueeze(1) - alpha * g_i
    gU = torch.einsum("nab,snb->sna", H, U) - c
    gF_i = gU - alpha * torch.einsum("nab,snb->sna", H, gU)
    f = f_i(W.unsqueeze(1).expand_as(U)).mean(1)
    return f_i(U).mean(1), gF_i.mean(1).square().sum(1), f, g_i.mean(1).square().sum(1)


@dataclass(frozen=True)
class NoiseFreeCycle:
    """The cycle of Algorithm 1 without sampling noise (:func:`noise_free_cycle`)."""

    w: Tensor  # (d,) the shared model every round returns to
    w_bar: Tensor  # (tau, d) the users' mean iterate after t = 0..tau-1 local steps (w_bar[0] = w)
    phi: float  # (1/tau) sum_t ||grad F(w_bar_t)||^2: the theorem's integrand, constant along the cycle


def noise_free_cycle(data: ClientData, alpha: float, beta: float, tau: int) -> NoiseFreeCycle:
    r"""The stationary floor of Algorithm 1 (exact variant) when nothing is random: every user takes part
    (r = 1) and every batch is its whole distribution, so each local step is
    :math:`w \leftarrow w - \beta\nabla F_i(w) = M_iw + \beta g_i` with :math:`G_i = A_iH_iA_i`,
    :math:`g_i = A_i^2c_i`, :math:`M_i = I - \beta G_i` (module docstring).  One round is the affine map
    :math:`w \mapsto Pw + q`, :math:`P = \frac1n\sum_iM_i^\tau`, :math:`q = \frac1n\sum_i\sum_{s<\tau}M_i^s\beta g_i`,
    whose fixed point :math:`w = (I-P)^{-1}q` the rounds converge to when
    :math:`\beta < 2/\lambda_{\max}(G_i)`; there the theorem's integrand
    :math:`\phi = \frac1\tau\sum_{t<\tau}\|\nabla F(\bar w_t)\|^2`,
    :math:`\bar w_t = \frac1n\sum_i(M_i^tw + \sum_{s<t}M_i^s\beta g_i)`, is the pure **local-drift** part of the
    floor of docs/paper.md §5 (the noise and client-sampling terms are zero: s = b = 0, r = 1).  For τ = 1 it is 0
    (the fixed point is the minimiser w*_α); for small βτL_F it is :math:`\approx C\beta^2(\tau-1)^2`
    (first order in β: :math:`\nabla F(w) = \tfrac{\beta(\tau-1)}2\frac1n\sum_iG_i\nabla F_i(w)`), which the
    rate table compares with the derived drift term's :math:`(\tau-1)(2\tau-1)/\Gamma` [derived] and the
    recalled :math:`\tau^2`.  float64, closed form (a d×d solve): exact to round-off; pinned to the engine
    by a test."""
    H, c = client_moments(data)
    eye = torch.eye(H.shape[-1], dtype=H.dtype)
    A = eye - alpha * H
    G, g = A @ H @ A, (A @ A @ c.unsqueeze(-1)).squeeze(-1)
    M = eye - beta * G

    def local_steps(W: Tensor, steps: int) -> Tensor:  # W (n, d): every user's model after `steps` local steps
        for _ in range(steps):
            W = (M @ W.unsqueeze(-1)).squeeze(-1) + beta * g
        return W

    P = torch.linalg.matrix_power(M, tau).mean(0)
    q = local_steps(torch.zeros_like(c), tau).mean(0)  # the affine part: tau steps from w = 0
    w = torch.linalg.solve(eye - P, q)
    means, W = [], w.expand_as(c)
    for _ in range(tau):
        means.append(W.mean(0))
        W = local_steps(W, 1)
    w_bar = torch.stack(means)
    grad_F = w_bar @ G.mean(0).T - g.mean(0)
    return NoiseFreeCycle(w, w_bar, float(grad_F.square().sum(1).mean()))


def quadratic_constants(data: ClientData, w_radius: float) -> dict:
    r"""The constants of the module docstring on the domain :math:`\|w\|\le W` = ``w_radius``."""
    x, y = data.x.double(), data.y.double()
    xn = x.norm(dim=1)
    R, Y = float(xn.max()), float(y.abs().max())
    P = data.weight.double()
    H, _ = client_moments(data)
    outer = torch.einsum("sa,sb->sab", x, x)
    sig_h2 = max(
        float((P[i] * torch.linalg.matrix_norm(outer[data.index[i]] - H[i], ord=2).square()).sum())
        for i in range(data.n_clients)
    )
    per_sample_g = ((xn * w_radius + y.abs()) * xn).square()
    sig_g2 = float((P * per_sample_g[data.index]).sum(1).max())
    tv, _ = distances_to_mixture(P)
    return {
        "L": R**2,
        "rho": 0.0,
        "B": R * (R * w_radius + Y),
        "sigma_G": math.sqrt(sig_g2),
        "sigma_H": math.sqrt(sig_h2),
        "R": R,
        "Y": Y,
        "w_radius": w_radius,
        "tv_rms": rms(tv),
        "tv": tuple(tv.tolist()),
    }


def theta_points(data: ClientData) -> Tensor:
    r"""The :math:`\theta = (x, y)` coordinates of the pooled support, ``(S, d+1)``."""
    return torch.cat([data.x.double(), data.y.double().unsqueeze(1)], 1)


def w1_to_mixture(data: ClientData):
    r"""Exact :math:`W_1(p_i,\bar p)` per user, ground metric :math:`\|\theta-\theta'\|_2` on (x, y)."""
    return distances_to_mixture(data.weight.double(), points=theta_points(data).numpy())[1]


def theta_lipschitz(task: Task, w: Tensor) -> tuple[float, float]:
    r""":math:`(L_\theta(w), \rho_\theta) = (\sqrt{(2R\|w\|+Y)^2+R^2},\ 2R)` (module docstring)."""
    R, Y = task.constants["R"], task.constants["Y"]
    nw = float(w.double().norm())
    return math.sqrt((2 * R * nw + Y) ** 2 + R**2), 2 * R


def build(o: QuadraticOptions) -> Task:
    """The quadratic task (initial model per ``o.init``)."""
    gen = torch.Generator().manual_seed(o.data_seed)
    centres = _centres(o, gen)
    teacher = torch.randn(o.dim, generator=gen, dtype=torch.float64)
    teacher = teacher / teacher.norm()
    shifts = torch.randn(o.clusters, o.dim, generator=gen, dtype=torch.float64)
    shifts = shifts / shifts.norm(dim=1, keepdim=True)
    train = _client_data(*_support(gen, o, centres, teacher, shifts), o)
    test = _client_data(*_support(gen, o, centres, teacher, shifts), o)
    start = minimizer_F(train, o.init_alpha) if o.init == "minimizer" else torch.zeros(o.dim, dtype=torch.float64)

    def init(g: torch.Generator) -> Tensor:
        return start.clone()

    return Task(
        name="quadratic",
        per_sample_loss=squared_loss,
        scores=prediction_scores,
        init_params=init,
        train=train,
        test=test,
        batch_with_replacement=True,
        oracle_factory=QuadraticOracle,
        constants=quadratic_constants(train, o.w_radius),
        constants_of=functools.partial(quadratic_constants, w_radius=o.w_radius),
        description=f"least squares, d={o.dim}, n={o.n_clients}, S={o.support}, h={o.h}, domain ||w|| <= {o.w_radius}",
        label=f"synthetic quadratic (h={o.h})",
    )


SPEC = TaskSpec(
    QuadraticOptions, build, "least squares on bounded features (exact L, rho = 0; B on ||w|| <= W), dial h"
)
