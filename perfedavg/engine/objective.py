r"""Exact objectives from full local data, and the one-step personalized evaluation.

For client :math:`i` with distribution :math:`p_i` (a probability vector over its
samples, :class:`perfedavg.engine.task.ClientData`):

.. math::
    f_i(w) = \sum_j p_{ij}\, l(w;\theta_{ij}), \qquad
    F_i(w) = f_i\big(w - \alpha \nabla f_i(w)\big), \qquad
    \nabla F_i(w) = \big(I - \alpha \nabla^2 f_i(w)\big)\,\nabla f_i\big(w - \alpha\nabla f_i(w)\big)

(docs/paper.md §1, eq. (3)); :math:`F = \frac1n\sum_i F_i`, :math:`f = \frac1n\sum_i f_i`.
:math:`\nabla F_i` is computed exactly by differentiating through the inner gradient
step (double backward), not by any of the algorithms' approximations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from perfedavg.engine.sampling import draw_positions
from perfedavg.engine.task import ClientData, PerSampleLoss, Scores


@dataclass(frozen=True)
class ClientObjectives:
    """Per-client ``F`` (n,), ``grad_F`` (n, P), ``f`` (n,), ``grad_f`` (n, P)."""

    F: Tensor
    grad_F: Tensor
    f: Tensor
    grad_f: Tensor


def _chunks(n: int, size: int) -> Iterator[Tensor]:
    for start in range(0, n, size):
        yield torch.arange(start, min(n, start + size))


def client_objectives(
    per_sample_loss: PerSampleLoss, w: Tensor, data: ClientData, alpha: float, chunk: int = 16
) -> ClientObjectives:
    r""":math:`F_i(w)`, :math:`\nabla F_i(w)`, :math:`f_i(w)`, :math:`\nabla f_i(w)` for every client, exactly.

    ``w (P,)`` is the shared model, ``alpha`` is α.  Clients are processed ``chunk`` at a
    time to bound memory.
    """
    parts = []
    for clients in _chunks(data.n_clients, chunk):
        X, Y, P = data.gather(clients)
        with torch.enable_grad():
            W = w.detach().expand(len(clients), -1).clone().requires_grad_(True)
            f = (P * per_sample_loss(W, X, Y)).sum(-1)
            (g,) = torch.autograd.grad(f.sum(), W, create_graph=alpha != 0)
            if alpha == 0:  # F = f: no inner step to differentiate through
                F, gF = f, g
            else:
                F = (P * per_sample_loss(W - alpha * g, X, Y)).sum(-1)
                (gF,) = torch.autograd.grad(F.sum(), W)
        parts.append((F.detach(), gF.detach(), f.detach(), g.detach()))
    return ClientObjectives(*(torch.cat(column) for column in zip(*parts)))


def grad_norm_sq_F(per_sample_loss: PerSampleLoss, w: Tensor, data: ClientData, alpha: float) -> float:
    r""":math:`\|\nabla F(w)\|^2` with :math:`\nabla F = \frac1n\sum_i \nabla F_i` (the theorem's measure)."""
    return float(client_objectives(per_sample_loss, w, data, alpha).grad_F.mean(0).square().sum())


def adapted_models(
    per_sample_loss: PerSampleLoss, w: Tensor, data: ClientData, alpha: float, chunk: int = 16
) -> Tensor:
    r"""One personalization step per client on its full local ``data``: :math:`w_i = w - \alpha\nabla f_i(w)`,
    ``(n, P)``."""
    return w - alpha * client_objectives_grad_f(per_sample_loss, w, data, chunk)


def client_objectives_grad_f(per_sample_loss: PerSampleLoss, w: Tensor, data: ClientData, chunk: int = 16) -> Tensor:
    r""":math:`\nabla f_i(w)` for every client, ``(n, P)``."""
    grads = []
    for clients in _chunks(data.n_clients, chunk):
        X, Y, P = data.gather(clients)
        with torch.enable_grad():
            W = w.detach().expand(len(clients), -1).clone().requires_grad_(True)
            (g,) = torch.autograd.grad((P * per_sample_loss(W, X, Y)).sum(), W)
        grads.append(g)
    return torch.cat(grads)


def client_test_metrics(
    per_sample_loss: PerSampleLoss, scores: Scores, W: Tensor, data: ClientData, chunk: int = 16
) -> tuple[Tensor, Tensor]:
    r"""Per-client test loss :math:`\sum_j p_{ij} l(w_i;\theta_{ij})` and accuracy
    :math:`\sum_j p_{ij}\,[\arg\max s(w_i;x_{ij}) = y_{ij}]` of models ``W (n, P)`` (or one ``w (P,)``)."""
    losses, accuracies = [], []
    for clients in _chunks(data.n_clients, chunk):
        X, Y, P = data.gather(clients)
        Wc = W[clients] if W.dim() == 2 else W
        with torch.no_grad():
            s = scores(Wc, X)
            losses.append((P * per_sample_loss(Wc, X, Y)).sum(-1))
            accuracies.append((P * (s.argmax(-1) == Y).to(P.dtype)).sum(-1))
    return torch.cat(losses), torch.cat(accuracies)


def client_batches(data: ClientData, size: int, generator: torch.Generator, with_replacement: bool) -> ClientData:
    r"""One batch :math:`\mathcal D_i` of ``size`` samples per client, as a :class:`ClientData` whose
    :math:`p_i` is uniform over the batch (its empirical distribution), drawn the way training batches
    are (:func:`perfedavg.engine.sampling.draw_positions`): i.i.d. from :math:`p_i` with replacement, or a
    uniformly random subset without it (all of a client's samples when it has fewer than ``size``)."""
    clients = torch.arange(data.n_clients)
    take = size if with_replacement else min(size, data.index.shape[1])
    rows = data.index.gather(1, draw_positions(generator, data, clients, take, with_replacement))
    kept = [row if with_replacement else row[: min(take, int(count))] for row, count in zip(rows, data.count)]
    batches = ClientData.from_lists(data.x, data.y, kept)  # index rows built on the CPU
    on = data.index.device
    return ClientData(
        x=batches.x,
        y=batches.y,
        index=batches.index.to(on),
        weight=batches.weight.to(device=on, dtype=data.weight.dtype),
        count=batches.count.to(on),
    )


def personalized_test_metrics(
    per_sample_loss: PerSampleLoss, scores: Scores, w: Tensor, adaptation: ClientData, test: ClientData, alpha: float
) -> tuple[Tensor, Tensor]:
    r"""Per-client test loss and accuracy of the personalized models :math:`w_i = w - \alpha\nabla f_i(w)`,
    :math:`f_i` the loss on the client's ``adaptation`` data (its full training or test data, or one batch of
    it from :func:`client_batches`: the paper's "one step of SGD", docs/paper.md §2), each ``(n,)``."""
    return client_test_metrics(per_sample_loss, scores, adapted_models(per_sample_loss, w, adaptation, alpha), test)
