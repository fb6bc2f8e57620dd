r"""One local step of each algorithm, for a stack of clients (docs/paper.md §2, Algorithm 1).

The specification that the generic fast path (:class:`perfedavg.engine.oracle.LocalSteps`), the loop
reference (:mod:`perfedavg.engine.reference`) and the tests read.  Each function is pure:
``(oracle, W, batches, hyper-parameters) -> new W``, with ``W (m, P)`` the sampled clients' current
iterates :math:`w^i_{k+1,t-1}`, and asks the oracle only for what :class:`Oracle` declares; the
steps take an optional ``out`` to write the new iterates into, which may be ``W`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from perfedavg.algorithms import DEFAULT_DELTA, PerFedAvgAlgorithm
from perfedavg.engine.sampling import Batch

#: Per-FedAvg's batches of one step, :math:`(\mathcal D, \mathcal D', \mathcal D'')`; FO never reads
#: :math:`\mathcal D''`, which may then be None
PerFedAvgBatches = tuple[Batch, Batch, Batch | None]


@runtime_checkable
class Oracle(Protocol):
    r"""What the local steps ask of a model, for stacked clients ``W (m, P)``, ``X (m, B, ...)``, ``Y (m, B)``:

    * ``grad(W, X, Y)``: :math:`\tilde\nabla f_i(w_i, \mathcal D_i) = \frac1{|\mathcal D_i|}\sum_{\theta\in\mathcal D_i}
      \nabla l(w_i;\theta)` for every client ``i``, ``(m, P)``;
    * ``hvp(W, V, X, Y)``: :math:`\tilde\nabla^2 f_i(w_i, \mathcal D_i)\, v_i`, exactly.
    """

    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor: ...

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class StepSizes:
    r"""Hyper-parameters of a local step: ``alpha`` is α (inner, personalization step),
    ``beta`` is β (outer step), ``delta`` is δ (HF's finite-difference width)."""

    alpha: float
    beta: float
    delta: float = DEFAULT_DELTA


def fedavg_step(oracle: Oracle, W: Tensor, batch: Batch, h: StepSizes, out: Tensor | None = None) -> Tensor:
    r"""FedAvg's local SGD step: :math:`w \leftarrow w - \beta\,\tilde\nabla f_i(w, \mathcal D)`
    (into ``out`` if given; it may be ``W``)."""
    return _into(out, W - h.beta * oracle.grad(W, batch.x, batch.y))


def _into(out: Tensor | None, new: Tensor) -> Tensor:
    return new if out is None else out.copy_(new)


def meta_gradient(
    oracle: Oracle, W: Tensor, batches: PerFedAvgBatches, h: StepSizes, algorithm: PerFedAvgAlgorithm
) -> Tensor:
    r"""Per-FedAvg's stochastic gradient of :math:`F_i` at ``W`` (docs/paper.md §2):

    .. math::
        \tilde w = w - \alpha \tilde\nabla f_i(w, \mathcal D), \qquad
        g = \tilde\nabla f_i(\tilde w, \mathcal D'),

    then ``algorithm``:

    * ``"fo"``: :math:`g` (Hessian term dropped);
    * ``"hf"``: :math:`g - \alpha\,[\tilde\nabla f_i(w+\delta g, \mathcal D'') - \tilde\nabla f_i(w-\delta g,
      \mathcal D'')]/(2\delta)` (both gradients in one stacked call, they share :math:`\mathcal D''`);
    * ``"exact"``: :math:`g - \alpha\,\tilde\nabla^2 f_i(w, \mathcal D'')\, g` by an exact Hessian-vector product.
    """
    inner, outer, hessian = batches
    W_tilde = W - h.alpha * oracle.grad(W, inner.x, inner.y)
    g = oracle.grad(W_tilde, outer.x, outer.y)
    if algorithm == "fo":
        return g
    if algorithm not in ("hf", "exact"):
        raise ValueError(f"unknown Per-FedAvg algorithm {algorithm!r}")
    if hessian is None:
        raise ValueError(f"Per-FedAvg's {algorithm} step needs the batch D''")
    if algorithm == "hf":
        stacked = hessian.repeat(2)
        plus_minus = oracle.grad(torch.cat([W + h.delta * g, W - h.delta * g]), stacked.x, stacked.y)
        g_plus, g_minus = plus_minus.chunk(2)
        return g - h.alpha * (g_plus - g_minus) / (2 * h.delta)
    return g - h.alpha * oracle.hvp(W, g, hessian.x, hessian.y)


def per_fedavg_step(
    oracle: Oracle,
    W: Tensor,
    batches: PerFedAvgBatches,
    h: StepSizes,
    algorithm: PerFedAvgAlgorithm,
    out: Tensor | None = None,
) -> Tensor:
    r"""Per-FedAvg's local step :math:`w \leftarrow w - \beta\,\widetilde{\nabla F_i}(w)` (Algorithm 1;
    into ``out`` if given; it may be ``W``)."""
    return _into(out, W - h.beta * meta_gradient(oracle, W, batches, h, algorithm))
