"""Sweeps: definition, naming, the scheduler's retry / resume policy, and the local and
Ray backends giving bit-identical runs, also when a worker is killed mid-run."""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import torch

from perfedavg.cli import main as cli_main
from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config
from perfedavg.runs.names import MAX_NAME
from perfedavg.runs.names import sweep_run_name as run_name
from perfedavg.runs.runner import run_config
from perfedavg.sweep.scheduler import SweepOptions, run_sweep
from perfedavg.sweep.spec import RUNS, SWEEP_SUMMARY_JSON, SWEEP_SUMMARY_MD, expand, load_sweep, parse_sweep
from perfedavg.sweep.worker import KILL_HOOK, execute_unit, plan


def require_ray():
    """Ray, or a skip where the extra is not installed; under CI (``CI`` set, as ``.ci/run`` does)
    a missing extra is a failure: the CI set-up installs it, so a skip there would hide a broken install."""
    if os.environ.get("CI"):
        return importlib.import_module("ray")
    return pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")


# A tiny synthetic softmax sweep: 2 alphas x 2 seeds, 6 rounds, a checkpoint every 2
# rounds (so a killed worker has a checkpoint to resume from).
SMALL = """
K = 6
tau = 3
r = 0.5
D = 5
D1 = 6
D2 = 7
eval_every = 2
checkpoint_every = 2

[task]
name = "softmax"
n_clients = 6
dim = 4
classes = 3
support = 30

[sweep]
seeds = 2

[sweep.grid]
alpha = [0.01, 0.05]
"""

N_RECORDS = 4  # rounds 0, 2, 4, 6 are evaluated


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _units(tmp_path, text=SMALL):
    return expand(load_sweep(_write(tmp_path / "sweep.toml", text)))


def _reference(unit, root: Path) -> bytes:
    """metrics.jsonl of the unit run in this process, uninterrupted, with one torch thread
    (as the sweep's workers run it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_config(build_config(unit.config), root / unit.name, progress=False)
    finally:
        torch.set_num_threads(threads)
    return (root / unit.name / rundir.METRICS).read_bytes()


def _rows(out: Path) -> dict:
    return {row["name"]: row for row in json.loads((out / SWEEP_SUMMARY_JSON).read_text())["runs"]}


# -- definition ------------------------------------------------------------------------------
def test_expand_crosses_grid_zips_and_seeds_in_order(tmp_path):
    units = _units(
        tmp_path,
        """
        K = 3
        [task]
        name = "softmax"
        [sweep]
        seeds = [3, 7]
        [sweep.grid]
        alpha = [0.01, 0.05]
        [sweep.grid.task]
        h = [0.0, 1.0]
        [[sweep.zip]]
        tau = [5, 10]
        beta = [0.1, 0.05]
    """,
    )
    assert len(units) == 2 * 2 * 2 * 2
    assert units[0].name == "alpha=0.01,task.h=0.0,tau=5,beta=0.1,seed=3"
    assert units[1].name == "alpha=0.01,task.h=0.0,tau=5,beta=0.1,seed=7"  # seeds innermost
    assert units[-1].name == "alpha=0.05,task.h=1.0,tau=10,beta=0.05,seed=7"  # first axis slowest
    for unit in units:  # zipped values travel together; the config carries the varied values
        assert (unit.config["tau"], unit.config["beta"]) in {(5, 0.1), (10, 0.05)}
        assert unit.config["alpha"] == unit.varied["alpha"] and unit.config["task"]["h"] == unit.varied["task.h"]
        assert unit.config["K"] == 3 and unit.config["seed"] == unit.varied["seed"]
        assert "n_clients" in unit.config["task"]  # resolved: every task default filled in, as a run saves it
    assert len({u.name for u in units}) == len(units)
    # stable: the same file expands to the same names; a quoted dotted key is the same axis
    quoted = _units(tmp_path, SMALL.replace("alpha = [0.01, 0.05]", '"task.h" = [0.0, 1.0]'))
    assert [u.name for u in quoted] == [
        "task.h=0.0,seed=0",
        "task.h=0.0,seed=1",
        "task.h=1.0,seed=0",
        "task.h=1.0,seed=1",
    ]


def test_long_names_are_cut_and_hashed_stably():
    varied = {f"task.option_{i}": 0.123456789 * i for i in range(20)}
    name = run_name(varied)
    assert len(name) == MAX_NAME and name == run_name(dict(varied))
    assert run_name({**varied, "task.option_19": 1.0}) != name  # the hash sees the whole name


@pytest.mark.parametrize(
    "table, needle",
    [
        ({}, "needs a [sweep] table"),
        ({"sweep": {"grid": {"alpah": [1.0]}}}, "unknown axis 'alpah'"),
        ({"sweep": {"grid": {"alpha": []}}}, "sweep.grid.alpha must be a non-empty list"),
        ({"sweep": {"grid": {"alpha": 0.1}}}, "sweep.grid.alpha must be a non-empty list"),
        ({"sweep": {"zip": [{"tau": [1, 2], "beta": [0.1]}]}}, "one length"),
        ({"sweep": {"seeds": 2, "grid": {"seed": [0, 1]}}}, "seed is varied by sweep.seeds and an axis"),
        ({"sweep": {"grid": {"alpha": [0.1]}, "zip": [{"alpha": [0.2]}]}}, "alpha is varied by two axes"),
        ({"sweep": {"seeds": 0}}, "sweep.seeds=0 is out of range"),
        ({"sweep": {"seeds": [1, 1]}}, "repeats a seed"),
        ({"sweep": {"grid": {"task.name": ["softmax"]}}}, "task.name cannot be an axis"),
        ({"sweep": {"grdi": {}}}, "unknown key sweep.grdi"),
    ],
)
def test_bad_sweep_definitions_name_the_option(table, needle):
    with pytest.raises(UsageError, match=None) as info:
        parse_sweep(table)
    assert needle in str(info.value)


def test_a_bad_value_fails_before_anything_runs(tmp_path):
    with pytest.raises(UsageError, match=r"sweep run alpha=-1.0,seed=0: alpha=-1.0 is out of range"):
        _units(tmp_path, SMALL.replace("alpha = [0.01, 0.05]", "alpha = [-1.0]"))


def test_cli_dry_run_and_option_ranges(tmp_path, capsys):
    path = _write(tmp_path / "s.toml", SMALL)
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--set", "K=4"]) == 0
    printed = capsys.readouterr().out
    assert "start    alpha=0.01,seed=0" in printed and "4 runs: 4 start" in printed
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    for bad in (["--workers", "0"], ["--retries", "-1"], ["--threads", "0"], ["--address", "auto"]):
        assert cli_main(["sweep", str(path), "--dry-run", *bad]) == 2
    assert "--workers=0 is out of range" in capsys.readouterr().err


def test_ray_backend_without_ray_is_a_usage_error(monkeypatch, tmp_path):
    import sys

    from perfedavg.sweep.backends import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(UsageError, match=r"pip install -e '\.\[ray\]'"):
        RayBackend(workers=1, threads=1, address=None)


# -- scheduler policy, with an in-process backend -----------------------------------------------
class _InProcess:
    """A synchronous backend: ``behaviour(unit, run_dir, attempt)`` gives the outcome."""

    workers, threads = 2, 1

    def __init__(self, behaviour):
        self.behaviour, self.busy, self.log = behaviour, {}, []

    def warm(self, n):
        pass

    def capacity(self):
        return self.workers - len(self.busy)

    def submit(self, unit, run_dir):
        handle = object()
        self.busy[handle] = (unit, run_dir)
        return handle

    def wait(self, timeout):
        handle, (unit, run_dir) = next(iter(self.busy.items()))
        del self.busy[handle]
        self.log.append(unit.name)
        return [(handle, self.behaviour(unit, run_dir, self.log.count(unit.name)))]

    def interrupt(self):
        self.interrupted = True

    def shutdown(self):
        self.busy.clear()


def test_scheduler_retries_lost_workers_not_usage_errors_and_resumes_failed(tmp_path):
    from concurrent.futures.process import BrokenProcessPool

    units = _units(tmp_path)
    a, b, c, d = (u.name for u in units)

    def behaviour(unit, run_dir, attempt):
        if unit.name == a and attempt == 1:
            return BrokenProcessPool("worker died")  # lost once: retried
        if unit.name == b:
            return RuntimeError("node lost")  # lost every time: fails after 1 + retries attempts
        if unit.name == c:
            return {"status": "failed", "error": "UsageError: D=9 too large", "usage_error": True, "unit_seconds": 0.0}
        return execute_unit(unit, run_dir)

    backend = _InProcess(behaviour)
    report = run_sweep(units, tmp_path / "out", SweepOptions(retries=2, progress=False), backend=backend)
    rows = _rows(tmp_path / "out")
    assert (rows[a]["status"], rows[a]["attempts"]) == ("finished", 2)
    assert (rows[b]["status"], rows[b]["attempts"]) == ("failed", 3) and "node lost" in rows[b]["error"]
    assert (rows[c]["status"], rows[c]["attempts"]) == ("failed", 1)  # the config's fault: not retried
    assert (rows[d]["status"], rows[d]["attempts"]) == ("finished", 1)
    assert report.counts == {"finished": 2, "failed": 2}
    assert "| failed | 3 |" in (tmp_path / "out" / SWEEP_SUMMARY_MD).read_text()

    # re-running the same sweep skips the finished runs and tries the failed ones again
    assert plan(units, tmp_path / "out") == {a: "skip", b: "start", c: "start", d: "skip"}
    again = _InProcess(lambda unit, run_dir, attempt: execute_unit(unit, run_dir))
    run_sweep(units, tmp_path / "out", SweepOptions(progress=False), backend=again)
    assert sorted(again.log) == sorted([b, c])
    assert all(row["status"] == "finished" for row in _rows(tmp_path / "out").values())


def test_a_diverging_run_is_recorded_with_its_round_and_the_sweep_goes_on(tmp_path):
    # beta = 2e38 in float32: steps of ~1e37 random-walk past float32's 3.4e38 within a few
    # dozen local steps (the softmax task's gradients are bounded, so a merely large beta never
    # overflows); beta = 0.05 runs are ordinary
    text = SMALL.replace("alpha = [0.01, 0.05]", "beta = [2e38, 0.05]").replace("K = 6", 'K = 40\ndtype = "float32"')
    units = _units(tmp_path, text)
    bad, good = [u.name for u in units if u.varied["beta"] == 2e38], [u.name for u in units if u.varied["beta"] == 0.05]
    backend = _InProcess(lambda unit, run_dir, attempt: execute_unit(unit, run_dir))
    report = run_sweep(units, tmp_path / "out", SweepOptions(progress=False), backend=backend)
    assert report.counts == {"diverged": len(bad), "finished": len(good)}
    assert sorted(backend.log) == sorted(bad + good)  # every run tried once: a divergence is a result, not retried
    rows = _rows(tmp_path / "out")
    for name in bad:
        summary = json.loads((tmp_path / "out" / RUNS / name / rundir.SUMMARY).read_text())
        assert rows[name]["status"] == summary["status"] == "diverged"
        assert 1 <= summary["diverged_at_round"] <= 40 and rows[name]["error"]
    assert all(rows[name]["status"] == "finished" and rows[name]["rounds_completed"] == 40 for name in good)
    assert "diverged" in (tmp_path / "out" / SWEEP_SUMMARY_MD).read_text()
    # re-running skips them all: a diverged run is done
    assert set(plan(units, tmp_path / "out").values()) == {"skip"}


def test_ctrl_c_stops_the_sweep_and_a_signalled_worker_is_resumed(tmp_path):
    units = _units(tmp_path)
    interrupted = {"status": "interrupted", "summary": {"rounds_completed": 2}, "unit_seconds": 0.0}

    class CtrlC(_InProcess):
        def wait(self, timeout):
            if not getattr(self, "interrupted", False):
                raise KeyboardInterrupt  # Ctrl-C while both workers run
            return super().wait(timeout)

    backend = CtrlC(lambda unit, run_dir, attempt: interrupted)
    report = run_sweep(units, tmp_path / "out", SweepOptions(progress=False), backend=backend)
    assert report.interrupted and backend.interrupted  # the running runs were asked to stop
    assert report.counts == {"interrupted": 2, "pending": 2}  # none retried, none started after Ctrl-C

    # a worker interrupted by a signal of its own (the sweep going on) is resumed, as a lost worker
    backend = _InProcess(lambda unit, run_dir, attempt: interrupted if attempt == 1 else execute_unit(unit, run_dir))
    report = run_sweep(units[:1], tmp_path / "out2", SweepOptions(progress=False), backend=backend)
    assert report.counts == {"finished": 1} and backend.log == [units[0].name] * 2


def test_changed_sweep_is_refused_unless_forced(tmp_path):
    units = _units(tmp_path)
    run_sweep(
        units[:1],
        tmp_path / "out",
        SweepOptions(progress=False),
        backend=_InProcess(lambda u, r, a: execute_unit(u, r)),
    )
    changed = _units(tmp_path, SMALL.replace("K = 6", "K = 4"))
    with pytest.raises(UsageError, match="another config than this sweep's"):
        plan(changed, tmp_path / "out")
    assert plan(changed, tmp_path / "out", force=True)[changed[0].name] == "restart"


# -- the real backends ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_local_sweep(tmp_path_factory):
    """The small sweep on the local pool (2 workers), the first run's worker SIGKILLed
    right after its first checkpoint; plus the uninterrupted in-process references."""
    root = tmp_path_factory.mktemp("sweep")
    units = _units(root)
    token = root / "kill-token"
    token.write_text("")
    mp = pytest.MonkeyPatch()
    mp.setenv(KILL_HOOK, str(token))
    try:
        report = run_sweep(units, root / "local", SweepOptions(backend="local", workers=2, threads=1, progress=False))
    finally:
        mp.undo()
    references = {u.name: _reference(u, root / "reference") for u in units}
    return root, units, report, references, token


def test_killed_worker_loses_only_its_run_and_every_run_finishes_once(killed_local_sweep):
    root, units, report, references, token = killed_local_sweep
    assert not token.exists()  # the hook fired: one worker killed itself
    rows = _rows(root / "local")
    assert report.counts == {"finished": len(units)}
    killed = [name for name, row in rows.items() if row["attempts"] == 2]
    assert len(killed) == 1 and rows[killed[0]]["error"] is None
    assert (
        len(rows[killed[0]]["lost_attempts"]) == 1
        and "worker lost: BrokenProcessPool" in rows[killed[0]]["lost_attempts"][0]
    )
    assert all(row["attempts"] == 1 for name, row in rows.items() if name not in killed)
    for unit in units:
        records = rundir.read_metrics(root / "local" / RUNS / unit.name, strict=True)
        assert [r["round"] for r in records] == [0, 2, 4, 6]  # every evaluation once: no duplicates
        # bit-identical to an uninterrupted run, the killed one (resumed from its checkpoint) included
        assert (root / "local" / RUNS / unit.name / rundir.METRICS).read_bytes() == references[unit.name]


def test_resume_skips_finished_runs_and_continues_interrupted_ones(killed_local_sweep, tmp_path):
    root, units, _, references, _ = killed_local_sweep
    out = tmp_path / "copy"
    shutil.copytree(root / "local", out)
    runs = out / RUNS
    # run 0: interrupted (Ctrl-C) after its first checkpoint; run 1: died before any checkpoint
    interrupted, unstarted, untouched = units[0].name, units[1].name, [u.name for u in units[2:]]
    shutil.rmtree(runs / interrupted)
    original = rundir.atomic_torch_save

    def save_then_interrupt(path, obj):  # Ctrl-C right after the first checkpoint, once
        original(path, obj)
        rundir.atomic_torch_save = original
        raise KeyboardInterrupt

    rundir.atomic_torch_save = save_then_interrupt
    try:
        assert run_config(build_config(units[0].config), runs / interrupted, progress=False).status == "interrupted"
    finally:
        rundir.atomic_torch_save = original
    assert len(rundir.read_metrics(runs / interrupted)) < N_RECORDS
    (runs / unstarted / rundir.CHECKPOINT).unlink()
    (runs / unstarted / rundir.SUMMARY).unlink()
    mtimes = {name: (runs / name / rundir.METRICS).stat().st_mtime_ns for name in untouched}

    assert plan(units, out) == {interrupted: "resume", unstarted: "start", **dict.fromkeys(untouched, "skip")}
    run_sweep(units, out, SweepOptions(backend="local", workers=2, threads=1, progress=False))
    rows = _rows(out)
    assert all(rows[u.name]["status"] == "finished" for u in units)
    assert {n: (runs / n / rundir.METRICS).stat().st_mtime_ns for n in untouched} == mtimes  # skipped: not rewritten
    assert all(rows[n]["attempts"] == 0 for n in untouched) and rows[interrupted]["attempts"] == 1
    for unit in units:
        assert (runs / unit.name / rundir.METRICS).read_bytes() == references[unit.name]

    # a complete sweep starts no worker at all
    class Refuses(_InProcess):
        def warm(self, n):
            raise AssertionError("a finished sweep must not start workers")

    assert run_sweep(units, out, SweepOptions(progress=False), backend=Refuses(None)).counts == {"finished": len(units)}


def test_ray_gives_the_same_runs_as_local(killed_local_sweep, tmp_path):
    require_ray()
    root, units, _, references, _ = killed_local_sweep
    report = run_sweep(units, tmp_path / "ray", SweepOptions(backend="ray", workers=2, threads=1, progress=False))
    assert report.counts == {"finished": len(units)}
    for unit in units:  # the same layout, bit-identical metrics
        run = tmp_path / "ray" / RUNS / unit.name
        assert sorted(p.name for p in run.iterdir()) == sorted(
            [rundir.CONFIG, rundir.METRICS, rundir.SUMMARY, rundir.CHECKPOINT]
        )
        assert run.joinpath(rundir.METRICS).read_bytes() == references[unit.name]
        assert (
            run.joinpath(rundir.METRICS).read_bytes()
            == (root / "local" / RUNS / unit.name / rundir.METRICS).read_bytes()
        )


@pytest.mark.slow
def test_ray_worker_killed_mid_run_is_retried(tmp_path, monkeypatch):
    require_ray()
    units = _units(tmp_path)
    token = tmp_path / "kill-token"
    token.write_text("")
    monkeypatch.setenv(KILL_HOOK, str(token))
    report = run_sweep(units, tmp_path / "ray", SweepOptions(backend="ray", workers=2, threads=1, progress=False))
    assert not token.exists() and report.counts == {"finished": len(units)}
    rows = _rows(tmp_path / "ray")
    assert sorted(row["attempts"] for row in rows.values()) == [1] * (len(units) - 1) + [2]
    for unit in units:
        assert (tmp_path / "ray" / RUNS / unit.name / rundir.METRICS).read_bytes() == _reference(unit, tmp_path / "ref")


def test_cli_a_bad_sweep_value_leaves_no_sweep_folder(tmp_path, capsys):
    """The sweep file's checks (expand: every run's config) come before --out is created."""
    path = _write(tmp_path / "s.toml", SMALL.replace("alpha = [0.01, 0.05]", "alpha = [-1.0]"))
    assert cli_main(["sweep", str(path), "--no-progress", "--out", str(tmp_path / "out")]) == 2
    assert "alpha=-1.0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, exited but not yet reaped by its new parent, does not count)."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_die_with_a_killed_driver_and_leave_their_runs_resumable(tmp_path):
    """kill -9 of the sweep's driver: its workers, mid-run, stop within seconds (no orphan goes on writing or
    idles for ever), each run stopped at a round boundary with its checkpoint, ready for a re-run."""
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "long.toml"
    spec.write_text("K = 1000000\neval_every = 1000\ncheckpoint_every = 10\n\n[sweep]\nseeds = 2\n")
    out = tmp_path / "sweep"
    argv = [
        sys.executable,
        "-m",
        "perfedavg",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--workers",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids, deadline = {}, time.monotonic() + 120
    try:
        while len(pids) < 2 and time.monotonic() < deadline:
            for summary in (out / RUNS).glob(f"*/{rundir.SUMMARY}"):
                try:
                    data = json.loads(summary.read_text())
                except ValueError:
                    continue
                if data.get("status") == "running" and (summary.parent / rundir.CHECKPOINT).exists():
                    pids[summary.parent.name] = data["pid"]
            time.sleep(0.1)
        assert len(pids) == 2, "the two runs did not start"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids.values()), "a worker outlived its driver"
    for name in pids:
        assert json.loads((out / RUNS / name / rundir.SUMMARY).read_text())["status"] == "interrupted"


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket in LISTEN state held by one of ``pids`` (from /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_a_local_ray_listens_on_loopback_only():
    """A Ray the toolkit starts itself (no --address) opens no port to the network: every listening
    socket of the driver and of every process Ray started below it is on a loopback address."""
    require_ray()
    from perfedavg.sweep.backends import RayBackend

    backend = RayBackend(workers=1, threads=1, address=None)
    try:
        backend.warm(1)  # a worker process too, with its own server
        sockets = _listening(_descendants(os.getpid()))
    finally:
        backend.shutdown()
    assert len(sockets) >= 5, sockets  # GCS, raylet, agents, the driver's and a worker's servers
    assert [s for s in sockets if not _is_loopback(s[0])] == []
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # the switch is not left behind


# Longer runs (seconds each), so that a node can be removed while one of them runs.
MULTI_NODE = SMALL.replace("K = 6", "K = 150").replace("checkpoint_every = 2", "checkpoint_every = 50")


def _running_on(node) -> bool:
    """A sweep task (``ray::_ray_execute``) runs in a worker process of this Ray node."""
    raylet = node.all_processes["raylet"][0].process.pid
    for pid in _descendants(raylet) - {raylet}:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_ray_execute"):
                return True
    return False


@pytest.mark.slow
def test_ray_cluster_of_three_nodes_with_a_node_removed_mid_sweep(tmp_path):
    """A real multi-node Ray cluster on this machine: a head with no CPUs (so the runs land on the
    workers) and two worker raylets, each with its own processes and temporary folder.  The sweep
    reaches it by --address, like a cluster elsewhere; one worker node is removed while a run is
    in progress on it.  Every run finishes once, on a worker node, with metrics byte-identical to
    the local backend's."""
    require_ray()
    import threading

    from ray.cluster_utils import Cluster

    units = _units(tmp_path, MULTI_NODE)
    references = {unit.name: _reference(unit, tmp_path / "ref") for unit in units}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        kept, doomed = cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        removed = threading.Event()

        def remove_doomed_mid_run() -> None:
            deadline = time.monotonic() + 120
            while not _running_on(doomed) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # well inside the run: it takes seconds
            if _running_on(doomed):
                cluster.remove_node(doomed, allow_graceful=False)
                removed.set()

        remover = threading.Thread(target=remove_doomed_mid_run, daemon=True)
        remover.start()
        report = run_sweep(
            units,
            tmp_path / "ray",
            SweepOptions(backend="ray", address=cluster.address, workers=2, threads=1, progress=False),
        )
        remover.join(timeout=5)
    finally:
        cluster.shutdown()
    assert removed.is_set(), "no run was in progress on the node to remove"
    assert report.counts == {"finished": len(units)}
    rows = _rows(tmp_path / "ray")
    lost = [row for row in rows.values() if row["lost_attempts"]]
    assert len(lost) == 1 and "worker lost" in lost[0]["lost_attempts"][0] and lost[0]["attempts"] == 2
    assert all(row["attempts"] == 1 for row in rows.values() if row is not lost[0])
    assert {row["node"] for row in rows.values()} <= {kept.node_id, doomed.node_id}  # never the head
    assert lost[0]["node"] == kept.node_id  # retried on the node that is left
    for unit in units:
        assert (tmp_path / "ray" / RUNS / unit.name / rundir.METRICS).read_bytes() == references[unit.name]


def test_the_summary_table_prints_accuracies_as_percentages(tmp_path):
    """sweep_summary.md shows accuracies as `perfedavg run` prints them (56.1%), not as fractions (0.561)."""
    from perfedavg.sweep.scheduler import _row, write_summary

    units = _units(tmp_path, SMALL)[:1]
    row = {**_row(units[0]), "status": "finished", "rounds_completed": 3, "wall_seconds": 1.0}
    row["final"] = {"F": 0.5, "grad_norm_sq_F": 0.01, "personalized_accuracy": 0.5613, "global_accuracy": 0.4}
    write_summary(tmp_path, units, {units[0].name: row}, {"out": str(tmp_path)})
    table = (tmp_path / SWEEP_SUMMARY_MD).read_text()
    assert "| 56.1% | 40.0% |" in table and "0.5613" not in table, table
