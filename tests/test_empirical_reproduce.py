"""empirical.reproduce / empirical.cli: Table 1 end to end on a tiny MNIST (IDX files written
here), resumability, the extra exact column with its own time, the users' split next to
the table, and the CLI's one-line errors."""

from __future__ import annotations

import json

import pytest

from empirical.reproduce import PAPER, ROWS, Plan, cell_config, cell_dir, markdown, run_plan
from perfedavg.cli import main as cli_main
from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist
from tests.helpers import table1_plan


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    return root


def test_cells_use_the_papers_hyper_parameters_and_evaluate_only_at_the_end():
    plan = Plan()
    assert plan.rows == ROWS == ((10, 0.001), (4, 0.001), (10, 0.01)) and plan.seeds == 5 and plan.K == 1000
    cfg = cell_config(plan, "cifar10", 4, 0.001, "hf", 3)
    assert (cfg.K, cfg.tau, cfg.alpha, cfg.beta, cfg.r, cfg.D, cfg.D1, cfg.D2, cfg.delta, cfg.seed) == (
        1000,
        4,
        0.001,
        PAPER["beta"],
        0.2,
        40,
        40,
        40,
        0.001,
        3,
    )
    assert cfg.eval_every == 1000 and cfg.task["name"] == "cifar10"
    quick = Plan.quick()
    assert quick.seeds == 1 and quick.K < 100


def test_table1_end_to_end_resumable_with_extra_column(tiny_root, tmp_path):
    from dataclasses import replace

    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        methods=("fedavg", "fo", "exact"),
        seeds=2,
        K=2,
        workers=2,
        data_dir=str(tiny_root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    out = tmp_path / "t1"
    table = run_plan(plan, out, progress=False)
    for name in ("table1.md", "table1.tex", "table1.json", "partition-mnist.png", "partition-mnist.md"):
        assert (out / name).stat().st_size > 0, name
    (row,) = table["rows"]
    assert row["label"] == "MNIST" and set(row["cells"]) == {"fedavg", "fo", "exact"}
    for cell in row["cells"].values():
        for key in ("test", "train", "global"):
            assert 0 <= cell[key]["mean"] <= 100 and cell[key]["n"] == 2
        assert cell["wall_seconds"] > 0
    md = (out / "table1.md").read_text()
    assert "Per-FedAvg (exact HVP) [extra]" in md and "Wall time" in md and "partition-mnist.png" in md
    assert "adaptation step on test data" in md and "leak-free" in md
    assert json.loads((out / "table1.json").read_text())["plan"]["K"] == 2
    # the cell's own record: only rounds 0 and K were evaluated
    lines = (cell_dir(out, "mnist", 2, 0.01, "fo", 1) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 2]
    # the cells ran side by side in the sweep runner's worker processes, each in its cell directory
    assert table["invocation"]["workers"] == 2 and table["invocation"]["actions"] == {"start": 6}
    sweep = json.loads((out / "sweep_summary.json").read_text())
    assert {r["name"] for r in sweep["runs"]} == {
        f"mnist/tau2-alpha0.01/{m}-seed{s}" for m in ("fedavg", "fo", "exact") for s in (0, 1)
    }
    assert {r["status"] for r in sweep["runs"]} == {"finished"}
    # finished cells are reused, also when the data root is spelled otherwise (where the data live is no setting)
    again = run_plan(replace(plan, data_dir=str(tiny_root) + "/"), out, progress=False)
    assert again["seconds_this_invocation"] == {} and again["invocation"]["cells_run"] == 0
    assert again["rows"][0]["cells"]["fo"]["test"] == row["cells"]["fo"]["test"]


def test_eval_batch_is_one_sgd_step_from_its_own_stream(tiny_root, tmp_path):
    """eval_batch = N: a stochastic adaptation step measured after training; the trained
    model is the one without the option (training never sees the evaluation's draws), and a
    batch as large as every user's data is the full-batch step exactly."""
    from dataclasses import replace

    from perfedavg.runs.rundir import read_checkpoint

    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        methods=("fo",),
        seeds=1,
        K=2,
        workers=1,
        data_dir=str(tiny_root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    full = run_plan(plan, tmp_path / "a", progress=False)
    batched = run_plan(replace(plan, eval_batch=3), tmp_path / "b", progress=False)
    w = [
        read_checkpoint(cell_dir(tmp_path / d, "mnist", 2, 0.01, "fo", 0) / "checkpoint.pt")["state"]["w"] for d in "ab"
    ]
    assert w[0].equal(w[1])
    cell = batched["rows"][0]["cells"]["fo"]
    assert 0 <= cell["test_batch"]["mean"] <= 100 and 0 <= cell["train_batch"]["mean"] <= 100
    assert cell["test"] == full["rows"][0]["cells"]["fo"]["test"]
    assert "one SGD step on a batch of 3" in (tmp_path / "b" / "table1.md").read_text()
    # the same numbers as the engine's evaluation with eval_batch = 3 at round K (perfedavg run --set eval_batch=3)
    from perfedavg.engine.rounds import evaluate
    from perfedavg.runs.config import build_config, read_toml
    from perfedavg.runs.resolve import resolve

    directory = cell_dir(tmp_path / "b", "mnist", 2, 0.01, "fo", 0)
    table = read_toml(directory / "config.toml")
    cfg, task = resolve(build_config({**table, "eval_batch": 3, "task": {**table["task"], "data_dir": str(tiny_root)}}))
    record = evaluate(task, cfg, w[1], round_index=plan.K)
    stored = json.loads((directory / "eval_batch3.json").read_text())
    for protocol in ("test", "train"):
        assert (
            stored[f"personalized_accuracy_{protocol}_batch_step"]
            == record[f"personalized_accuracy_{protocol}_batch_step"]
        )
    # a batch covering every user's data: the full-batch step (user data: 4*5 or 4*5/2+8 train, fewer test)
    whole = run_plan(replace(plan, eval_batch=10_000), tmp_path / "b", progress=False)["rows"][0]["cells"]["fo"]
    for protocol in ("test", "train"):
        assert whole[f"{protocol}_batch"]["mean"] == pytest.approx(whole[protocol]["mean"], abs=1e-9)


def test_cli_with_exact_and_normalize(tiny_root, tmp_path, monkeypatch):
    """--with-exact adds the extra column to the paper's three; --normalize none reaches every cell's task."""
    plan = table1_plan(monkeypatch, ["--with-exact", "--normalize", "none", "--eval-batch", "40"])
    assert plan.methods == ("fedavg", "fo", "hf", "exact") and plan.task["normalize"] == "none"
    assert plan.eval_batch == 40
    assert cell_config(plan, "mnist", 10, 0.01, "exact", 0).task["normalize"] == "none"
    plan = table1_plan(monkeypatch, [])
    assert plan.methods == ("fedavg", "fo", "hf") and "normalize" not in plan.task
    assert plan.eval_batch == 0
    assert cell_config(plan, "mnist", 10, 0.01, "hf", 0).device == "cpu"


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert cli_main(["reproduce", "table1", "--rounds", "0"]) == 2
    assert cli_main(["reproduce", "table1", "--methods", "fedavg,sgd"]) == 2
    assert cli_main(["reproduce", "table1", "--workers", "0"]) == 2
    assert cli_main(["reproduce", "table1", "--eval-batch", "-1"]) == 2
    assert cli_main(["reproduce", "table1", "--device", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert (
        cli_main(
            [
                "reproduce",
                "table1",
                "--datasets",
                "mnist",
                "--data-dir",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and "--workers" in err[2] and "--eval-batch" in err[3] and "--device='tpu'" in err[4]
    assert all(way in err[5] for way in ("--data-dir", "PERFEDAVG_DATA", "--download"))
    assert not (tmp_path / "out").exists()
    assert cli_main(["reproduce", "constants", "--run", str(tmp_path)]) == 2


def test_more_rounds_continue_cells_bit_for_bit_and_other_settings_rerun(tiny_root, tmp_path):
    from dataclasses import replace

    from perfedavg.runs.rundir import read_checkpoint

    base = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        methods=("fo",),
        seeds=1,
        K=2,
        data_dir=str(tiny_root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    run_plan(base, tmp_path / "a", progress=False)
    longer = replace(base, K=3)
    table = run_plan(longer, tmp_path / "a", progress=False)  # continues the K=2 cell
    assert table["seconds_this_invocation"] and table["plan"]["K"] == 3
    assert table["invocation"]["actions"] == {"continue": 1}
    # continued, not started over: the K=2 run's records (rounds 0 and 2) are kept and round 3 is appended
    lines = (cell_dir(tmp_path / "a", "mnist", 2, 0.01, "fo", 0) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 2, 3]
    run_plan(longer, tmp_path / "b", progress=False)  # fresh K=3
    w = [
        read_checkpoint(cell_dir(tmp_path / d, "mnist", 2, 0.01, "fo", 0) / "checkpoint.pt")["state"]["w"] for d in "ab"
    ]
    assert w[0].equal(w[1])
    other = replace(longer, settings={**longer.settings, "beta": 0.01})
    assert run_plan(other, tmp_path / "a", progress=False)["invocation"]["actions"] == {"rerun": 1}  # from round 0
    lines = (cell_dir(tmp_path / "a", "mnist", 2, 0.01, "fo", 0) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 3]
    assert not read_checkpoint(cell_dir(tmp_path / "a", "mnist", 2, 0.01, "fo", 0) / "checkpoint.pt")["state"][
        "w"
    ].equal(w[1])


def test_fedavg_cells_of_another_alpha_evaluate_their_twins_model(tiny_root, tmp_path):
    """FedAvg trains without α: the cell (2, 0.05) evaluates the model trained in (2, 0.01) and its
    directory equals a cell trained on its own, records byte for byte and the model bit for bit;
    more rounds re-evaluate it from the continued twin."""
    from dataclasses import replace

    from perfedavg.runs.rundir import read_checkpoint
    from perfedavg.runs.runner import run_config

    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01), (2, 0.05)),
        methods=("fedavg", "fo"),
        seeds=1,
        K=2,
        data_dir=str(tiny_root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    table = run_plan(plan, tmp_path / "t", progress=False)
    assert table["invocation"]["cells_run"] == 3 and table["invocation"]["actions"]["evaluated from a twin"] == 1
    assert [row["cells"]["fedavg"]["trained_in"] for row in table["rows"]] == [False, True]
    assert (
        "its cells at (τ, α) = (2, 0.05) evaluate the model trained in the first row with the same τ"
        in (tmp_path / "t" / "table1.md").read_text()
    )
    two = dict(table, rows=table["rows"] + [dict(row, label="CIFAR-10") for row in table["rows"]])
    assert "its cells at (τ, α) = (2, 0.05) evaluate" in markdown(two)  # each row once, not per data set
    for K in (2, 3):
        plan = replace(plan, K=K)
        if K == 3:
            assert run_plan(plan, tmp_path / "t", progress=False)["invocation"]["actions"] == {
                "continue": 3,
                "evaluated from a twin": 1,
            }
        twin = cell_dir(tmp_path / "t", "mnist", 2, 0.05, "fedavg", 0)
        alone = tmp_path / f"alone{K}"
        run_config(cell_config(plan, "mnist", 2, 0.05, "fedavg", 0), alone, progress=False)
        assert (twin / "metrics.jsonl").read_bytes() == (alone / "metrics.jsonl").read_bytes()
        assert [json.loads(x)["round"] for x in (twin / "metrics.jsonl").read_text().splitlines()] == [0, K]
        assert read_checkpoint(twin / "checkpoint.pt")["state"]["w"].equal(
            read_checkpoint(alone / "checkpoint.pt")["state"]["w"]
        )
        summary = json.loads((twin / "summary.json").read_text())
        assert (
            summary["trained_in"].endswith("tau2-alpha0.01/fedavg-seed0")
            and summary["final"] == json.loads((alone / "summary.json").read_text())["final"]
        )


def test_run_from_trained_refuses_another_training_and_writes_nothing(tiny_root, tmp_path):
    from perfedavg.errors import UsageError
    from perfedavg.runs.runner import run_config, run_from_trained

    plan = Plan(
        datasets=("mnist",),
        rows=((2, 0.01),),
        seeds=1,
        K=2,
        data_dir=str(tiny_root),
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    fedavg, fo = tmp_path / "fedavg", tmp_path / "fo"
    run_config(cell_config(plan, "mnist", 2, 0.01, "fedavg", 0), fedavg, progress=False)
    run_config(cell_config(plan, "mnist", 2, 0.01, "fo", 0), fo, progress=False)
    cfg = cell_config(plan, "mnist", 2, 0.05, "fedavg", 0)
    cases = [
        (fo, cfg, "algorithm"),  # another algorithm trained it
        (fedavg, cell_config(plan, "mnist", 2, 0.05, "fedavg", 1), "seed"),
        (fedavg, cell_config(plan, "mnist", 3, 0.05, "fedavg", 0), "tau"),
        (fedavg, cell_config(plan, "mnist", 2, 0.05, "fo", 0), "algorithm"),
        (fedavg, cfg.replace(K=3, eval_every=3), "K=3"),
        (fedavg, cfg.replace(eval_every=1), "eval_every=1"),
        (tmp_path / "missing", cfg, "not a finished run"),
    ]
    for source, config, message in cases:
        with pytest.raises(UsageError, match=message):
            run_from_trained(config, tmp_path / "out", source)
        assert not (tmp_path / "out").exists()
