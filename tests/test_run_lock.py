"""One writer per run directory (perfedavg.runs.lock): a second writer is refused in one line naming the
holder, touches nothing, and a holder killed by SIGKILL leaves no stale lock behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from perfedavg.cli import main
from perfedavg.runs import rundir

#: long enough that the holder is still running while the test tries to write its directory
ROUNDS = 1_000_000
START_TIMEOUT_S = 120
ATTEMPT_TIMEOUT_S = 60


def _start_holder(out: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "perfedavg",
        "run",
        "--set",
        f"K={ROUNDS}",
        "--set",
        "checkpoint_every=1",
        "--set",
        "eval_every=1000",
        "--out",
        str(out),
        "--no-progress",
        "--no-plot",
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:  # running, with a first checkpoint (so that --resume has one to read)
        summary = out / rundir.SUMMARY
        ready = summary.exists() and (out / rundir.CHECKPOINT).exists()
        if ready and json.loads(summary.read_text()).get("status") == "running":
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"the holder ended early: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the holder did not start in time")


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name in (rundir.CONFIG, rundir.SUMMARY)}


def _attempt(args: list[str]) -> subprocess.CompletedProcess:
    """A second writer, in a process of its own: without a lock a plain --resume would run on for ever,
    so it gets :data:`ATTEMPT_TIMEOUT_S` (the refusal comes within the start-up time)."""
    argv = [sys.executable, "-m", "perfedavg", *args, "--no-progress", "--no-plot"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=ATTEMPT_TIMEOUT_S)


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = _start_holder(out)
    try:
        before = _snapshot(out)
        for attempt in (["run", "--resume", str(out)], ["run", "--out", str(out), "--force", "--set", "K=3"]):
            done = _attempt(attempt)
            err = done.stderr.strip()
            assert done.returncode == 2, (attempt, err)
            assert err.count("\n") == 0 and f"is in use by process {holder.pid}" in err, err
            assert holder.poll() is None  # the holder runs on, its files untouched by the refused writer
            assert _snapshot(out) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing anything: its lock went with it, and the directory can be written
    assert main(["run", "--out", str(out), "--force", "--set", "K=3", "--no-progress", "--no-plot"]) == 0
    assert json.loads((out / rundir.SUMMARY).read_text())["status"] == "finished"
