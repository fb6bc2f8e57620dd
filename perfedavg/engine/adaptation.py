r"""A few adaptation steps: each user's model after :math:`k = 0, 1, \dots, N` gradient steps from the shared one.

The paper's abstract asks for a shared model that users adapt "by performing one or a few steps of gradient
descent"; its objective is the one-step :math:`F_i(w) = f_i(w - \alpha\nabla f_i(w))` (docs/paper.md §1,
eq. (3)).  With :math:`k` steps of size :math:`a` on the user's adaptation data :math:`\mathcal D_i^{(j)}`
(its full training or test data, or one batch of it per step),

.. math:: w_i^{(0)} = w, \qquad w_i^{(j)} = w_i^{(j-1)} - a\,\nabla f_i\big(w_i^{(j-1)}; \mathcal D_i^{(j)}\big),

and the test loss of :math:`w_i^{(k)}` estimates the :math:`k`-step objective
:math:`F_{i,k}(w) = f_i(w_i^{(k)})` (:math:`F_{i,1} = F_i`, :math:`F_{i,0} = f_i`).  Step ``k`` starts from
step ``k - 1``'s models, so a curve to ``N`` costs ``N`` gradient passes, and its ``k = 1`` point is
:func:`perfedavg.engine.objective.personalized_test_metrics` exactly (tests pin both).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from perfedavg.engine.objective import client_test_metrics
from perfedavg.engine.task import ClientData, PerSampleLoss, Scores

#: users processed at once by the gradient passes (bounds memory, as :mod:`perfedavg.engine.objective` does)
CHUNK = 16


def client_gradients(per_sample_loss: PerSampleLoss, W: Tensor, data: ClientData, chunk: int = CHUNK) -> Tensor:
    r""":math:`\nabla f_i(w_i)` of every user ``i`` of ``data`` at its own model ``W[i]`` (``W (n, P)``), ``(n, P)``."""
    grads = []
    for start in range(0, data.n_clients, chunk):
        clients = torch.arange(start, min(data.n_clients, start + chunk))
        X, Y, P = data.gather(clients)
        with torch.enable_grad():
            Wc = W[clients].detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad((P * per_sample_loss(Wc, X, Y)).sum(), Wc)
        grads.append(g)
    return torch.cat(grads)


def adaptation_step(per_sample_loss: PerSampleLoss, W: Tensor, data: ClientData, step: float) -> Tensor:
    r"""One adaptation step of every user from its own model: :math:`w_i - a\,\nabla f_i(w_i; \mathcal D_i)`."""
    return W - step * client_gradients(per_sample_loss, W, data)


def adaptation_curve(
    per_sample_loss: PerSampleLoss,
    scores: Scores,
    w: Tensor,
    adaptation: Callable[[int], ClientData],
    test: ClientData,
    step: float,
    steps: int,
) -> tuple[Tensor, Tensor]:
    r"""Per-user test loss and accuracy after :math:`k = 0..N` steps (``steps`` = N), each ``(N + 1, n)``.

    ``w (P,)`` is the shared model; ``adaptation(j)`` the users' data of step ``j = 1..N`` (the same
    :class:`ClientData` every step for the full-batch step; a fresh batch per step for the SGD one);
    ``step`` is :math:`a`.  Row 0 is the shared model's test metrics."""
    n = test.n_clients
    W = w.expand(n, -1)
    losses, accuracies = [], []
    for j in range(steps + 1):
        if j:
            W = adaptation_step(per_sample_loss, W, adaptation(j), step)
        loss, accuracy = client_test_metrics(per_sample_loss, scores, W if j else w, test)
        losses.append(loss)
        accuracies.append(accuracy)
    return torch.stack(losses), torch.stack(accuracies)
