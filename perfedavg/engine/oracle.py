r"""Gradient oracles, and the fast path the round loop runs them by.

* :class:`Oracle` (declared by :mod:`perfedavg.engine.local`, whose steps use it): ``grad`` and ``hvp``
  for stacked clients;
* :class:`FastPath`: what the round loop (:mod:`perfedavg.engine.rounds`) asks for: the layout of a
  round's iterates (``stack``, ``average``), the local steps, and whole rounds in the users' sample
  space where a model has them;
* :func:`make_oracle`: the task's oracle and its fast path, one object chosen once per run: the task's
  own (e.g. :class:`perfedavg.engine.mlp.MLPOracle`, fused steps), else the generic fast path
  (:class:`LocalSteps`: :mod:`perfedavg.engine.local`'s steps on ``(m, P)`` rows) over its oracle or
  :class:`AutogradOracle`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from perfedavg.algorithms import Algorithm, PerFedAvgAlgorithm
from perfedavg.engine import local
from perfedavg.engine.local import Oracle, PerFedAvgBatches, StepSizes
from perfedavg.engine.sampling import Batch
from perfedavg.engine.task import ClientData, PerSampleLoss, Task

__all__ = ["AutogradOracle", "FastPath", "GenericFastPath", "LocalSteps", "Oracle", "OracleWithFastPath", "make_oracle"]


@runtime_checkable
class FastPath(Protocol):
    r"""How the round loop runs a round's local steps on ``S`` runs of ``m`` users each."""

    def stack(self, W: Tensor, m: int, fill: bool = True) -> Tensor:
        """Each run's model ``W (S, P)`` repeated for its ``m`` users (uninitialized without ``fill``), in
        the layout the steps read and write."""
        ...

    def average(self, U: Tensor, S: int) -> Tensor:
        """The uniform mean ``(S, P)`` of each run's users in ``U`` (:meth:`stack`'s layout)."""
        ...

    def fedavg_step(self, W: Tensor, batch: Batch, h: StepSizes, out: Tensor | None = None) -> Tensor:
        """:func:`perfedavg.engine.local.fedavg_step` (``W`` in :meth:`stack`'s layout)."""
        ...

    def per_fedavg_step(
        self,
        W: Tensor,
        batches: PerFedAvgBatches,
        h: StepSizes,
        algorithm: PerFedAvgAlgorithm,
        out: Tensor | None = None,
    ) -> Tensor:
        """:func:`perfedavg.engine.local.per_fedavg_step` (``W`` in :meth:`stack`'s layout)."""
        ...

    def prefers_sample_space(self, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]) -> bool:
        """Whether a round on ``data`` runs as :meth:`round_in_sample_space`; may refuse a forced strategy
        that cannot run (:class:`perfedavg.errors.UsageError`)."""
        ...

    def round_in_sample_space(
        self,
        W: Tensor,
        data: ClientData,
        clients: Tensor,
        steps: Sequence[tuple[Tensor, ...]],
        h: StepSizes,
        algorithm: Algorithm,
    ) -> Tensor:
        """A whole round of ``S`` runs, :math:`w_{k+1}` ``(S, P)``, from each run's :math:`w_k` ``W (S, P)``,
        the sampled ``clients (S m,)`` and, per local step, the batches' positions in each user's index
        row; called only where :meth:`prefers_sample_space` says so."""
        ...


@runtime_checkable
class OracleWithFastPath(Oracle, FastPath, Protocol):
    """An oracle together with the fast path the round loop runs it by (what :func:`make_oracle` returns)."""


class LocalSteps(ABC):
    """The generic fast path of an oracle: :mod:`perfedavg.engine.local`'s steps on ``(S m, P)`` rows,
    never in sample space."""

    @abstractmethod
    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor: ...

    @abstractmethod
    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor: ...

    def stack(self, W: Tensor, m: int, fill: bool = True) -> Tensor:
        S, P = W.shape
        return W[:, None, :].expand(S, m, P).reshape(S * m, P).clone() if fill else W.new_empty((S * m, P))

    def average(self, U: Tensor, S: int) -> Tensor:
        return U.view(S, -1, U.shape[-1]).mean(1)

    def fedavg_step(self, W: Tensor, batch: Batch, h: StepSizes, out: Tensor | None = None) -> Tensor:
        return local.fedavg_step(self, W, batch, h, out)

    def per_fedavg_step(
        self,
        W: Tensor,
        batches: PerFedAvgBatches,
        h: StepSizes,
        algorithm: PerFedAvgAlgorithm,
        out: Tensor | None = None,
    ) -> Tensor:
        return local.per_fedavg_step(self, W, batches, h, algorithm, out)

    def prefers_sample_space(self, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]) -> bool:
        return False

    def round_in_sample_space(
        self,
        W: Tensor,
        data: ClientData,
        clients: Tensor,
        steps: Sequence[tuple[Tensor, ...]],
        h: StepSizes,
        algorithm: Algorithm,
    ) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} runs rounds per local step only")


class AutogradOracle(LocalSteps):
    """Exact gradients and Hessian-vector products by reverse-mode autograd, from any task's per-sample
    loss (clients are independent, so the gradient of the summed loss is each client's own gradient)."""

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


class GenericFastPath(LocalSteps):
    """A task's own oracle that has ``grad`` and ``hvp`` only (e.g. a closed form), with the generic fast path."""

    def __init__(self, oracle: Oracle):
        self.oracle = oracle

    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return self.oracle.grad(W, X, Y)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return self.oracle.hvp(W, V, X, Y)


def make_oracle(task: Task) -> OracleWithFastPath:
    """The task's oracle and its fast path (module docstring); a factory whose oracle has neither
    ``grad`` and ``hvp`` is a :class:`TypeError`."""
    if task.oracle_factory is None:
        return AutogradOracle(task.per_sample_loss)
    oracle = task.oracle_factory()
    if isinstance(oracle, OracleWithFastPath):
        return oracle
    if isinstance(oracle, Oracle):
        return GenericFastPath(oracle)
    raise TypeError(f"{task.name}'s oracle_factory made a {type(oracle).__name__}, which has no grad and hvp")
