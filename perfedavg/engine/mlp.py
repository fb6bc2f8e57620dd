r"""A hand-written gradient oracle for MLP classifiers, batched over stacked clients.

Same model, loss and flat parameter layout as :func:`perfedavg.engine.models.mlp_cross_entropy`
(per layer :math:`l`: the weight :math:`W_l\in\mathbb R^{d_{l+1}\times d_l}` row-major, then
the bias :math:`b_l`), same answers as :class:`perfedavg.engine.oracle.AutogradOracle`, without
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
:mod:`perfedavg.engine.local` uses when an oracle has them.  Each ``w - step * gradient`` update
is fused with writing the layer's gradient (no separate passes over the parameter vector),
and Per-FedAvg uses the **first-layer kernel identity** [derive]: a gradient step changes the
first layer's weights by a matrix of rank at most :math:`B`,
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
R-operator above.

The users' parameters may be ``(n, P)`` rows (the oracle interface) or a **layer-major stack**
(:meth:`MLPOracle.stack`, the engine's layout for a round's iterates and the steps' own
temporaries): each layer's weights of all users one contiguous ``(n, d_{l+1}, d_l)`` block, then
their biases.  A layer's GEMM then reads and writes its block in one batched call; into rows,
whose blocks are ``P`` apart, torch runs one GEMM per user (the first layer's in-place write
was 20-35 % slower that way on the paper's MNIST shape).

A whole round can go further (:meth:`MLPOracle.round_in_sample_space`, chosen by
:meth:`MLPOracle.prefers_sample_space` when :func:`first_layer_macs` says it is cheaper): every
first-layer change of user :math:`i` is :math:`-A_i^\top X_i` for its own data :math:`X_i`, so
the round keeps its pre-activations :math:`Z_i = X_iW_{0,k}^\top - K_iA_i` on all of its data
(:math:`K_i = X_iX_i^\top`, once per data set) and never forms a user's first layer at all.
On CIFAR-10's split (340 or 170 samples of 3072 features per user) that cuts the first
layer's work 2.4-3.8x at :math:`\tau = 10`; on MNIST's (980 or 490 of 784) per-step
is cheaper and stays.
"""

from __future__ import annotations

import os
from functools import lru_cache, partial

import torch
from torch import Tensor

from perfedavg.errors import UsageError

ACTIVATIONS = ("elu", "tanh", "relu")
#: how :class:`MLPOracle` runs a round: per local step, in each user's sample space, or the cheaper
ROUND_STRATEGIES = ("auto", "steps", "sample_space")
#: entries per client of a layer's weight block from which :meth:`MLPOracle._write` fuses the GEMM with
#: the write into ``(n, P)`` rows on several threads (the first layer of the paper's MLPs, 784x80 or
#: 3072x80, is above it; a layer-major stack's contiguous blocks are always written fused)
FUSED_WRITE_MIN = 1 << 14
#: the share of a device's memory that :meth:`MLPOracle.round_in_sample_space`'s caches (every user's
#: inputs and Gram matrix) may take: beyond it "auto" runs per step and "sample_space" is refused
SAMPLE_SPACE_MEMORY_SHARE = 0.5


def _in_units(size: int) -> str:
    """``size`` bytes in B, KiB, MiB or GiB (e.g. ``1.5 GiB``)."""
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def memory_budget(device) -> int:
    """Bytes the sample-space caches may take on ``device``: :data:`SAMPLE_SPACE_MEMORY_SHARE` of its
    memory (CUDA: the device's; CPU: the machine's physical memory), no limit where that is unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 2**63 - 1
    return int(total * SAMPLE_SPACE_MEMORY_SHARE)


def _hidden(Z: Tensor, activation: str, second: bool):
    r"""Apply :math:`\phi` to ``Z`` (overwritten); return ``(h, phi'(z), phi''(z) or None)``.

    ELU (α = 1) as :math:`\phi(z) = \max(z,\, e^{\min(z,0)} - 1)` (:math:`e^z - 1 \ge z`: the
    max picks :math:`z` for :math:`z > 0`, where :math:`e^0 - 1 = 0` exactly, and :math:`e^z - 1`
    otherwise), with :math:`\phi' = e^{\min(z,0)}` and
    :math:`\phi'' = \phi'\,[z\le 0] = \phi' - [z > 0]` (exactly: :math:`\phi' = 1` where
    :math:`z > 0`; 23 µs against 184 for ``masked_fill``): torch's ELU kernel evaluates ``expm1``
    one element at a time on the CPU, ``exp`` is vectorized, and this form took about half the
    time (machine B, 2 threads, (10, 40, 80): 56 against 110 µs with :math:`\phi'`; the max is one
    op fewer than :math:`(e^{\min(z,0)} - 1) + \max(z, 0)`, about 10 % of the activation).  For
    :math:`z < 0` it rounds :math:`e^z - 1` to within one unit of 1's last place (6e-8 in float32,
    1.1e-16 in float64; where that rounding falls below :math:`z`, the max returns :math:`z`, the
    nearer), where ``expm1`` is exact to :math:`h`'s own last place: the difference is below the
    round-off of the sums the activation feeds.
    The other derivatives are written in terms of :math:`h=\phi(z)`: tanh
    :math:`\phi' = 1-h^2`, :math:`\phi'' = -2h(1-h^2)`; ReLU :math:`\phi' = [z>0]`, :math:`\phi''=0`.
    """
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
    else:  # pragma: no cover - checked in __init__
        raise ValueError(activation)
    return H, D, E


def _softmax_ce_grad(S: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(p, G)``: :math:`p=\mathrm{softmax}(s)` and :math:`G = (p - e_y)/B`, the gradient of the
    batch-mean cross-entropy with respect to the scores ``S (n, B, C)``.

    ``torch.softmax`` (machine B, 2 threads, float32, (10, 40, 10): 13 µs against 31 for the
    max-shifted ``exp`` by hand) and a cached ``-1`` (:func:`_minus_ones`: 6 µs against 15 for
    building it per call) for :math:`-e_y`, added without copying ``p`` first."""
    p = torch.softmax(S, -1)
    return p, p.scatter_add(-1, Y.unsqueeze(-1), _minus_ones(tuple(Y.shape), S.dtype, S.device)).mul_(1.0 / S.shape[-2])


@lru_cache(maxsize=64)
def _minus_ones(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A read-only ``-1`` of shape ``shape + (1,)`` (one value, expanded): :func:`_softmax_ce_grad`'s
    :math:`-e_y` for ``scatter_add``, built once per batch shape."""
    return torch.full((1,) * (len(shape) + 1), -1.0, dtype=dtype, device=device).expand(*shape, 1)


class MLPOracle:
    r"""Exact mini-batch gradients and Hessian-vector products of an MLP with softmax
    cross-entropy, for stacked clients ``W (n, P)``.

    ``sizes = (d_0, ..., d_L)``; ``activation`` one of ``elu``, ``tanh``, ``relu`` (hidden
    layers only).  Inputs ``X (m, B, *feature_shape)`` are flattened to ``(m, B, d_0)``.

    Shared batches: ``grad`` also accepts ``W`` with ``k * m`` rows for ``X`` with ``m``:
    row ``j*m + i`` is evaluated on batch ``i`` (HF's two points :math:`w\pm\delta g` on the
    same :math:`\mathcal D''`), without copying the batch.
    """

    def __init__(self, sizes: tuple[int, ...], activation: str = "elu", rounds: str = "auto"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if rounds not in ROUND_STRATEGIES:
            raise ValueError(f"rounds={rounds!r} is not one of {', '.join(ROUND_STRATEGIES)}")
        #: "auto": the cheaper of per-step and sample-space rounds (:func:`first_layer_macs`)
        self.rounds = rounds
        self._space = None  # (data, dtype, X (n, M, d_0), Gram (n, M, M)) of the last data set seen
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
        """Views ``[(weight (n, d_{l+1}, d_l), bias (n, 1, d_{l+1}))]`` into ``n`` users' parameters ``W``
        (the bias a row, ready to broadcast over a batch: no ``unsqueeze`` per use).

        ``W`` is either ``(n, P)``, one user per row (the oracle's interface), or a *layer-major*
        stack (:meth:`stack`): a 1-D buffer of ``n P`` values holding, layer by layer, the weights of
        all ``n`` users ``(n, d_{l+1}, d_l)`` and then their biases ``(n, d_{l+1})``, each block
        contiguous.  Built with one ``as_strided`` per view (half the time of slicing and viewing:
        a local step takes several sets of views)."""
        start = W.storage_offset()
        if W.dim() == 1 and W.stride(0) == 1 and W.numel() % self.num_params == 0:
            n = W.numel() // self.num_params
            return [(W.as_strided((n, dout, din), (dout * din, din, 1), start + n * a),
                     W.as_strided((n, 1, dout), (dout, dout, 1), start + n * b)) for a, b, _, din, dout in self.spans]
        if W.dim() != 2 or W.stride(1) != 1:
            raise ValueError(f"W must be (n, P) with rows of unit stride or a layer-major stack, got shape "
                             f"{tuple(W.shape)} strides {W.stride()}")
        n, row = W.shape[0], W.stride(0)
        return [(W.as_strided((n, dout, din), (row, din, 1), start + a), W.as_strided((n, 1, dout), (row, dout, 1), start + b))
                for a, b, _, din, dout in self.spans]

    def users(self, W: Tensor) -> int:
        """How many users' parameters ``W`` holds (``(n, P)`` or a layer-major stack of ``n P`` values)."""
        if W.dim() == 1 and W.numel() % self.num_params == 0:
            return W.numel() // self.num_params
        if W.dim() != 2 or W.shape[1] != self.num_params:
            raise ValueError(f"W must be (n, {self.num_params}) or a layer-major stack, got {tuple(W.shape)}")
        return W.shape[0]

    def stack(self, W: Tensor, m: int, fill: bool = True) -> Tensor:
        """Each of the ``S`` models ``W (S, P)`` repeated for ``m`` users, as a new layer-major stack of
        ``S m`` users (:meth:`layers`; run ``j`` in users ``j m .. j m + m - 1``); uninitialized
        without ``fill``."""
        S = W.shape[0]
        out = W.new_empty(S * m * self.num_params)
        for s, e in self._pieces() if fill else ():
            out[S * m * s:S * m * e].view(S, m, e - s).copy_(W[:, None, s:e].expand(S, m, e - s))
        return out

    def average(self, U: Tensor, S: int) -> Tensor:
        """The uniform mean ``(S, P)`` of each of ``S`` runs' users in the layer-major stack ``U``
        (:meth:`stack`'s layout: the runs' users consecutive)."""
        n = self.users(U)
        return torch.cat([U[n * s:n * e].view(S, n // S, e - s).mean(1) for s, e in self._pieces()], dim=1)

    def _above_first(self, W: Tensor) -> Tensor:
        """The view of ``W``'s values of layers ``>= 1`` (``(n, P)`` or layer-major: the same layers)."""
        s = self.spans[1][0]
        return W[self.users(W) * s:] if W.dim() == 1 else W[:, s:]

    def _pieces(self) -> list[tuple[int, int]]:
        """The column ranges ``[s, e)`` of ``(n, P)`` that a layer-major stack keeps as contiguous
        ``(n, e - s)`` blocks: each layer's weights, then its biases."""
        return [piece for a, b, c, _, _ in self.spans for piece in ((a, b), (b, c))]

    def _check(self, W: Tensor, X: Tensor) -> tuple[Tensor, int]:
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

    # -- forward -----------------------------------------------------------------------
    def _first_layer(self, X: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
        r""":math:`z_0 = x W_0^\top + b_0` for ``groups`` stacks of clients sharing ``X``."""
        if groups == 1:
            return torch.baddbmm(bias, X, weight.transpose(1, 2))
        m = X.shape[0]
        Z = X.new_empty((weight.shape[0], X.shape[1], weight.shape[1]))
        for j in range(groups):
            rows = slice(j * m, (j + 1) * m)
            torch.baddbmm(bias[rows], X, weight[rows].transpose(1, 2), out=Z[rows])
        return Z

    def _forward(self, W: Tensor, X: Tensor, groups: int, second: bool = False):
        """Scores and what the backward pass needs: inputs ``H[l]`` of layer ``l`` (``H[0]`` is
        ``X``), :math:`\\phi'` and (``second``) :math:`\\phi''` of every hidden layer."""
        layers = self.layers(W)
        S, H, D, E = self._forward_from(layers, self._first_layer(X, *layers[0], groups), second)
        return S, [X] + H, D, E

    def _forward_from(self, layers, Z: Tensor, second: bool = False):
        """Layers ``1..L-1`` from the first layer's pre-activations ``Z`` (overwritten).  Returns the
        scores and, for every hidden layer,
        ``h_l`` (``l >= 1``), :math:`\\phi'` and (``second``) :math:`\\phi''`."""
        H, D, E = [], [], []
        for l in range(1, len(layers)):
            h, d, e = _hidden(Z, self.activation, second)
            H.append(h)
            D.append(d)
            E.append(e)
            weight, bias = layers[l]
            Z = torch.baddbmm(bias, h, weight.transpose(1, 2))
        return Z, H, D, E

    # -- writing gradients -------------------------------------------------------------
    @staticmethod
    def _write(out: Tensor, base: Tensor | None, scale: float, A: Tensor, Bm: Tensor, accumulate: bool = False) -> None:
        r"""``out = base + scale * A @ Bm`` (or ``out += scale * A @ Bm`` when ``accumulate``).

        ``out`` is a layer's view into a buffer of ``n`` users (:meth:`layers`): in a layer-major
        stack the whole ``(n, d_{l+1}, d_l)`` block is contiguous; in ``(n, P)`` rows each user's
        block is, but the stack is not.  Two ways: the GEMM accumulating into the view itself
        (``baddbmm``, :math:`\beta = 1`: one pass over the parameters), or a GEMM into a fresh
        contiguous tensor followed by one fused elementwise ``add`` into the view.  Into a
        contiguous block the fused write is one batched GEMM and the faster on every layer
        (machine B, AMD EPYC, 2 threads, 10 clients, batches of 40, median of 2000, µs, unfused /
        fused: 60x80 50 / 42, 10x60 20 / 17; the first layer 784x80 as one batched GEMM 390-480
        against 470-720 into rows, where torch runs one GEMM per user).  Into rows it depends on
        the block's size and the thread count (median of 400, unfused / fused): with one thread
        the fused write on every layer (first layer 784x80: 1225 / 953; the layers above are
        small either way, 85 / 96 and 25 / 44, and are kept fused so that one-thread results
        keep their bits); with several threads the fused write on blocks of at least
        :data:`FUSED_WRITE_MIN` entries per client (first layer: 641 / 491, accumulating
        524 / 414) and the unfused one below (60x80: 53 / 79; 10x60: 20 / 50).

        ``base`` may be ``out`` itself (the same view object): the write then accumulates in place."""
        if base is out:
            base, accumulate = None, True
        if (accumulate or base is not None) and (
            torch.get_num_threads() == 1 or out.is_contiguous() or out.shape[-2] * out.shape[-1] >= FUSED_WRITE_MIN
        ):
            if accumulate:
                out.baddbmm_(A, Bm, alpha=scale)
            else:
                torch.baddbmm(base, A, Bm, alpha=scale, out=out)
            return
        AB = torch.bmm(A, Bm)
        if accumulate:
            out.add_(AB, alpha=scale)
        elif base is None:
            torch.mul(AB, scale, out=out)
        else:
            torch.add(base, AB, alpha=scale, out=out)

    @staticmethod
    def _write_bias(out: Tensor, base: Tensor | None, scale: float, G: Tensor, accumulate: bool = False) -> None:
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

    def _backward(self, W, X, Y, groups, out, base, scale, difference=False):
        r"""``out = base + scale * grad f(W)`` (``base`` None: ``scale * grad``); with
        ``difference`` (``groups == 2``), ``out (m, P) = base + scale * (grad f(W_+) - grad f(W_-))``
        for ``W = [W_+; W_-]``."""
        layers = self.layers(W)
        Z0 = self._first_layer(X, *layers[0], groups)
        m = self.users(out)
        base_layers = layers if base is W else self._views(base)
        out_layers = base_layers if out is base else self.layers(out)  # out is base: in place
        G = self._grad_from(layers, Z0, Y if groups == 1 else Y.repeat(groups, 1), out_layers, base_layers, scale,
                            m if difference else None)
        (ow, ob), (bw, bb) = out_layers[0], base_layers[0]
        if difference:  # both halves share X: one GEMM on G_+ - G_-
            G = G[:m] - G[m:]
        if groups == 1 or difference:
            self._write(ow, bw, scale, G.transpose(1, 2), X)
        else:  # groups of clients sharing X: one GEMM per group
            for j in range(groups):
                rows = slice(j * X.shape[0], (j + 1) * X.shape[0])
                self._write(ow[rows], None if bw is None else bw[rows], scale, G[rows].transpose(1, 2), X)
        self._write_bias(ob, bb, scale, G)
        return out

    def _views(self, T: Tensor | None) -> list:
        """The layer views of a buffer ``T`` (:meth:`layers`), or ``(None, None)`` per layer for no base."""
        return [(None, None)] * len(self.spans) if T is None else self.layers(T)

    def _grad_from(self, layers, Z0, Y, out, base, scale, half=None):
        r"""Forward from the first layer's pre-activations ``Z0`` through ``layers`` 1..L-1, then
        backward: write ``out = base + scale * grad`` for the parameters of layers ``>= 1``
        (with ``half = m``: ``out (m, P) = base + scale * (grad(rows :m) - grad(rows m:))``) and
        return ``G_0``, the gradient with respect to ``Z0``; layer 0 is the caller's.  ``out`` and
        ``base`` are layer views (:meth:`layers`; a step takes each buffer's views once), ``base``
        None for none."""
        S, H, D, _ = self._forward_from(layers, Z0)
        _, G = _softmax_ce_grad(S, Y)
        out_layers, base_layers = out, base or self._views(None)
        for l in range(len(layers) - 1, 0, -1):
            (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
            h = H[l - 1]
            below = torch.bmm(G, layers[l][0]).mul_(D[l - 1])  # before the write: out may be the weights read
            if half is None:
                self._write(ow, bw, scale, G.transpose(1, 2), h)
                self._write_bias(ob, bb, scale, G)
            else:
                m = half
                self._write(ow, bw, scale, G[:m].transpose(1, 2), h[:m])
                self._write(ow, None, -scale, G[m:].transpose(1, 2), h[m:], accumulate=True)
                self._write_bias(ob, bb, scale, G[:m])
                self._write_bias(ob, None, -scale, G[m:], accumulate=True)
            G = below
        return G

    # -- the oracle interface -----------------------------------------------------------
    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Mini-batch gradients :math:`\tilde\nabla f_i(w_i,\mathcal D_i)`, one row per client
        (``W (k*m, P)`` with ``X (m, B, ...)``: row ``j*m+i`` on batch ``i``)."""
        X, groups = self._check(W, X)
        return self._backward(W, X, Y, groups, torch.empty_like(W), None, 1.0)

    def descend(self, W: Tensor, step: float, X: Tensor, Y: Tensor, at: Tensor | None = None,
                out: Tensor | None = None) -> Tensor:
        r""":math:`w - \mathrm{step}\cdot\tilde\nabla f_i(\mathrm{at}_i, \mathcal D_i)` (``at`` defaults
        to ``W``), the update fused with writing each layer's gradient, into ``out`` (default a new
        tensor; ``out=W`` updates ``W`` in place, which spares a pass over the parameters)."""
        at = W if at is None else at
        X, groups = self._check(at, X)
        return self._backward(at, X, Y, groups, torch.empty_like(W) if out is None else out, W, -step)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        r"""Exact :math:`\tilde\nabla^2 f_i(w_i,\mathcal D_i)\, v_i` by the R-operator (module docstring)."""
        X, groups = self._check(W, X)
        return self._hvp(W, V, X, Y, groups, torch.empty_like(W), None, 1.0)

    def _hvp(self, W, V, X, Y, groups, out, base, scale):
        r"""``out = base + scale * Hessian(W) V`` (``base`` None: ``scale * Hessian(W) V``)."""
        layers, dirs = self.layers(W), self.layers(V)
        Z0 = self._first_layer(X, *layers[0], groups)
        RZ0 = self._first_layer(X, *dirs[0], groups)
        out_layers, base_layers = self.layers(out), self._views(base)
        RG = self._hvp_from(layers, dirs, Z0, RZ0, Y if groups == 1 else Y.repeat(groups, 1), out_layers, base_layers, scale)
        (ow, ob), (bw, bb) = out_layers[0], base_layers[0]
        self._write(ow, bw, scale, RG.transpose(1, 2), self._grouped(X, groups))  # R h_0 = 0: no G_0 term
        self._write_bias(ob, bb, scale, RG)
        return out

    def _hvp_from(self, layers, dirs, Z0, RZ0, Y, out, base, scale):
        r"""The R-operator (module docstring) from the first layer's pre-activations ``Z0`` and
        their directional derivative ``RZ0``: write ``out = base + scale * (Hessian V)`` for the
        parameters of layers ``>= 1`` and return :math:`\mathcal R G_0`; layer 0 is the caller's
        (``out``, ``base``: layer views as in :meth:`_grad_from`)."""
        S, H, D, E = self._forward_from(layers, Z0, second=True)
        H = [None] + H
        # R-forward: RZ[l] = R{z_l}, RH[l] = R{h_l}
        RZ, RH = [RZ0], [None]
        for l in range(1, len(layers)):
            (weight, _), (vw, vb) = layers[l], dirs[l]
            RH.append(D[l - 1] * RZ[l - 1])
            rz = torch.baddbmm(vb, RH[l], weight.transpose(1, 2))
            rz.baddbmm_(H[l], vw.transpose(1, 2))
            RZ.append(rz)
        p, G = _softmax_ce_grad(S, Y)
        RS = RZ[-1]
        RG = (RS - (p * RS).sum(-1, keepdim=True)).mul_(p).mul_(1.0 / S.shape[-2])
        out_layers, base_layers = out, base or self._views(None)
        for l in range(len(layers) - 1, 0, -1):
            (ow, ob), (bw, bb) = out_layers[l], base_layers[l]
            weight, vw = layers[l][0], dirs[l][0]
            dH = torch.bmm(G, weight)  # before the writes: out may be the weights read
            RdH = torch.bmm(RG, weight).baddbmm_(G, vw)
            self._write(ow, bw, scale, RG.transpose(1, 2), H[l])
            self._write(ow, None, scale, G.transpose(1, 2), RH[l], accumulate=True)
            self._write_bias(ob, bb, scale, RG)
            RG = RdH.mul_(D[l - 1]).addcmul_(dH * E[l - 1], RZ[l - 1])
            if l > 1:  # G_0 itself is not needed: R h_0 = 0
                G = dH.mul_(D[l - 1])
        return RG

    @staticmethod
    def _grouped(X: Tensor, groups: int) -> Tensor:
        return X if groups == 1 else X.repeat(groups, 1, 1)

    def _hessian_term(self, layers, g_layers, P3, C3, Y3, out: list, h, variant):
        r"""HF's or the exact variant's Hessian term of :meth:`per_fedavg_step` on :math:`\mathcal D''`,
        given the first layer's pre-activations ``P3`` at :math:`w` and ``C3`` along :math:`g`: add
        it to the layers ``>= 1`` of ``out`` (layer views) and return ``(last, scale)``, the first layer's part being
        ``scale * last^T X3`` (weights) and ``scale * sum_b last`` (bias).

        * HF: ``last`` = :math:`G_0(w+\delta g) - G_0(w-\delta g)`, scale :math:`\alpha\beta/(2\delta)`
          (both points stacked on the shared batch);
        * exact: ``last`` = :math:`\mathcal R G_0` of the R-operator at :math:`w` along :math:`g`, scale :math:`\alpha\beta`.
        """
        if variant == "exact":
            return self._hvp_from(layers, g_layers, P3, C3, Y3, out, out, h.alpha * h.beta), h.alpha * h.beta
        m = P3.shape[0]
        scale = h.alpha * h.beta / (2 * h.delta)
        W_pm = P3.new_empty(2 * m * self.num_params)  # layer-major (layers): each block contiguous
        pm = self.layers(W_pm)
        for l in range(1, len(layers)):
            for j, sign in ((0, 1.0), (1, -1.0)):
                rows = slice(j * m, (j + 1) * m)
                torch.add(layers[l][0], g_layers[l][0], alpha=sign * h.delta, out=pm[l][0][rows])
                torch.add(layers[l][1], g_layers[l][1], alpha=sign * h.delta, out=pm[l][1][rows])
        Z_pm = P3.new_empty((2 * m,) + P3.shape[1:])
        torch.add(P3, C3, alpha=h.delta, out=Z_pm[:m])
        torch.add(P3, C3, alpha=-h.delta, out=Z_pm[m:])
        G_pm = self._grad_from(pm, Z_pm, Y3.repeat(2, 1), out, out, scale, half=m)
        return G_pm[:m] - G_pm[m:], scale

    # -- fused local steps (used by perfedavg.engine.local when present) -----------------------
    def fedavg_step(self, W: Tensor, batch, h, out: Tensor | None = None) -> Tensor:
        r"""FedAvg's :math:`w - \beta\tilde\nabla f_i(w,\mathcal D)` (see :func:`perfedavg.engine.local.fedavg_step`),
        into ``out`` as in :meth:`descend`."""
        return self.descend(W, h.beta, batch.x, batch.y, out=out)

    def per_fedavg_step(self, W: Tensor, batches, h, variant: str, out: Tensor | None = None) -> Tensor:
        r"""Per-FedAvg's local step (see :func:`perfedavg.engine.local.meta_gradient`), rearranged as

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
        if variant not in ("fo", "hf", "exact"):
            raise ValueError(f"unknown Per-FedAvg variant {variant!r}")
        inner, outer, hessian = batches
        X1, _ = self._check(W, inner.x)
        X2, _ = self._check(W, outer.x)
        m = self.users(W)
        layers = self.layers(W)
        (W0, b0) = layers[0]
        W0t = W0.transpose(1, 2)
        out = torch.empty_like(W) if out is None else out
        out_layers = layers if out is W else self.layers(out)
        (o0, ob0) = out_layers[0]
        # inner step: w~ = w - alpha grad f(w, D); layers >= 1 and the first bias written into W_tilde
        tilde = self.layers(W.new_empty(m * self.num_params))  # layer-major: contiguous blocks
        G1 = self._grad_from(layers, torch.baddbmm(b0, X1, W0t), inner.y, tilde, layers, -h.alpha)
        torch.add(b0, G1.sum(1, keepdim=True), alpha=-h.alpha, out=tilde[0][1])
        # outer gradient at w~ on D': first-layer pre-activations X2 W0^T + b~ - alpha (X2 X1^T) G1
        Z2 = torch.baddbmm(tilde[0][1], X2, W0t)
        Z2.baddbmm_(torch.bmm(X2, X1.transpose(1, 2)), G1, alpha=-h.alpha)
        if variant == "fo":
            G2 = self._grad_from(tilde, Z2, outer.y, out_layers, layers, -h.beta)
            self._write(o0, W0, -h.beta, G2.transpose(1, 2), X2)
            self._write_bias(ob0, b0, -h.beta, G2)
            return out
        # g = grad f(w~, D'): layers >= 1 and the first bias in g; first-layer weight G2^T X2 implicit
        g_layers = self.layers(W.new_empty(m * self.num_params))
        G2 = self._grad_from(tilde, Z2, outer.y, g_layers, None, 1.0)
        gb0 = torch.sum(G2, 1, keepdim=True, out=g_layers[0][1])
        if out is W and len(self.spans) > 1:  # the Hessian term reads w's layers >= 1, overwritten below: a copy
            upper = torch.empty_like(W)
            self._above_first(upper).copy_(self._above_first(W))
            layers = layers[:1] + self.layers(upper)[1:]
        for (ow, ob), (w_, b_), (gw, gb) in zip(out_layers[1:], layers[1:], g_layers[1:]):
            torch.add(w_, gw, alpha=-h.beta, out=ow)  # base = w - beta g, layers >= 1
            torch.add(b_, gb, alpha=-h.beta, out=ob)
        X3, _ = self._check(W, hessian.x)
        P3 = torch.baddbmm(b0, X3, W0t)  # X3 W0^T + b0
        C3 = torch.bmm(torch.bmm(X3, X2.transpose(1, 2)), G2).add_(gb0)  # X3 V0^T + c0 for v = g
        last, last_scale = self._hessian_term(layers, g_layers, P3, C3, hessian.y, out_layers, h, variant)
        self._write(o0, W0, -h.beta, G2.transpose(1, 2), X2)
        self._write(o0, None, last_scale, last.transpose(1, 2), X3, accumulate=True)
        self._write_bias(ob0, b0, -h.beta, G2)
        self._write_bias(ob0, None, last_scale, last, accumulate=True)
        return out

    # -- whole rounds in the users' sample space (used by perfedavg.engine.rounds when cheaper) --------
    def prefers_sample_space(self, data, algorithm: str, tau: int, batches: tuple[int, ...]) -> bool:
        r"""Whether :meth:`round_in_sample_space` is the way to run a round on ``data``: as set by
        ``rounds``, or with ``"auto"`` when it costs fewer first-layer multiply-adds
        (:func:`first_layer_macs`; e.g. CIFAR-10's paper split, 340 or 170 samples of 3072
        features per user, but not MNIST's, 980 or 490 of 784) and its caches fit
        (:meth:`sample_space_bytes` within :func:`memory_budget`).  ``rounds="sample_space"`` on data
        whose caches do not fit is a :class:`perfedavg.errors.UsageError`."""
        if self.rounds == "steps":
            return False
        need, budget = self.sample_space_bytes(data), memory_budget(data.x.device)
        if self.rounds == "sample_space":
            if need > budget:
                n, M = data.index.shape
                raise UsageError(
                    f"round_strategy=sample_space keeps every user's inputs and Gram matrix: {_in_units(need)} "
                    f"({n} users x {M} samples, padded to the largest user), more than {_in_units(budget)} "
                    f"({SAMPLE_SPACE_MEMORY_SHARE:.0%} of this device's memory); use steps or auto")
            return True
        cost = self.first_layer_costs(data, algorithm, tau, batches)
        return need <= budget and cost["sample_space"] < cost["steps"]

    def sample_space_bytes(self, data) -> int:
        r"""Bytes of :meth:`round_in_sample_space`'s caches on ``data``: every user's inputs and Gram
        matrix, padded to the largest user, :math:`nM(d_0 + M)` values of ``data.x``'s type."""
        n, M = data.index.shape
        return n * M * (self.sizes[0] + M) * data.x.element_size()

    def first_layer_costs(self, data, algorithm: str, tau: int, batches: tuple[int, ...]) -> dict[str, float]:
        """:func:`first_layer_macs` of a round on ``data`` either way, per user."""
        count = data.count.to(torch.float64)
        args = (algorithm, tau, batches, self.sizes[0], self.sizes[1], float(count.mean()), int(count.max()))
        return {strategy: first_layer_macs(strategy, *args) for strategy in ("steps", "sample_space")}

    def _sample_space(self, data, dtype):
        r"""Each user's inputs ``X (n, M, d_0)`` (zero rows on padding) and Gram matrix
        :math:`K_i = X_iX_i^\top` ``(n, M, M)``, computed once per data set and kept."""
        if self._space is None or self._space[0] is not data or self._space[1] != dtype:
            X = data.x.index_select(0, data.index.reshape(-1)).to(dtype).reshape(*data.index.shape, -1)
            X = X.masked_fill((data.weight <= 0).unsqueeze(-1), 0.0)
            self._space = (data, dtype, X, torch.bmm(X, X.transpose(1, 2)))
        return self._space[2:]

    def round_in_sample_space(self, W: Tensor, data, clients: Tensor, steps, h, algorithm: str) -> Tensor:
        r"""One round of ``S`` runs, :math:`w_{k+1}` ``(S, P)``, with every first-layer quantity kept in
        the sampled users' *sample space* [derive].

        ``W (S, P)``: each run's :math:`w_k`; ``clients (S m,)``: the sampled users, run by run;
        ``steps``: per local step, the positions ``(S m, B)`` of the batches
        :math:`\mathcal D, \mathcal D', \mathcal D''` (FedAvg: :math:`\mathcal D`) in each user's
        index row.  The same draws and the same arithmetic as :meth:`fedavg_step` /
        :meth:`per_fedavg_step` round after round, rearranged:

        every first-layer change is a sum of terms :math:`c\,G^\top X_{\mathcal B}` over batches of
        user :math:`i`'s data :math:`X_i` (``N_i`` rows), so user :math:`i`'s first layer is
        :math:`W_0^{(i)} = W_{0,k} - A_i^\top X_i` with :math:`A_i` ``(N_i, d_1)`` the accumulated
        :math:`cG` rows at the drawn positions, and its pre-activations on all of its data are

        .. math:: Z_i = X_i W_0^{(i)\top} = X_i W_{0,k}^\top - K_i A_i,\qquad K_i = X_iX_i^\top .

        A batch's pre-activations are rows of :math:`Z_i`; those at :math:`\tilde w` and
        :math:`w\pm\delta g` add Gram blocks :math:`K_i[\mathcal D', \mathcal D]` as in
        :meth:`per_fedavg_step`; a term updates :math:`Z_i \mathrel{-}= K_i[:, \mathcal B]\, cG`
        (``N_i`` by ``B``) and :math:`A_i`.  The users' first layers are never formed: the round
        ends with the mean :math:`W_{0,k+1} = W_{0,k} - \frac1m\sum_i A_i^\top X_i`.  Per user and
        round the first layer costs :math:`2N_i d_0 d_1` plus :math:`N_i d_1` per row of a term,
        instead of :math:`d_0 d_1` per row of every batch read or written
        (:func:`first_layer_macs`).  The layers above are run exactly as in the per-step
        methods (the first layer's weight block of the per-user buffers is not used).
        """
        if algorithm not in ("fedavg", "fo", "hf", "exact"):
            raise ValueError(f"unknown algorithm {algorithm!r}")
        X, K = self._sample_space(data, W.dtype)
        S, P = W.shape
        mm = clients.numel()
        m, M = mm // S, X.shape[1]
        _, b, _, d0, d1 = self.spans[0]
        counts = data.count[clients].tolist()
        users = clients.tolist()
        W0 = W[:, :b].view(S, d1, d0)
        Z = W.new_zeros((mm, M, d1))  # Z_i = X_i W_0^(i)T, no bias
        for j, (i, N) in enumerate(zip(users, counts)):
            torch.mm(X[i, :N], W0[j // m].t(), out=Z[j, :N])
        A = torch.zeros_like(Z)
        on_device = clients.to(K.device)
        Kc = K.index_select(0, on_device)
        offsets = (torch.arange(mm, device=K.device) * M).unsqueeze(1)
        labels = data.y.index_select(0, data.index.index_select(0, on_device).reshape(-1)).view(mm, M)

        def rows(T: Tensor, p: Tensor) -> Tensor:  # T (mm, M, k) at positions p (mm, B): (mm, B, k)
            return T.view(mm * M, -1).index_select(0, (p + offsets).reshape(-1)).view(*p.shape, -1)

        def block(Kp: Tensor, q: Tensor) -> Tensor:  # K_i[p, q] from the rows Kp = K_i[p, :]
            return Kp.gather(2, q.unsqueeze(1).expand(-1, Kp.shape[1], -1))

        def add_term(Kp: Tensor, p: Tensor, CG: Tensor) -> None:  # W_0^(i) -= CG^T X_i[p]
            if A.is_cuda:  # a position drawn twice adds twice: CUDA's scatter_add_ does that in any order, index_put_ in one
                A.view(mm * M, -1).index_put_(((p + offsets).reshape(-1),), CG.reshape(-1, CG.shape[-1]), accumulate=True)
            else:
                A.scatter_add_(1, p.unsqueeze(-1).expand_as(CG), CG)
            Z.baddbmm_(Kp.transpose(1, 2), CG, alpha=-1.0)

        U = W.new_empty((mm, P))
        U[:, b:] = W[:, None, b:].expand(S, m, P - b).reshape(mm, P - b)
        layers = self.layers(U)
        for positions in steps:
            b0 = layers[0][1]
            out = torch.empty_like(U)
            out_layers = self.layers(out)
            ob0 = out_layers[0][1]
            p1 = positions[0]
            y1 = labels.gather(1, p1)
            if algorithm == "fedavg":
                G = self._grad_from(layers, rows(Z, p1) + b0, y1, out_layers, layers, -h.beta)
                torch.add(b0, G.sum(1, keepdim=True), alpha=-h.beta, out=ob0)
                add_term(rows(Kc, p1), p1, G.mul_(h.beta))
                U, layers = out, out_layers
                continue
            p2 = positions[1]
            tilde = self.layers(torch.empty_like(U))
            G1 = self._grad_from(layers, rows(Z, p1) + b0, y1, tilde, layers, -h.alpha)
            torch.add(b0, G1.sum(1, keepdim=True), alpha=-h.alpha, out=tilde[0][1])
            K2 = rows(Kc, p2)
            Z2 = (rows(Z, p2) + tilde[0][1]).baddbmm_(block(K2, p1), G1, alpha=-h.alpha)
            y2 = labels.gather(1, p2)
            if algorithm == "fo":
                G2 = self._grad_from(tilde, Z2, y2, out_layers, layers, -h.beta)
                torch.add(b0, G2.sum(1, keepdim=True), alpha=-h.beta, out=ob0)
                add_term(K2, p2, G2.mul_(h.beta))
                U, layers = out, out_layers
                continue
            g = torch.empty_like(U)
            g_layers = self.layers(g)
            G2 = self._grad_from(tilde, Z2, y2, g_layers, None, 1.0)
            gb0 = torch.sum(G2, 1, keepdim=True, out=g_layers[0][1])
            torch.add(U[:, b:], g[:, b:], alpha=-h.beta, out=out[:, b:])  # w - beta g, layers >= 1 and b_0
            p3 = positions[2]
            K3 = rows(Kc, p3)
            P3 = rows(Z, p3).add_(b0)
            C3 = torch.bmm(block(K3, p2), G2).add_(gb0)
            y3 = labels.gather(1, p3)
            last, last_scale = self._hessian_term(layers, g_layers, P3, C3, y3, out_layers, h, algorithm)
            ob0.add_(last.sum(1, keepdim=True), alpha=last_scale)
            add_term(torch.cat([K2, K3], 1), torch.cat([p2, p3], 1), torch.cat([G2.mul_(h.beta), last.mul_(-last_scale)], 1))
            U, layers = out, out_layers
        result = W.new_empty((S, P))
        result[:, b:] = U.view(S, m, P)[:, :, b:].mean(1)
        new_W0 = result[:, :b].view(S, d1, d0)
        new_W0.copy_(W0)
        for j, (i, N) in enumerate(zip(users, counts)):
            new_W0[j // m].addmm_(A[j, :N].t(), X[i, :N], alpha=-1.0 / m)
        return result


def first_layer_macs(strategy: str, algorithm: str, tau: int, batches: tuple[int, ...], d0: int, d1: int,
                     mean_count: float, max_count: int) -> float:
    r"""Multiply-adds of the first layer (``d0 -> d1``) for one user and one round of ``tau`` local steps.

    ``batches``: :math:`(|\mathcal D|,)` for FedAvg, :math:`(|\mathcal D|, |\mathcal D'|, |\mathcal D''|)`
    otherwise; ``mean_count`` / ``max_count``: samples per user, mean and largest.

    * ``"steps"`` (:meth:`MLPOracle.fedavg_step`, :meth:`MLPOracle.per_fedavg_step`): per step one
      forward GEMM per batch read, the Gram blocks of the first-layer kernel identity and one
      weight GEMM per term of the update;
    * ``"sample_space"`` (:meth:`MLPOracle.round_in_sample_space`): :math:`X_iW_0^\top` on all of the
      user's data at the start and :math:`A_i^\top X_i` at the end (:math:`2N_i d_0 d_1`), and per step
      the update of the pre-activations, :math:`K_i[:, \text{terms}]\,G` (``max_count`` rows:
      padded), plus the small Gram-block products.

    The layers above the first cost the same either way and are left out; so is the one-off Gram
    matrix :math:`K_i = X_iX_i^\top` of the sample-space rounds (once per data set, not per round).
    """
    D = batches[0]
    if algorithm == "fedavg":
        if strategy == "steps":
            return tau * 2 * D * d0 * d1
        return 2 * mean_count * d0 * d1 + tau * max_count * D * d1
    D1 = batches[1]
    reads, terms = (D + D1, D1) if algorithm == "fo" else (D + D1 + batches[2], D1 + batches[2])
    blocks = D1 * D * d1 + (0 if algorithm == "fo" else batches[2] * D1 * d1)
    if strategy == "steps":
        grams = D1 * D * d0 + (0 if algorithm == "fo" else batches[2] * D1 * d0)
        return tau * ((reads + terms) * d0 * d1 + grams + blocks)
    return 2 * mean_count * d0 * d1 + tau * (max_count * terms * d1 + blocks)


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


def mlp_oracle_factory(sizes: tuple[int, ...], activation: str = "elu", rounds: str = "auto"):
    """A zero-argument factory for :attr:`perfedavg.engine.task.Task.oracle_factory`."""
    return partial(MLPOracle, tuple(int(s) for s in sizes), activation, rounds)
