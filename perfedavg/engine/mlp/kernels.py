r"""The MLP's kernels, batched over users: the hidden activation and its derivatives, the softmax
cross-entropy's gradient, the forward pass, and the fused GEMM-and-write of a layer's gradient.

Forward (:math:`h_0 = x`, :math:`\phi` the hidden activation, none on the last layer):

.. math:: z_l = h_l W_l^\top + b_l,\qquad h_{l+1} = \phi(z_l),\qquad s = z_{L-1},\qquad
          f = \tfrac1B\textstyle\sum_b -\log\mathrm{softmax}(s_b)_{y_b}.

Every layer is one ``bmm``/``baddbmm`` over the user dimension on views of the flat buffers
(:meth:`perfedavg.engine.mlp.layout.MLP.layers`).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from perfedavg.engine.mlp.layout import LayerViews

#: entries per user of a layer's weight block from which :func:`write` fuses the GEMM with the write
#: into ``(n, P)`` rows on several threads (the first layer of the paper's MLPs, 784x80 or 3072x80, is
#: above it; a layer-major stack's contiguous blocks are always written fused)
FUSED_WRITE_MIN = 1 << 14


def hidden(Z: Tensor, activation: str, second: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    r"""Apply :math:`\phi` to ``Z`` (overwritten); return ``(h, phi'(z), phi''(z) or None)``.

    ELU (α = 1) as :math:`\phi(z) = \max(z,\, e^{\min(z,0)} - 1)` (:math:`e^z - 1 \ge z`: the
    max picks :math:`z` for :math:`z > 0`, where :math:`e^0 - 1 = 0` exactly, and :math:`e^z - 1`
    otherwise), with :math:`\phi' = e^{\min(z,0)}` and
    :math:`\phi'' = \phi'\,[z\le 0] = \phi' - [z > 0]` (exactly: :math:`\phi' = 1` where
    :math:`z > 0`): torch's ELU kernel evaluates ``expm1`` one element at a time on the CPU, while
    ``exp`` is vectorized, and the max is one op fewer than
    :math:`(e^{\min(z,0)} - 1) + \max(z, 0)`.  For :math:`z < 0` it rounds :math:`e^z - 1` to within
    one unit of 1's last place (6e-8 in float32, 1.1e-16 in float64; where that rounding falls below
    :math:`z`, the max returns :math:`z`, the nearer), where ``expm1`` is exact to :math:`h`'s own
    last place: the difference is below the round-off of the sums the activation feeds.
    The other derivatives are written in terms of :math:`h=\phi(z)`: tanh
    :math:`\phi' = 1-h^2`, :math:`\phi'' = -2h(1-h^2)`; ReLU :math:`\phi' = [z>0]`, :math:`\phi''=0`.
    """
    E: Tensor | None
    if activation == "elu":  # max(z, exp(min(z, 0)) - 1): see the docstring
        D = Z.clamp(max=0.0).exp_()
        H = torch.maximum(Z, D - 1.0, out=Z)
        E = D - (H > 0).to(H.dtype) if second else None  # D is exactly 1 where z > 0; h > 0 exactly where z > 0
    elif activation == "tanh":
        H = Z.tanh_()
        D = torch.addcmul(torch.ones_like(H), H, H, value=-1.0)
        E = (H * D).mul_(-2.0) if second else None
    elif activation == "relu":
        H = Z.relu_()
        D = (H > 0).to(H.dtype)
        E = torch.zeros_like(H) if second else None
    else:  # pragma: no cover - checked by MLP
        raise ValueError(activation)
    return H, D, E


def softmax_ce_grad(S: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(p, G)``: :math:`p=\mathrm{softmax}(s)` and :math:`G = (p - e_y)/B`, the gradient of the
    batch-mean cross-entropy with respect to the scores ``S (n, B, C)``.

    ``torch.softmax`` (faster than a max-shifted ``exp`` by hand) and a cached ``-1``
    (:func:`minus_ones`) for :math:`-e_y`, added without copying ``p`` first."""
    p = torch.softmax(S, -1)
    return p, p.scatter_add(-1, Y.unsqueeze(-1), minus_ones(tuple(Y.shape), S.dtype, S.device)).mul_(1.0 / S.shape[-2])


@lru_cache(maxsize=64)
def minus_ones(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A read-only ``-1`` of shape ``shape + (1,)`` (one value, expanded): :func:`softmax_ce_grad`'s
    :math:`-e_y` for ``scatter_add``, built once per batch shape."""
    return torch.full((1,) * (len(shape) + 1), -1.0, dtype=dtype, device=device).expand(*shape, 1)


def first_layer(X: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    r""":math:`z_0 = x W_0^\top + b_0` for ``groups`` stacks of users sharing ``X``."""
    if groups == 1:
        return torch.baddbmm(bias, X, weight.transpose(1, 2))
    m = X.shape[0]
    Z = X.new_empty((weight.shape[0], X.shape[1], weight.shape[1]))
    for j in range(groups):
        rows = slice(j * m, (j + 1) * m)
        torch.baddbmm(bias[rows], X, weight[rows].transpose(1, 2), out=Z[rows])
    return Z


def grouped(X: Tensor, groups: int) -> Tensor:
    """``X`` repeated for ``groups`` stacks of users."""
    return X if groups == 1 else X.repeat(groups, 1, 1)


#: scores, then per hidden layer h_l (l >= 1), phi'(z_{l-1}) and (only when asked) phi''(z_{l-1})
Forward = tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]


def forward_from(layers: LayerViews, Z: Tensor, activation: str, second: bool = False) -> Forward:
    """Layers ``1..L-1`` from the first layer's pre-activations ``Z`` (overwritten).  Returns the
    scores and, for every hidden layer, ``h_l`` (``l >= 1``), :math:`\\phi'` and (``second``; else an
    empty list) :math:`\\phi''`."""
    H: list[Tensor] = []
    D: list[Tensor] = []
    E: list[Tensor] = []
    for l in range(1, len(layers)):
        h, d, e = hidden(Z, activation, second)
        H.append(h)
        D.append(d)
        if e is not None:
            E.append(e)
        weight, bias = layers[l]
        Z = torch.baddbmm(bias, h, weight.transpose(1, 2))
    return Z, H, D, E


def write(out: Tensor, base: Tensor | None, scale: float, A: Tensor, Bm: Tensor, accumulate: bool = False) -> None:
    r"""``out = base + scale * A @ Bm`` (or ``out += scale * A @ Bm`` when ``accumulate``).

    ``out`` is a layer's view into a buffer of ``n`` users (:meth:`perfedavg.engine.mlp.layout.MLP.layers`):
    in a layer-major stack the whole ``(n, d_{l+1}, d_l)`` block is contiguous; in ``(n, P)`` rows each
    user's block is, but the stack is not.  Two ways: the GEMM accumulating into the view itself
    (``baddbmm``, :math:`\beta = 1`: one pass over the parameters), or a GEMM into a fresh contiguous
    tensor followed by one fused elementwise ``add`` into the view.  Into a contiguous block the fused
    write is one batched GEMM and the faster on every layer.  Into rows it depends on the block's size
    and the thread count: with one thread the fused write (on the small layers it is not faster, and
    is kept so that one-thread results keep their bits); with several threads the fused write on
    blocks of at least :data:`FUSED_WRITE_MIN` entries per user and the unfused one below.

    ``base`` may be ``out`` itself (the same view object): the write then accumulates in place."""
    if base is out:
        base, accumulate = None, True
    if (accumulate or base is not None) and (
        torch.get_num_threads() == 1 or out.is_contiguous() or out.shape[-2] * out.shape[-1] >= FUSED_WRITE_MIN
    ):
        if accumulate:
            out.baddbmm_(A, Bm, alpha=scale)
        elif base is not None:  # always, by the condition above
            torch.baddbmm(base, A, Bm, alpha=scale, out=out)
        return
    AB = torch.bmm(A, Bm)
    if accumulate:
        out.add_(AB, alpha=scale)
    elif base is None:
        torch.mul(AB, scale, out=out)
    else:
        torch.add(base, AB, alpha=scale, out=out)


def write_bias(out: Tensor, base: Tensor | None, scale: float, G: Tensor, accumulate: bool = False) -> None:
    r"""``out = base + scale * sum_b G`` (or ``out += ...``; also when ``base`` is ``out``)."""
    if base is out:
        base, accumulate = None, True
    s = G.sum(1, keepdim=True)
    if accumulate:
        out.add_(s, alpha=scale)
    elif base is None:
        torch.mul(s, scale, out=out)
    else:
        torch.add(base, s, alpha=scale, out=out)
