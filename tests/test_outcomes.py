"""Every user's outcome: the per-user summaries against hand counts, in a run's summary and in Table 1."""

from __future__ import annotations

import json
import math

import pytest

from perfedavg.engine.rounds import evaluate
from perfedavg.runs.outcomes import record_outcomes, user_outcomes
from tests.helpers import softmax_setup


def test_user_outcomes_equal_hand_counts():
    before = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9]
    after = [0.2, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.9]
    groups = [0] * 5 + [1] * 6
    out = user_outcomes(before, after, groups)
    mean = sum(after) / 11
    assert out["mean_after"] == pytest.approx(mean)
    assert out["std_after"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in after) / 11))
    assert out["worst10_after"] == pytest.approx((0.2 + 0.4) / 2)  # ceil(1.1) = 2 users of 11
    assert out["worst10_before"] == pytest.approx(0.5)
    assert out["harmed"] == pytest.approx(2 / 11) and out["helped"] == pytest.approx(8 / 11)  # 0.9 -> 0.9: neither
    assert out["by_group"]["0"]["harmed"] == pytest.approx(2 / 5) and out["by_group"]["1"]["harmed"] == 0
    assert out["by_group"]["0"]["worst10_after"] == pytest.approx(0.2)  # ceil(0.5) = 1 user of 5
    ten = user_outcomes([0.0] * 10, [0.1 * i for i in range(10)])
    assert ten["worst10_after"] == 0.0 and "by_group" not in ten  # one user of 10


def test_a_runs_record_and_summary_carry_every_users_outcome(tmp_path):
    cfg, task = softmax_setup(adapt_steps=3, **{"task.holdout_users": 2})
    w = task.init_params(__import__("torch").Generator()) + 0.3
    record = evaluate(task, cfg, w)
    out = record_outcomes(record)
    assert set(out) == {"train", "test", "train_new", "test_new"}
    for name, at_k in out.items():
        split, new = name.removesuffix("_new"), "_new" if name.endswith("_new") else ""
        rows = record["per_client"][f"accuracy_{split}_steps{new}"]
        assert set(at_k) == {"k=1", "k=3"}
        assert at_k["k=3"] == user_outcomes(rows[0], rows[3])
        assert at_k["k=1"]["users"] == (2 if name.endswith("_new") else 4)
    from perfedavg.runs.runner import run_config

    result = run_config(cfg.replace(K=2, eval_every=2), tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["users"]["new"] == list(task.new_users) and len(summary["users"]["current"]) == 4
    assert summary["outcomes"] == json.loads(json.dumps(result.summary["outcomes"]))
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert summary["outcomes"] == json.loads(json.dumps(record_outcomes(last)))


def test_table1_reports_new_users_a_few_steps_and_every_users_outcome(tmp_path):
    from empirical.reproduce import Plan, cell_dir, run_plan
    from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist

    root = tmp_path / "data"
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        methods=("fedavg", "fo"),
        seeds=2,
        K=2,
        workers=1,
        data_dir=str(root),
        task={"a": 4, "holdout_users": 0.2, "n_clients": 10},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
        adapt_steps=2,
    )
    table = run_plan(plan, tmp_path / "t1", progress=False)
    cell = table["rows"][0]["cells"]["fo"]
    for seed in range(2):
        directory = cell_dir(tmp_path / "t1", "mnist", 2, 0.01, "fo", seed)
        final = json.loads((directory / "summary.json").read_text())["final"]
        users = json.loads((directory / "users-k2.json").read_text())
        # k = 1 is the cell's own one-step number, for current and for new users
        for protocol in ("train", "test"):
            curve = users["record"][f"personalized_accuracy_{protocol}_steps"]
            assert curve[1] == final[f"personalized_accuracy_{protocol}_step"]
            assert (
                users["record"][f"personalized_accuracy_{protocol}_steps_new"][1]
                == (final[f"personalized_accuracy_{protocol}_step_new"])
            )
        assert users["new_groups"] == [0, 1]  # 2 of 10 users: one of each group
        assert set(users["outcomes"]["test_new"]["k=2"]["by_group"]) == {"0", "1"}
    assert cell["users"]["steps"]["test"][1]["mean"] == pytest.approx(cell["test"]["mean"])
    assert cell["test_new"]["n"] == 2
    text = (tmp_path / "t1" / "table1.md").read_text()
    for heading in ("New users (held out of training)", "A few steps", "Every user's outcome", "two-class users"):
        assert heading in text
