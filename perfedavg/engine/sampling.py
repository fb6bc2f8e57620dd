r"""Random draws of Algorithm 1, all from one explicit ``torch.Generator``.

A seed fixes the whole run: the order of draws is (per round) the client sample, then
for each local step the batches :math:`\mathcal D_t, \mathcal D'_t, \mathcal D''_t` of
all sampled clients at once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from perfedavg.engine.task import ClientData


def num_sampled_clients(r: float, n: int) -> int:
    r"""Users sampled per round, :math:`m = |\mathcal A_k| = \lfloor r n \rfloor` (docs/paper.md §2 [sure]:
    "a set :math:`\mathcal A_k` of :math:`rn` users"; the rounding of a non-integer :math:`rn`
    is this project's rule).

    Rule: round *down*, so a round never takes more than the fraction :math:`r` of the users
    (``r = 0.625, n = 4`` gives ``m = 2``; ``r*n = 3.5`` gives 3, never banker's 4).  ``r`` is
    read as the decimal it prints as (``Fraction(repr(r))``), so ``r = 0.29, n = 100`` gives
    29 although ``0.29 * 100 == 28.999999999999996`` in floating point.  A result of 0
    (``r*n < 1``) is refused by :func:`perfedavg.engine.rounds.check_config_against_task`, never
    bumped up to one user.
    """
    return _floor_rn(float(r), int(n))


@functools.lru_cache(maxsize=256)
def _floor_rn(r: float, n: int) -> int:
    return math.floor(Fraction(repr(r)) * n)


def sample_clients(generator: torch.Generator, n: int, m: int) -> Tensor:
    r"""A uniform draw of ``m`` distinct clients out of ``n`` (without replacement), sorted."""
    return torch.randperm(n, generator=generator)[:m].sort().values


def draw_positions(
    generator: torch.Generator, data: ClientData, clients: Tensor | None, size: int, with_replacement: bool
) -> Tensor:
    r"""Positions ``(m, size)`` into each sampled client's index row (``clients`` None: every row of
    ``data``); see :func:`draw_position_blocks`."""
    return draw_position_blocks(generator, data, clients, (size,), with_replacement)[0]


def draw_position_blocks(
    generator: torch.Generator, data: ClientData, clients: Tensor | None, sizes: Sequence[int], with_replacement: bool
) -> list[Tensor]:
    r"""Positions ``(m, size)`` for each of ``sizes`` in turn, in one call: the very draws of
    consecutive :func:`draw_positions` calls, the generator's stream consumed in the same order
    (the engine draws a whole round's batches this way).

    With replacement: i.i.d. draws from :math:`p_i` (the theory's model, docs/paper.md §3.4), by
    inverse transform: one uniform :math:`u` (float64) per draw, the position being the first
    :math:`j` with :math:`C_{ij} \ge u` (:attr:`ClientData.cumulative_weight`).  That is the algorithm
    of ``torch.multinomial(..., replacement=True)`` on the CPU for two or more samples, the same
    uniforms and comparisons (a test pins it), so runs keep the batches multinomial drew for them
    before; batches of one sample differ (multinomial draws those another way).
    Without replacement: a uniformly random subset of the client's samples (uniform
    :math:`p_i` only), drawn by keeping the ``size`` smallest of i.i.d. uniform keys.

    Drawn on the CPU, from the CPU ``generator``, whatever device ``data`` is on, and returned on
    that device: a seed picks the same batches on CPU and CUDA.
    """
    sizes = tuple(int(s) for s in sizes)
    if with_replacement:
        table = data.cumulative_weight if clients is None else data.cumulative_weight[clients.cpu()]
        uniforms = torch.rand(table.shape[0] * sum(sizes), generator=generator, dtype=torch.float64)
        positions = torch.searchsorted(table, uniforms[_side_by_side(table.shape[0], sizes)])
        return list(torch.split(positions.to(data.index.device), list(sizes), dim=1))
    weight = (data.weight if clients is None else data.weight[clients]).cpu()
    keys = torch.rand((len(sizes), *weight.shape), generator=generator, dtype=torch.float64)
    # sorted: any size is a prefix
    ranked = keys.masked_fill(weight <= 0, 2.0).topk(max(sizes), dim=-1, largest=False).indices
    return [ranked[j, :, :s].to(data.index.device) for j, s in enumerate(sizes)]


@functools.lru_cache(maxsize=64)
def _side_by_side(m: int, sizes: tuple[int, ...]) -> Tensor:
    """Where the numbers of consecutive ``(m, s_j)`` draws land in one ``(m, sum_j s_j)`` table, block
    ``j`` in columns ``s_0 + .. + s_{j-1}`` onwards: entry ``(i, c)`` of block ``j`` is number
    ``m (s_0 + .. + s_{j-1}) + i s_j + c`` of the stream (an index; never written)."""
    starts = [m * sum(sizes[:j]) for j in range(len(sizes))]
    return torch.cat([start + torch.arange(m)[:, None] * s + torch.arange(s) for start, s in zip(starts, sizes)], dim=1)


@dataclass(frozen=True)
class Batch:
    """One batch per stacked client: ``x (m, B, ...)``, ``y (m, B)``."""

    x: Tensor
    y: Tensor

    @staticmethod
    def stack(batches: list[Batch]) -> Batch:
        """Batches of several runs, concatenated along the client dimension."""
        if len(batches) == 1:
            return batches[0]
        return Batch(torch.cat([b.x for b in batches]), torch.cat([b.y for b in batches]))

    def repeat(self, times: int) -> Batch:
        """The same batch stacked ``times`` times along the client dimension (HF's w ± δg share D'')."""
        return Batch(self.x.repeat(times, *([1] * (self.x.dim() - 1))), self.y.repeat(times, 1))


def draw_batch(
    generator: torch.Generator, data: ClientData, clients: Tensor, size: int, with_replacement: bool
) -> Batch:
    """A batch of ``size`` samples for each of ``clients`` (see :func:`draw_positions`)."""
    return gather_batch(data, clients, draw_positions(generator, data, clients, size, with_replacement))


def gather_batch(data: ClientData, clients: Tensor | None, positions: Tensor) -> Batch:
    """The samples at ``positions (m, B)`` of each of ``clients``' index rows (None: of every row), as a
    :class:`Batch`."""
    return next(gather_batches(data, clients, [positions]))


def gather_batches(data: ClientData, clients: Tensor | None, positions: Sequence[Tensor]) -> Iterator[Batch]:
    """The batches at each of ``positions`` (``(m, B_k)`` into each of ``clients``' index rows; None: every
    row), one :class:`Batch` after another.

    The sample indices and labels of all of them are looked up at once (the engine passes a whole
    round's batches: two small ops per round instead of two per batch); each batch's inputs are
    gathered only when the iterator reaches it, just before the local step that reads them, while
    they are in cache (gathering a round's inputs in one call is no faster)."""
    index = (data.index if clients is None else data.index[clients]).gather(1, torch.cat(list(positions), 1))
    labels = data.y.index_select(0, index.reshape(-1)).view(index.shape)
    start = 0
    for p in positions:
        columns = slice(start, start + p.shape[1])
        start = columns.stop
        flat = index[:, columns].reshape(-1)  # index_select on the flat list: faster than advanced indexing
        yield Batch(data.x.index_select(0, flat).view(*p.shape, *data.x.shape[1:]), labels[:, columns])
