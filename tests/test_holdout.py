"""New users (``task.holdout_users``): kept out of training entirely, evaluated like the others."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from perfedavg.engine.mlp import mlp_oracle_factory
from perfedavg.engine.models import mlp
from perfedavg.engine.rounds import evaluate, train
from perfedavg.engine.task import ClientData, Task, hold_out
from perfedavg.errors import UsageError
from perfedavg.runs.holdout import held_out_users, holdout_count
from perfedavg.runs.registry import build_task
from tests.helpers import softmax_setup


def _states(task, cfg):
    """Every round's model and the training users' records of a run."""
    out = []
    for state, record in train(task, cfg):
        kept = {k: v for k, v in (record or {}).items() if not k.endswith("_new") and k != "per_client"}
        out.append((state.round, state.w.clone(), kept))
    return out


def _assert_same_training(a, b):
    assert len(a) == len(b)
    for (ra, wa, ka), (rb, wb, kb) in zip(a, b):
        assert ra == rb and torch.equal(wa, wb), f"round {ra}: the model differs"
        assert ka == kb, f"round {ra}: the training users' records differ"


def _disjoint_mlp_task(strategy: str) -> Task:
    """Eight users, each with its own 10 samples (no sample shared), on the MLP's own fast path."""
    sizes = (5, 6, 3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, sizes[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=g)
    data = ClientData.from_lists(x, y, [list(range(10 * i, 10 * i + 10)) for i in range(8)])
    loss, scores, init = mlp(sizes, "elu")
    return Task(
        "disjoint", loss, scores, init, data, data, False, oracle_factory=mlp_oracle_factory(sizes, "elu", strategy)
    )


def _poisoned_samples(task: Task, users: list[int]) -> Task:
    """``task`` with every sample the ``users`` hold replaced by NaN inputs and another label."""
    x, y = task.train.x.clone(), task.train.y.clone()
    for i in users:
        rows = task.train.index[i, : int(task.train.count[i])]
        x[rows] = float("nan")
        y[rows] = (y[rows] + 1) % 3
    data = dataclasses.replace(task.train, x=x, y=y)
    return dataclasses.replace(task, train=data, test=data)


@pytest.mark.parametrize("strategy", ["steps", "sample_space"])
def test_poisoned_new_users_leave_training_bit_identical_on_the_mlp_path(strategy):
    cfg, _ = softmax_setup(algorithm="hf", K=3, tau=2, r=0.5, D=3, D1=3, D2=3, eval_every=1)
    task = _disjoint_mlp_task(strategy)
    held = held_out_users(task.n_clients, 2, seed=0)
    clean = _states(hold_out(task, held), cfg)
    poisoned_task = hold_out(_poisoned_samples(task, held), held)
    poisoned = _states(poisoned_task, cfg)
    _assert_same_training(clean, poisoned)
    # the poison is there: the new users' own evaluation sees it
    record = evaluate(poisoned_task, cfg, clean[-1][1])
    assert record["global_accuracy_new"] != evaluate(hold_out(task, held), cfg, clean[-1][1])["global_accuracy_new"]


@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "exact"])
def test_poisoned_new_users_leave_training_bit_identical_on_a_synthetic_task(algorithm):
    cfg, _ = softmax_setup(algorithm=algorithm, **{"task.holdout_users": 2})
    table = dict(cfg.task)
    full = build_task({**table, "holdout_users": 0.0}).to(torch.float64)
    held = held_out_users(full.n_clients, 2, seed=table["data_seed"])
    task = build_task(table).to(torch.float64)
    assert task.new_users == tuple(held) and task.n_clients == full.n_clients - 2
    # the users share one support: their data are their distributions p_i, replaced by a point mass
    weight = full.train.weight.clone()
    weight[held] = 0.0
    weight[held, 0] = 1.0
    poisoned = dataclasses.replace(full, train=dataclasses.replace(full.train, weight=weight))
    _assert_same_training(_states(task, cfg), _states(hold_out(poisoned, held), cfg))


def test_holdout_zero_is_the_task_itself_and_new_users_are_evaluated_like_current_ones():
    cfg, task = softmax_setup(adapt_steps=2)
    assert task.new_train is None and "F_new" not in evaluate(task, cfg, task.init_params(torch.Generator()))
    cfg, task = softmax_setup(adapt_steps=2, **{"task.holdout_users": 0.5})
    assert task.n_clients == 3 and task.new_train is not None and task.new_train.n_clients == 3
    w = torch.randn(task.init_params(torch.Generator()).shape, dtype=torch.float64)
    record = evaluate(task, cfg, w)
    as_current = evaluate(
        dataclasses.replace(task, train=task.new_train, test=task.new_test, new_train=None, new_test=None), cfg, w
    )
    for key, value in as_current.items():
        if key == "per_client":
            for name, values in value.items():
                assert record["per_client"][f"{name}_new"] == values, name
        else:
            assert record[f"{key}_new"] == value, key


def test_the_paper_splits_two_groups_are_both_held_out():
    groups = (0,) * 25 + (1,) * 25
    held = held_out_users(50, 0.2, 0, groups)
    assert len(held) == 10 and sum(1 for i in held if i < 25) == 5
    held = held_out_users(50, 3, 1, groups)
    assert len(held) == 3 and {groups[i] for i in held} == {0, 1}
    assert held_out_users(50, 0.2, 0, groups) != held_out_users(50, 0.2, 1, groups)  # the seed draws them
    with pytest.raises(UsageError, match="fewer than the split's 2 groups"):
        held_out_users(50, 1, 0, groups)
    with pytest.raises(UsageError, match="all 1 users of group 1"):
        held_out_users(5, 2, 0, (0, 0, 0, 0, 1))


@pytest.mark.parametrize(
    "value,n,count", [(0, 10, 0), (0.0, 10, 0), (0.25, 10, 2), (0.01, 10, 1), (3, 10, 3), (9.0, 10, 9)]
)
def test_holdout_is_a_count_or_a_fraction(value, n, count):
    assert holdout_count(value, n) == count


@pytest.mark.parametrize("value", [2.5, -1, 10, float("inf")])
def test_bad_holdout_values_are_one_line_usage_errors(value):
    with pytest.raises(UsageError, match=r"task\.holdout_users"):
        holdout_count(value, 10)


def test_the_paper_split_task_holds_out_users_of_both_groups(tmp_path):
    from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist

    write_mnist(tmp_path / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=600, side=4))
    task = build_task({"name": "mnist", "data_dir": str(tmp_path), "a": 2, "holdout_users": 0.2})
    assert task.n_clients == 40 and task.new_groups == (0,) * 5 + (1,) * 5
    assert task.groups == (0,) * 20 + (1,) * 20
    classes = [
        len(set(task.new_train.y[task.new_train.index[i, : int(task.new_train.count[i])]].tolist())) for i in range(10)
    ]
    assert classes == [5] * 5 + [2] * 5  # group 0: five classes each, group 1: two


@pytest.mark.parametrize("name", ["softmax", "logistic", "quadratic"])
def test_a_synthetic_tasks_constants_are_its_training_users_own(name):
    full = build_task({"name": name, "n_clients": 6})
    task = build_task({"name": name, "n_clients": 6, "holdout_users": 2})
    assert task.constants == task.constants_of(task.train)
    assert len(task.constants["tv"]) == 4 and len(full.constants["tv"]) == 6
    assert task.constants["tv"] != tuple(full.constants["tv"][i] for i in task.users)  # the mixture is theirs


def test_a_config_saved_before_holdout_users_existed_trains_the_same_model():
    from perfedavg.runs.status import same_training

    old = {"algorithm": "hf", "task": {"name": "mnist", "n_clients": 50}}
    assert same_training(old, {**old, "task": {**old["task"], "holdout_users": 0.0}})
    assert same_training(old, {**old, "task": {**old["task"], "holdout_users": 0}})
    assert not same_training(old, {**old, "task": {**old["task"], "holdout_users": 0.2}})
