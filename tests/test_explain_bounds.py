"""``perfedavg bounds --task``, ``perfedavg explain --run`` and the files the README's tour names."""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import pytest

from perfedavg.cli import main
from perfedavg.runs import rundir

REPO = Path(__file__).resolve().parents[1]
#: a tiny synthetic run (4 users, 2 per round): its constants are exact and r*n is whole
TINY = ["K=3", "tau=2", "r=0.5", "D=4", "D1=4", "D2=4", "eval_every=1"]
TINY += ["task.n_clients=4", "task.dim=3", "task.support=20", "task.classes=2"]
#: ratios printed with 3 significant digits
PRINTED = 5e-3


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("## A tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("perfedavg")]


def test_the_tour_names_only_files_that_exist():
    named = []
    for argv in tour_commands():
        for flag, value in itertools.pairwise(argv):
            if flag in ("--config", "--constants") and not value.startswith("RUN/"):
                named.append(value)
        if argv[1] == "sweep":
            named.append(argv[2])
    assert len(named) >= 3
    missing = [name for name in named if not (REPO / name).is_file()]
    assert missing == []


def test_the_example_files_are_read(capsys):
    assert main(["bounds", "--constants", str(REPO / "examples/constants.example.toml"), "--json"]) == 0
    constants = json.loads(capsys.readouterr().out)["constants"]
    assert constants["L"] == 1.0 and constants["F0_gap"] == 1.6 and constants["n"] == 20
    from figures.bounds import constants_for_config
    from perfedavg.runs.config import load_run_config
    from theory.checks_api import convergence

    # the example, and the README tour's variant of it, are inside both step-size conditions it says it is
    for overrides in ([], ["alpha=0.5"]):
        cfg = load_run_config(str(REPO / "examples/run.example.toml"), overrides)
        assert cfg.task["name"] == "softmax" and cfg.K == 300
        report = convergence(constants_for_config(cfg.to_dict()), cfg.algorithm)
        assert report.condition == {"derived": True, "recalled": True}, (overrides, report.beta_max)


def bounds_json(argv, capsys) -> dict:
    assert main(["bounds", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_bounds_task_gives_the_synthetic_tasks_exact_constants(capsys):
    from figures.bounds import constants_for_config
    from perfedavg.runs.config import load_run_config

    got = bounds_json(["--task", "softmax", *sets(["task.h=0.9"])], capsys)["constants"]
    want = constants_for_config(load_run_config(None, ["task=softmax", "task.h=0.9"]).to_dict()).as_dict()
    assert got == pytest.approx(want, rel=1e-12)
    other = bounds_json(["--task", "softmax", *sets(["task.h=0.1"])], capsys)["constants"]
    assert other["gamma_G"] < got["gamma_G"]  # the dial moved the dissimilarity
    flags = bounds_json(["--task", "softmax", "--rho", "2", "--beta", "0.01", "--K", "1e3"], capsys)["constants"]
    assert flags["rho"] == 2 and flags["beta"] == 0.01 and flags["K"] == 1000


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--task", "mnist"], "no exact constants"),
        (["--task", "softmax", "--constants", "x.toml"], "give one of them"),
        (["--task", "softmax", "--n", "5"], "task.n_clients"),
        (["--set", "task.h=1"], "--task NAME"),
        (["--task", "sofmax"], "did you mean 'softmax'"),
    ],
)
def test_bounds_task_refuses_in_one_line(argv, words, capsys):
    assert main(["bounds", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def numbers(line: str, label: str) -> float:
    return float(re.search(rf"{label} ([0-9.eE+-]+)", line).group(1))


@pytest.mark.parametrize("tracked", [True, False])
def test_explain_run_puts_the_bound_beside_what_the_run_measured(tracked, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["track_inner=true"] if tracked else []
    assert main(["run", "--no-progress", "--no-plot", "--out", str(out), *sets(TINY + extra)]) == 0
    capsys.readouterr()
    assert main(["explain", "--run", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    records = rundir.read_metrics(out)
    if tracked:  # Phi_K itself: the average over every local step, recorded at round K
        want = records[-1]["stationarity_avg"]
    else:  # the server models of rounds 0..K-1 (w_k is the first iterate of round k+1)
        want = sum(r["grad_norm_sq_F"] for r in records[:-1]) / (len(records) - 1)
    measured, bound = numbers(line, "vs measured"), numbers(line, "derived bound")
    assert measured == pytest.approx(want, rel=1e-3)
    assert numbers(line, "bound/measured =") == pytest.approx(bound / measured, rel=PRINTED)
    assert ("holds" in line) == (bound >= measured) and "dominant term" in line


def test_explain_run_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["explain", "--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_explain_names_a_missing_constants_file_before_building_the_task(capsys, monkeypatch):
    """A missing --constants file is the one-line answer, even for a task whose data are missing too."""
    monkeypatch.setenv("PERFEDAVG_DATA", "/nonexistent")
    assert main(["explain", "--constants", "/nonexistent/constants.json", "--set", "task=mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--constants /nonexistent/constants.json: no such file") and "\n" not in err, err
