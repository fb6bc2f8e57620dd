"""The hand-written MLP oracle against autograd, the fused local steps against the generic
ones, and ``perfedavg bench``'s FLOP counts and command line."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from perfedavg.bench.pool import QUIET_SPREAD, pool, throughput_spread
from perfedavg.bench.workload import engine_matmul_flops, grad_flops, kernel_flops, layer_units
from perfedavg.engine.config import RunConfig
from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.mlp import FUSED_WRITE_MIN, MLPOracle, first_layer_macs, mlp_oracle_factory
from perfedavg.engine.models import mlp
from perfedavg.engine.oracle import AutogradOracle, make_oracle
from perfedavg.engine.rounds import local_round, local_rounds
from perfedavg.engine.sampling import Batch
from perfedavg.engine.task import ClientData, Task
from tests.helpers import uneven_mlp_task

#: float64 agreement of two exact computations of the same quantity whose sums run in other
#: orders: entries are O(1), so round-off is ~1e-15; 1e-10 leaves ample room and still
#: catches any wrong term (which would be O(1e-2) or larger).
TIGHT = 1e-10

#: (sizes, activation): logistic regression, 1 and 2 hidden layers, a wide first layer
CASES = [
    ((6, 3), "elu"),
    ((7, 5, 3), "elu"),
    ((7, 5, 3), "tanh"),
    ((7, 5, 3), "relu"),
    ((9, 6, 4, 3), "elu"),
    ((9, 6, 4, 3), "tanh"),
    ((300, 60, 5), "elu"),
    ((300, 60, 5), "relu"),
]


def _problem(sizes, m, B, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    P = MLPOracle(sizes).num_params
    W = torch.randn(m, P, generator=g, dtype=torch.float64) * scale
    V = torch.randn(m, P, generator=g, dtype=torch.float64)
    X = torch.randn(m, B, sizes[0], generator=g, dtype=torch.float64)
    Y = torch.randint(0, sizes[-1], (m, B), generator=g)
    return W, V, X, Y


def _close(a, b, tol=TIGHT):
    err = float((a - b).abs().max())
    assert err <= tol * max(1.0, float(b.abs().max())), err


@pytest.mark.parametrize("sizes,activation", CASES)
@pytest.mark.parametrize("m,B", [(1, 1), (4, 1), (3, 7)])
def test_grad_and_hvp_equal_autograd(sizes, activation, m, B):
    W, V, X, Y = _problem(sizes, m, B, seed=m * 10 + B)
    fast, ref = MLPOracle(sizes, activation), AutogradOracle(mlp(sizes, activation)[0])
    _close(fast.grad(W, X, Y), ref.grad(W, X, Y))
    _close(fast.hvp(W, V, X, Y), ref.hvp(W, V, X, Y))


@pytest.mark.parametrize("sizes,activation", CASES[:2] + CASES[-2:])
def test_shared_batch_grad_and_descend(sizes, activation):
    """``W`` with 2m rows on m batches = the batch repeated (grad and hvp); ``descend`` = ``W - step * grad(at)``."""
    W, V, X, Y = _problem(sizes, 3, 5)
    fast, ref = MLPOracle(sizes, activation), AutogradOracle(mlp(sizes, activation)[0])
    W2 = torch.cat([W, V])
    _close(fast.grad(W2, X, Y), ref.grad(W2, X.repeat(2, 1, 1), Y.repeat(2, 1)))
    _close(fast.hvp(W2, W2.flip(0), X, Y), ref.hvp(W2, W2.flip(0), X.repeat(2, 1, 1), Y.repeat(2, 1)))
    _close(fast.descend(W, 0.3, X, Y), W - 0.3 * ref.grad(W, X, Y))
    _close(fast.descend(W, 0.3, X, Y, at=V), W - 0.3 * ref.grad(V, X, Y))


def test_image_shaped_inputs_are_flattened_and_float32_agrees():
    sizes = (16, 5, 3)
    W, _V, X, Y = _problem(sizes, 2, 4)
    X4 = X.reshape(2, 4, 1, 4, 4)
    fast, ref = MLPOracle(sizes), AutogradOracle(mlp(sizes)[0])
    _close(fast.grad(W, X4, Y), ref.grad(W, X, Y))
    # float32: same formulas, single precision round-off (~1e-7 relative, summed over B)
    g32 = fast.grad(W.float(), X.float(), Y)
    assert g32.dtype == torch.float32
    _close(g32.double(), ref.grad(W, X, Y), tol=1e-5)


#: ELU's :math:`e^{\min(z,0)} - 1` (``_hidden``) against torch's ``expm1``: one unit in the last place of 1
ELU_ULP = {torch.float32: 2.0**-23, torch.float64: 2.0**-52}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_and_its_derivatives_by_exp_agree_with_torch(dtype):
    r"""``_hidden``'s ELU (by ``exp``, vectorized) is torch's ``F.elu`` (by ``expm1``) to one unit of 1's
    last place, its derivatives are :math:`e^{\min(z,0)}` and that on :math:`z\le 0`, and it is exact for
    :math:`z \ge 0`."""
    from perfedavg.engine.mlp.kernels import hidden as _hidden

    z = torch.cat([torch.linspace(-30, 5, 20001, dtype=dtype), torch.tensor([-1e-30, 0.0, 1e-30], dtype=dtype)])
    H, D, E = _hidden(z.clone(), "elu", True)
    expected = torch.nn.functional.elu(z)
    assert float((H - expected).abs().max()) <= ELU_ULP[dtype]
    assert torch.equal(H[z >= 0], z[z >= 0])
    assert torch.equal(D, torch.exp(z.clamp(max=0)))
    assert torch.equal(E, torch.where(z <= 0, D, torch.zeros_like(D)))


@pytest.mark.parametrize("variant", ["fo", "hf", "exact"])
def test_fused_per_fedavg_step_equals_generic_meta_gradient(variant):
    sizes = (8, 6, 3)
    W, _V, _X, _Y = _problem(sizes, 3, 4)
    g = torch.Generator().manual_seed(3)
    batches = tuple(
        Batch(torch.randn(3, 4, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (3, 4), generator=g))
        for _ in range(3)
    )
    h = StepSizes(alpha=0.4, beta=0.3, delta=1e-3)
    fast, ref = MLPOracle(sizes), AutogradOracle(mlp(sizes)[0])
    expected = W - h.beta * meta_gradient(ref, W, batches, h, variant)
    # HF divides round-off by 2*delta = 2e-3: still ~1e-13, far inside TIGHT
    _close(fast.per_fedavg_step(W, batches, h, variant), expected)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sizes,activation", CASES)
@pytest.mark.parametrize("variant", ["fo", "hf", "exact"])
def test_fused_step_equals_generic_for_every_shape_and_thread_count(sizes, activation, variant, threads):
    """The first-layer kernel identity (w~ and w +- delta g never formed) on logistic regression,
    deeper and wider MLPs, batches of three sizes, and both ways of writing a layer
    (``_write`` picks the GEMM form by thread count and block size: with 2 threads the 300x60
    first layer is written fused, the blocks below ``FUSED_WRITE_MIN`` unfused)."""
    W, _, _, _ = _problem(sizes, 3, 1, seed=len(sizes))
    g = torch.Generator().manual_seed(4)
    batches = tuple(
        Batch(
            torch.randn(3, B, sizes[0], generator=g, dtype=torch.float64),
            torch.randint(0, sizes[-1], (3, B), generator=g),
        )
        for B in (4, 6, 5)
    )
    h = StepSizes(alpha=0.4, beta=0.3, delta=1e-3)
    fast, ref = MLPOracle(sizes, activation), AutogradOracle(mlp(sizes, activation)[0])
    expected = W - h.beta * meta_gradient(ref, W, batches, h, variant)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = fast.per_fedavg_step(W, batches, h, variant)
        fedavg = fast.fedavg_step(W, batches[0], h)
    finally:
        torch.set_num_threads(before)
    _close(got, expected)  # HF: round-off / (2 delta) ~ 1e-13, inside TIGHT
    _close(fedavg, W - h.beta * ref.grad(W, batches[0].x, batches[0].y))


@pytest.mark.parametrize("layout", ["rows", "layer_major"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sizes,activation", CASES)
def test_steps_in_place_equal_steps_into_a_new_tensor_bit_for_bit(sizes, activation, threads, layout):
    """``out=W`` (the engine's in-place update: every layer read before it is written, the
    Hessian term on a copy of the layers above the first) gives the very bits of a new tensor,
    for every fused step, both write forms and both layouts; and ``W`` is then the result."""
    W, _, _, _ = _problem(sizes, 3, 1, seed=len(sizes) + 1)
    if layout == "layer_major":
        W = MLPOracle(sizes, activation).stack(W, 1)
    g = torch.Generator().manual_seed(5)
    batches = tuple(
        Batch(
            torch.randn(3, B, sizes[0], generator=g, dtype=torch.float64),
            torch.randint(0, sizes[-1], (3, B), generator=g),
        )
        for B in (4, 6, 5)
    )
    h = StepSizes(alpha=0.4, beta=0.3, delta=1e-3)
    fast = MLPOracle(sizes, activation)
    steps = {"fedavg": lambda V, out=None: fast.fedavg_step(V, batches[0], h, out=out)}
    steps.update(
        {v: (lambda V, out=None, v=v: fast.per_fedavg_step(V, batches, h, v, out=out)) for v in ("fo", "hf", "exact")}
    )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, step in steps.items():
            new, V = step(W), W.clone()
            assert step(V, out=V) is V, name
            assert torch.equal(V, new), name
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("sizes,activation", CASES[:2] + CASES[4:7])
def test_layer_major_stack_holds_each_layer_of_all_users_contiguously(sizes, activation):
    """``stack(W, m)`` repeats each run's model for its users, every layer's weights (and biases) of
    all users one contiguous block; ``layers`` reads it as it reads rows; ``average`` is the mean of
    each run's users."""
    fast = MLPOracle(sizes, activation)
    rows, _, _, _ = _problem(sizes, 6, 1)
    U = fast.stack(rows, 1)  # six runs of one user each: the rows themselves
    assert U.shape == (6 * fast.num_params,) and fast.users(U) == 6
    for (w, b), (uw, ub) in zip(fast.layers(rows), fast.layers(U)):
        assert uw.is_contiguous() and ub.is_contiguous()
        assert torch.equal(uw, w) and torch.equal(ub, b)
    assert torch.equal(fast.average(U, 6), rows)  # the mean of one user is that user
    _close(fast.average(U, 2), rows.view(2, 3, -1).mean(1))
    repeated = fast.stack(rows[:2], 3)  # two runs, three users each
    for (w, b), (uw, ub) in zip(fast.layers(rows[:2].repeat_interleave(3, 0)), fast.layers(repeated)):
        assert torch.equal(uw, w) and torch.equal(ub, b)
    with pytest.raises(ValueError, match="layer-major"):
        fast.users(torch.zeros(fast.num_params + 1))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sizes,activation", CASES)
def test_fused_steps_on_a_layer_major_stack_equal_steps_on_rows(sizes, activation, threads):
    """The engine's layout (every layer of all users contiguous, so GEMMs write in place on one batched
    call) gives the steps of the row layout to float64 round-off, in place as the engine runs them."""
    W, _, _, _ = _problem(sizes, 3, 1, seed=len(sizes) + 2)
    g = torch.Generator().manual_seed(6)
    batches = tuple(
        Batch(
            torch.randn(3, B, sizes[0], generator=g, dtype=torch.float64),
            torch.randint(0, sizes[-1], (3, B), generator=g),
        )
        for B in (4, 6, 5)
    )
    h = StepSizes(alpha=0.4, beta=0.3, delta=1e-3)
    fast = MLPOracle(sizes, activation)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        U = fast.stack(W, 1)
        assert fast.fedavg_step(U, batches[0], h, out=U) is U
        _close(fast.average(U, 3), fast.fedavg_step(W, batches[0], h))
        for variant in ("fo", "hf", "exact"):
            U = fast.stack(W, 1)
            assert fast.per_fedavg_step(U, batches, h, variant, out=U) is U
            _close(fast.average(U, 3), fast.per_fedavg_step(W, batches, h, variant))
    finally:
        torch.set_num_threads(before)


def test_the_cases_cover_both_multi_threaded_write_forms():
    """Some layer of ``CASES`` is at least ``FUSED_WRITE_MIN`` entries (fused write with several
    threads) and some below (GEMM, then add, when written into rows; a layer-major block is always
    written fused), so the 2-thread cases above run both forms."""
    blocks = [din * dout for sizes, _ in CASES for din, dout in itertools.pairwise(sizes)]
    assert max(blocks) >= FUSED_WRITE_MIN > min(blocks)


def _mlp_task(sizes=(10, 7, 4), activation="elu", n=6, per_client=30, fast=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n * per_client, sizes[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (n * per_client,), generator=g)
    data = ClientData.from_lists(x, y, [list(range(i * per_client, (i + 1) * per_client)) for i in range(n)])
    loss, scores, init = mlp(sizes, activation)
    return Task(
        name="mlp-test",
        per_sample_loss=loss,
        scores=scores,
        init_params=init,
        train=data,
        test=data,
        oracle_factory=mlp_oracle_factory(sizes, activation) if fast else None,
    )


@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_engine_round_with_fast_oracle_equals_autograd_oracle(algorithm, activation):
    task = _mlp_task(activation=activation)
    assert isinstance(make_oracle(task), MLPOracle)
    slow_task = replace(task, oracle_factory=None)
    assert isinstance(make_oracle(slow_task), AutogradOracle)
    cfg = RunConfig(
        algorithm=algorithm, tau=3, r=0.5, D=5, D1=6, D2=7, alpha=0.3, beta=0.2, delta=1e-3, dtype="float64"
    )
    w = task.init_params(torch.Generator().manual_seed(1)) * 3
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(2):
        w_fast, clients_a, _ = local_round(task, make_oracle(task), cfg, w, gen_a)
        w_slow, clients_b, _ = local_round(slow_task, make_oracle(slow_task), cfg, w, gen_b)
        assert torch.equal(clients_a, clients_b)
        _close(w_fast, w_slow)
        w = w_fast


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize("sizes,activation", [((9, 6, 4, 3), "elu"), ((7, 5, 3), "tanh"), ((6, 3), "relu")])
@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_sample_space_rounds_equal_the_generic_engine(algorithm, sizes, activation, with_replacement, threads):
    """Whole rounds in the users' sample space (first layer as X_i W_0^T - K_i A_i, never formed)
    against the generic engine (autograd oracle, per-step loop), two runs at once, users of
    unequal sizes, batches with and without replacement, two rounds."""
    task = uneven_mlp_task(sizes, activation, with_replacement, "sample_space")
    slow_task = replace(task, oracle_factory=None)
    cfg = RunConfig(
        algorithm=algorithm, tau=3, r=0.5, D=5, D1=6, D2=7, alpha=0.3, beta=0.2, delta=1e-3, dtype="float64"
    )
    W = torch.stack([task.init_params(torch.Generator().manual_seed(s)) for s in (1, 2)]) * 3
    gens_a = [torch.Generator().manual_seed(s) for s in (5, 6)]
    gens_b = [torch.Generator().manual_seed(s) for s in (5, 6)]
    fast, slow, expected = make_oracle(task), make_oracle(slow_task), W
    assert fast.prefers_sample_space(task.train, algorithm, cfg.tau, (5, 6, 7))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(2):
            W, clients_a, _ = local_rounds(task, fast, cfg, W, gens_a)
            expected, clients_b, _ = local_rounds(slow_task, slow, cfg, expected, gens_b)
            assert all(torch.equal(a, b) for a, b in zip(clients_a, clients_b))
            _close(W, expected)  # HF: round-off / (2 delta) ~ 1e-13, inside TIGHT
    finally:
        torch.set_num_threads(before)


def test_sample_space_data_are_recomputed_for_other_data():
    """One oracle, two data sets: the cached X_i and K_i follow the data (identity and dtype)."""
    task = uneven_mlp_task((7, 5, 3), "elu", True, "sample_space")
    other = replace(task, train=replace(task.train, x=task.train.x.flip(0)))
    oracle = make_oracle(task)
    cfg = RunConfig(algorithm="fo", tau=2, r=0.5, D=5, D1=6, D2=7, alpha=0.3, beta=0.2, dtype="float64")
    w = task.init_params(torch.Generator().manual_seed(1))
    for t in (task, other, task):
        got, _, _ = local_round(t, oracle, cfg, w, torch.Generator().manual_seed(2))
        want, _, _ = local_round(
            t, make_oracle(replace(t, oracle_factory=None)), cfg, w, torch.Generator().manual_seed(2)
        )
        _close(got, want)


#: the paper's splits (docs/paper.md §7): 25 users of 5a samples, 25 of 2.5a; a = 196 (MNIST), 68 (CIFAR-10)
SPLITS = {"mnist": (784, 980, 490), "cifar10": (3072, 340, 170)}


@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_round_strategy_follows_first_layer_cost(algorithm):
    """``auto`` picks the cheaper way by first-layer multiply-adds: sample space on CIFAR-10's
    split (few samples of many features per user: 2.4-3.8x fewer for tau = 10), per step on
    MNIST's; the counts are those written out in the docstring of first_layer_macs."""
    batches = (40,) if algorithm == "fedavg" else (40, 40, 40)
    for name, (d0, big, small) in SPLITS.items():
        args = (algorithm, 10, batches, d0, 80, (big + small) / 2, big)
        steps, space = first_layer_macs("steps", *args), first_layer_macs("sample_space", *args)
        assert (space < steps) == (name == "cifar10"), (name, steps, space)
    per_row = {"fedavg": 2, "fo": 3, "hf": 5, "exact": 5}[algorithm]  # batch rows read + term rows, / B
    grams = {"fedavg": 0, "fo": 1, "hf": 2, "exact": 2}[algorithm]
    assert first_layer_macs("steps", algorithm, 10, batches, 3072, 80, 255, 340) == 10 * (
        per_row * 40 * 3072 * 80 + grams * 40 * 40 * (3072 + 80)
    )
    terms = {"fedavg": 1, "fo": 1, "hf": 2, "exact": 2}[algorithm]
    assert first_layer_macs("sample_space", algorithm, 10, batches, 3072, 80, 255, 340) == (
        2 * 255 * 3072 * 80 + 10 * (340 * terms * 40 * 80 + grams * 40 * 40 * 80)
    )
    data = uneven_mlp_task((9, 6, 4, 3), "elu", True, "auto").train
    assert MLPOracle((9, 6, 4, 3), rounds="steps").prefers_sample_space(data, algorithm, 10, batches) is False
    assert MLPOracle((9, 6, 4, 3), rounds="sample_space").prefers_sample_space(data, algorithm, 10, batches) is True


def test_sample_space_caches_are_counted_exactly_and_must_fit(monkeypatch):
    """``sample_space_bytes`` is what ``round_in_sample_space`` keeps (every user's inputs and Gram
    matrix); over the memory budget "auto" runs per step and a forced "sample_space" is refused
    with a one-line UsageError."""
    import perfedavg.engine.mlp.sample_space as fast_mlp
    from perfedavg.errors import UsageError

    data = uneven_mlp_task((300, 6, 3), "elu", True, "auto").train
    auto, forced = MLPOracle((300, 6, 3)), MLPOracle((300, 6, 3), rounds="sample_space")
    need = auto.sample_space_bytes(data)
    assert need == sum(t.nbytes for t in auto._sample_space(data, data.x.dtype)) == 6 * 15 * (300 + 15) * 8
    assert auto.prefers_sample_space(data, "fo", 10, (5, 5, 5))  # cheaper here, and it fits
    monkeypatch.setattr(fast_mlp, "memory_budget", lambda device: need)
    assert auto.prefers_sample_space(data, "fo", 10, (5, 5, 5)) and forced.prefers_sample_space(
        data, "fo", 10, (5, 5, 5)
    )
    monkeypatch.setattr(fast_mlp, "memory_budget", lambda device: need - 1)
    assert not auto.prefers_sample_space(data, "fo", 10, (5, 5, 5))
    with pytest.raises(
        UsageError, match=r"sample_space .*: 221.5 KiB \(6 users x 15 samples.*than 221.5 KiB .* use steps or auto"
    ):
        forced.prefers_sample_space(data, "fo", 10, (5, 5, 5))
    assert MLPOracle((300, 6, 3), rounds="steps").prefers_sample_space(data, "fo", 10, (5, 5, 5)) is False


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="activation"):
        MLPOracle((4, 3), "sigmoid")
    with pytest.raises(ValueError, match="rounds"):
        MLPOracle((4, 3), rounds="fast")
    fast = MLPOracle((4, 3))
    with pytest.raises(ValueError, match="features"):
        fast.grad(torch.zeros(2, 15), torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple"):
        fast.grad(torch.zeros(3, 15), torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long))


# -- perfedavg bench -------------------------------------------------------------------
def test_flop_counts():
    u = layer_units((784, 80, 60, 10), 10, 40)
    # the two counts of the per-step first layer (bench, first_layer_macs) agree in every term with d_0
    for variant in ("fedavg", "fo", "hf", "exact"):
        batches = (40,) if variant == "fedavg" else (40, 40, 40)
        first = 2 * 10 * first_layer_macs("steps", variant, 10, batches, 784, 80, 1000, 1000)
        upper_only = engine_matmul_flops(variant, (784, 80, 60, 10)) - first
        assert upper_only == engine_matmul_flops(variant, (1, 80, 60, 10)) - 2 * 10 * first_layer_macs(
            "steps", variant, 10, batches, 1, 80, 1000, 1000
        )
    assert u[0] == 2 * 10 * 40 * 784 * 80
    # a gradient: forward + weight gradient for every layer, input gradient for all but the first
    assert grad_flops(u) == 2 * u[0] + 3 * u[1] + 3 * u[2]
    assert engine_matmul_flops("fedavg") == 10 * grad_flops(u)
    upper = 3 * (u[1] + u[2])
    # one kernel correction (X_b X_a^T) G_a: a 40x784x40 and a 40x40x80 GEMM per client
    kernel = 2 * 10 * 40 * 40 * 784 + 2 * 10 * 40 * 40 * 80
    assert kernel_flops((784, 80, 60, 10), 10, 40) == kernel
    # FO: first-layer forwards on D and D', one kernel correction, one update GEMM
    assert engine_matmul_flops("fo") == 10 * (3 * u[0] + 2 * upper + kernel)
    # HF: forwards on D, D', D''; two kernel corrections; two update GEMMs; four upper gradients
    assert engine_matmul_flops("hf") == 10 * (5 * u[0] + 4 * upper + 2 * kernel)
    # exact: as HF in the first layer; two upper gradients + the R-operator above layer 0 (8 per layer)
    assert engine_matmul_flops("exact") == 10 * (5 * u[0] + 2 * upper + 8 * (u[1] + u[2]) + 2 * kernel)
    # fewer FLOPs than forming w~ and w +- delta g: FO two full gradients, HF 7 first-layer GEMMs
    assert engine_matmul_flops("fo") < 10 * 2 * grad_flops(u)
    assert engine_matmul_flops("hf") < 10 * (7 * u[0] + 4 * upper)


def test_bench_cifar_shape_runs_in_sample_space(capsys):
    """``--shape cifar10``: the MLP on 3072 inputs, 340 samples per user unless told, whole rounds
    in sample space, and the FLOP count that goes with it."""
    from perfedavg.cli import main

    status = main(
        [
            "bench",
            "--shape",
            "cifar10",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--variants",
            "hf",
            "--clients",
            "5",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["workload"]["mlp"] == [3072, 80, 60, 10] and result["workload"]["samples_per_client"] == 340
    hf = result["variants"]["hf"]
    assert hf["engine_rounds"] == "sample_space"
    args = ("hf", 10, (40, 40, 40), 3072, 80, 340.0, 340)
    assert hf["flops_per_round"] == engine_matmul_flops("hf", (3072, 80, 60, 10), m=1) + 2 * (
        first_layer_macs("sample_space", *args) - first_layer_macs("steps", *args)
    )


def test_bench_module_does_not_import_torch():
    code = "import sys, perfedavg.bench.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_rejects_bad_options(capsys):
    from perfedavg.cli import main

    assert main(["bench", "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
    assert main(["bench", "--variants", "fo,sgd"]) == 2
    assert "--variants" in capsys.readouterr().err
    assert main(["bench", "--device", "tpu"]) == 2
    assert "--device='tpu'" in capsys.readouterr().err
    assert main(["bench", "--device", "cuda:99"]) == 2
    assert "--device='cuda:99'" in capsys.readouterr().err


def test_bench_tiny_run_writes_json(tmp_path, capsys):
    """One timed round of a small workload: the JSON has every field, consistent with itself."""
    from perfedavg.cli import main

    out = tmp_path / "bench.json"
    status = main(
        [
            "bench",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--variants",
            "fo",
            "--clients",
            "5",
            "--samples",
            "40",
            "--json-out",
            str(out),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    fo = result["variants"]["fo"]
    assert fo["engine_ms"] > 0 and fo["loop_ms"] > 0
    assert fo["speedup"] == pytest.approx(fo["loop_ms"] / fo["engine_ms"], rel=1e-2)
    # 40 samples of 784 features per user: the first layer is cheaper in sample space
    assert fo["engine_rounds"] == "sample_space"
    args = ("fo", 10, (40, 40, 40), 784, 80, 40.0, 40)
    assert fo["flops_per_round"] == engine_matmul_flops("fo", m=1) + 2 * (
        first_layer_macs("sample_space", *args) - first_layer_macs("steps", *args)
    )
    assert fo["fraction_of_matmul"] > 0
    assert result["device"] == "cpu"
    samples = result["matmul_gflops_samples"]  # one before and one after the variant
    assert len(samples) == 2 and result["matmul_gflops_spread"] == round(max(samples) / min(samples) - 1, 3)
    assert result["host_quiet"] == (result["matmul_gflops_spread"] <= QUIET_SPREAD)


def _run(speedups: dict, samples: list, **extra) -> dict:
    """A single bench run's JSON with the given speedup per variant (engine 10 ms, loop 10 * speedup)."""
    return {
        "workload": {"n": 50, "shape": "mnist", "mlp": [784, 80, 60, 10]},
        "dtype": "float32",
        "device": "cpu",
        "threads": 2,
        "matmul_gflops_samples": samples,
        "variants": {
            v: {"speedup": s, "engine_ms": 10.0, "loop_ms": 10.0 * s, "fraction_of_matmul": s / 10}
            for v, s in speedups.items()
        },
        **extra,
    }


def test_throughput_spread_is_how_far_the_samples_moved():
    assert throughput_spread([100.0, 110.0, 105.0]) == pytest.approx(0.10)
    assert throughput_spread([120.0]) == 0.0
    assert 0.11 < QUIET_SPREAD < 0.27  # between the saved quiet runs' spreads (1-11 %) and the busy ones' (27-96 %)


def test_pool_gives_each_variants_distribution_over_runs():
    """Median, least and greatest speedup over the runs, every run's in order, and the median over the
    quiet runs only (from the saved flag, or from the samples where a run predates it)."""
    quiet, busy = [100.0, 105.0], [60.0, 110.0]
    runs = [
        _run({"fedavg": 5.2}, quiet),
        _run({"fedavg": 3.7}, busy),
        _run({"fedavg": 4.9}, quiet),
        _run({"fedavg": 5.0}, busy, host_quiet=True),
        _run({"fedavg": 5.6}, quiet, host_quiet=False),
    ]
    pooled = pool(runs)
    assert pooled["runs"] == 5 and pooled["quiet_runs"] == 3
    fedavg = pooled["variants"]["fedavg"]
    assert fedavg["speedups"] == [5.2, 3.7, 4.9, 5.0, 5.6]
    assert (fedavg["speedup_median"], fedavg["speedup_min"], fedavg["speedup_max"]) == (5.0, 3.7, 5.6)
    assert fedavg["speedup_median_quiet"] == 5.0  # 5.2, 4.9, 5.0
    assert fedavg["loop_ms_median"] == 50.0 and fedavg["fraction_of_matmul_median"] == 0.5
    assert pool([_run({"fo": 4.0}, busy)])["variants"]["fo"]["speedup_median_quiet"] is None


def test_bench_repeat_reports_each_run_and_their_pool(tmp_path, capsys):
    """--repeat 2: the workload once, each run's measurements, and the pool of those runs; --pool over the
    saved file and a single run's gives the pool of all three."""
    from perfedavg.cli import main

    tiny = ["--rounds", "1", "--warmup", "0", "--threads", "1", "--variants", "fo", "--clients", "5", "--samples", "40"]
    assert main(["bench", *tiny, "--repeat", "2", "--json-out", str(tmp_path / "two.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["repeat"] == 2 and len(result["runs"]) == 2 and result["workload"]["n"] == 5
    assert "variants" not in result and set(result["runs"][0]) >= {"variants", "matmul_gflops_samples", "host_quiet"}
    runs = [{**result, **run} for run in result["runs"]]
    assert result["pooled"] == pool(runs)
    assert main(["bench", *tiny, "--json-out", str(tmp_path / "one.json")]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(["bench", "--pool", str(tmp_path / "two.json"), str(tmp_path / "one.json")]) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert pooled["pooled"] == pool([*runs, one]) and pooled["pooled"]["runs"] == 3
    assert pooled["files"] == [str(tmp_path / "two.json"), str(tmp_path / "one.json")]


def test_bench_warns_when_the_host_was_busy(monkeypatch, capsys):
    """A run whose bmm throughput moved by more than QUIET_SPREAD is flagged in the JSON and on stderr."""
    import perfedavg.bench.measure as bench
    from perfedavg.cli import main

    samples = iter([100.0, 150.0])
    monkeypatch.setattr(bench, "matmul_throughput", lambda *a, **k: next(samples))
    assert (
        main(
            [
                "bench",
                "--rounds",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--variants",
                "fedavg",
                "--clients",
                "5",
                "--samples",
                "40",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["matmul_gflops_spread"] == 0.5 and result["host_quiet"] is False
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "busy in 1 of 1 run" in warnings[0]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('{"pooled": {}}', "is not a perfedavg bench result"),
        ("[1, 2]", "is not a perfedavg bench result"),
        (json.dumps(_run({"fo": 5.0}, [1.0, 1.0], threads=1)), "measured another workload"),
        (json.dumps(_run({"hf": 5.0}, [1.0, 1.0])), "measured another workload"),
    ],
    ids=["missing", "not-json", "pooled-output", "not-an-object", "other-threads", "other-variants"],
)
def test_bench_pool_refuses_what_does_not_pool(tmp_path, capsys, content, message):
    from perfedavg.cli import main

    good, other = tmp_path / "good.json", tmp_path / "other.json"
    good.write_text(json.dumps(_run({"fo": 5.0}, [1.0, 1.0])))
    if content is not None:
        other.write_text(content)
    assert main(["bench", "--pool", str(good), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pool" in err and message in err and "Traceback" not in err


def test_readme_bench_figures_are_the_pool_of_the_saved_runs():
    """The README's machine-B bench row quotes ``perfedavg bench --pool benchmarks/machine-b/*.json``:
    recomputed here from the saved files, so that the figures cannot drift from the data behind them."""
    from pathlib import Path

    from perfedavg.bench.pool import pool_files

    root = Path(__file__).resolve().parents[1]
    files = sorted(str(p) for p in (root / "benchmarks" / "machine-b").glob("*.json"))
    pooled = pool_files(files)["pooled"]
    n, names = pooled["runs"], {"fedavg": "FedAvg", "fo": "FO", "hf": "HF", "exact": "exact"}
    row = next(
        line for line in (root / "README.md").read_text().splitlines() if "bench --pool benchmarks/machine-b" in line
    )
    assert f"Pooled over {n} runs" in row and f"Over the {pooled['quiet_runs']} runs on a quiet host" in row
    for variant, entry in pooled["variants"].items():
        at_least_5 = sum(s >= 5 for s in entry["speedups"])
        label = f"{names[variant]} {entry['speedup_median']:.2f}x ({at_least_5} of {n}"
        assert label in row, label
        assert f"{names[variant]} {entry['speedup_median_quiet']:.2f}x" in row
    fractions = [entry["fraction_of_matmul_median"] for entry in pooled["variants"].values()]
    assert f"at {round(100 * min(fractions))}-{round(100 * max(fractions))}% of the bmm throughput (medians)" in row


def test_bench_plot_draws_the_pool_and_refuses_other_formats_before_any_work(tmp_path, capsys):
    """--plot FILE draws the runs (here pooled from a saved file, quiet and busy) atomically; a suffix
    matplotlib is not asked to write is one line, status 2, nothing written."""
    from perfedavg.cli import main

    saved = tmp_path / "runs.json"
    saved.write_text(
        json.dumps(
            {
                **_run({"fedavg": 5.1, "fo": 5.3}, [100.0, 101.0]),
                "repeat": 2,
                "runs": [
                    {
                        "variants": _run({"fedavg": 5.1, "fo": 5.3}, [])["variants"],
                        "matmul_gflops_samples": [100.0, 101.0],
                    },
                    {
                        "variants": _run({"fedavg": 3.9, "fo": 4.4}, [])["variants"],
                        "matmul_gflops_samples": [60.0, 101.0],
                    },
                ],
            }
        )
    )
    picture = tmp_path / "bench.png"
    assert main(["bench", "--pool", str(saved), "--plot", str(picture)]) == 0
    assert json.loads(capsys.readouterr().out)["pooled"]["host_quiet"] == [True, False]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.png", "runs.json"]  # no temporary left
    assert main(["bench", "--rounds", "1", "--plot", str(tmp_path / "bench.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plot" in err and ".png" in err
    assert not (tmp_path / "bench.jpg").exists()
