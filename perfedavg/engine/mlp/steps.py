r"""The MLP's fused local steps: FedAvg's and Per-FedAvg's (FO, HF, exact) updates of
:mod:`perfedavg.engine.local`, the same arithmetic rearranged.

Each ``w - step * gradient`` update is fused with writing the layer's gradient (no separate passes
over the parameter vector), and Per-FedAvg uses the **first-layer kernel identity** [derive]: a
gradient step changes the first layer's weights by a matrix of rank at most :math:`B`,
:math:`W_0 - \alpha\,G_a^\top X_a`, so on another batch :math:`X_b`

.. math:: X_b (W_0 - \alpha G_a^\top X_a)^\top = X_b W_0^\top - \alpha\,(X_b X_a^\top)\, G_a .

Hence the first layer at :math:`\tilde w` (FO, HF, exact) and at :math:`w\pm\delta g` (HF; and the
direction :math:`g` of the exact variant's R-operator) is never formed: its pre-activations
come from those at :math:`w` plus a :math:`B\times B` Gram block, and the new first-layer
weights are :math:`W_0` plus one accumulating GEMM per gradient term (FO one, HF and exact two).
Per step this costs 3.5 (FO) and 6 (HF, exact) first-layer GEMM units instead of 4 and 7, and
no elementwise pass over the first layer's weights beyond the final write.  The layers above
(small) are formed as usual; HF's two gradients at :math:`w\pm\delta g` share the batch
:math:`\mathcal D''` without copying it, and the exact variant's Hessian-vector product is the
R-operator (:mod:`perfedavg.engine.mlp.derivatives`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from perfedavg.algorithms import PER_FEDAVG, PerFedAvgAlgorithm
from perfedavg.engine.local import PerFedAvgBatches, StepSizes
from perfedavg.engine.mlp.derivatives import backward, grad_from, hvp_from
from perfedavg.engine.mlp.kernels import write, write_bias
from perfedavg.engine.mlp.layout import MLP, LayerViews
from perfedavg.engine.sampling import Batch


def descend(
    net: MLP, W: Tensor, step: float, X: Tensor, Y: Tensor, at: Tensor | None = None, out: Tensor | None = None
) -> Tensor:
    r""":math:`w - \mathrm{step}\cdot\tilde\nabla f_i(\mathrm{at}_i, \mathcal D_i)` (``at`` defaults
    to ``W``), the update fused with writing each layer's gradient, into ``out`` (default a new
    tensor; ``out=W`` updates ``W`` in place, which spares a pass over the parameters)."""
    at = W if at is None else at
    X, groups = net.inputs(at, X)
    return backward(net, at, X, Y, groups, torch.empty_like(W) if out is None else out, W, -step)


def fedavg_step(net: MLP, W: Tensor, batch: Batch, h: StepSizes, out: Tensor | None = None) -> Tensor:
    r"""FedAvg's :math:`w - \beta\tilde\nabla f_i(w,\mathcal D)` (:func:`perfedavg.engine.local.fedavg_step`),
    into ``out`` as in :func:`descend`."""
    return descend(net, W, h.beta, batch.x, batch.y, out=out)


def per_fedavg_step(
    net: MLP,
    W: Tensor,
    batches: PerFedAvgBatches,
    h: StepSizes,
    algorithm: PerFedAvgAlgorithm,
    out: Tensor | None = None,
) -> Tensor:
    r"""Per-FedAvg's local step (:func:`perfedavg.engine.local.meta_gradient`), rearranged as

    .. math::
        \tilde w = w - \alpha\tilde\nabla f(w,\mathcal D),\quad g = \tilde\nabla f(\tilde w,\mathcal D'),

    * FO: :math:`w - \beta g`;
    * HF: :math:`w - \beta g + \frac{\alpha\beta}{2\delta}\,[\tilde\nabla f(w+\delta g,\mathcal D'')
      - \tilde\nabla f(w-\delta g,\mathcal D'')]`;
    * exact: :math:`w - \beta g + \alpha\beta\,\tilde\nabla^2 f(w,\mathcal D'')\,g`.

    The first layer's weights are never formed at :math:`\tilde w` or :math:`w\pm\delta g`
    (module docstring, "first-layer kernel identity"): their pre-activations on a batch
    :math:`X_b` follow from those at :math:`w` and the Gram block :math:`X_b X_a^\top`, and the
    new first-layer weights are one accumulating GEMM per gradient term.

    The result goes into ``out`` (default a new tensor); ``out=W`` updates ``W`` in place: every
    layer is then read before it is written (the Hessian term reads a copy of :math:`w`'s
    layers above the first, which are small), and the first layer, the big one, is updated by
    accumulating GEMMs with no pass to copy it.  The same arithmetic either way, bit for bit.
    """
    if algorithm not in PER_FEDAVG:
        raise ValueError(f"unknown Per-FedAvg algorithm {algorithm!r}")
    inner, outer, hessian = batches
    X1, _ = net.inputs(W, inner.x)
    X2, _ = net.inputs(W, outer.x)
    m = net.users(W)
    layers = net.layers(W)
    (W0, b0) = layers[0]
    W0t = W0.transpose(1, 2)
    out = torch.empty_like(W) if out is None else out
    out_layers = layers if out is W else net.layers(out)
    (o0, ob0) = out_layers[0]
    # inner step: w~ = w - alpha grad f(w, D); layers >= 1 and the first bias written into W_tilde
    tilde = net.layers(W.new_empty(m * net.num_params))  # layer-major: contiguous blocks
    G1 = grad_from(net, layers, torch.baddbmm(b0, X1, W0t), inner.y, tilde, layers, -h.alpha)
    torch.add(b0, G1.sum(1, keepdim=True), alpha=-h.alpha, out=tilde[0][1])
    # outer gradient at w~ on D': first-layer pre-activations X2 W0^T + b~ - alpha (X2 X1^T) G1
    Z2 = torch.baddbmm(tilde[0][1], X2, W0t)
    Z2.baddbmm_(torch.bmm(X2, X1.transpose(1, 2)), G1, alpha=-h.alpha)
    if algorithm == "fo":
        G2 = grad_from(net, tilde, Z2, outer.y, out_layers, layers, -h.beta)
        write(o0, W0, -h.beta, G2.transpose(1, 2), X2)
        write_bias(ob0, b0, -h.beta, G2)
        return out
    if hessian is None:
        raise ValueError(f"Per-FedAvg's {algorithm} step needs the batch D''")
    # g = grad f(w~, D'): layers >= 1 and the first bias in g; first-layer weight G2^T X2 implicit
    g_layers = net.layers(W.new_empty(m * net.num_params))
    G2 = grad_from(net, tilde, Z2, outer.y, g_layers, None, 1.0)
    gb0 = torch.sum(G2, 1, keepdim=True, out=g_layers[0][1])
    if out is W and len(net.spans) > 1:  # the Hessian term reads w's layers >= 1, overwritten below: a copy
        upper = torch.empty_like(W)
        net.above_first(upper).copy_(net.above_first(W))
        layers = layers[:1] + net.layers(upper)[1:]
    for (ow, ob), (w_, b_), (gw, gb) in zip(out_layers[1:], layers[1:], g_layers[1:]):
        torch.add(w_, gw, alpha=-h.beta, out=ow)  # base = w - beta g, layers >= 1
        torch.add(b_, gb, alpha=-h.beta, out=ob)
    X3, _ = net.inputs(W, hessian.x)
    P3 = torch.baddbmm(b0, X3, W0t)  # X3 W0^T + b0
    C3 = torch.bmm(torch.bmm(X3, X2.transpose(1, 2)), G2).add_(gb0)  # X3 V0^T + c0 for v = g
    last, last_scale = hessian_term(net, layers, g_layers, P3, C3, hessian.y, out_layers, h, algorithm)
    write(o0, W0, -h.beta, G2.transpose(1, 2), X2)
    write(o0, None, last_scale, last.transpose(1, 2), X3, accumulate=True)
    write_bias(ob0, b0, -h.beta, G2)
    write_bias(ob0, None, last_scale, last, accumulate=True)
    return out


def hessian_term(
    net: MLP,
    layers: LayerViews,
    g_layers: LayerViews,
    P3: Tensor,
    C3: Tensor,
    Y3: Tensor,
    out: LayerViews,
    h: StepSizes,
    algorithm: PerFedAvgAlgorithm,
) -> tuple[Tensor, float]:
    r"""HF's or the exact variant's Hessian term of :func:`per_fedavg_step` on :math:`\mathcal D''`,
    given the first layer's pre-activations ``P3`` at :math:`w` and ``C3`` along :math:`g`: add
    it to the layers ``>= 1`` of ``out`` (layer views) and return ``(last, scale)``, the first layer's
    part being ``scale * last^T X3`` (weights) and ``scale * sum_b last`` (bias).

    * HF: ``last`` = :math:`G_0(w+\delta g) - G_0(w-\delta g)`, scale :math:`\alpha\beta/(2\delta)`
      (both points stacked on the shared batch);
    * exact: ``last`` = :math:`\mathcal R G_0` of the R-operator at :math:`w` along :math:`g`, scale
      :math:`\alpha\beta`.
    """
    if algorithm == "exact":
        return hvp_from(net, layers, g_layers, P3, C3, Y3, out, out, h.alpha * h.beta), h.alpha * h.beta
    m = P3.shape[0]
    scale = h.alpha * h.beta / (2 * h.delta)
    W_pm = P3.new_empty(2 * m * net.num_params)  # layer-major (layers): each block contiguous
    pm = net.layers(W_pm)
    for l in range(1, len(layers)):
        for j, sign in ((0, 1.0), (1, -1.0)):
            rows = slice(j * m, (j + 1) * m)
            torch.add(layers[l][0], g_layers[l][0], alpha=sign * h.delta, out=pm[l][0][rows])
            torch.add(layers[l][1], g_layers[l][1], alpha=sign * h.delta, out=pm[l][1][rows])
    Z_pm = P3.new_empty((2 * m, *P3.shape[1:]))
    torch.add(P3, C3, alpha=h.delta, out=Z_pm[:m])
    torch.add(P3, C3, alpha=-h.delta, out=Z_pm[m:])
    G_pm = grad_from(net, pm, Z_pm, Y3.repeat(2, 1), out, out, scale, half=m)
    return G_pm[:m] - G_pm[m:], scale
