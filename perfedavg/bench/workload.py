r"""What ``perfedavg bench`` times: the paper's workload and the matmul FLOPs of one engine round.

Workload (docs/paper.md §5, MNIST setting): :math:`n = 50` users, :math:`r = 0.2` (10 users per
round), :math:`\tau = 10`, batch sizes :math:`D = D' = D'' = 40`, the MLP 784-80-60-10 with ELU,
random data of MNIST's shape (1x28x28 inputs, 10 classes); ``--shape cifar10`` the same on
CIFAR-10's shape (3x32x32, MLP 3072-80-60-10, 340 samples per user by default), where the engine
runs whole rounds in the users' sample space.

The FLOP counts follow the matmul shapes :class:`perfedavg.engine.mlp.MLPOracle` runs.  This
module needs no torch (the command line reads its choices here); the task that realises the
workload is built by :func:`perfedavg.bench.measure.make_task`.
"""

from __future__ import annotations

import itertools
from typing import Any

from perfedavg.algorithms import ALGORITHMS

#: the algorithms the bench can time (its ``--variants`` option and its saved JSON call them variants)
VARIANTS = ALGORITHMS
SIZES = (784, 80, 60, 10)
#: ``--shape``: input shape of the random data, and the samples per user by default (MNIST: 1000;
#: CIFAR-10: 340, the larger users of the paper's split, docs/paper.md §7)
SHAPES = {"mnist": ((1, 28, 28), 1000), "cifar10": ((3, 32, 32), 340)}


def mlp_sizes(shape: str) -> tuple[int, ...]:
    """The paper's MLP (hidden 80 and 60, 10 classes) on flattened inputs of ``shape``."""
    c, h, w = SHAPES[shape][0]
    return (c * h * w, *SIZES[1:])


def layer_units(sizes: tuple[int, ...], m: int, B: int) -> list[int]:
    r"""FLOPs of one ``(m, B, d_l) @ (m, d_l, d_{l+1})`` matmul per layer: :math:`2 m B d_l d_{l+1}`."""
    return [2 * m * B * din * dout for din, dout in itertools.pairwise(sizes)]


def grad_flops(units: list[int]) -> int:
    r"""One gradient: forward (1 matmul per layer), weight gradient (1 per layer) and input
    gradient (1 per layer but the first): :math:`\sum_l u_l (2 + [l>0])`."""
    return sum(u * (2 + (l > 0)) for l, u in enumerate(units))


def hvp_flops(units: list[int]) -> int:
    r"""One R-operator Hessian-vector product as :class:`perfedavg.engine.mlp.MLPOracle` runs it:
    first layer 3 matmuls (:math:`xW^\top`, :math:`xV^\top`, :math:`\mathcal RG^\top x`), every
    other layer 8 (forward 1, R-forward 2, R weight gradient 2, :math:`GW`, :math:`\mathcal RG W + GV`)."""
    return sum(u * (3 if l == 0 else 8) for l, u in enumerate(units))


def upper_grad_flops(units: list[int]) -> int:
    r"""The part of :func:`grad_flops` above the first layer: :math:`3\sum_{l>0} u_l`."""
    return sum(3 * u for u in units[1:])


def kernel_flops(sizes: tuple[int, ...], m: int, B: int) -> int:
    r"""One first-layer kernel correction :math:`(X_b X_a^\top)\,G_a` of
    :meth:`perfedavg.engine.mlp.MLPOracle.per_fedavg_step` (batches of ``B``):
    :math:`2mB^2d_0 + 2mB^2d_1`."""
    return 2 * m * B * B * sizes[0] + 2 * m * B * B * sizes[1]


def engine_matmul_flops(variant: str, sizes: tuple[int, ...] = SIZES, m: int = 10, B: int = 40, tau: int = 10) -> int:
    r"""Matmul FLOPs of one engine round (``m`` clients, ``tau`` steps, batch ``B``), counted from
    the shapes :class:`perfedavg.engine.mlp.MLPOracle` runs.

    FedAvg: one gradient per step.  Per-FedAvg never forms the first layer at
    :math:`\tilde w` or :math:`w\pm\delta g` (first-layer kernel identity): per step the first
    layer costs one forward GEMM per batch (:math:`\mathcal D, \mathcal D'`, and
    :math:`\mathcal D''` for HF/exact), one kernel correction per derived point
    (:func:`kernel_flops`; FO one, HF/exact two) and one weight GEMM per term of the update
    (FO one, HF/exact two); the layers above run as usual: FO two gradients, HF four (the
    pair at :math:`w\pm\delta g` stacked), exact two plus the R-operator's (8 per layer).
    """
    u = layer_units(sizes, m, B)
    upper, kernel = upper_grad_flops(u), kernel_flops(sizes, m, B)
    per_step = {
        "fedavg": grad_flops(u),
        "fo": 3 * u[0] + 2 * upper + kernel,
        "hf": 5 * u[0] + 4 * upper + 2 * kernel,
        "exact": 5 * u[0] + 2 * upper + (hvp_flops(u) - 3 * u[0]) + 2 * kernel,  # R-operator above layer 0
    }[variant]
    return tau * per_step


def engine_flops(
    oracle: Any, task: Any, variant: str, m: int, B: int = 40, tau: int = 10, sizes: tuple[int, ...] = SIZES
) -> tuple[int, str]:
    r"""Matmul FLOPs of one engine round as the oracle runs it, and how (``"steps"`` or
    ``"sample_space"``, :meth:`perfedavg.engine.mlp.MLPOracle.prefers_sample_space`): in sample
    space the first layer's part of :func:`engine_matmul_flops` (``2 m`` times
    :func:`perfedavg.engine.mlp.first_layer_macs` ``("steps", ...)``) is replaced by its own."""
    batches = (B,) if variant == "fedavg" else (B, B, B)
    flops = engine_matmul_flops(variant, sizes, m, B, tau)
    if not oracle.prefers_sample_space(task.train, variant, tau, batches):
        return flops, "steps"
    cost = oracle.first_layer_costs(task.train, variant, tau, batches)
    return int(flops + 2 * m * (cost["sample_space"] - cost["steps"])), "sample_space"
