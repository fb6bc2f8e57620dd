r"""Multinomial logistic (softmax) regression with a heterogeneity dial.

The demo task of the engine (the richer synthetic suite builds on the same pattern).

Data model: one finite support of ``support`` points :math:`\theta_s=(x_s, y_s)` with
:math:`\|x_s\|\le R` (``radius``), labels from a fixed random "teacher" softmax model.
The classes are dealt round-robin to the users; user :math:`i`'s distribution is

.. math:: p_i = (1-h)\,u + h\,q_i,

with :math:`u` uniform on the support and :math:`q_i` uniform on the points whose label
belongs to user :math:`i`'s classes.  :math:`h=0` gives identical users, :math:`h=1`
users whose label sets are disjoint (when ``n_clients <= classes``) — a known,
exactly computable total-variation distance :math:`\mathrm{TV}(p_i,\bar p)` that is
linear in :math:`h`.  Test data: a second support drawn the same way, with the same
:math:`p_i` construction.

Exact constants (docs/paper.md §3).  Parameters :math:`w = (W, b)` (flat, see
:mod:`perfedavg.engine.models`), scores :math:`s = Wx + b = \tilde W z` with :math:`z=(x,1)`,
:math:`R_z = \max_s\|z_s\| = \sqrt{1+\max_s\|x_s\|^2}` over the training support.
:math:`\nabla l = (\pi(s) - e_y)\otimes z` and :math:`\nabla^2 l = A(s)\otimes zz^\top` with
:math:`\pi` the softmax and :math:`A = \mathrm{diag}(\pi)-\pi\pi^\top`.  Along a direction
:math:`h\in\mathbb R^C` of the scores, with :math:`X` the random variable equal to :math:`h_c`
with probability :math:`\pi_c`, :math:`h^\top A h = \mathrm{Var}(X)` and the third derivative of
log-sum-exp is :math:`T[h,h,h] = \mathbb E(X-\mathbb EX)^3`.  X lives in an interval of
length :math:`\ell\le\max_c h_c-\min_c h_c\le\sqrt2\|h\|`, so

* :math:`\|\pi-e_y\|^2 = (1-\pi_y)^2+\sum_{c\ne y}\pi_c^2\le 2` gives :math:`B = \sqrt2\,R_z`;
* :math:`\mathrm{Var}(X)\le\ell^2/4\le\|h\|^2/2` gives :math:`\|A\|\le\tfrac12`, :math:`L = R_z^2/2`;
* :math:`|\mathbb E(X-\mathbb EX)^3|\le\ell^3/(6\sqrt3)` (for a fixed mean, maximising a linear
  functional over distributions on an interval has two-point extremes, and a two-point law
  has :math:`|\mu_3| = \ell^3p(1-p)|1-2p|\le\ell^3/(6\sqrt3)`), so
  :math:`|T[h,h,h]|\le c_T\|h\|^3` with :math:`c_T = 2\sqrt2/(6\sqrt3) = \sqrt2/(3\sqrt3)`; for a
  symmetric trilinear form on a Hilbert space :math:`\sup|T[h,a,a]| = \sup|T[v,v,v]|`
  over unit vectors (Banach), so :math:`\|A(s)-A(s')\|\le c_T\|s-s'\|\le c_T\|\Delta\tilde W\|_F R_z`
  and :math:`\rho = c_T R_z^3`;
* :math:`\sigma_G^2\le\max_i 2\,\mathbb E_{p_i}\|z\|^2` (variance at most the second moment, in the
  Euclidean norm), and :math:`\sigma_H^2\le\max_i\tfrac14\mathbb E_{p_i}\|z\|^4` through the **Frobenius**
  norm, not the operator norm (for which "variance ≤ second moment" is not automatic):
  :math:`\mathbb E\|\nabla^2l-\nabla^2f_i\|_{op}^2\le\mathbb E\|\nabla^2l-\mathbb E\nabla^2l\|_F^2
  \le\mathbb E\|\nabla^2l\|_F^2` (the Frobenius norm is Euclidean on matrices), and
  :math:`\|A\otimes zz^\top\|_F = \|A\|_F\|z\|^2\le\tfrac12\|z\|^2` because
  :math:`\|A\|_F^2 = p_2 - 2p_3 + p_2^2 \le p_2 - p_2^2\le\tfrac14` with :math:`p_k=\sum_c\pi_c^k` and
  :math:`p_3 = \mathbb E_\pi[\pi_c^2]\ge(\mathbb E_\pi\pi_c)^2 = p_2^2` (Jensen); valid for every w.

Ground metric for :math:`W_1`: :math:`\theta=(x,y)`,
:math:`c(\theta,\theta') = \|x-x'\|_2 + \kappa\,[y\ne y']` with :math:`\kappa` = ``LABEL_COST`` = 1.
Lipschitz constants in :math:`\theta` at a given w (:func:`theta_lipschitz`; a change of x
and a change of y are bounded separately, and a sum metric gives the larger ratio):

* gradient: :math:`\|(\pi-\pi')z^\top\| + \|(\pi'-e_y)(z-z')^\top\|\le(\tfrac12\|W\|_{op}R_z+\sqrt2)\|x-x'\|`
  (:math:`\|A\|\le\tfrac12` along the segment); a label change moves it by
  :math:`\|(e_y-e_{y'})z^\top\|\le\sqrt2R_z`: :math:`L_\theta = \max(\tfrac12\|W\|_{op}R_z+\sqrt2,\ \sqrt2R_z/\kappa)`;
* Hessian (independent of y): :math:`\rho_\theta = c_T\|W\|_{op}R_z^2 + R_z`
  (:math:`\|zz^\top-z'z'^\top\|\le 2R_z\|x-x'\|`, :math:`\|A\|\le\tfrac12`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from perfedavg.engine.models import mlp, mlp_layers
from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.registry import TaskSpec, option_field

from .common import _client_weights_on_pool, distances_to_mixture, euclidean_costs, rms
from .options import Rule, SyntheticOptions, dial_field, shared_field

#: kappa, the cost of changing the label in the W1 ground metric (module docstring)
LABEL_COST = 1.0
#: c_T = 2 sqrt(2) / (6 sqrt(3)): |third derivative of log-sum-exp along h| <= c_T ||h||^3
C_T = 2.0 * math.sqrt(2.0) / (6.0 * math.sqrt(3.0))


@dataclass(frozen=True)
class SoftmaxOptions(SyntheticOptions):
    """Options of the synthetic softmax-regression task: the shared ones (S = 400 by default), classes."""

    TASK: ClassVar[str] = "softmax"

    support: int = shared_field("support", 400)
    h: float = dial_field("disjoint label sets")
    classes: int = option_field("number of classes C (2..1000)", 5)
    classes_per_client: int = option_field("classes each user favours at h > 0 (1..classes)", 1)

    def own_rules(self) -> list[Rule]:
        return [("classes_per_client", 1 <= self.classes_per_client <= self.classes, "must be in 1..classes")]


def _support(gen: torch.Generator, o: SoftmaxOptions, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(o.support, o.dim, generator=gen, dtype=torch.float64)
    x = (
        o.radius
        * x
        / x.norm(dim=1, keepdim=True).clamp_min(1.0)
        * torch.rand(o.support, 1, generator=gen, dtype=torch.float64)
    )
    logits = 4.0 * x @ teacher / o.radius
    y = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
    # make every class appear at least once so that every q_i is well defined
    y[: o.classes] = torch.arange(o.classes)
    return x, y


def client_distributions(y: torch.Tensor, o: SoftmaxOptions) -> torch.Tensor:
    r"""The matrix :math:`P` with rows :math:`p_i = (1-h)u + h q_i` over the support (module docstring)."""
    n, s = o.n_clients, len(y)
    own = torch.zeros(n, s, dtype=torch.float64)
    for i in range(n):
        cls = [(i * o.classes_per_client + j) % o.classes for j in range(o.classes_per_client)]
        own[i] = torch.isin(y, torch.tensor(cls)).to(torch.float64)
    q = own / own.sum(1, keepdim=True)
    return (1 - o.h) * torch.full((n, s), 1.0 / s, dtype=torch.float64) + o.h * q


def _client_data(x: torch.Tensor, y: torch.Tensor, o: SoftmaxOptions) -> ClientData:
    P = client_distributions(y, o)
    index = torch.arange(len(y)).expand(o.n_clients, -1).contiguous()
    return ClientData(x=x, y=y, index=index, weight=P, count=torch.full((o.n_clients,), len(y)))


def ground_costs(data: ClientData):
    r"""The W1 ground metric :math:`\|x-x'\| + \kappa[y\ne y']` between the pooled samples, ``(S, S)``."""
    x = data.x.double().numpy()
    y = data.y.numpy()
    return euclidean_costs(x, x) + LABEL_COST * (y[:, None] != y[None, :])


def softmax_constants(data: ClientData) -> dict:
    r"""Exact constants of the module docstring on ``data`` (training split)."""
    z2 = data.x.double().square().sum(1) + 1.0  # ||(x, 1)||^2
    Rz = float(z2.max().sqrt())
    P = data.weight.double()
    second = float((P * z2[data.index]).sum(1).max())
    fourth = float((P * z2[data.index].square()).sum(1).max())
    tv, _ = distances_to_mixture(P)
    return {
        "L": 0.5 * Rz**2,
        "rho": C_T * Rz**3,
        "B": math.sqrt(2.0) * Rz,
        "sigma_G": math.sqrt(2.0 * second),
        "sigma_H": math.sqrt(0.25 * fourth),
        "Rz": Rz,
        "tv_rms": rms(tv),
        "tv": tuple(tv.tolist()),
    }


def w1_to_mixture(data: ClientData):
    r"""Exact :math:`W_1(p_i,\bar p)` per user with the ground metric of :func:`ground_costs`."""
    return distances_to_mixture(data.weight.double(), cost=ground_costs(data))[1]


def theta_lipschitz(task: Task, w) -> tuple[float, float]:
    r""":math:`(L_\theta(w), \rho_\theta(w))` of the module docstring at the flat parameters ``w``."""
    d = task.train.x.shape[1]
    sizes = (d, w.shape[-1] // (d + 1))
    ((weight, _),) = mlp_layers(w.double(), sizes)
    op = float(torch.linalg.matrix_norm(weight, ord=2))
    Rz = task.constants["Rz"]
    return (max(0.5 * op * Rz + math.sqrt(2.0), math.sqrt(2.0) * Rz / LABEL_COST), C_T * op * Rz**2 + Rz)


#: the score Jacobian of the last task seen (constant in w), so repeated calls along a run skip jacrev
_JACOBIAN: dict = {}


def client_hessians(task: Task, w) -> torch.Tensor:
    r"""Exact :math:`\nabla^2 f_i(w) = \sum_s p_{is}\,J_s^\top A(s_s)\,J_s` for every user, ``(n, P, P)``, with
    :math:`J_s = \partial s(w;x_s)/\partial w` (constant: the scores are linear in w) and
    :math:`A = \mathrm{diag}(\pi)-\pi\pi^\top` (module docstring): equal to double backward, without its
    P backward passes per call (what makes the trajectory checks of ``perfedavg check`` cheap)."""
    x = task.train.x.double()
    w = w.detach().double()
    key = (id(task.train), w.shape[0])
    if _JACOBIAN.get("key") != key or _JACOBIAN.get("train") is not task.train:
        _JACOBIAN.update(key=key, train=task.train, J=torch.func.jacrev(lambda v: task.scores(v, x))(w))  # (S, C, P)
    J = _JACOBIAN["J"]
    pi = torch.softmax(task.scores(w, x), dim=-1)  # (S, C)
    A = torch.diag_embed(pi) - pi.unsqueeze(-1) * pi.unsqueeze(-2)  # (S, C, C)
    per_sample = J.transpose(1, 2) @ (A @ J)  # (S, P, P)
    weights = _client_weights_on_pool(task.train).double()  # (n, S)
    return (weights @ per_sample.reshape(per_sample.shape[0], -1)).reshape(-1, *per_sample.shape[1:])


def build(o: SoftmaxOptions) -> Task:
    gen = torch.Generator().manual_seed(o.data_seed)
    teacher = torch.randn(o.dim, o.classes, generator=gen, dtype=torch.float64)
    train = _client_data(*_support(gen, o, teacher), o)
    test = _client_data(*_support(gen, o, teacher), o)
    loss, scores, init = mlp((o.dim, o.classes))
    return Task(
        name="softmax",
        per_sample_loss=loss,
        scores=scores,
        init_params=lambda g: torch.zeros_like(init(g)),
        train=train,
        test=test,
        batch_with_replacement=True,
        constants=softmax_constants(train),
        constants_of=softmax_constants,
        description=f"softmax regression, d={o.dim}, C={o.classes}, n={o.n_clients}, h={o.h}",
        label=f"synthetic softmax (h={o.h})",
    )


SPEC = TaskSpec(SoftmaxOptions, build, "multinomial logistic regression on a finite support, heterogeneity dial h")
