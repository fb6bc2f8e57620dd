"""What each method costs: the engine's counts against hand counts and against a real round's oracle calls."""

from __future__ import annotations

import pytest
import torch

from perfedavg.engine.costs import Cost, budget_matched, local_step_cost, round_cost
from perfedavg.engine.oracle import AutogradOracle
from perfedavg.engine.rounds import initial_state, local_round
from perfedavg.engine.sampling import num_sampled_clients
from perfedavg.errors import UsageError
from tests.helpers import softmax_setup

#: per user and local step, batches (D, D', D'') = (3, 5, 7), counted by hand from docs/paper.md §2's updates:
#: FedAvg one gradient on D; FO gradients on D and D'; HF those and two on D'' (w + delta g, w - delta g: one
#: batch read twice); exact those two and one Hessian-vector product on D''
HAND = {
    "fedavg": Cost(gradients=1, sample_gradients=3, samples=3),
    "fo": Cost(gradients=2, sample_gradients=3 + 5, samples=3 + 5),
    "hf": Cost(gradients=4, sample_gradients=3 + 5 + 2 * 7, samples=3 + 5 + 7),
    "exact": Cost(gradients=2, sample_gradients=3 + 5, hvps=1, sample_hvps=7, samples=3 + 5 + 7),
}


@pytest.mark.parametrize("algorithm", list(HAND))
def test_a_local_steps_counts_equal_hand_counts(algorithm):
    sizes = (3,) if algorithm == "fedavg" else (3, 5, 7)
    assert local_step_cost(algorithm, sizes) == HAND[algorithm]
    assert HAND[algorithm].gradient_equivalents == {"fedavg": 1, "fo": 2, "hf": 4, "exact": 4}[algorithm]


class CountingAutograd(AutogradOracle):
    """The real oracle, counting the calls a real round makes."""

    def __init__(self, loss):
        super().__init__(loss)
        self.gradients = self.sample_gradients = self.hvps = 0

    def grad(self, W, X, Y):
        self.gradients += W.shape[0]
        self.sample_gradients += X.shape[0] * X.shape[1]
        return super().grad(W, X, Y)

    def hvp(self, W, V, X, Y):
        self.hvps += W.shape[0]
        return super().hvp(W, V, X, Y)


@pytest.mark.parametrize("algorithm", list(HAND))
def test_a_rounds_counts_equal_the_calls_a_real_round_makes(algorithm):
    cfg, task = softmax_setup(algorithm=algorithm, tau=3, r=0.5)
    P = task.init_params(torch.Generator()).numel()
    counted = round_cost(cfg, task.n_clients, P)
    m = num_sampled_clients(cfg.r, task.n_clients)
    per_step = local_step_cost(algorithm, (5,) if algorithm == "fedavg" else (5, 6, 7))
    assert counted == Cost(floats_down=m * P, floats_up=m * P) + per_step.times(m * cfg.tau)
    oracle = CountingAutograd(task.per_sample_loss)
    state = initial_state(task, cfg)
    local_round(task, oracle, cfg, state.w, state.generator)
    assert (oracle.gradients, oracle.sample_gradients, oracle.hvps) == (
        counted.gradients,
        counted.sample_gradients,
        counted.hvps,
    )


@pytest.mark.parametrize("target", ["fo", "hf", "exact"])
@pytest.mark.parametrize("rule", ["steps", "batch"])
def test_budget_matched_fedavg_spends_what_the_variant_spends(target, rule):
    cfg, task = softmax_setup(algorithm="fedavg", tau=2, D=4, D1=4, D2=4)
    P = task.init_params(torch.Generator()).numel()
    variant = round_cost(cfg.replace(algorithm=target), task.n_clients, P)
    matched_cfg = budget_matched(cfg.replace(match_budget=target, match_rule=rule))
    matched = round_cost(matched_cfg, task.n_clients, P)
    if rule == "steps":  # as many gradients (an HVP as two), here also as many per-sample gradients
        assert matched.gradients == variant.gradient_equivalents and matched_cfg.D == cfg.D
    else:  # as many per-sample gradients, in the variant's tau steps of one gradient
        assert matched.sample_gradients == variant.sample_gradients + 2 * variant.sample_hvps
        assert matched_cfg.tau == cfg.tau
    assert matched.floats_up == variant.floats_up and matched.floats_down == variant.floats_down
    # counted on a real round: the matched FedAvg makes the gradient calls it claims
    oracle = CountingAutograd(task.per_sample_loss)
    state = initial_state(task, matched_cfg)
    local_round(task, oracle, matched_cfg, state.w, state.generator)
    assert (oracle.gradients, oracle.sample_gradients) == (matched.gradients, matched.sample_gradients)


def test_budget_matching_is_for_fedavg_and_known_variants_only():
    with pytest.raises(UsageError, match="applies to algorithm=fedavg"):
        softmax_setup(algorithm="hf", match_budget="hf")
    with pytest.raises(UsageError, match="match_budget='sgd' is not one of"):
        softmax_setup(algorithm="fedavg", match_budget="sgd")
    with pytest.raises(UsageError, match="match_rule='flops' is not one of"):
        softmax_setup(algorithm="fedavg", match_budget="fo", match_rule="flops")
    with pytest.raises(UsageError, match="D=12 is larger than the smallest user"):
        softmax_setup(algorithm="fedavg", match_budget="hf", match_rule="batch", D=3, D1=3, D2=3, **{"task.support": 9})


def test_a_runs_summary_records_its_cost(tmp_path):
    from perfedavg.runs.runner import run_config

    cfg, task = softmax_setup(algorithm="fedavg", match_budget="hf", K=2, eval_every=2)
    summary = run_config(cfg, tmp_path / "run", progress=False).summary
    P = task.init_params(torch.Generator()).numel()
    per_round = round_cost(budget_matched(cfg), task.n_clients, P)
    assert summary["cost"]["per_round"] == per_round.to_dict()
    assert summary["cost"]["per_run"] == per_round.times(2).to_dict()
    assert summary["cost"]["local_steps"] == cfg.tau * 4 and summary["cost"]["match_budget"] == "hf"


def test_table1_has_a_budget_matched_fedavg_column_and_counts_every_columns_cost(tmp_path):
    import json

    from empirical.reproduce import Plan, cell_dir, collect, markdown, run_plan
    from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist

    root = tmp_path / "data"
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        methods=("fedavg", "hf", "fedavg-hf"),
        seeds=1,
        K=2,
        workers=1,
        data_dir=str(root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    table = run_plan(plan, tmp_path / "t1", progress=False)
    cells = table["rows"][0]["cells"]
    hf, matched, plain = (cells[m]["cost"] for m in ("hf", "fedavg-hf", "fedavg"))
    assert matched["local_steps"] == 4 * 2 and plain["local_steps"] == 2 and matched["match_budget"] == "hf"
    assert (
        matched["per_round"]["gradients"]
        == hf["per_round"]["gradient_equivalents"]
        == 4 * plain["per_round"]["gradients"]
    )
    assert matched["per_run"]["gradients"] == 2 * matched["per_round"]["gradients"]
    config = (cell_dir(tmp_path / "t1", "mnist", 2, 0.01, "fedavg-hf", 0) / "config.toml").read_text()
    assert 'algorithm = "fedavg"' in config and 'match_budget = "hf"' in config
    assert "What each method costs per round" in markdown(table) and "FedAvg (HF's budget)" in markdown(table)
    # a cell whose summary predates the cost record is counted from its config: the same numbers
    summary_path = cell_dir(tmp_path / "t1", "mnist", 2, 0.01, "fedavg-hf", 0) / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["cost"]
    summary_path.write_text(json.dumps(summary))
    assert collect(plan, tmp_path / "t1")["rows"][0]["cells"]["fedavg-hf"]["cost"] == matched
