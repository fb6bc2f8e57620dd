"""A run killed at every file-system step of its run directory resumes to the same bytes.

:mod:`tests.kill_points` numbers every step (inside each atomic write, before and after each
rename, inside and after each ``metrics.jsonl`` record); a run is SIGKILLed at each in turn, then
continued with ``--resume`` (given the options again where the kill came before any config was
saved, as the error line says), and must end byte for byte like the uninterrupted run, with no
leftover temporary.  The same for a sweep whose worker is killed at each point and retried.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perfedavg.cli import main
from perfedavg.runs import rundir

HERE = Path(__file__).parent
#: a two-round run that checkpoints and evaluates every round: every kind of write, few points
SETS = [
    "K=2",
    "r=0.5",
    "eval_every=1",
    "checkpoint_every=1",
    "task.n_clients=4",
    "task.dim=3",
    "task.support=20",
    "task.classes=2",
]
ARGS = [arg for s in SETS for arg in ("--set", s)]
FLAGS = ["--no-progress", "--no-plot"]
#: one torch thread in every process: the same arithmetic (bit-identity)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run_points() -> list[str]:
    return [arg for s in SETS for arg in ("--set", s)]


def _killed_at(point: int, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / "kill_points.py"), str(point), "run", *ARGS, "--out", str(out), *FLAGS],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run and the number of kill points it passes."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _killed_at(0, out)
    assert done.returncode == 0, done.stderr
    points = int(re.search(r"points=(\d+)", done.stdout).group(1))
    return out, points


@pytest.mark.slow
def test_a_run_killed_at_every_point_resumes_to_the_same_bytes(reference, tmp_path, capsys):
    ref, points = reference
    assert points >= 20  # config, metrics records, checkpoints and summaries: all met
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for point in range(1, points + 1):
            out = tmp_path / f"killed-at-{point}"
            killed = _killed_at(point, out)
            assert killed.returncode == -9, (point, killed.returncode, killed.stderr)
            capsys.readouterr()
            code = main(["run", "--resume", str(out), *FLAGS])
            if code == 2:  # killed before its config was saved: the line says to give the options again
                err = capsys.readouterr().err
                assert "\n" not in err.strip() and "--force" in err, (point, err)
                code = main(["run", "--resume", str(out), *ARGS, *FLAGS])
            assert code == 0, (point, capsys.readouterr().err)
            assert (out / rundir.METRICS).read_bytes() == (ref / rundir.METRICS).read_bytes(), point
            assert rundir.read_json(out / rundir.SUMMARY)["status"] == "finished", point
            assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir()), point
    finally:
        torch.set_num_threads(before)


#: the same run as a sweep, one unit per kill point (seeds 0, 1, ...)
SWEEP = "\n".join(s.replace("task.", "") for s in SETS if not s.startswith("task.")) + '\n[task]\nname = "softmax"\n'
SWEEP += "\n".join(s.removeprefix("task.") for s in SETS if s.startswith("task.")) + "\n"


@pytest.mark.slow
def test_a_sweep_whose_worker_is_killed_at_every_point_finishes_each_run_once(reference, tmp_path, monkeypatch):
    """One sweep, one unit per point: unit i's worker dies at point i (the worker hook of
    :mod:`perfedavg.sweep.worker`), the scheduler retries it from the files left, and every run ends
    byte for byte like the same run never killed."""
    from perfedavg.runs.config import build_config
    from perfedavg.runs.runner import run_config
    from perfedavg.sweep.scheduler import SweepOptions, run_sweep
    from perfedavg.sweep.spec import RUNS, expand, load_sweep
    from perfedavg.sweep.worker import KILL_POINTS_HOOK

    _, points = reference
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP + f"\n[sweep]\nseeds = {points}\n")
    units = expand(load_sweep(spec))
    assert len(units) == points
    armed = tmp_path / "armed"
    armed.mkdir()
    for point, unit in enumerate(units, start=1):
        (armed / unit.name).write_text(str(point))
    monkeypatch.setenv(KILL_POINTS_HOOK, str(armed))
    report = run_sweep(units, tmp_path / "sweep", SweepOptions(backend="local", workers=2, threads=1, progress=False))
    assert list(armed.iterdir()) == []  # every unit's worker claimed its point
    assert report.counts == {"finished": len(units)}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for unit in units:
            run = tmp_path / "sweep" / RUNS / unit.name
            assert report.rows[unit.name]["attempts"] == 2, unit.name  # killed once, retried once
            run_config(build_config(unit.config), tmp_path / "ref" / unit.name, progress=False, plot=False)
            assert (run / rundir.METRICS).read_bytes() == (tmp_path / "ref" / unit.name / rundir.METRICS).read_bytes()
            assert not [p.name for p in run.iterdir() if rundir.is_run_temporary(p.name)], unit.name
    finally:
        torch.set_num_threads(before)
