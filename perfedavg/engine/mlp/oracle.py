r"""The MLP oracle: the oracle interface and the engine's fast path
(:class:`perfedavg.engine.oracle.FastPath`) of an MLP classifier, from the subpackage's parts.

Same model, loss and flat parameter layout as :func:`perfedavg.engine.models.mlp_cross_entropy`, same
answers as :class:`perfedavg.engine.oracle.AutogradOracle`, without autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from perfedavg.algorithms import Algorithm, PerFedAvgAlgorithm
from perfedavg.engine.local import PerFedAvgBatches, StepSizes
from perfedavg.engine.mlp import derivatives, sample_space
from perfedavg.engine.mlp import steps as fused
from perfedavg.engine.mlp.layout import MLP
from perfedavg.engine.mlp.sample_space import ROUND_STRATEGIES
from perfedavg.engine.oracle import OracleWithFastPath
from perfedavg.engine.sampling import Batch
from perfedavg.engine.task import ClientData


class MLPOracle(MLP):
    r"""Exact mini-batch gradients and Hessian-vector products of an MLP with softmax
    cross-entropy, for stacked users ``W (n, P)``, and the fused steps and whole rounds the engine
    runs it by.

    ``sizes = (d_0, ..., d_L)``; ``activation`` one of ``elu``, ``tanh``, ``relu`` (hidden
    layers only); ``rounds`` one of :data:`perfedavg.engine.mlp.sample_space.ROUND_STRATEGIES`
    (``"auto"``: the cheaper of per-step and sample-space rounds).  Inputs ``X (m, B, *feature_shape)``
    are flattened to ``(m, B, d_0)``.

    Shared batches: ``grad`` also accepts ``W`` with ``k * m`` rows for ``X`` with ``m``:
    row ``j*m + i`` is evaluated on batch ``i`` (HF's two points :math:`w\pm\delta g` on the
    same :math:`\mathcal D''`), without copying the batch.
    """

    def __init__(self, sizes: tuple[int, ...], activation: str = "elu", rounds: str = "auto"):
        super().__init__(sizes, activation)
        if rounds not in ROUND_STRATEGIES:
            raise ValueError(f"rounds={rounds!r} is not one of {', '.join(ROUND_STRATEGIES)}")
        self.rounds = rounds
        #: (data, dtype, X (n, M, d_0), Gram (n, M, M)) of the last data set run in sample space
        self._space: tuple[ClientData, torch.dtype, Tensor, Tensor] | None = None

    # -- the oracle interface (perfedavg.engine.local.Oracle) --------------------------------
    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Mini-batch gradients :math:`\tilde\nabla f_i(w_i,\mathcal D_i)`, one row per user
        (``W (k*m, P)`` with ``X (m, B, ...)``: row ``j*m+i`` on batch ``i``)."""
        X, groups = self.inputs(W, X)
        return derivatives.backward(self, W, X, Y, groups, torch.empty_like(W), None, 1.0)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Exact :math:`\tilde\nabla^2 f_i(w_i,\mathcal D_i)\, v_i` by the R-operator
        (:mod:`perfedavg.engine.mlp.derivatives`)."""
        X, groups = self.inputs(W, X)
        return derivatives.hvp(self, W, V, X, Y, groups, torch.empty_like(W))

    def descend(
        self, W: Tensor, step: float, X: Tensor, Y: Tensor, at: Tensor | None = None, out: Tensor | None = None
    ) -> Tensor:
        """:func:`perfedavg.engine.mlp.steps.descend`."""
        return fused.descend(self, W, step, X, Y, at, out)

    # -- the fast path (perfedavg.engine.oracle.FastPath); stack and average are MLP's -------
    def fedavg_step(self, W: Tensor, batch: Batch, h: StepSizes, out: Tensor | None = None) -> Tensor:
        """:func:`perfedavg.engine.mlp.steps.fedavg_step`."""
        return fused.fedavg_step(self, W, batch, h, out)

    def per_fedavg_step(
        self,
        W: Tensor,
        batches: PerFedAvgBatches,
        h: StepSizes,
        algorithm: PerFedAvgAlgorithm,
        out: Tensor | None = None,
    ) -> Tensor:
        """:func:`perfedavg.engine.mlp.steps.per_fedavg_step`."""
        return fused.per_fedavg_step(self, W, batches, h, algorithm, out)

    def prefers_sample_space(self, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]) -> bool:
        """:func:`perfedavg.engine.mlp.sample_space.prefers_sample_space` under this oracle's ``rounds``."""
        return sample_space.prefers_sample_space(self, self.rounds, data, algorithm, tau, batches)

    def sample_space_bytes(self, data: ClientData) -> int:
        """:func:`perfedavg.engine.mlp.sample_space.sample_space_bytes`."""
        return sample_space.sample_space_bytes(self, data)

    def first_layer_costs(
        self, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]
    ) -> dict[str, float]:
        """:func:`perfedavg.engine.mlp.sample_space.first_layer_costs`."""
        return sample_space.first_layer_costs(self, data, algorithm, tau, batches)

    def _sample_space(self, data: ClientData, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        r"""Each user's inputs and Gram matrix (:func:`perfedavg.engine.mlp.sample_space.inputs_and_grams`),
        computed once per data set and type and kept."""
        if self._space is None or self._space[0] is not data or self._space[1] != dtype:
            self._space = (data, dtype, *sample_space.inputs_and_grams(data, dtype))
        return self._space[2], self._space[3]

    def round_in_sample_space(
        self,
        W: Tensor,
        data: ClientData,
        clients: Tensor,
        steps: Sequence[tuple[Tensor, ...]],
        h: StepSizes,
        algorithm: Algorithm,
    ) -> Tensor:
        """:func:`perfedavg.engine.mlp.sample_space.round_in_sample_space` on ``data``'s cached inputs."""
        X, K = self._sample_space(data, W.dtype)
        return sample_space.round_in_sample_space(self, X, K, W, data, clients, steps, h, algorithm)


def mlp_oracle_factory(
    sizes: tuple[int, ...], activation: str = "elu", rounds: str = "auto"
) -> Callable[[], OracleWithFastPath]:
    """A zero-argument factory for :attr:`perfedavg.engine.task.Task.oracle_factory` (typed as the
    protocols :class:`MLPOracle` implements, which the type checker thereby verifies)."""
    return partial(MLPOracle, tuple(int(s) for s in sizes), activation, rounds)
