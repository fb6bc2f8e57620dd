"""perfedavg reproduce personalization: current and new users after k = 0, 1, N steps, on Table 1's runner."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from empirical.personalization import personalization_plan, run_personalization
from perfedavg.cli import main as cli_main
from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist


@pytest.mark.slow
def test_personalization_reports_current_and_new_users_at_k_0_1_n_and_resumes(tmp_path):
    root = tmp_path / "data"
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    plan = personalization_plan(
        quick=True,
        steps=3,
        datasets=("mnist",),
        data_dir=str(root),
        K=2,
        workers=1,
        task={"n_clients": 10, "a": 4},
        settings={"D": 4, "D1": 4, "D2": 4, "beta": 0.05},
    )
    assert plan.rows == ((10, 0.01),) and plan.task["holdout_users"] == 0.2 and "fedavg-hf" in plan.methods
    plan = replace(plan, rows=((2, 0.01),), methods=("fedavg", "fedavg-hf", "hf"))
    out = tmp_path / "p"
    result = run_personalization(plan, out, progress=False)
    table1 = json.loads((out / "table1.json").read_text())
    assert result["steps"] == [0, 1, 3]
    for row in result["rows"]:
        cell = table1["rows"][0]["cells"][row["method"]]
        for protocol in ("train", "test"):
            # k = 0 is the shared model, k = 1 the one-step numbers, for current and new users
            assert row["cells"][protocol]["k=0"]["mean"] == pytest.approx(cell["global"]["mean"])
            assert row["cells"][f"{protocol}_new"]["k=0"]["mean"] == pytest.approx(cell["global_new"]["mean"])
            assert row["cells"][protocol]["k=1"]["mean"] == pytest.approx(cell[protocol]["mean"])
            assert row["cells"][f"{protocol}_new"]["k=1"]["mean"] == pytest.approx(cell[f"{protocol}_new"]["mean"])
    text = (out / "personalization.md").read_text()
    assert "FedAvg (HF's budget)" in text and "new, k=3" in text
    assert (out / "personalization-mnist.png").stat().st_size > 1000
    # every user's accuracy (%) per k is saved for the ECDFs: 8 current and 2 new users (20% of 10), one seed
    users = json.loads((out / "personalization.json").read_text())["users"]["mnist"]["methods"]["hf"]
    assert [len(users[key]["k=3"]) for key in ("test", "test_new", "train", "train_new")] == [8, 2, 8, 2]
    assert all(0 <= a <= 100 for curve in users.values() for values in curve.values() for a in values)
    again = run_personalization(plan, out, progress=False)  # every cell done: nothing runs again
    assert json.loads((out / "table1.json").read_text())["invocation"]["cells_run"] == 0
    assert again["rows"] == json.loads(json.dumps(result["rows"]))


@pytest.mark.parametrize(
    "flags,match",
    [(["--steps", "0"], "--steps=0"), (["--datasets", "svhn"], "svhn"), (["--new-users", "0"], "--new-users=0")],
)
def test_personalization_cli_errors_are_one_line(tmp_path, capsys, flags, match):
    assert cli_main(["reproduce", "personalization", "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
