r"""A hand-written gradient oracle for MLP classifiers, batched over stacked clients.

Same model, loss and flat parameter layout as :func:`perfedavg.models.mlp_cross_entropy`
(per layer :math:`l`: the weight :math:`W_l\in\mathbb R^{d_{l+1}\times d_l}` row-major, then
the bias :math:`b_l`), same answers as :class:`perfedavg.oracle.AutogradOracle`, without
autograd: every layer is one ``bmm``/``baddbmm`` over the client dimension on views of the
flat buffers, and gradients are written straight into one preallocated ``(m, P)`` buffer
(DESIGN.md, performance notes).

Forward (:math:`h_0 = x`, :math:`\phi` the hidden activation, none on the last layer):

.. math:: z_l = h_l W_l^\top + b_l,\qquad h_{l+1} = \phi(z_l),\qquad s = z_{L-1},\qquad
          f = \tfrac1B\textstyle\sum_b -\log\mathrm{softmax}(s_b)_{y_b}.

Backward (``G_l`` the gradient of :math:`f` with respect to :math:`z_l`):

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

Besides the oracle interface (``grad``, ``hvp``) the class offers fused local steps
(:meth:`MLPOracle.fedavg_step`, :meth:`MLPOracle.per_fedavg_step`) that
:mod:`perfedavg.local` uses when an oracle has them: each ``w - step * gradient`` update
is fused with writing the layer's gradient (one elementwise ``add`` per layer, no
separate passes over the parameter vector), HF's two gradients at
:math:`w\pm\delta g` share the batch :math:`\mathcal D''` without copying it and share one
first-layer weight-gradient GEMM (:math:`(G_+ - G_-)^\top x`), and the exact variant's
Hessian-vector product is the R-operator above.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F_
from torch import Tensor

ACTIVATIONS = ("elu", "tanh", "relu")


def _hidden(Z: Tensor, activation: str, second: bool):
    r"""Apply :math:`\phi` to ``Z`` in place; return ``(h, phi'(z), phi''(z) or None)``.

    The derivatives are written in terms of :math:`h=\phi(z)`: ELU (α = 1)
    :math:`\phi' = \min(h + 1, 1)`, :math:`\phi'' = (h+1)[z\le 0]`; tanh
    :math:`\phi' = 1-h^2`, :math:`\phi'' = -2h(1-h^2)`; ReLU :math:`\phi' = [z>0]`, :math:`\phi''=0`.
    """
    if activation == "elu":
        H = F_.elu_(Z)
        D = (H + 1).clamp_(max=1.0)
        E = D.masked_fill(H > 0, 0.0) if second else None
    elif activation == "tanh":
        H = Z.tanh_()
        D = torch.addcmul(torch.ones_like(H), H, H, value=-1.0)
        E = (H * D).mul_(-2.0) if second else None
    elif activation == "relu":
        H = Z.relu_()
        D = (H > 0).to(H.dtype)
        E = torch.zeros_like(H) if second else None
    else:  # pragma: no cover - checked in __init__
        raise ValueError(activation)
    return H, D, E


def _softmax_ce_grad(S: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(p, G)``: :math:`p=\mathrm{softmax}(s)` and :math:`G = (p - e_y)/B`, the gradient of the
    batch-mean cross-entropy with respect to the scores ``S (n, B, C)``."""
    p = (S - S.amax(-1, keepdim=True)).exp_()  # softmax by hand: ~3x faster than torch.softmax over 10 classes
    p.div_(p.sum(-1, keepdim=True))
    G = p.clone()
    G.scatter_add_(-1, Y.unsqueeze(-1), torch.full_like(G[..., :1], -1.0).expand(Y.shape + (1,)))
    G.mul_(1.0 / S.shape[-2])
    return p, G


class MLPOracle:
    r"""Exact mini-batch gradients and Hessian-vector products of an MLP with softmax
    cross-entropy, for stacked clients ``W (n, P)``.

    ``sizes = (d_0, ..., d_L)``; ``activation`` one of ``elu``, ``tanh``, ``relu`` (hidden
    layers only).  Inputs ``X (m, B, *feature_shape)`` are flattened to ``(m, B, d_0)``.

    Shared batches: ``grad`` also accepts ``W`` with ``k * m`` rows for ``X`` with ``m``:
    row ``j*m + i`` is evaluated on batch ``i`` (HF's two points :math:`w\pm\delta g` on the
    same :math:`\mathcal D''`), without copying the batch.
    """

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

    # -- layout ------------------------------------------------------------------------
    def layers(self, W: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Views ``[(weight (n, d_{l+1}, d_l), bias (n, d_{l+1}))]`` into ``W (n, P)``."""
        n = W.shape[0]
        return [(W[:, a:b].view(n, dout, din), W[:, b:c]) for a, b, c, din, dout in self.spans]

    def _check(self, W: Tensor, X: Tensor) -> tuple[Tensor, int]:
        if W.dim() != 2 or W.shape[1] != self.num_params:
            raise ValueError(f"W must be (n, {self.num_params}), got {tuple(W.shape)}")
        X = X.reshape(X.shape[0], X.shape[1], -1)
        if X.shape[-1] != self.sizes[0]:
            raise ValueError(f"inputs have {X.shape[-1]} features, the MLP expects {self.sizes[0]}")
        m = X.shape[0]
        if W.shape[0] % m:
            raise ValueError(f"{W.shape[0]} parameter rows are not a multiple of {m} batches")
        if X.dtype != W.dtype:
            X = X.to(W.dtype)
        return X, W.shape[0] // m

    # -- forward -----------------------------------------------------------------------
    def _first_layer(self, X: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
        r""":math:`z_0 = x W_0^\top + b_0` for ``groups`` stacks of clients sharing ``X``."""
        if groups == 1:
            return torch.baddbmm(bias.unsqueeze(1), X, weight.transpose(1, 2))
        m = X.shape[0]
        Z = X.new_empty((weight.shape[0], X.shape[1], weight.shape[1]))
        for j in range(groups):
            rows = slice(j * m, (j + 1) * m)
            torch.baddbmm(bias[rows].unsqueeze(1), X, weight[rows].transpose(1, 2), out=Z[rows])
        return Z

    def _forward(self, W: Tensor, X: Tensor, groups: int, second: bool = False):
        """Scores and what the backward pass needs: inputs ``H[l]`` of layer ``l`` (``H[0]`` is
        ``X``), :math:`\\phi'` and (``second``) :math:`\\phi''` of every hidden layer."""
        layers = self.layers(W)
        H, D, E = [X], [], []
        Z = self._first_layer(X, *layers[0], groups)
        for l in range(1, len(layers)):
            h, d, e = _hidden(Z, self.activation, second)
            H.append(h)
            D.append(d)
            E.append(e)
            weight, bias = layers[l]
            Z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        return Z, H, D, E

    # -- writing gradients -------------------------------------------------------------
    @staticmethod
    def _write(out: Tensor, base: Tensor | None, scale: float, A: Tensor, Bm: Tensor, accumulate: bool = False) -> None:
        r"""``out = base + scale * A @ Bm`` (or ``out += scale * A @ Bm`` when ``accumulate``).

        ``out`` is a view into the flat ``(n, P)`` buffer: each client's block is contiguous
        but the stack is not.  A GEMM into a fresh contiguous tensor followed by one fused
        elementwise ``add`` into the view is measured fastest here: ``bmm``/``baddbmm`` with
        ``out=`` a non-contiguous view go through a temporary and a per-batch path that runs
        about 2x slower with 2 threads (and no faster with 1)."""
        AB = torch.bmm(A, Bm)
        if accumulate:
            out.add_(AB, alpha=scale)
        elif base is None:
            torch.mul(AB, scale, out=out)
        else:
            torch.add(base, AB, alpha=scale, out=out)

    @staticmethod
    def _write_bias(out: Tensor, base: Tensor | None, scale: float, G: Tensor, accumulate: bool = False) -> None:
        r"""``out = base + scale * sum_b G`` (or ``out += ...``)."""
        s = G.sum(1)
        if accumulate:
            out.add_(s, alpha=scale)
        elif base is None:
            torch.mul(s, scale, out=out)
        else:
            torch.add(base, s, alpha=scale, out=out)

    def _backward(self, W, X, Y, groups, out, base, scale, difference=False):
        r"""``out = base + scale * grad f(W)`` (``base`` None: ``scale * grad``); with
        ``difference`` (``groups == 2``), ``out (m, P) = base + scale * (grad f(W_+) - grad f(W_-))``
        for ``W = [W_+; W_-]``."""
        S, H, D, _ = self._forward(W, X, groups)
        Yg = Y if groups == 1 else Y.repeat(groups, 1)
        _, G = _softmax_ce_grad(S, Yg)
        layers = self.layers(W)
        out_layers = self.layers(out)
        base_layers = self.layers(base) if base is not None else [(None, None)] * len(layers)
        m = out.shape[0]
        for l in range(len(layers) - 1, -1, -1):
            (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
            if not difference:
                if l or groups == 1:
                    self._write(ow, bw, scale, G.transpose(1, 2), H[l])
                else:  # groups of clients sharing X: one GEMM per group
                    for j in range(groups):
                        rows = slice(j * X.shape[0], (j + 1) * X.shape[0])
                        self._write(ow[rows], None if bw is None else bw[rows], scale, G[rows].transpose(1, 2), X)
                self._write_bias(ob, bb, scale, G)
            elif l == 0:  # both halves share X: one GEMM on G_+ - G_-
                dG = G[:m] - G[m:]
                self._write(ow, bw, scale, dG.transpose(1, 2), X)
                self._write_bias(ob, bb, scale, dG)
            else:
                self._write(ow, bw, scale, G[:m].transpose(1, 2), H[l][:m])
                self._write(ow, None, -scale, G[m:].transpose(1, 2), H[l][m:], accumulate=True)
                self._write_bias(ob, bb, scale, G[:m])
                self._write_bias(ob, None, -scale, G[m:], accumulate=True)
            if l:
                G = torch.bmm(G, layers[l][0]).mul_(D[l - 1])
        return out

    # -- the oracle interface -----------------------------------------------------------
    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Mini-batch gradients :math:`\tilde\nabla f_i(w_i,\mathcal D_i)`, one row per client
        (``W (k*m, P)`` with ``X (m, B, ...)``: row ``j*m+i`` on batch ``i``)."""
        X, groups = self._check(W, X)
        return self._backward(W, X, Y, groups, torch.empty_like(W), None, 1.0)

    def descend(self, W: Tensor, step: float, X: Tensor, Y: Tensor, at: Tensor | None = None) -> Tensor:
        r""":math:`w - \mathrm{step}\cdot\tilde\nabla f_i(\mathrm{at}_i, \mathcal D_i)` (``at`` defaults
        to ``W``), the update fused with writing each layer's gradient."""
        at = W if at is None else at
        X, groups = self._check(at, X)
        return self._backward(at, X, Y, groups, torch.empty_like(W), W, -step)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Exact :math:`\tilde\nabla^2 f_i(w_i,\mathcal D_i)\, v_i` by the R-operator (module docstring)."""
        X, groups = self._check(W, X)
        return self._hvp(W, V, X, Y, groups, torch.empty_like(W), None, 1.0)

    def _hvp(self, W, V, X, Y, groups, out, base, scale):
        r"""``out = base + scale * Hessian(W) V`` (``base`` None: ``scale * Hessian(W) V``)."""
        S, H, D, E = self._forward(W, X, groups, second=True)
        Yg = Y if groups == 1 else Y.repeat(groups, 1)
        layers, dirs = self.layers(W), self.layers(V)
        # R-forward: RZ[l] = R{z_l}, RH[l] = R{h_l} (RH[0] = 0)
        RZ, RH = [], [None]
        for l, ((weight, _), (vw, vb)) in enumerate(zip(layers, dirs)):
            if l == 0:
                rz = self._first_layer(X, vw, vb, groups)
            else:
                rz = torch.baddbmm(vb.unsqueeze(1), RH[l], weight.transpose(1, 2))
                rz.baddbmm_(H[l], vw.transpose(1, 2))
            RZ.append(rz)
            if l < len(layers) - 1:
                RH.append(D[l] * rz)
        p, G = _softmax_ce_grad(S, Yg)
        RS = RZ[-1]
        RG = (RS - (p * RS).sum(-1, keepdim=True)).mul_(p).mul_(1.0 / S.shape[-2])
        out_layers = self.layers(out)
        base_layers = self.layers(base) if base is not None else [(None, None)] * len(layers)
        for l in range(len(layers) - 1, -1, -1):
            (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
            self._write(ow, bw, scale, RG.transpose(1, 2), H[l] if l else self._grouped(X, groups))
            if l:
                self._write(ow, None, scale, G.transpose(1, 2), RH[l], accumulate=True)
            self._write_bias(ob, bb, scale, RG)
            if l:
                weight, vw = layers[l][0], dirs[l][0]
                dH = torch.bmm(G, weight)
                RdH = torch.bmm(RG, weight).baddbmm_(G, vw)
                RG = RdH.mul_(D[l - 1]).addcmul_(dH * E[l - 1], RZ[l - 1])
                if l > 1:  # G_0 itself is not needed: R h_0 = 0
                    G = dH.mul_(D[l - 1])
        return out

    @staticmethod
    def _grouped(X: Tensor, groups: int) -> Tensor:
        return X if groups == 1 else X.repeat(groups, 1, 1)

    # -- fused local steps (used by perfedavg.local when present) -----------------------
    def fedavg_step(self, W: Tensor, batch, h) -> Tensor:
        r"""FedAvg's :math:`w - \beta\tilde\nabla f_i(w,\mathcal D)` (see :func:`perfedavg.local.fedavg_step`)."""
        return self.descend(W, h.beta, batch.x, batch.y)

    def per_fedavg_step(self, W: Tensor, batches, h, variant: str) -> Tensor:
        r"""Per-FedAvg's local step (see :func:`perfedavg.local.meta_gradient`), rearranged as

        .. math::
            \tilde w = w - \alpha\tilde\nabla f(w,\mathcal D),\quad g = \tilde\nabla f(\tilde w,\mathcal D'),

        * FO: :math:`w - \beta g`;
        * HF: :math:`w - \beta g + \frac{\alpha\beta}{2\delta}\,[\tilde\nabla f(w+\delta g,\mathcal D'')
          - \tilde\nabla f(w-\delta g,\mathcal D'')]`;
        * exact: :math:`w - \beta g + \alpha\beta\,\tilde\nabla^2 f(w,\mathcal D'')\,g`.
        """
        inner, outer, hessian = batches
        W_tilde = self.descend(W, h.alpha, inner.x, inner.y)
        if variant == "fo":
            return self.descend(W, h.beta, outer.x, outer.y, at=W_tilde)
        if variant not in ("hf", "exact"):
            raise ValueError(f"unknown Per-FedAvg variant {variant!r}")
        g = self.grad(W_tilde, outer.x, outer.y)
        base = torch.add(W, g, alpha=-h.beta)
        X, _ = self._check(W, hessian.x)
        if variant == "hf":
            W_pm = W.new_empty((2 * W.shape[0], W.shape[1]))
            torch.add(W, g, alpha=h.delta, out=W_pm[: W.shape[0]])
            torch.add(W, g, alpha=-h.delta, out=W_pm[W.shape[0] :])
            scale = h.alpha * h.beta / (2 * h.delta)
            return self._backward(W_pm, X, hessian.y, 2, torch.empty_like(W), base, scale, difference=True)
        return self._hvp(W, g, X, hessian.y, 1, torch.empty_like(W), base, h.alpha * h.beta)


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    r"""Keep freed ``(m, P)`` buffers in glibc's heap instead of returning them to the OS.

    The engine allocates a few parameter-sized buffers per local step; with glibc's
    defaults, freed multi-megabyte blocks go back to the OS and every new one page-faults
    on first touch (thousands of faults per round on the paper's workload, ~10% of an FO
    round).  Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt``) removes
    them, at the cost of keeping up to ``trim_threshold`` bytes of freed memory.  Process-wide;
    returns False (and does nothing) where glibc's ``mallopt`` is unavailable.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def mlp_oracle_factory(sizes: tuple[int, ...], activation: str = "elu"):
    """A zero-argument factory for :attr:`perfedavg.task.Task.oracle_factory`."""
    return partial(MLPOracle, tuple(int(s) for s in sizes), activation)
