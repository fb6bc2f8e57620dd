r"""Whole rounds of the MLP in the users' sample space, and the cost model that chooses them.

Every first-layer change of user :math:`i` is :math:`-A_i^\top X_i` for its own data :math:`X_i`, so
a round can keep its pre-activations :math:`Z_i = X_iW_{0,k}^\top - K_iA_i` on all of its data
(:math:`K_i = X_iX_i^\top`, once per data set) and never form a user's first layer at all
(:func:`round_in_sample_space`).  That is cheaper where users hold few samples of many features
(CIFAR-10's split: 340 or 170 samples of 3072 features per user), not where they hold many
(MNIST's: 980 or 490 of 784); :func:`prefers_sample_space` decides by :func:`first_layer_macs`
and by whether the caches fit in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from perfedavg.algorithms import ALGORITHMS, Algorithm
from perfedavg.engine.local import StepSizes
from perfedavg.engine.memory import MEMORY_SHARE, in_units, memory_budget
from perfedavg.engine.mlp.derivatives import grad_from
from perfedavg.engine.mlp.layout import MLP
from perfedavg.engine.mlp.steps import hessian_term
from perfedavg.engine.task import ClientData
from perfedavg.errors import UsageError

#: how the MLP oracle runs a round: per local step, in each user's sample space, or the cheaper
ROUND_STRATEGIES = ("auto", "steps", "sample_space")


def first_layer_macs(
    strategy: str,
    algorithm: Algorithm,
    tau: int,
    batches: tuple[int, ...],
    d0: int,
    d1: int,
    mean_count: float,
    max_count: int,
) -> float:
    r"""Multiply-adds of the first layer (``d0 -> d1``) for one user and one round of ``tau`` local steps.

    ``batches``: :math:`(|\mathcal D|,)` for FedAvg, :math:`(|\mathcal D|, |\mathcal D'|, |\mathcal D''|)`
    otherwise; ``mean_count`` / ``max_count``: samples per user, mean and largest.

    * ``"steps"`` (:mod:`perfedavg.engine.mlp.steps`): per step one forward GEMM per batch read, the
      Gram blocks of the first-layer kernel identity and one weight GEMM per term of the update;
    * ``"sample_space"`` (:func:`round_in_sample_space`): :math:`X_iW_0^\top` on all of the
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


def sample_space_bytes(net: MLP, data: ClientData) -> int:
    r"""Bytes of :func:`round_in_sample_space`'s caches on ``data``: every user's inputs and Gram
    matrix, padded to the largest user, :math:`nM(d_0 + M)` values of ``data.x``'s type."""
    n, M = data.index.shape
    return int(n * M * (net.sizes[0] + M) * data.x.element_size())


def first_layer_costs(
    net: MLP, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]
) -> dict[str, float]:
    """:func:`first_layer_macs` of a round on ``data`` either way, per user."""
    count = data.count.to(torch.float64)
    args = (algorithm, tau, batches, net.sizes[0], net.sizes[1], float(count.mean()), int(count.max()))
    return {strategy: first_layer_macs(strategy, *args) for strategy in ("steps", "sample_space")}


def prefers_sample_space(
    net: MLP, rounds: str, data: ClientData, algorithm: Algorithm, tau: int, batches: tuple[int, ...]
) -> bool:
    r"""Whether :func:`round_in_sample_space` is the way to run a round on ``data``: as set by
    ``rounds`` (:data:`ROUND_STRATEGIES`), or with ``"auto"`` when it costs fewer first-layer
    multiply-adds (:func:`first_layer_costs`) and its caches fit (:func:`sample_space_bytes` within
    :func:`memory_budget`).  ``rounds="sample_space"`` on data whose caches do not fit is a
    :class:`perfedavg.errors.UsageError`."""
    if rounds == "steps":
        return False
    need, budget = sample_space_bytes(net, data), memory_budget(data.x.device)
    if rounds == "sample_space":
        if need > budget:
            n, M = data.index.shape
            raise UsageError(
                f"round_strategy=sample_space keeps every user's inputs and Gram matrix: {in_units(need)} "
                f"({n} users x {M} samples, padded to the largest user), more than {in_units(budget)} "
                f"({MEMORY_SHARE:.0%} of this device's memory); use steps or auto"
            )
        return True
    cost = first_layer_costs(net, data, algorithm, tau, batches)
    return need <= budget and cost["sample_space"] < cost["steps"]


def inputs_and_grams(data: ClientData, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    r"""Each user's inputs ``X (n, M, d_0)`` in ``dtype`` (zero rows on padding) and Gram matrix
    :math:`K_i = X_iX_i^\top` ``(n, M, M)``."""
    X = data.x.index_select(0, data.index.reshape(-1)).to(dtype).reshape(*data.index.shape, -1)
    X = X.masked_fill((data.weight <= 0).unsqueeze(-1), 0.0)
    return X, torch.bmm(X, X.transpose(1, 2))


def round_in_sample_space(
    net: MLP,
    X: Tensor,
    K: Tensor,
    W: Tensor,
    data: ClientData,
    clients: Tensor,
    steps: Sequence[tuple[Tensor, ...]],
    h: StepSizes,
    algorithm: Algorithm,
) -> Tensor:
    r"""One round of ``S`` runs, :math:`w_{k+1}` ``(S, P)``, with every first-layer quantity kept in
    the sampled users' *sample space* [derive].

    ``X``, ``K``: every user's inputs and Gram matrix (:func:`inputs_and_grams` of ``data``);
    ``W (S, P)``: each run's :math:`w_k`; ``clients (S m,)``: the sampled users, run by run;
    ``steps``: per local step, the positions ``(S m, B)`` of the batches
    :math:`\mathcal D, \mathcal D', \mathcal D''` (FedAvg: :math:`\mathcal D`) in each user's
    index row.  The same draws and the same arithmetic as :func:`perfedavg.engine.mlp.steps.fedavg_step`
    / :func:`perfedavg.engine.mlp.steps.per_fedavg_step` round after round, rearranged:

    every first-layer change is a sum of terms :math:`c\,G^\top X_{\mathcal B}` over batches of
    user :math:`i`'s data :math:`X_i` (``N_i`` rows), so user :math:`i`'s first layer is
    :math:`W_0^{(i)} = W_{0,k} - A_i^\top X_i` with :math:`A_i` ``(N_i, d_1)`` the accumulated
    :math:`cG` rows at the drawn positions, and its pre-activations on all of its data are

    .. math:: Z_i = X_i W_0^{(i)\top} = X_i W_{0,k}^\top - K_i A_i,\qquad K_i = X_iX_i^\top .

    A batch's pre-activations are rows of :math:`Z_i`; those at :math:`\tilde w` and
    :math:`w\pm\delta g` add Gram blocks :math:`K_i[\mathcal D', \mathcal D]` as in the per-step
    Per-FedAvg; a term updates :math:`Z_i \mathrel{-}= K_i[:, \mathcal B]\, cG`
    (``N_i`` by ``B``) and :math:`A_i`.  The users' first layers are never formed: the round
    ends with the mean :math:`W_{0,k+1} = W_{0,k} - \frac1m\sum_i A_i^\top X_i`.  Per user and
    round the first layer costs :math:`2N_i d_0 d_1` plus :math:`N_i d_1` per row of a term,
    instead of :math:`d_0 d_1` per row of every batch read or written
    (:func:`first_layer_macs`).  The layers above are run exactly as in the per-step
    functions (the first layer's weight block of the per-user buffers is not used).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    S, P = W.shape
    mm = clients.numel()
    m, M = mm // S, X.shape[1]
    _, b, _, d0, d1 = net.spans[0]
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
        # a position drawn twice adds twice: CUDA's scatter_add_ does that in any order, index_put_ in one
        if A.is_cuda:
            A.view(mm * M, -1).index_put_(((p + offsets).reshape(-1),), CG.reshape(-1, CG.shape[-1]), accumulate=True)
        else:
            A.scatter_add_(1, p.unsqueeze(-1).expand_as(CG), CG)
        Z.baddbmm_(Kp.transpose(1, 2), CG, alpha=-1.0)

    U = W.new_empty((mm, P))
    U[:, b:] = W[:, None, b:].expand(S, m, P - b).reshape(mm, P - b)
    layers = net.layers(U)
    for positions in steps:
        b0 = layers[0][1]
        out = torch.empty_like(U)
        out_layers = net.layers(out)
        ob0 = out_layers[0][1]
        p1 = positions[0]
        y1 = labels.gather(1, p1)
        if algorithm == "fedavg":
            G = grad_from(net, layers, rows(Z, p1) + b0, y1, out_layers, layers, -h.beta)
            torch.add(b0, G.sum(1, keepdim=True), alpha=-h.beta, out=ob0)
            add_term(rows(Kc, p1), p1, G.mul_(h.beta))
            U, layers = out, out_layers
            continue
        p2 = positions[1]
        tilde = net.layers(torch.empty_like(U))
        G1 = grad_from(net, layers, rows(Z, p1) + b0, y1, tilde, layers, -h.alpha)
        torch.add(b0, G1.sum(1, keepdim=True), alpha=-h.alpha, out=tilde[0][1])
        K2 = rows(Kc, p2)
        Z2 = (rows(Z, p2) + tilde[0][1]).baddbmm_(block(K2, p1), G1, alpha=-h.alpha)
        y2 = labels.gather(1, p2)
        if algorithm == "fo":
            G2 = grad_from(net, tilde, Z2, y2, out_layers, layers, -h.beta)
            torch.add(b0, G2.sum(1, keepdim=True), alpha=-h.beta, out=ob0)
            add_term(K2, p2, G2.mul_(h.beta))
            U, layers = out, out_layers
            continue
        g = torch.empty_like(U)
        g_layers = net.layers(g)
        G2 = grad_from(net, tilde, Z2, y2, g_layers, None, 1.0)
        gb0 = torch.sum(G2, 1, keepdim=True, out=g_layers[0][1])
        torch.add(U[:, b:], g[:, b:], alpha=-h.beta, out=out[:, b:])  # w - beta g, layers >= 1 and b_0
        p3 = positions[2]
        K3 = rows(Kc, p3)
        P3 = rows(Z, p3).add_(b0)
        C3 = torch.bmm(block(K3, p2), G2).add_(gb0)
        y3 = labels.gather(1, p3)
        last, last_scale = hessian_term(net, layers, g_layers, P3, C3, y3, out_layers, h, algorithm)
        ob0.add_(last.sum(1, keepdim=True), alpha=last_scale)
        add_term(
            torch.cat([K2, K3], 1), torch.cat([p2, p3], 1), torch.cat([G2.mul_(h.beta), last.mul_(-last_scale)], 1)
        )
        U, layers = out, out_layers
    result = W.new_empty((S, P))
    result[:, b:] = U.view(S, m, P)[:, :, b:].mean(1)
    new_W0 = result[:, :b].view(S, d1, d0)
    new_W0.copy_(W0)
    for j, (i, N) in enumerate(zip(users, counts)):
        new_W0[j // m].addmm_(A[j, :N].t(), X[i, :N], alpha=-1.0 / m)
    return result
