r"""Models as pure functions of one flat parameter vector.

Each client's parameters live in one flat buffer (a stack of clients is one tensor, updated in place);
layers are views into it.  Every function broadcasts over leading dimensions, so a
stack of clients ``W (m, P)`` with inputs ``X (m, B, d)`` runs as batched matmuls.

Flat layout of :func:`mlp_scores` for ``sizes = (d_0, ..., d_L)``: for each layer
``l``, the weight :math:`W_l \in \mathbb{R}^{d_{l+1}\times d_l}` row-major, then the
bias :math:`b_l \in \mathbb{R}^{d_{l+1}}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from itertools import pairwise

import torch
import torch.nn.functional as F_
from torch import Tensor


def mlp_num_params(sizes: tuple[int, ...]) -> int:
    """Number of parameters of an MLP with layer widths ``sizes``: :math:`\\sum_l (d_l+1)d_{l+1}`."""
    return sum((din + 1) * dout for din, dout in pairwise(sizes))


def mlp_layers(W: Tensor, sizes: tuple[int, ...]) -> list[tuple[Tensor, Tensor]]:
    """Views ``[(W_l (..., d_{l+1}, d_l), b_l (..., d_{l+1}))]`` into the flat parameters ``W (..., P)``."""
    layers, offset = [], 0
    for din, dout in pairwise(sizes):
        weight = torch.unflatten(W[..., offset : offset + dout * din], -1, (dout, din))
        offset += dout * din
        bias = W[..., offset : offset + dout]
        offset += dout
        layers.append((weight, bias))
    return layers


def mlp_scores(W: Tensor, X: Tensor, sizes: tuple[int, ...], activation: str = "elu") -> Tensor:
    r"""Class scores of an MLP: :math:`h_{l+1} = \phi(W_l h_l + b_l)`, no activation on the last layer.

    ``W (..., P)``, ``X (..., B, d_0)`` (inputs are flattened beyond the batch dimension
    by the caller) -> ``(..., B, d_L)``.  ``sizes=(d, C)`` is multinomial logistic
    (softmax) regression.
    """
    activations: dict[str, Callable[[Tensor], Tensor]] = {"elu": F_.elu, "tanh": torch.tanh, "relu": F_.relu}
    act = activations[activation]
    h = X
    layers = mlp_layers(W, sizes)
    for l, (weight, bias) in enumerate(layers):
        h = torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        if l < len(layers) - 1:
            h = act(h)
    return h


def cross_entropy(scores: Tensor, Y: Tensor) -> Tensor:
    r"""Per-sample cross-entropy :math:`-\log \mathrm{softmax}(s)_y`, shape ``Y.shape``."""
    return -torch.log_softmax(scores, dim=-1).gather(-1, Y.unsqueeze(-1)).squeeze(-1)


def mlp_cross_entropy(W: Tensor, X: Tensor, Y: Tensor, sizes: tuple[int, ...], activation: str = "elu") -> Tensor:
    """Per-sample loss :math:`l(w;(x,y))` of an MLP classifier, shape ``(..., B)``."""
    return cross_entropy(mlp_scores(W, X, sizes, activation), Y)


def mlp_init(generator: torch.Generator, sizes: tuple[int, ...], dtype: torch.dtype = torch.float64) -> Tensor:
    r"""PyTorch's default ``nn.Linear`` initialization, :math:`U(-1/\sqrt{d_l}, 1/\sqrt{d_l})`, flat."""
    parts = []
    for din, dout in pairwise(sizes):
        bound = 1.0 / math.sqrt(din)
        parts.append((torch.rand(dout * din + dout, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
    return torch.cat(parts).to(dtype)


def mlp(sizes: tuple[int, ...], activation: str = "elu") -> tuple[partial[Tensor], partial[Tensor], partial[Tensor]]:
    """``(per_sample_loss, scores, init)`` of an MLP with layer widths ``sizes``."""
    sizes = tuple(int(s) for s in sizes)
    return (
        partial(mlp_cross_entropy, sizes=sizes, activation=activation),
        partial(mlp_scores, sizes=sizes, activation=activation),
        partial(mlp_init, sizes=sizes),
    )
