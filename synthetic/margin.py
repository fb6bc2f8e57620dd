r"""Binary linear models with a loss of the margin: the logistic and the nonconvex task.

Model.  :math:`\theta=(x,y)` with :math:`x\in\mathbb R^d`, :math:`y\in\{0,1\}` (stored),
signed label :math:`s = 2y-1`, and the *signed feature* :math:`u = s\,x`.  The per-sample
loss depends on :math:`\theta` through :math:`u` only,

.. math:: l(w;\theta) = \varphi(w^\top u),

with :math:`\varphi(t)=\log(1+e^{-t})` (logistic, convex) or :math:`\varphi(t)=\sigma(-t) =
1/(1+e^{t})` (the sigmoid, "smoothed 0-1" loss: bounded in [0, 1], nonconvex).  So we
take :math:`u` as the coordinate of :math:`\theta` for the Wasserstein distance: the
ground metric is :math:`c(\theta,\theta') = \|u-u'\|_2`.

Constants (docs/paper.md §3), with :math:`R = \max_s\|u_s\| = \max_s\|x_s\|` over the
training support (computed from the data) and :math:`c_k = \sup_t|\varphi^{(k)}(t)|`:

* :math:`\nabla l = \varphi'(w^\top u)\,u`, so :math:`\|\nabla l\|\le c_1R =: B`;
* :math:`\nabla^2 l = \varphi''(w^\top u)\,uu^\top`, so :math:`\|\nabla^2 l\|_{op}\le c_2R^2 =: L`;
* :math:`\nabla^2 l(w) - \nabla^2 l(w') = (\varphi''(w^\top u)-\varphi''(w'^\top u))uu^\top`, so
  :math:`\rho = c_3R^3`.

These hold per sample, hence for every :math:`f_i` (a convex combination), for all w.
Logistic: :math:`\varphi' = -\sigma(-t)`, :math:`\varphi''=\sigma(1-\sigma)`,
:math:`\varphi''' = \sigma(1-\sigma)(1-2\sigma)` (up to sign), so :math:`c_1=1`,
:math:`c_2=1/4`, :math:`c_3 = \max_{s\in[0,1]} s(1-s)|1-2s| = 1/(6\sqrt3)` (at
:math:`s = \tfrac12\pm\tfrac1{2\sqrt3}`).  Sigmoid loss: with :math:`s=\sigma(t)`,
:math:`|\varphi'| = s(1-s)\le 1/4`, :math:`|\varphi''| = s(1-s)|1-2s| \le 1/(6\sqrt3)`,
:math:`|\varphi'''| = s(1-s)|1-6s(1-s)|`; with :math:`v=s(1-s)\in[0,\tfrac14]`,
:math:`|v(1-6v)|\le\max(1/24, 1/8) = 1/8`, so :math:`c_1=1/4, c_2=1/(6\sqrt3), c_3=1/8`.

Variance bounds valid for every w (used as the constants :math:`\sigma_G,\sigma_H`):
:math:`\mathbb E\|\nabla l-\nabla f_i\|^2\le\mathbb E\|\nabla l\|^2\le c_1^2\,\mathbb E_{p_i}\|u\|^2`
and :math:`\mathbb E\|\nabla^2l-\nabla^2f_i\|^2_{op}\le c_2^2\,\mathbb E_{p_i}\|u\|^4`, maximised
over users; the exact values at a given w are :func:`synthetic.common.sigma_G2_at` and
:func:`synthetic.common.sigma_H2_at`.

Lipschitz constants in :math:`\theta` (for the :math:`W_1` bounds of docs/paper.md §6), *at a
given w* (they grow with :math:`\|w\|`, so no bound holds for all w): for
:math:`\|u\|,\|u'\|\le R`,

.. math::
    \|\varphi'(w^\top u)u - \varphi'(w^\top u')u'\| \le (c_1 + c_2R\|w\|)\,\|u-u'\| =: L_\theta(w),

    \|\varphi''(w^\top u)uu^\top - \varphi''(w^\top u')u'u'^\top\|_{op}
        \le (2c_2R + c_3R^2\|w\|)\,\|u-u'\| =: \rho_\theta(w)

(add and subtract :math:`\varphi'(w^\top u)u'`, resp. :math:`\varphi''(w^\top u)u'u'^\top`;
:math:`\|uu^\top-u'u'^\top\|\le(\|u\|+\|u'\|)\|u-u'\|`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F_
from torch import Tensor

from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.registry import option_field

from .common import dial_distributions, distances_to_mixture, rms
from .options import Rule, SyntheticOptions, dial_field

#: sup |phi'|, sup |phi''|, sup |phi'''| of each margin loss (module docstring)
DERIVATIVE_BOUNDS = {
    "logistic": (1.0, 0.25, 1.0 / (6.0 * math.sqrt(3.0))),
    "sigmoid": (0.25, 1.0 / (6.0 * math.sqrt(3.0)), 0.125),
}


def margins(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    r"""Margins :math:`w^\top u = (2y-1)\,w^\top x`, shape ``(..., B)``."""
    # elementwise product + sum broadcasts leading dimensions without materialising copies of X
    return (2 * Y.to(X.dtype) - 1) * (X * W.unsqueeze(-2)).sum(-1)


def logistic_loss(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    r"""Per-sample logistic loss :math:`\log(1+e^{-w^\top u})`."""
    return F_.softplus(-margins(W, X, Y))


def sigmoid_loss(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    r"""Per-sample sigmoid loss :math:`\sigma(-w^\top u)\in(0,1)` (bounded, nonconvex)."""
    return torch.sigmoid(-margins(W, X, Y))


def binary_scores(W: Tensor, X: Tensor) -> Tensor:
    r"""Class scores ``(..., B, 2)``: :math:`(0, w^\top x)`, so class 1 iff :math:`w^\top x>0`."""
    t = torch.matmul(X, W.unsqueeze(-1)).squeeze(-1)
    return torch.stack([torch.zeros_like(t), t], dim=-1)


@dataclass(frozen=True)
class MarginOptions(SyntheticOptions):
    """Options of the binary synthetic tasks (logistic and nonconvex): the shared ones, clusters, teacher."""

    TASK: ClassVar[str] = "logistic/nonconvex"

    h: float = dial_field("each user on its own cluster")
    clusters: int = option_field("feature clusters G (>= 1); user i favours cluster i mod G", 5)
    label_noise: float = option_field("teacher temperature kappa (> 0): P(y=1|x) = sigmoid(kappa w*.x / R)", 4.0)

    def own_rules(self) -> list[Rule]:
        return [("label_noise", 0 < self.label_noise < float("inf"), "must be a finite number > 0")]


def _support(gen: torch.Generator, o: MarginOptions, centers: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """S points in G clusters around ``centers``, norms clipped to R; labels from a noisy teacher."""
    cluster = torch.arange(o.support) % o.clusters
    noise = torch.randn(o.support, o.dim, generator=gen, dtype=torch.float64) * (0.35 * o.radius / math.sqrt(o.dim))
    x = centers[cluster] + noise
    x = x * (o.radius / x.norm(dim=1, keepdim=True)).clamp(max=1.0)
    prob = torch.sigmoid(o.label_noise * (x @ teacher) / o.radius)
    y = torch.bernoulli(prob, generator=gen).long()
    return x, y, cluster


def _client_data(x: Tensor, y: Tensor, cluster: Tensor, o: MarginOptions) -> ClientData:
    own = torch.stack([(cluster == (i % o.clusters)).to(torch.float64) for i in range(o.n_clients)])
    P = dial_distributions(own, o.h)
    index = torch.arange(len(y)).expand(o.n_clients, -1).contiguous()
    return ClientData(x=x, y=y, index=index, weight=P, count=torch.full((o.n_clients,), len(y)))


def signed_features(data: ClientData) -> Tensor:
    r"""The :math:`\theta` coordinates :math:`u_s = (2y_s-1)x_s` of the pooled support, ``(S, d)``."""
    return (2 * data.y.to(data.x.dtype) - 1).unsqueeze(1) * data.x


def margin_constants(kind: str, data: ClientData) -> dict:
    r"""The exact constants of the module docstring for loss ``kind`` on ``data`` (training split)."""
    c1, c2, c3 = DERIVATIVE_BOUNDS[kind]
    u = signed_features(data).double()
    norms = u.norm(dim=1)
    R = float(norms.max())
    P = data.weight.double()
    second = float((P * norms[data.index].square()).sum(1).max())
    fourth = float((P * norms[data.index].pow(4)).sum(1).max())
    tv, _ = distances_to_mixture(P)
    return {
        "L": c2 * R**2,
        "rho": c3 * R**3,
        "B": c1 * R,
        "sigma_G": math.sqrt(c1**2 * second),
        "sigma_H": math.sqrt(c2**2 * fourth),
        "R": R,
        "c1": c1,
        "c2": c2,
        "c3": c3,
        "tv_rms": rms(tv),
        "tv": tuple(tv.tolist()),
    }


def w1_to_mixture(data: ClientData):
    r"""Exact :math:`W_1(p_i,\bar p)` per user, ground metric :math:`\|u-u'\|_2` on the signed features."""
    return distances_to_mixture(data.weight.double(), points=signed_features(data).double().numpy())[1]


def theta_lipschitz(task: Task, w: Tensor) -> tuple[float, float]:
    r""":math:`(L_\theta(w), \rho_\theta(w)) = (c_1 + c_2R\|w\|,\ 2c_2R + c_3R^2\|w\|)` (module docstring)."""
    c1, c2, c3, R = (task.constants[k] for k in ("c1", "c2", "c3", "R"))
    nw = float(w.double().norm())
    return c1 + c2 * R * nw, 2 * c2 * R + c3 * R**2 * nw


def build_margin_task(kind: str, name: str, o: MarginOptions, init_scale: float) -> Task:
    gen = torch.Generator().manual_seed(o.data_seed)
    directions = torch.randn(o.clusters, o.dim, generator=gen, dtype=torch.float64)
    centers = 0.6 * o.radius * directions / directions.norm(dim=1, keepdim=True)
    teacher = torch.randn(o.dim, generator=gen, dtype=torch.float64)
    teacher = teacher / teacher.norm()
    train = _client_data(*_support(gen, o, centers, teacher), o)
    test = _client_data(*_support(gen, o, centers, teacher), o)
    loss = {"logistic": logistic_loss, "sigmoid": sigmoid_loss}[kind]

    def init(g: torch.Generator) -> Tensor:
        if init_scale == 0:
            return torch.zeros(o.dim, dtype=torch.float64)
        return torch.randn(o.dim, generator=g, dtype=torch.float64) * init_scale

    return Task(
        name=name,
        per_sample_loss=loss,
        scores=binary_scores,
        init_params=init,
        train=train,
        test=test,
        batch_with_replacement=True,
        constants=margin_constants(kind, train),
        constants_of=functools.partial(margin_constants, kind),
        description=f"{kind} loss of a linear model, d={o.dim}, n={o.n_clients}, S={o.support}, h={o.h}",
        label=f"synthetic {name} (h={o.h})",
    )
