"""The engine against a plain loop-over-clients reference, and the reductions of Algorithm 1."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.oracle import AutogradOracle
from perfedavg.engine.reference import reference_round
from perfedavg.engine.rounds import local_round, train
from perfedavg.engine.sampling import draw_batch, num_sampled_clients, sample_clients
from perfedavg.engine.task import ClientData
from tests.helpers import random_params, softmax_setup, uniform_users, with_batches

#: float64 agreement of two implementations of the same arithmetic, summed in other orders
TIGHT = 1e-10


@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_vectorized_engine_equals_loop_reference(algorithm, with_replacement):
    """Same seed, same batches (the engine draws from the sampled users' rows, taken once per round;
    the reference from the whole data set, client by client), same models to float64 round-off."""
    cfg, task = softmax_setup(algorithm=algorithm, alpha=0.3, beta=0.2)
    task = with_batches(task, with_replacement)
    oracle = AutogradOracle(task.per_sample_loss)
    w = random_params(task)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(3):
        w_engine, _, _ = local_round(task, oracle, cfg, w, gen_a)
        w_ref = reference_round(task, cfg, w, gen_b)
        assert torch.allclose(w_engine, w_ref, rtol=0, atol=TIGHT), (w_engine - w_ref).abs().max()
        w = w_engine


def _meta_gradients(task, w, alpha, delta, seed=0):
    """FO, HF, exact meta-gradients at stacked copies of w on the same batches."""
    oracle = AutogradOracle(task.per_sample_loss)
    gen = torch.Generator().manual_seed(seed)
    clients = torch.arange(3)
    batches = tuple(draw_batch(gen, task.train, clients, 8, True) for _ in range(3))
    W = w.expand(3, -1).clone()
    h = StepSizes(alpha=alpha, beta=1.0, delta=delta)
    return {v: meta_gradient(oracle, W, batches, h, v) for v in ("fo", "hf", "exact")}, batches


def test_hf_converges_to_exact_as_delta_shrinks_then_roundoff():
    _, task = softmax_setup()
    w = random_params(task, scale=1.0)
    errors = {}
    for delta in (1e-1, 1e-2, 1e-3, 1e-4, 1e-9):
        d, _ = _meta_gradients(task, w, alpha=0.5, delta=delta)
        errors[delta] = float((d["hf"] - d["exact"]).norm())
    # central differences: error O(delta^2) on a smooth loss -> about 100x smaller per decade
    assert errors[1e-2] < errors[1e-1] / 50
    assert errors[1e-3] < errors[1e-2] / 50
    # round-off regime: at delta = 1e-9 the float64 cancellation error (~eps/delta) dominates
    assert errors[1e-9] > errors[1e-4]


def test_hf_is_exact_on_a_quadratic_loss():
    """l(w; x, y) = (x.w - y)^2 / 2 has a constant Hessian: the central difference is exact."""
    _, task = softmax_setup()

    def quad(W, X, Y):
        return 0.5 * ((X * W[..., None, : X.shape[-1]]).sum(-1) - Y.to(X.dtype)) ** 2

    task = replace(task, per_sample_loss=quad)
    w = random_params(task)
    for delta in (1e-1, 10.0):
        d, _ = _meta_gradients(task, w, alpha=0.7, delta=delta)
        assert torch.allclose(d["hf"], d["exact"], rtol=0, atol=1e-12)


def test_alpha_zero_reduces_every_variant_to_sgd_on_the_outer_batch():
    _, task = softmax_setup()
    w = random_params(task)
    d, batches = _meta_gradients(task, w, alpha=0.0, delta=1e-3)
    sgd = AutogradOracle(task.per_sample_loss).grad(w.expand(3, -1), batches[1].x, batches[1].y)
    for variant in ("fo", "hf", "exact"):
        assert torch.equal(d[variant], sgd)


def test_fedavg_with_one_local_step_and_full_participation_is_minibatch_sgd():
    cfg, task = softmax_setup(algorithm="fedavg", tau=1, r=1.0, beta=0.3)
    w = random_params(task)
    gen = torch.Generator().manual_seed(3)
    w_next, clients, _ = local_round(task, AutogradOracle(task.per_sample_loss), cfg, w, gen)
    # replay the draws: a mini-batch of n*D samples, D from each user, one SGD step
    gen = torch.Generator().manual_seed(3)
    clients = sample_clients(gen, task.n_clients, task.n_clients)
    batch = draw_batch(gen, task.train, clients, cfg.D, True)
    x, y = batch.x.flatten(0, 1), batch.y.flatten()
    wg = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(task.per_sample_loss(wg, x, y).mean(), wg)
    assert torch.allclose(w_next, w - cfg.beta * g, rtol=0, atol=TIGHT)


@pytest.mark.parametrize(
    "r,n,m",
    [
        (0.2, 50, 10),
        (0.5, 6, 3),
        (1.0, 7, 7),
        (0.01, 100, 1),
        (0.625, 4, 2),  # r*n = 2.5: floor, not round-half-up (3) nor banker's rounding (2 here, but ...)
        (0.875, 4, 3),  # ... r*n = 3.5: banker's rounding would give 4
        (0.5, 7, 3),
        (0.99, 100, 99),
        (0.25, 4, 1),
        (0.29, 100, 29),  # 0.29 * 100 == 28.999999999999996 in floating point: r is read as the decimal 0.29
        (0.15, 4, 0),  # r*n = 0.6: no user (refused by check_config_against_task, test_cli)
    ],
)
def test_users_per_round_is_floor_rn(r, n, m):
    assert num_sampled_clients(r, n) == m


@pytest.mark.parametrize("r,n", [(0.2, 50), (0.5, 7), (1.0, 7), (0.01, 100)])
def test_sampling_draws_m_distinct_clients(r, n):
    gen = torch.Generator().manual_seed(0)
    m = num_sampled_clients(r, n)
    seen = set()
    for _ in range(2000):
        c = sample_clients(gen, n, m)
        assert len(c) == m and len(set(c.tolist())) == m and int(c.min()) >= 0 and int(c.max()) < n
        seen.update(c.tolist())
    assert seen == set(range(n))  # uniform sampling reaches every client


#: z-score allowed for a client's inclusion count, Binomial(draws, m/n): a per-client false alarm rate of
#: ~6e-7 (two-sided normal tail at 5 sigma), so a failure means a biased sampler, not bad luck
INCLUSION_Z = 5.0
#: significance of the chi-square test that every m-subset is equally likely: one false alarm in 1e6 seeds
SUBSET_P = 1e-6


def test_sampling_is_uniform_over_clients_and_over_subsets():
    """r*n = 3.5 (n = 7, m = 3): each client is in a round's sample with probability m/n, and each of
    the C(7, 3) = 35 subsets is equally likely (uniform without replacement, docs/paper.md §2)."""
    import itertools

    from scipy.stats import chi2

    n, m, draws = 7, num_sampled_clients(0.5, 7), 35_000
    gen = torch.Generator().manual_seed(12345)
    samples = [tuple(sample_clients(gen, n, m).tolist()) for _ in range(draws)]
    inclusion = torch.zeros(n)
    for s in samples:
        inclusion[list(s)] += 1
    p = m / n
    z = (inclusion - draws * p) / (draws * p * (1 - p)) ** 0.5
    assert float(z.abs().max()) < INCLUSION_Z, z
    subsets = list(itertools.combinations(range(n), m))
    counts = torch.tensor([0.0] * len(subsets))
    index = {c: i for i, c in enumerate(subsets)}
    for s in samples:
        counts[index[s]] += 1
    expected = draws / len(subsets)
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic < chi2.ppf(1 - SUBSET_P, len(subsets) - 1), statistic


def _weights(seed: int, n: int, M: int, dtype) -> torch.Tensor:
    """Rows of three kinds: uniform on a padded prefix, sparse and uneven, dense and uneven."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, M, generator=g, dtype=torch.float64)
    for i in range(n):
        if i % 3 == 0:
            k = int(torch.randint(1, M + 1, (1,), generator=g))
            w[i] = 0.0
            w[i, :k] = 1.0 / k
        elif i % 3 == 1:
            w[i, w[i] < 0.6] = 0.0
            w[i, -1] += 0.05
    return (w / w.sum(1, keepdim=True)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batches_with_replacement_are_torch_multinomial_draws(dtype):
    """The inverse-transform sampler draws what ``torch.multinomial(p, size, replacement=True)`` drew
    (size >= 2; the engine's draws before it had its own sampler), position for position, and leaves
    the generator in the same state: runs keep their batches."""
    from perfedavg.engine.sampling import draw_positions

    for trial in range(60):
        n, M, size = 1 + trial % 7, 1 + (37 * trial) % 1100, 2 + (13 * trial) % 90
        data = ClientData.from_lists(torch.zeros(M, 1), torch.zeros(M, dtype=torch.long), [list(range(M))] * n)
        data = replace(data, weight=_weights(trial, n, M, dtype))
        ours, theirs = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        drawn = draw_positions(ours, data, None, size, True)
        expected = torch.multinomial(data.weight, size, replacement=True, generator=theirs)
        assert torch.equal(drawn, expected), (trial, n, M, size)
        assert torch.equal(ours.get_state(), theirs.get_state())


#: significance of the chi-square goodness-of-fit test of the batch sampler: one false alarm in 1e6 seeds
DRAW_P = 1e-6


def test_batches_with_replacement_follow_p_i():
    """i.i.d. draws from p_i (docs/paper.md §3.4): a chi-square test per user on uneven weights with zeros,
    which are never drawn."""
    from scipy.stats import chi2

    from perfedavg.engine.sampling import draw_positions

    weight = _weights(3, 3, 12, torch.float64)
    data = replace(
        ClientData.from_lists(torch.zeros(12, 1), torch.zeros(12, dtype=torch.long), [list(range(12))] * 3),
        weight=weight,
    )
    drawn = draw_positions(torch.Generator().manual_seed(0), data, None, 60_000, True)
    for i in range(3):
        counts = torch.bincount(drawn[i], minlength=12).double()
        support = weight[i] > 0
        assert float(counts[~support].sum()) == 0.0
        expected = 60_000 * weight[i][support]
        statistic = float(((counts[support] - expected) ** 2 / expected).sum())
        assert statistic < chi2.ppf(1 - DRAW_P, int(support.sum()) - 1), (i, statistic)


@pytest.mark.parametrize("with_replacement", [True, False])
def test_a_rounds_batches_drawn_at_once_equal_step_by_step_draws(with_replacement):
    """``draw_position_blocks`` (the engine draws a round's batches in one call) gives the positions of
    consecutive ``draw_positions`` calls, block for block, and the same generator state after."""
    from perfedavg.engine.sampling import draw_position_blocks, draw_positions

    data = ClientData.from_lists(
        torch.zeros(50, 1), torch.zeros(50, dtype=torch.long), [list(range(50 - 7 * i)) for i in range(5)]
    )  # uniform on 50, 43, ... samples
    if with_replacement:  # uneven weights on the same supports
        data = replace(data, weight=_weights(1, 5, 50, torch.float64) * (data.weight > 0))
    sizes = (5, 6, 7) * 4
    ours, theirs = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    blocks = draw_position_blocks(ours, data, torch.tensor([0, 2, 4]), sizes, with_replacement)
    one_by_one = [draw_positions(theirs, data, torch.tensor([0, 2, 4]), s, with_replacement) for s in sizes]
    assert [b.shape for b in blocks] == [(3, s) for s in sizes]
    assert all(torch.equal(a, b) for a, b in zip(blocks, one_by_one))
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_a_rounds_batches_gathered_at_once_equal_batch_by_batch_gathers():
    """``gather_batches`` (the engine looks a round's indices and labels up at once) yields, batch after
    batch, what ``gather_batch`` gathers for each positions block: the same inputs and labels, in order."""
    from perfedavg.engine.sampling import draw_position_blocks, gather_batch, gather_batches

    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(60, 2, 3, generator=gen), torch.randint(0, 10, (60,), generator=gen)
    data = ClientData.from_lists(x, y, [list(range(i, 60, 5)) for i in range(5)])  # interleaved users of 12 samples
    clients = torch.tensor([1, 3, 4])
    blocks = draw_position_blocks(gen, data, clients, (5, 6, 7) * 2, True)
    gathered = list(gather_batches(data, clients, blocks))
    assert len(gathered) == len(blocks)
    for batch, positions in zip(gathered, blocks):
        alone = gather_batch(data, clients, positions)
        assert batch.x.shape == (3, positions.shape[1], 2, 3) and batch.y.shape == positions.shape
        assert torch.equal(batch.x, alone.x) and torch.equal(batch.y, alone.y)
        assert torch.equal(batch.x, x[data.index[clients].gather(1, positions)])  # by definition


def test_aggregation_is_the_uniform_mean_of_the_local_models():
    cfg, task = softmax_setup(algorithm="fo", tau=2)
    w = random_params(task)
    oracle = AutogradOracle(task.per_sample_loss)
    gen = torch.Generator().manual_seed(9)
    w_next, clients, trajectory = local_round(task, oracle, cfg, w, gen, track=True)
    assert torch.equal(trajectory[0], w)  # w_bar_{k+1,0} = w_k
    # re-run the local steps client by client with the same draws and average uniformly
    gen = torch.Generator().manual_seed(9)
    clients = sample_clients(gen, task.n_clients, len(clients))
    W = w.expand(len(clients), -1).clone()
    from perfedavg.engine.local import per_fedavg_step

    for _ in range(cfg.tau):
        bs = tuple(draw_batch(gen, task.train, clients, s, True) for s in (cfg.D, cfg.D1, cfg.D2))
        W = per_fedavg_step(oracle, W, bs, StepSizes(cfg.alpha, cfg.beta, cfg.delta), "fo")
    assert torch.allclose(w_next, W.sum(0) / len(clients), rtol=0, atol=TIGHT)


def _metrics(cfg, task):
    return [rec for _, rec in train(task, cfg) if rec is not None]


def test_same_seed_same_metrics_bit_for_bit_and_different_seeds_differ():
    cfg, task = softmax_setup(dtype="float32", algorithm="hf")
    a, b = _metrics(cfg, task), _metrics(cfg, task)
    assert a == b
    c = _metrics(cfg.replace(seed=1), task)
    assert [r["F"] for r in a[1:]] != [r["F"] for r in c[1:]]


def test_personalization_uses_only_the_protocols_data():
    """The 'train' protocol's adapted models ignore the test data's inputs, and vice versa."""
    from dataclasses import replace

    from perfedavg.engine.objective import adapted_models

    _, task = softmax_setup()
    w = random_params(task)
    loss = task.per_sample_loss

    def scrambled(d):
        return replace(d, x=d.x.flip(0) * 3.0)

    base_train = adapted_models(loss, w, task.train, 0.5)
    base_test = adapted_models(loss, w, task.test, 0.5)
    assert torch.equal(adapted_models(loss, w, task.train, 0.5), base_train)
    assert not torch.allclose(adapted_models(loss, w, scrambled(task.train), 0.5), base_train)
    assert not torch.allclose(base_train, base_test)
    # one gradient step on the full local data, exactly
    X, Y, P = task.train.gather(torch.tensor([2]))
    wg = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((P[0] * loss(wg, X[0], Y[0])).sum(), wg)
    assert torch.allclose(base_train[2], w - 0.5 * g, rtol=0, atol=TIGHT)


def _one_step_then_test(task, w, alpha, adapt_on):
    """Per client, a plain loop: w_i = w - alpha grad f_i(w) on ``adapt_on``, then its test loss and accuracy."""
    losses, accuracies = [], []
    for i in range(task.n_clients):
        X, Y, P = adapt_on.gather(torch.tensor([i]))
        wg = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((P[0] * task.per_sample_loss(wg, X[0], Y[0])).sum(), wg)
        w_i = w - alpha * g
        Xt, Yt, Pt = task.test.gather(torch.tensor([i]))
        with torch.no_grad():
            losses.append(float((Pt[0] * task.per_sample_loss(w_i, Xt[0], Yt[0])).sum()))
            accuracies.append(float((Pt[0] * (task.scores(w_i, Xt[0]).argmax(-1) == Yt[0]).to(Pt.dtype)).sum()))
    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)


def test_evaluate_uses_exactly_the_protocol_asked():
    """``evaluate``: *_train_step adapts on the users' training data, *_test_step on their test data
    (both then tested on the test data), and personalized_* repeats the one cfg.protocol names."""
    from dataclasses import replace

    from perfedavg.engine.rounds import evaluate

    cfg, task = softmax_setup(alpha=2.0)  # a large step, so that the two protocols visibly differ
    w = random_params(task, scale=1.0)
    record = evaluate(task, cfg, w)
    for split, data in (("train", task.train), ("test", task.test)):
        loss, acc = _one_step_then_test(task, w, cfg.alpha, data)
        assert abs(record[f"personalized_loss_{split}_step"] - loss) < TIGHT
        assert abs(record[f"personalized_accuracy_{split}_step"] - acc) < TIGHT
    assert record["personalized_loss_train_step"] != record["personalized_loss_test_step"]
    for protocol in ("train", "test"):
        r = evaluate(task, cfg.replace(protocol=protocol), w)
        assert r["personalized_loss"] == r[f"personalized_loss_{protocol}_step"]
        assert r["personalized_accuracy"] == r[f"personalized_accuracy_{protocol}_step"]
    assert (
        evaluate(task, cfg.replace(protocol="train"), w)["personalized_loss"] == record["personalized_loss_train_step"]
    )
    assert evaluate(task, cfg.replace(protocol="test"), w)["personalized_loss"] == record["personalized_loss_test_step"]
    # other training data (features permuted within the split): the test-step protocol and the global model,
    # which never look at the training data, are unchanged bit for bit; what uses the training data changes
    other = evaluate(replace(task, train=replace(task.train, x=task.train.x.flip(0))), cfg, w)
    for key in ("personalized_loss_test_step", "personalized_accuracy_test_step", "global_loss", "global_accuracy"):
        assert other[key] == record[key], key
    assert other["per_client"]["loss_test_step"] == record["per_client"]["loss_test_step"]
    for key in ("personalized_loss_train_step", "F", "grad_norm_sq_F", "f"):
        assert other[key] != record[key], key


def test_eval_batch_is_one_sgd_step_on_a_batch_of_the_protocols_data():
    """``eval_batch = N``: *_batch_step adapts every user on N samples of its training (test) data drawn by
    client_batches from eval_batch_generator(seed, round), train first: exactly the plain loop's one step on that
    batch; the full-batch keys are unchanged; the draws depend on seed and round alone; and without replacement a
    batch holding all of a user's samples is the full-batch step."""
    from dataclasses import replace

    from perfedavg.engine.objective import client_batches
    from perfedavg.engine.rounds import eval_batch_generator, evaluate

    cfg, task = softmax_setup(alpha=2.0)
    w = random_params(task, scale=1.0)
    base = evaluate(task, cfg, w)
    assert not any("batch" in key for key in base)
    record = evaluate(task, cfg.replace(eval_batch=3), w, round_index=7)
    generator = eval_batch_generator(cfg.seed, 7)
    for split, data in (("train", task.train), ("test", task.test)):
        batch = client_batches(data, 3, generator, task.batch_with_replacement)
        assert batch.count.tolist() == [3] * task.n_clients
        loss, acc = _one_step_then_test(task, w, cfg.alpha, batch)
        assert abs(record[f"personalized_loss_{split}_batch_step"] - loss) < TIGHT
        assert abs(record[f"personalized_accuracy_{split}_batch_step"] - acc) < TIGHT
        assert abs(record[f"personalized_loss_{split}_batch_step"] - base[f"personalized_loss_{split}_step"]) > TIGHT
    assert {k: v for k, v in record.items() if k != "per_client"} == {
        **{k: v for k, v in base.items() if k != "per_client"},
        **{k: v for k, v in record.items() if "batch" in k},
    }
    assert evaluate(task, cfg.replace(eval_batch=3), w, round_index=7) == record
    other_round = evaluate(task, cfg.replace(eval_batch=3), w, round_index=8)
    assert other_round["personalized_loss_train_batch_step"] != record["personalized_loss_train_batch_step"]

    # uniform users, batches without replacement, larger than any user: the full-batch step exactly
    task_u = replace(task, train=uniform_users(task.train), test=uniform_users(task.test), batch_with_replacement=False)
    largest = max(int(task_u.train.count.max()), int(task_u.test.count.max()))
    whole = evaluate(task_u, cfg.replace(eval_batch=largest), w, round_index=7)
    for split in ("train", "test"):
        for what in ("loss", "accuracy"):
            assert (
                abs(whole[f"personalized_{what}_{split}_batch_step"] - whole[f"personalized_{what}_{split}_step"])
                < TIGHT
            )


def test_eval_batch_never_touches_training():
    """A run with eval_batch = N has the same iterates and full-batch metrics, bit for bit, as one without."""
    cfg, task = softmax_setup(dtype="float32", algorithm="hf")
    plain, batched = _metrics(cfg, task), _metrics(cfg.replace(eval_batch=4), task)
    assert [{k: v for k, v in r.items() if "batch" not in k and k != "per_client"} for r in batched] == [
        {k: v for k, v in r.items() if k != "per_client"} for r in plain
    ]
    assert all("personalized_accuracy_test_batch_step" in r for r in batched)


def test_exact_grad_F_matches_finite_differences_of_F():
    """grad F_i by double backward agrees with a central difference of F itself."""
    from perfedavg.engine.objective import client_objectives

    _, task = softmax_setup()
    w = random_params(task)
    obj = client_objectives(task.per_sample_loss, w, task.train, 0.4)
    direction = torch.randn(w.shape, generator=torch.Generator().manual_seed(2), dtype=w.dtype)
    eps = 1e-5
    Fp = client_objectives(task.per_sample_loss, w + eps * direction, task.train, 0.4).F
    Fm = client_objectives(task.per_sample_loss, w - eps * direction, task.train, 0.4).F
    # central difference error O(eps^2 * third derivative): 1e-10 scale, well under 1e-7
    assert torch.allclose((Fp - Fm) / (2 * eps), obj.grad_F @ direction, rtol=0, atol=1e-7)


def test_alpha_zero_objective_is_the_fedavg_objective():
    """With alpha = 0, F = f and grad F = grad f (and no double backward is attempted)."""
    from perfedavg.engine.objective import client_objectives

    _, task = softmax_setup()
    obj = client_objectives(task.per_sample_loss, random_params(task), task.train, 0.0)
    assert torch.equal(obj.F, obj.f) and torch.equal(obj.grad_F, obj.grad_f)


def test_rounds_vectorized_over_seeds_equal_separate_runs():
    """S runs stacked in one block give each run's own iterates (float64, summation-order tolerance)."""
    from perfedavg.engine.rounds import local_rounds

    cfg, task = softmax_setup(algorithm="hf", alpha=0.3, beta=0.2)
    oracle = AutogradOracle(task.per_sample_loss)
    seeds = [0, 1, 2]
    W = torch.stack([random_params(task, seed=s) for s in seeds])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    alone = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(2):
        W_next, _, _ = local_rounds(task, oracle, cfg, W, gens)
        for i in range(len(seeds)):
            w_i, _, _ = local_round(task, oracle, cfg, W[i], alone[i])
            assert torch.allclose(W_next[i], w_i, rtol=0, atol=TIGHT)
        W = W_next
