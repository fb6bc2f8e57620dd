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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perfedavg.models import mlp
from perfedavg.task import ClientData, Task
from perfedavg.tasks import TaskSpec, check_option, option_field


@dataclass(frozen=True)
class SoftmaxOptions:
    """Options of the synthetic softmax-regression task."""

    n_clients: int = option_field("number of users n (>= 2)", 20)
    dim: int = option_field("feature dimension d (>= 1)", 10)
    classes: int = option_field("number of classes C (>= 2)", 5)
    support: int = option_field("support points per split (>= classes)", 400)
    h: float = option_field("heterogeneity dial h in [0, 1]: 0 identical users, 1 disjoint label sets", 0.5)
    radius: float = option_field("feature norm bound R (> 0)", 1.0)
    classes_per_client: int = option_field("classes each user favours at h > 0 (1..classes)", 1)
    data_seed: int = option_field("seed of the data (>= 0); the run's seed drives the algorithm", 0)

    def __post_init__(self):
        check_option("softmax", "n_clients", self.n_clients, self.n_clients >= 2, "must be >= 2")
        check_option("softmax", "dim", self.dim, self.dim >= 1, "must be >= 1")
        check_option("softmax", "classes", self.classes, self.classes >= 2, "must be >= 2")
        check_option("softmax", "support", self.support, self.support >= self.classes, "must be >= classes")
        check_option("softmax", "h", self.h, 0.0 <= self.h <= 1.0, "must be in [0, 1]")
        check_option("softmax", "radius", self.radius, self.radius > 0, "must be > 0")
        check_option(
            "softmax", "classes_per_client", self.classes_per_client,
            1 <= self.classes_per_client <= self.classes, "must be in 1..classes",
        )
        check_option("softmax", "data_seed", self.data_seed, self.data_seed >= 0, "must be >= 0")


def _support(gen: torch.Generator, o: SoftmaxOptions, teacher: torch.Tensor):
    x = torch.randn(o.support, o.dim, generator=gen, dtype=torch.float64)
    x = o.radius * x / x.norm(dim=1, keepdim=True).clamp_min(1.0) * torch.rand(o.support, 1, generator=gen, dtype=torch.float64)
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


def _client_data(x, y, o) -> ClientData:
    P = client_distributions(y, o)
    index = torch.arange(len(y)).expand(o.n_clients, -1).contiguous()
    return ClientData(x=x, y=y, index=index, weight=P, count=torch.full((o.n_clients,), len(y)))


def build(o: SoftmaxOptions) -> Task:
    gen = torch.Generator().manual_seed(o.data_seed)
    teacher = torch.randn(o.dim, o.classes, generator=gen, dtype=torch.float64)
    train = _client_data(*_support(gen, o, teacher), o)
    test = _client_data(*_support(gen, o, teacher), o)
    loss, scores, init = mlp((o.dim, o.classes))
    R2 = o.radius**2 + 1.0  # ||(x, 1)||^2 bound: the bias acts as a constant feature
    return Task(
        name="softmax",
        per_sample_loss=loss,
        scores=scores,
        init_params=lambda g: torch.zeros_like(init(g)),
        train=train,
        test=test,
        batch_with_replacement=True,
        constants={"L": 0.5 * R2, "B": (2.0 * R2) ** 0.5},
        description=f"softmax regression, d={o.dim}, C={o.classes}, n={o.n_clients}, h={o.h}",
        label=f"synthetic softmax (h={o.h})",
    )


SPEC = TaskSpec(SoftmaxOptions, build, "multinomial logistic regression on a finite support, heterogeneity dial h")
