r"""The task interface shared by ``synthetic/`` and ``empirical/``.

A task gives the engine

* a model as a *per-sample loss* of a flat parameter vector,
  :math:`l(w;\theta)` with :math:`\theta=(x,y)`, written so that it broadcasts over
  leading dimensions: ``per_sample_loss(W, X, Y)`` with ``W`` of shape ``(..., P)``,
  ``X`` of shape ``(..., B, *feature_shape)`` and ``Y`` of shape ``(..., B)`` returns
  ``(..., B)``.  Stacking clients in the leading dimension is how the engine
  vectorizes them; a single client is the case without leading dimensions;
* ``scores(W, X)`` (``(..., B, C)`` class scores) for accuracy;
* per-client train and test data as :class:`ClientData`: each client's data
  distribution :math:`p_i` is a probability vector over its own list of sample
  indices into one pooled tensor, so

  .. math:: f_i(w) = \mathbb{E}_{\theta\sim p_i}[l(w;\theta)]
            = \sum_j p_{ij}\, l(w; \theta_{\mathrm{index}_{ij}})

  is computed *exactly* from full local data (docs/paper.md §1), and a batch is a draw
  from :math:`p_i`;
* optionally the constants of docs/paper.md §3 when they are known exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from perfedavg.errors import UsageError

#: a client's weights count as uniform within this relative error: p / p.sum() of equal p is 1/k up to
#: an ulp or two; a real skew is far larger
UNIFORM_RTOL = 1e-12
#: ulps of the weights' type that rounding 1/k to it may cost (one; a margin of four)
ULPS = 4

PerSampleLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
Scores = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ClientData:
    r"""Per-client data: pooled samples plus each client's distribution over them.

    ``x``: ``(S, *feature_shape)`` pooled inputs; ``y``: ``(S,)`` pooled labels;
    ``index``: ``(n, M)`` long, client ``i``'s sample indices (padded); ``weight``:
    ``(n, M)`` the probabilities :math:`p_{ij}` (rows sum to one, zero on padding);
    ``count``: ``(n,)`` number of real entries per row.
    """

    x: Tensor
    y: Tensor
    index: Tensor
    weight: Tensor
    count: Tensor

    @property
    def n_clients(self) -> int:
        return int(self.index.shape[0])

    @property
    def min_count(self) -> int:
        return int(self.count.min())

    def has_uniform_weights(self) -> bool:
        """Every client's :math:`p_{ij}` is uniform over its samples (``1 / count`` each, up to
        :data:`UNIFORM_RTOL`, or a few ulps of the weights' own type: float32 weights of 1/k are off by one):
        what drawing batches without replacement assumes."""
        real = torch.arange(self.weight.shape[1]) < self.count.cpu()[:, None]
        uniform = torch.where(real, 1.0 / self.count.cpu().double()[:, None], 0.0)
        rtol = max(UNIFORM_RTOL, ULPS * torch.finfo(self.weight.dtype).eps)
        return bool(torch.allclose(self.weight.cpu().double(), uniform, rtol=rtol, atol=0.0))

    @cached_property
    def cumulative_weight(self) -> Tensor:
        r"""Each row's normalized cumulative distribution :math:`C_{ij} = \sum_{k\le j} p_{ik} / \sum_k p_{ik}`,
        float64 on the CPU, computed once per data set as ``torch.multinomial``'s CPU kernel does: a
        running sum in the weights' own type (sequential, as ``numpy.add.accumulate``), divided by the
        row's total, the last entry set to 1 (the table of :func:`perfedavg.engine.sampling.draw_position_blocks`)."""
        running = torch.from_numpy(np.add.accumulate(self.weight.cpu().numpy(), axis=1))
        running /= running[:, -1:].clone()
        running[:, -1] = 1.0
        return running.to(torch.float64)

    def gather(self, clients: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Full local data of ``clients`` (all by default): ``X (m, M, ...)``, ``Y (m, M)``, ``P (m, M)``."""
        index = self.index if clients is None else self.index[clients]
        weight = self.weight if clients is None else self.weight[clients]
        return self.x[index], self.y[index], weight

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> ClientData:
        x = self.x.to(device=device, dtype=dtype) if self.x.is_floating_point() else self.x.to(device)
        return ClientData(
            x=x,
            y=self.y.to(device),
            index=self.index.to(device),
            weight=self.weight.to(device=device, dtype=dtype),
            count=self.count.to(device),
        )

    @staticmethod
    def from_lists(
        x: Tensor, y: Tensor, client_indices: Sequence[Any], weights: Sequence[Any] | None = None
    ) -> ClientData:
        """Build from one index list (and optional probability list) per client; uniform by default."""
        n = len(client_indices)
        width = max(len(ix) for ix in client_indices)
        index = torch.zeros(n, width, dtype=torch.long)
        weight = torch.zeros(n, width, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.long)
        for i, ix in enumerate(client_indices):
            ix = torch.as_tensor(ix, dtype=torch.long)
            k = len(ix)
            index[i, :k] = ix
            if weights is None:
                weight[i, :k] = 1.0 / k
            else:
                p = torch.as_tensor(weights[i], dtype=torch.float64)
                weight[i, :k] = p / p.sum()
            count[i] = k
        return ClientData(x=x, y=y, index=index, weight=weight, count=count)


@dataclass(frozen=True)
class Task:
    """A federated learning problem the engine can run (see the module docstring)."""

    name: str
    per_sample_loss: PerSampleLoss
    scores: Scores
    init_params: Callable[[torch.Generator], Tensor]
    train: ClientData
    test: ClientData
    #: draw batches i.i.d. from p_i (True: the theory's model) or without replacement
    batch_with_replacement: bool = True
    #: exact constants of docs/paper.md §3 where known (L, rho, B, sigma_G, ...), else empty
    constants: Mapping[str, float] = field(default_factory=dict)
    #: optional own gradient oracle for this model: a zero-argument callable returning a
    #: :class:`perfedavg.engine.local.Oracle`, with or without its own fast path
    #: (:func:`perfedavg.engine.oracle.make_oracle`)
    oracle_factory: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        for split, data in (("train", self.train), ("test", self.test)):
            if not self.batch_with_replacement and not data.has_uniform_weights():
                raise UsageError(
                    f"task {self.name!r}: batches drawn without replacement (batch_with_replacement=False) are "
                    f"uniform over a user's samples, but its {split} weights p_i are not uniform: draw with "
                    "replacement (the theory's model), or give every sample of a user the same weight"
                )

    description: str = ""
    label: str = ""
    #: the exact constants of given users' data (``constants`` is this of ``train``), so that :func:`hold_out`
    #: restates them for the training users alone; None where the task has no exact constants
    constants_of: Callable[[ClientData], Mapping[str, float]] | None = None
    #: the users held out of training (new users, :func:`hold_out`): their training and test data, evaluated
    #: like the training users' but never sampled, read or used by a round; None when every user trains
    new_train: ClientData | None = None
    new_test: ClientData | None = None
    #: each user's group where the split has groups (the paper's split: 0 = five classes, 1 = two), for the
    #: training users then (``new_groups``) the new users, else empty
    groups: tuple[int, ...] = ()
    new_groups: tuple[int, ...] = ()
    #: the training users' and the new users' numbers in the split before :func:`hold_out` (empty: 0..n-1, none)
    users: tuple[int, ...] = ()
    new_users: tuple[int, ...] = ()

    @property
    def n_clients(self) -> int:
        return self.train.n_clients

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Task:
        moved = replace(self, train=self.train.to(dtype, device), test=self.test.to(dtype, device))
        if self.new_train is None or self.new_test is None:
            return moved
        return replace(moved, new_train=self.new_train.to(dtype, device), new_test=self.new_test.to(dtype, device))


def client_rows(data: ClientData, rows: Sequence[int]) -> ClientData:
    """The users ``rows`` of ``data`` (in that order), on the same pooled samples (nothing copied but their rows)."""
    at = torch.as_tensor(list(rows), dtype=torch.long, device=data.index.device)
    return ClientData(x=data.x, y=data.y, index=data.index[at], weight=data.weight[at], count=data.count[at])


def hold_out(task: Task, held: Sequence[int]) -> Task:
    """``task`` with the users ``held`` (numbers into its users, at least one user left) moved out of
    training into ``new_train`` / ``new_test``: the round loop samples, reads and averages the others only,
    and the evaluation measures both (:func:`perfedavg.engine.rounds.evaluate`); exact constants are restated for
    the training users (``constants_of``: their mixture, their maxima).  No held user: ``task`` itself."""
    if not held:
        return task
    n = task.n_clients
    chosen = sorted({int(i) for i in held})
    if chosen[0] < 0 or chosen[-1] >= n or len(chosen) >= n:
        raise ValueError(f"cannot hold out users {chosen} of {n}: numbers in 0..{n - 1}, at least one user left")
    kept = [i for i in range(n) if i not in set(chosen)]
    groups = task.groups
    train = client_rows(task.train, kept)
    return replace(
        task,
        train=train,
        constants=task.constants_of(train) if task.constants_of is not None else task.constants,
        test=client_rows(task.test, kept),
        new_train=client_rows(task.train, chosen),
        new_test=client_rows(task.test, chosen),
        groups=tuple(groups[i] for i in kept) if groups else (),
        new_groups=tuple(groups[i] for i in chosen) if groups else (),
        users=tuple(kept),
        new_users=tuple(chosen),
    )
