r"""An MLP classifier's architecture and the layout of its parameters in flat buffers.

One user's parameters are the flat vector of :func:`perfedavg.engine.models.mlp_cross_entropy`: per
layer :math:`l`, the weight :math:`W_l\in\mathbb R^{d_{l+1}\times d_l}` row-major, then the bias
:math:`b_l`.  ``n`` users' parameters are held either as ``(n, P)`` rows (the oracle interface) or as
a **layer-major stack** (:meth:`MLP.stack`): each layer's weights of all users one contiguous
``(n, d_{l+1}, d_l)`` block, then their biases, so that a layer's GEMM reads and writes its block in
one batched call (into rows, whose blocks are ``P`` apart, torch runs one GEMM per user).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ACTIVATIONS = ("elu", "tanh", "relu")

#: a layer's ``(n, d_{l+1}, d_l)`` weights and ``(n, 1, d_{l+1})`` bias, views into a buffer of ``n`` users
LayerViews = list[tuple[Tensor, Tensor]]
#: per layer, ``(weight, bias)`` views or ``(None, None)``: the optional base of a write (:meth:`MLP.views`)
BaseViews = Sequence[tuple[Tensor | None, Tensor | None]]


class MLP:
    r"""Sizes ``(d_0, ..., d_L)`` and hidden activation of an MLP with softmax cross-entropy, and views
    into the flat buffers that hold ``n`` users' parameters.

    ``spans[l] = (weight start, bias start, end, d_l, d_{l+1})``: offsets of layer ``l`` in one
    user's parameter vector of ``num_params`` values."""

    def __init__(self, sizes: tuple[int, ...], activation: str = "elu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.sizes = tuple(int(s) for s in sizes)
        if len(self.sizes) < 2:
            raise ValueError("an MLP needs at least an input and an output size")
        self.activation = activation
        spans, offset = [], 0
        for din, dout in zip(self.sizes[:-1], self.sizes[1:]):
            spans.append((offset, offset + dout * din, offset + dout * din + dout, din, dout))
            offset += (din + 1) * dout
        self.spans = spans
        self.num_params = offset

    def layers(self, W: Tensor) -> LayerViews:
        """Views ``[(weight (n, d_{l+1}, d_l), bias (n, 1, d_{l+1}))]`` into ``n`` users' parameters ``W``
        (the bias a row, ready to broadcast over a batch: no ``unsqueeze`` per use).

        ``W`` is either ``(n, P)``, one user per row (the oracle's interface), or a *layer-major*
        stack (:meth:`stack`): a 1-D buffer of ``n P`` values holding, layer by layer, the weights of
        all ``n`` users ``(n, d_{l+1}, d_l)`` and then their biases ``(n, d_{l+1})``, each block
        contiguous.  Built with one ``as_strided`` per view, the cheapest way: a local step takes
        several sets of views."""
        start = W.storage_offset()
        if W.dim() == 1 and W.stride(0) == 1 and W.numel() % self.num_params == 0:
            n = W.numel() // self.num_params
            return [
                (
                    W.as_strided((n, dout, din), (dout * din, din, 1), start + n * a),
                    W.as_strided((n, 1, dout), (dout, dout, 1), start + n * b),
                )
                for a, b, _, din, dout in self.spans
            ]
        if W.dim() != 2 or W.stride(1) != 1:
            raise ValueError(
                f"W must be (n, P) with rows of unit stride or a layer-major stack, got shape "
                f"{tuple(W.shape)} strides {W.stride()}"
            )
        n, row = W.shape[0], W.stride(0)
        return [
            (
                W.as_strided((n, dout, din), (row, din, 1), start + a),
                W.as_strided((n, 1, dout), (row, dout, 1), start + b),
            )
            for a, b, _, din, dout in self.spans
        ]

    def views(self, T: Tensor | None) -> BaseViews:
        """The layer views of a buffer ``T`` (:meth:`layers`), or ``(None, None)`` per layer for no buffer."""
        return [(None, None)] * len(self.spans) if T is None else self.layers(T)

    def users(self, W: Tensor) -> int:
        """How many users' parameters ``W`` holds (``(n, P)`` or a layer-major stack of ``n P`` values)."""
        if W.dim() == 1 and W.numel() % self.num_params == 0:
            return W.numel() // self.num_params
        if W.dim() != 2 or W.shape[1] != self.num_params:
            raise ValueError(f"W must be (n, {self.num_params}) or a layer-major stack, got {tuple(W.shape)}")
        return int(W.shape[0])

    def stack(self, W: Tensor, m: int, fill: bool = True) -> Tensor:
        """Each of the ``S`` models ``W (S, P)`` repeated for ``m`` users, as a new layer-major stack of
        ``S m`` users (:meth:`layers`; run ``j`` in users ``j m .. j m + m - 1``); uninitialized
        without ``fill``."""
        S = W.shape[0]
        out = W.new_empty(S * m * self.num_params)
        for s, e in self.pieces() if fill else ():
            out[S * m * s : S * m * e].view(S, m, e - s).copy_(W[:, None, s:e].expand(S, m, e - s))
        return out

    def average(self, U: Tensor, S: int) -> Tensor:
        """The uniform mean ``(S, P)`` of each of ``S`` runs' users in the layer-major stack ``U``
        (:meth:`stack`'s layout: the runs' users consecutive)."""
        n = self.users(U)
        return torch.cat([U[n * s : n * e].view(S, n // S, e - s).mean(1) for s, e in self.pieces()], dim=1)

    def above_first(self, W: Tensor) -> Tensor:
        """The view of ``W``'s values of layers ``>= 1`` (``(n, P)`` or layer-major: the same layers)."""
        s = self.spans[1][0]
        return W[self.users(W) * s :] if W.dim() == 1 else W[:, s:]

    def pieces(self) -> list[tuple[int, int]]:
        """The column ranges ``[s, e)`` of ``(n, P)`` that a layer-major stack keeps as contiguous
        ``(n, e - s)`` blocks: each layer's weights, then its biases."""
        return [piece for a, b, c, _, _ in self.spans for piece in ((a, b), (b, c))]

    def inputs(self, W: Tensor, X: Tensor) -> tuple[Tensor, int]:
        """``X (m, B, *feature_shape)`` as ``(m, B, d_0)`` in ``W``'s type, and how many groups of ``m``
        users ``W`` holds (row ``j m + i`` of ``W`` is evaluated on batch ``i``)."""
        n = self.users(W)
        X = X.reshape(X.shape[0], X.shape[1], -1)
        if X.shape[-1] != self.sizes[0]:
            raise ValueError(f"inputs have {X.shape[-1]} features, the MLP expects {self.sizes[0]}")
        m = X.shape[0]
        if n % m:
            raise ValueError(f"{n} parameter rows are not a multiple of {m} batches")
        if X.dtype != W.dtype:
            X = X.to(W.dtype)
        return X, n // m
