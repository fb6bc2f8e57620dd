r"""Gradient oracles: stochastic gradients and Hessian-vector products for stacked clients.

The local steps of :mod:`perfedavg.engine.local` only ever ask for

* ``grad(W, X, Y)``: :math:`\tilde\nabla f_i(w_i, \mathcal D_i) = \frac1{|\mathcal D_i|}\sum_{\theta\in\mathcal D_i}\nabla l(w_i;\theta)`
  for every stacked client ``i`` (``W (m, P)``, ``X (m, B, ...)``, ``Y (m, B)`` -> ``(m, P)``);
* ``hvp(W, V, X, Y)``: :math:`\tilde\nabla^2 f_i(w_i, \mathcal D_i)\, v_i`, exactly.

:class:`AutogradOracle` serves any task from its per-sample loss with plain autograd
(clients are independent, so the gradient of the summed loss is each client's own
gradient).  A model may provide a faster oracle (``Task.oracle_factory``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from perfedavg.engine.task import PerSampleLoss


class AutogradOracle:
    """Exact gradients and Hessian-vector products by reverse-mode autograd."""

    def __init__(self, per_sample_loss: PerSampleLoss):
        self.per_sample_loss = per_sample_loss

    def _batch_loss(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return self.per_sample_loss(W, X, Y).mean(-1).sum()

    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Mini-batch gradients :math:`\tilde\nabla f_i(w_i,\mathcal D_i)`, one row per client."""
        with torch.enable_grad():
            W = W.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._batch_loss(W, X, Y), W)
        return g

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Exact :math:`\tilde\nabla^2 f_i(w_i,\mathcal D_i)\,v_i` by double backward (Pearlmutter)."""
        with torch.enable_grad():
            W = W.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._batch_loss(W, X, Y), W, create_graph=True)
            (hv,) = torch.autograd.grad((g * V.detach()).sum(), W)
        return hv


def make_oracle(task) -> AutogradOracle:
    """The task's own oracle when it has one, else :class:`AutogradOracle`."""
    if task.oracle_factory is not None:
        return task.oracle_factory()
    return AutogradOracle(task.per_sample_loss)
