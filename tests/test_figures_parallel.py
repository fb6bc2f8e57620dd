"""figures/pool.py and the side-by-side build: the most urgent piece first, errors passed back, and the same
files whatever the number of worker processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


def _started_at(seconds: float) -> float:
    """A piece of work: sleeps, returns when it started (CLOCK_MONOTONIC: one clock for every process)."""
    started = time.monotonic()
    time.sleep(seconds)
    return started


def _environment(name: str) -> str | None:
    """A piece of work: the worker's own value of an environment variable."""
    import os

    return os.environ.get(name)


def _fails(message: str) -> None:
    from figures.store import Skip

    raise Skip(message)


def test_pool_runs_the_most_urgent_waiting_piece_first():
    from figures import pool

    with pool.Pool(1) as workers:
        blocker = workers.submit(_started_at, 0.5)  # holds the only worker while the others queue up
        normal = [workers.submit(_started_at, 0.0) for _ in range(3)]
        urgent = workers.submit(_started_at, 0.0, priority=pool.URGENT)
        blocker.result()
        assert urgent.result() < min(f.result() for f in normal)
        assert all(f.seconds >= 0 for f in [blocker, urgent, *normal])


def test_pool_passes_a_pieces_exception_back():
    from figures import pool
    from figures.store import Skip

    with pool.Pool(2) as workers:
        future = workers.submit(_fails, "no saved results")
        with pytest.raises(Skip, match="no saved results"):
            future.result()
        # the pool goes on after a piece failed
        assert list(workers.map(_started_at, [0.0, 0.0])) and workers.submit(_started_at, 0.0).result() > 0


def test_pool_runs_a_piece_after_those_it_needs_and_passes_their_failure_on():
    from figures import pool
    from figures.store import Skip

    with pool.Pool(2) as workers:
        sleeps = (0.1, 0.6)
        needed = [workers.submit(_started_at, s) for s in sleeps]
        then = workers.after(needed, _started_at, 0.0)
        # started once both had ended (not as soon as a worker was free: after the shorter one)
        assert then.result() >= max(f.result() + s for f, s in zip(needed, sleeps))
        failed = workers.after([workers.submit(_fails, "no runs"), workers.submit(_started_at, 0.0)], _started_at, 0)
        with pytest.raises(Skip, match="no runs"):
            failed.result()
        assert workers.after([], _started_at, 0.0).result() > 0


def test_sweep_in_worker_processes_saves_and_returns_what_one_process_does(tmp_path):
    """synthetic.rate_runs.run_sweep with an executor: the same run directories (bit for bit) and the same arrays."""
    import numpy as np

    from figures import pool
    from synthetic.rate_runs import _config, run_sweep

    configs = [_config({"K": 6, "beta": b}) for b in (0.04, 0.08, 0.16)]
    here = run_sweep(configs, [0, 1], tmp_path / "here", track_inner=True, progress=False)
    with pool.Pool(2) as workers:
        there = run_sweep(configs, [0, 1], tmp_path / "there", track_inner=True, progress=False, executor=workers)
    for a, b in zip(here, there):
        for key in ("grad_norm_sq_F", "stationarity", "phi", "max_w_norm", "stationarity_f"):
            np.testing.assert_array_equal(a[key], b[key])
    for path in sorted((tmp_path / "here").rglob("*.*")):
        twin = tmp_path / "there" / path.relative_to(tmp_path / "here")
        if path.name == "summary.json":
            # the time taken differs, and so may the code version (each process hashes the source tree when it
            # first writes a run: a tree edited meanwhile hashes differently); everything else is the same
            mine, theirs = json.loads(path.read_text()), json.loads(twin.read_text())
            for key in ("wall_seconds", "code_version"):
                mine.pop(key), theirs.pop(key)
            assert mine == theirs, path
        else:
            assert path.read_bytes() == twin.read_bytes(), path


@pytest.mark.slow
def test_build_with_workers_writes_the_files_one_process_writes(tmp_path):
    """Every figure's image, data and the index are the same with 2 worker processes as in one (run paths aside);
    the entries keep the index order."""
    from figures.build import build

    names = ["flagship", "floors", "hf_delta", "new_users", "personalization"]
    outputs = {}
    for jobs in (1, 2):
        root = tmp_path / f"jobs{jobs}"
        entries = build(names, root / "out", root / "runs", level="tiny", progress=False, jobs=jobs)
        assert [e.name for e in entries] == names
        outputs[jobs] = (root, entries)
    (one, e1), (two, e2) = outputs[1], outputs[2]
    assert [(e.name, bool(e.note), [f.name for f in e.files]) for e in e1] == [
        (e.name, bool(e.note), [f.name for f in e.files]) for e in e2
    ]
    assert e1[-1].note  # the personalization figure is skipped (no saved results) in both
    index = {j: (r / "out" / "index.md").read_text().replace(str(r), "ROOT") for j, (r, _) in outputs.items()}
    assert index[1] == index[2]
    for path in sorted((one / "out").iterdir()):
        if path.suffix in (".png", ".json"):
            twin = two / "out" / path.name
            assert path.read_bytes().replace(str(one).encode(), b"ROOT") == twin.read_bytes().replace(
                str(two).encode(), b"ROOT"
            ), path.name


def test_figures_cli_rejects_a_bad_number_of_jobs(capsys):
    from perfedavg.cli import main

    for bad in ("0", "two", "-1"):
        assert main(["figures", "--jobs", bad, "--out", "/tmp/never"]) == 2
        assert "is not a number of worker processes" in capsys.readouterr().err


def test_pool_workers_see_the_builds_environment(monkeypatch):
    """A forkserver started earlier keeps its environment; each worker takes the build's (PERFEDAVG_DATA ...)."""
    from figures import pool

    with pool.Pool(1) as workers:  # the forkserver starts here, before the variable is set
        assert workers.submit(_environment, "PERFEDAVG_POOL_PROBE").result() is None
    monkeypatch.setenv("PERFEDAVG_POOL_PROBE", str(Path.cwd()))
    with pool.Pool(1) as workers:
        assert workers.submit(_environment, "PERFEDAVG_POOL_PROBE").result() == str(Path.cwd())
