"""The Python API (perfedavg.api, re-exported at the package's top): the same runs and bounds as the
command line, in memory. Its docstring examples run as doctests (pyproject's testpaths)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import perfedavg
from perfedavg.cli import main
from perfedavg.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
#: a tiny config (4 users, 2 per round) shaped like a config file
TINY = {
    "K": 4,
    "tau": 2,
    "r": 0.5,
    "D": 4,
    "D1": 4,
    "D2": 4,
    "eval_every": 2,
    "task": {"name": "softmax", "n_clients": 4, "dim": 3, "support": 20, "classes": 2},
}


def test_the_package_exports_the_api_without_importing_torch():
    code = "import sys, perfedavg; assert callable(perfedavg.run.__call__); print('torch' in sys.modules)"
    lazy = "import sys, perfedavg; print('torch' in sys.modules, 'run' in dir(perfedavg))"
    assert subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, cwd=REPO).stdout.split() == [
        "False",
        "True",
    ]
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).returncode == 0
    with pytest.raises(AttributeError):
        perfedavg.no_such_name  # noqa: B018 (the attribute access is the test)


def test_a_run_in_memory_equals_the_run_directory_of_the_same_config(tmp_path):
    result = perfedavg.run(TINY, algorithm="exact")
    sets = [f"{k}={v}" for k, v in TINY.items() if k != "task"] + [f"task.{k}={v}" for k, v in TINY["task"].items()]
    config = tmp_path / "c.toml"
    config.write_text("algorithm = 'exact'\n")
    argv = ["run", "--config", str(config), "--no-progress", "--no-plot", "--out", str(tmp_path / "r")]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    saved = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert result.records == saved  # the same rounds, bit for bit
    assert result.metrics["round"].tolist() == [0, 2, 4] and result.metrics["round"].dtype.kind == "i"
    np.testing.assert_array_equal(result.metrics["F"], [r["F"] for r in saved])
    assert result.run_dir is None and result.final == saved[-1]


def test_options_override_the_config_and_the_task_table_merges():
    result = perfedavg.run(TINY, K=2, task={"h": 0.9, "n_clients": 6})
    task = result.config["task"]
    assert result.config["K"] == 2 and (task["h"], task["n_clients"], task["dim"]) == (0.9, 6, 3)
    other = perfedavg.run(TINY, task={"name": "logistic", "n_clients": 4, "dim": 3, "support": 20}, K=2)
    assert other.config["task"]["name"] == "logistic" and "classes" not in other.config["task"]
    with pytest.raises(UsageError, match="did you mean 'alpha'"):
        perfedavg.run(TINY, alpah=0.1)


def test_the_result_carries_the_bound_for_its_exact_constants():
    from figures.bounds import bound_for, constants_for_config

    result = perfedavg.run(TINY, track_inner=True)
    constants = constants_for_config(result.config)
    assert result.constants == constants
    assert result.bound == bound_for(constants, "hf")[0] and sum(result.bound_terms.values()) == pytest.approx(
        result.bound, rel=1e-12
    )
    assert result.measured == result.records[-1]["stationarity_avg"]  # Phi_K itself when tracked
    assert result.tightness == result.bound / result.measured and result.tightness > 1


def test_a_run_with_out_writes_a_run_directory(tmp_path):
    result = perfedavg.run(TINY, out=tmp_path / "run")
    assert result.run_dir == tmp_path / "run" and (tmp_path / "run" / "curves.png").is_file()
    with pytest.raises(UsageError, match="already exists"):
        perfedavg.run(TINY, out=tmp_path / "run")


def test_bounds_takes_constants_a_mapping_or_a_file():
    from theory.checks_api import convergence
    from theory.constants import Constants

    path = REPO / "examples" / "constants.example.toml"
    from_file = perfedavg.bounds(path, "fo")
    assert from_file == convergence(Constants.from_file(path), "fo")
    assert perfedavg.bounds(Constants.from_file(path).as_dict(), "fo") == from_file
    with pytest.raises(UsageError, match="Per-FedAvg"):
        perfedavg.bounds(path, "fedavg")


def test_register_task_refuses_what_it_cannot_use():
    from synthetic.softmax import SPEC

    with pytest.raises(UsageError, match="taken"):
        perfedavg.register_task("softmax", SPEC.build, SPEC.options)
    with pytest.raises(UsageError, match="dataclass"):
        perfedavg.register_task("mine", SPEC.build, dict)

    @dataclasses.dataclass(frozen=True)
    class Opts:
        n_clients: int = 4

    perfedavg.register_task("mine_tiny", lambda o: SPEC.build(SPEC.options(n_clients=o.n_clients, dim=3, support=20)))
    perfedavg.register_task("mine_opts", lambda o: SPEC.build(SPEC.options(n_clients=o.n_clients)), Opts)
    with pytest.raises(UsageError, match="did you mean 'mine_opts'"):
        perfedavg.run(task="mine_opt")
    with pytest.raises(UsageError, match="whole number"):
        perfedavg.run(task={"name": "mine_opts", "n_clients": 4.5})
