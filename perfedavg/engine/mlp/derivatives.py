r"""Exact mini-batch gradients and Hessian-vector products of the MLP, written straight into
preallocated parameter buffers (no autograd).

Backward (``G_l`` the gradient of :math:`f` with respect to :math:`z_l`; forward in
:mod:`perfedavg.engine.mlp.kernels`):

.. math:: G_{L-1} = (\mathrm{softmax}(s) - e_y)/B,\quad
          \partial_{W_l} f = G_l^\top h_l,\quad \partial_{b_l} f = \textstyle\sum_b G_l,\quad
          G_{l-1} = (G_l W_l)\odot\phi'(z_{l-1}).

Hessian-vector products use Pearlmutter's R-operator (forward-over-reverse by hand,
Pearlmutter 1994, "Fast exact multiplication by the Hessian"): with direction
:math:`v = (V_l, c_l)` and :math:`\mathcal R\{\cdot\}` the directional derivative along
:math:`v`,

.. math:: \mathcal R z_l = \mathcal R h_l\, W_l^\top + h_l V_l^\top + c_l,\quad
          \mathcal R h_{l+1} = \phi'(z_l)\odot\mathcal R z_l,\quad \mathcal R h_0 = 0,

.. math:: \mathcal R G_{L-1} = \tfrac1B\, p\odot(\mathcal R s - \langle p, \mathcal R s\rangle),\quad
          \mathcal R\{\partial_{W_l} f\} = \mathcal R G_l^\top h_l + G_l^\top \mathcal R h_l,\quad
          \mathcal R\{\partial_{b_l} f\} = \textstyle\sum_b \mathcal R G_l,

.. math:: \mathcal R G_{l-1} = (\mathcal R G_l\, W_l + G_l V_l)\odot\phi'(z_{l-1})
          + (G_l W_l)\odot\phi''(z_{l-1})\odot\mathcal R z_{l-1},

and :math:`\nabla^2 f\, v = \mathcal R\{\nabla f\}`.

Every function writes ``out = base + scale * (derivative)`` layer by layer, fusing the update with
the GEMM that forms the layer's derivative (:func:`perfedavg.engine.mlp.kernels.write`); ``base``
None writes ``scale * (derivative)``.  The ``*_from`` functions start from the first layer's
pre-activations and leave layer 0's write to the caller, which is how the fused steps
(:mod:`perfedavg.engine.mlp.steps`) avoid forming the first layer at derived points.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perfedavg.engine.mlp.kernels import first_layer, forward_from, grouped, softmax_ce_grad, write, write_bias
from perfedavg.engine.mlp.layout import MLP, BaseViews, LayerViews


def grad_from(
    net: MLP,
    layers: LayerViews,
    Z0: Tensor,
    Y: Tensor,
    out: LayerViews,
    base: BaseViews | None,
    scale: float,
    half: int | None = None,
) -> Tensor:
    r"""Forward from the first layer's pre-activations ``Z0`` through ``layers`` 1..L-1, then
    backward: write ``out = base + scale * grad`` for the parameters of layers ``>= 1``
    (with ``half = m``: ``out (m, P) = base + scale * (grad(rows :m) - grad(rows m:))``) and
    return ``G_0``, the gradient with respect to ``Z0``; layer 0 is the caller's.  ``out`` and
    ``base`` are layer views (:meth:`perfedavg.engine.mlp.layout.MLP.layers`; a step takes each
    buffer's views once), ``base`` None for none."""
    S, H, D, _ = forward_from(layers, Z0, net.activation)
    _, G = softmax_ce_grad(S, Y)
    out_layers, base_layers = out, base or net.views(None)
    for l in range(len(layers) - 1, 0, -1):
        (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
        h = H[l - 1]
        below = torch.bmm(G, layers[l][0]).mul_(D[l - 1])  # before the write: out may be the weights read
        if half is None:
            write(ow, bw, scale, G.transpose(1, 2), h)
            write_bias(ob, bb, scale, G)
        else:
            m = half
            write(ow, bw, scale, G[:m].transpose(1, 2), h[:m])
            write(ow, None, -scale, G[m:].transpose(1, 2), h[m:], accumulate=True)
            write_bias(ob, bb, scale, G[:m])
            write_bias(ob, None, -scale, G[m:], accumulate=True)
        G = below
    return G


def backward(
    net: MLP, W: Tensor, X: Tensor, Y: Tensor, groups: int, out: Tensor, base: Tensor | None, scale: float
) -> Tensor:
    r"""``out = base + scale * grad f(W)`` on inputs ``X (m, B, d_0)`` shared by ``groups`` stacks of
    ``m`` users (:meth:`perfedavg.engine.mlp.layout.MLP.inputs`); ``base`` may be ``W`` or ``out``."""
    layers = net.layers(W)
    Z0 = first_layer(X, *layers[0], groups)
    base_layers: BaseViews
    if base is None:
        base_layers, out_layers = net.views(None), net.layers(out)
    else:
        base_views = layers if base is W else net.layers(base)
        base_layers, out_layers = base_views, base_views if out is base else net.layers(out)  # out is base: in place
    G = grad_from(net, layers, Z0, Y if groups == 1 else Y.repeat(groups, 1), out_layers, base_layers, scale)
    (ow, ob), (bw, bb) = out_layers[0], base_layers[0]
    if groups == 1:
        write(ow, bw, scale, G.transpose(1, 2), X)
    else:  # groups of users sharing X: one GEMM per group
        for j in range(groups):
            rows = slice(j * X.shape[0], (j + 1) * X.shape[0])
            write(ow[rows], None if bw is None else bw[rows], scale, G[rows].transpose(1, 2), X)
    write_bias(ob, bb, scale, G)
    return out


def hvp_from(
    net: MLP,
    layers: LayerViews,
    dirs: LayerViews,
    Z0: Tensor,
    RZ0: Tensor,
    Y: Tensor,
    out: LayerViews,
    base: BaseViews | None,
    scale: float,
) -> Tensor:
    r"""The R-operator (module docstring) from the first layer's pre-activations ``Z0`` and
    their directional derivative ``RZ0`` along ``dirs``: write ``out = base + scale * (Hessian V)``
    for the parameters of layers ``>= 1`` and return :math:`\mathcal R G_0`; layer 0 is the caller's
    (``out``, ``base``: layer views as in :func:`grad_from`)."""
    S, H, D, E = forward_from(layers, Z0, net.activation, second=True)  # H[l - 1] = h_l, l >= 1
    # R-forward: RZ[l] = R{z_l}, RH[l - 1] = R{h_l}
    RZ, RH = [RZ0], []
    for l in range(1, len(layers)):
        (weight, _), (vw, vb) = layers[l], dirs[l]
        RH.append(D[l - 1] * RZ[l - 1])
        rz = torch.baddbmm(vb, RH[l - 1], weight.transpose(1, 2))
        rz.baddbmm_(H[l - 1], vw.transpose(1, 2))
        RZ.append(rz)
    p, G = softmax_ce_grad(S, Y)
    RS = RZ[-1]
    RG = (RS - (p * RS).sum(-1, keepdim=True)).mul_(p).mul_(1.0 / S.shape[-2])
    out_layers, base_layers = out, base or net.views(None)
    for l in range(len(layers) - 1, 0, -1):
        (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
        weight, vw = layers[l][0], dirs[l][0]
        dH = torch.bmm(G, weight)  # before the writes: out may be the weights read
        RdH = torch.bmm(RG, weight).baddbmm_(G, vw)
        write(ow, bw, scale, RG.transpose(1, 2), H[l - 1])
        write(ow, None, scale, G.transpose(1, 2), RH[l - 1], accumulate=True)
        write_bias(ob, bb, scale, RG)
        RG = RdH.mul_(D[l - 1]).addcmul_(dH * E[l - 1], RZ[l - 1])
        if l > 1:  # G_0 itself is not needed: R h_0 = 0
            G = dH.mul_(D[l - 1])
    return RG


def hvp(net: MLP, W: Tensor, V: Tensor, X: Tensor, Y: Tensor, groups: int, out: Tensor) -> Tensor:
    r"""``out = Hessian(W) V`` on inputs ``X`` shared by ``groups`` stacks of users (as :func:`backward`)."""
    layers, dirs = net.layers(W), net.layers(V)
    Z0 = first_layer(X, *layers[0], groups)
    RZ0 = first_layer(X, *dirs[0], groups)
    out_layers, base_layers = net.layers(out), net.views(None)
    RG = hvp_from(net, layers, dirs, Z0, RZ0, Y if groups == 1 else Y.repeat(groups, 1), out_layers, base_layers, 1.0)
    (ow, ob), (bw, bb) = out_layers[0], base_layers[0]
    write(ow, bw, 1.0, RG.transpose(1, 2), grouped(X, groups))  # R h_0 = 0: no G_0 term
    write_bias(ob, bb, 1.0, RG)
    return out
