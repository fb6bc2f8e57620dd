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


#: HF's finite difference on a quadratic is exact up to round-off (the gradient is linear in w); float64 sums of
#: a few hundred terms of size ~1 differ by far less than this
ROUND_OFF = 1e-10


def test_directions_are_the_local_steps_on_shared_batches():
    """The directions are the engine's local steps: FedAvg's is the batch gradient, HF's equals the exact step's on
    a quadratic (its finite difference is exact there, but only if both use the same batch D''), and with a huge
    batch every Per-FedAvg direction nears ∇F_i, FO the least (it drops the Hessian term)."""
    import torch

    task = perfedavg.build_task("quadratic", n_clients=4, h=1.0)
    w = task.init_params(None) + 1.0
    d = perfedavg.directions(task, w, 0.5, user=2, batch=300, seed=3)
    assert (d["hf"] - d["exact"]).abs().max() < ROUND_OFF
    gen = torch.Generator().manual_seed(3)
    from perfedavg.engine.sampling import draw_batch

    first = draw_batch(gen, task.train, torch.tensor([2]), 300, True)
    residual = first.x[0] @ w - first.y[0].double()
    torch.testing.assert_close(d["fedavg"], (residual.unsqueeze(-1) * first.x[0]).mean(0), rtol=0, atol=ROUND_OFF)
    torch.testing.assert_close(d["grad_F"], perfedavg.objectives(task, w, 0.5).grad_F[2])
    big = perfedavg.directions(task, w, 0.5, user=2, batch=200_000)
    error = {k: float((big[k] - big["grad_F"]).norm()) for k in ("fo", "hf", "exact")}
    assert error["exact"] < 0.02 and error["hf"] < 0.02 and error["fo"] > 5 * error["exact"], error
    with pytest.raises(UsageError, match=r"users 0\.\.3"):
        perfedavg.directions(task, w, 0.5, user=4)


def test_objectives_are_exact_and_build_task_checks_its_dtype():
    import torch

    task = perfedavg.build_task("quadratic", n_clients=3, h=1.0)
    w = torch.tensor([0.3, -0.2], dtype=torch.float64)
    o = perfedavg.objectives(task, w, 0.5)
    from synthetic.quadratic import exact_objectives

    F, _, f, _ = exact_objectives(task.train, w.unsqueeze(0), 0.5)  # closed form, no autograd
    assert torch.isclose(o.F.mean(), F[0], rtol=1e-12) and torch.isclose(o.f.mean(), f[0], rtol=1e-12)
    assert perfedavg.build_task("quadratic", dtype="float32").train.x.dtype == torch.float32
    with pytest.raises(UsageError, match="float32"):
        perfedavg.build_task("quadratic", dtype="half")


def test_a_run_outside_the_lemmas_returns_without_a_bound():
    """α above 1/L is a legal run; its Result says why it has no derived bound instead of raising after training."""
    result = perfedavg.run(K=2, eval_every=2, alpha=2.0)
    assert result.bound is None and result.constants is None and len(result.records) == 2
    assert "1/L" in result.no_bound and result.explain() == result.no_bound
    assert "Constants:" in perfedavg.run(K=2, eval_every=2).explain()
