"""Long runs that survive: kill and resume bit for bit, signals, divergence,
damaged run files.

Faults injected here (counted in the lead's note): SIGKILL at a random round (FedAvg,
Per-FedAvg HF), a torn last metrics line left by a killed writer, SIGTERM then resume,
divergence, and every way of damaging ``checkpoint.pt`` and ``metrics.jsonl`` below.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config
from perfedavg.runs.rundir import DamagedFileWarning, read_checkpoint, read_metrics
from perfedavg.runs.runner import run_config

#: a small synthetic softmax run: ~25 ms a round with one thread, so a kill lands mid-run
SMALL = [
    "tau=2",
    "r=0.5",
    "D=4",
    "D1=4",
    "D2=4",
    "eval_every=1",
    "checkpoint_every=1",
    "task.n_clients=4",
    "task.dim=3",
    "task.support=20",
    "task.classes=2",
]
K_KILL = 50
#: one torch thread: the same arithmetic in every process (bit-identity), no thread thrash on shared cores
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs on one torch thread too (2 threads on 2 shared cores thrash: ~10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _argv(out, algorithm, K=K_KILL, extra=()):
    sets = [f"--set={s}" for s in (*SMALL, f"K={K}", f"algorithm={algorithm!r}".replace("'", '"'), *extra)]
    return [sys.executable, "-m", "perfedavg", "run", "--out", str(out), "--no-progress", "--no-plot", *sets]


def _start(argv):
    return subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _records_on_disk(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_at(proc, run_dir: Path, round_index: int, signum=signal.SIGKILL, eval_every: int = 1):
    """Send ``signum`` once ``metrics.jsonl`` holds the record of ``round_index`` (a multiple of ``eval_every``)."""
    assert round_index % eval_every == 0
    deadline = time.monotonic() + 120
    while _records_on_disk(run_dir / rundir.METRICS) < round_index // eval_every + 1:
        assert proc.poll() is None, f"the run ended before round {round_index}: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    proc.send_signal(signum)


#: ``python -c KILL_DRIVER ROUND run ...``: ``perfedavg`` whose process SIGKILLs itself right after
#: round ROUND is fully handled (its record written, its checkpoint saved if one is due), before
#: round ROUND + 1 starts: a real SIGKILL of a real process at an exact round, where an outside kill
#: that polls metrics.jsonl can land several fast unevaluated rounds late
KILL_DRIVER = """
import os, signal, sys
import perfedavg.engine.rounds as engine
kill_round, train = int(sys.argv[1]), engine.train
def killing_train(*args, **kwargs):
    for state, record in train(*args, **kwargs):
        yield state, record
        if state.round == kill_round:  # the runner asked for the next round: this one is done
            os.kill(os.getpid(), signal.SIGKILL)
engine.train = killing_train
from perfedavg.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _start_killed_at(argv, round_index: int):
    """``argv`` (a ``perfedavg`` command line from :func:`_argv`) run under :data:`KILL_DRIVER`."""
    assert argv[1:3] == ["-m", "perfedavg"]
    return _start([sys.executable, "-c", KILL_DRIVER, str(round_index), *argv[3:]])


def _resume(run_dir):
    """``perfedavg run --resume DIR``, never forced: a resume refused because the code version
    seems to have changed fails the test (only an edit of the engine's source between the kill
    and the resume may do that)."""
    argv = [sys.executable, "-m", "perfedavg", "run", "--resume", str(run_dir), "--no-progress", "--no-plot"]
    return _finish(_start(argv))


def _final(run_dir):
    return json.loads((run_dir / rundir.SUMMARY).read_text())


#: a run that checkpoints every 7 rounds and evaluates every 3: a kill usually lands between checkpoints
SPARSE = ("checkpoint_every=7", "eval_every=3")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, FedAvg and Per-FedAvg (HF), and FedAvg with sparse checkpoints, as real
    subprocesses (in parallel)."""
    base = tmp_path_factory.mktemp("reference")
    procs = {a: _start(_argv(base / a, a)) for a in ("fedavg", "hf")}
    procs["fedavg-sparse"] = _start(_argv(base / "fedavg-sparse", "fedavg", extra=SPARSE))
    for proc in procs.values():
        rc, _, err = _finish(proc)
        assert rc == 0, err
    return {a: base / a for a in procs}


@pytest.mark.parametrize("algorithm", ["fedavg", "hf"])
def test_sigkill_at_a_random_round_then_resume_is_bit_identical(algorithm, references, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    kill_round = random.Random(seed).randint(1, K_KILL - 10)
    run = tmp_path / "killed"
    proc = _start(_argv(run, algorithm))
    _kill_at(proc, run, kill_round)
    rc, _, _ = _finish(proc)
    assert rc == -signal.SIGKILL
    # the killed run stopped mid-way, and its checkpoint is at a round boundary
    ckpt = read_checkpoint(run / rundir.CHECKPOINT)
    at = ckpt["state"]["round"]
    assert kill_round - 1 <= at < K_KILL, (
        f"kill seed {seed}: checkpoint at round {at}"
    )  # killed between record and checkpoint: at = kill_round - 1
    assert json.loads((run / rundir.SUMMARY).read_text())["status"] == "running"
    if algorithm == "fedavg":  # a writer killed mid-line leaves a torn record: it must be dropped
        with (run / rundir.METRICS).open("ab") as fh:
            fh.write(b'{"round": 999, "F": 0.12')
    rc, _out, err = _resume(run)
    assert rc == 0, f"kill seed {seed}: {err}"
    reference = references[algorithm]
    # bit-identical: the same bytes (JSON floats are written exactly) and the same final values
    assert (run / rundir.METRICS).read_bytes() == (reference / rundir.METRICS).read_bytes(), (
        f"kill seed {seed}, round {at}"
    )
    assert _final(run)["final"] == _final(reference)["final"]
    assert _final(run)["status"] == "finished" and _final(run)["rounds_completed"] == K_KILL
    assert torch.equal(
        read_checkpoint(run / rundir.CHECKPOINT)["state"]["w"],
        read_checkpoint(reference / rundir.CHECKPOINT)["state"]["w"],
    )


def test_sigkill_between_checkpoints_then_resume_is_bit_identical(references, tmp_path):
    """checkpoint_every=7, eval_every=3: the kill lands after evaluated rounds that no checkpoint saw;
    the resume drops them, reruns from the last checkpoint, and ends byte for byte as the reference."""
    seed = int.from_bytes(os.urandom(4), "little")
    # an evaluated round (multiple of 3) that is not a checkpoint round (multiple of 7), past the first checkpoint
    kill_round = random.Random(seed).choice([k for k in range(9, K_KILL - 9, 3) if k % 7])
    run = tmp_path / "killed"
    proc = _start_killed_at(_argv(run, "fedavg", extra=SPARSE), kill_round)
    rc, _, _ = _finish(proc)
    assert rc == -signal.SIGKILL
    at = read_checkpoint(run / rundir.CHECKPOINT)["state"]["round"]
    assert at == kill_round - kill_round % 7, f"kill seed {seed}: checkpoint at round {at}, killed after {kill_round}"
    written = [r["round"] for r in read_metrics(run)]
    assert written[-1] == kill_round > at, f"kill seed {seed}: records {written}, checkpoint {at}"
    rc, _, err = _resume(run)
    assert rc == 0, f"kill seed {seed}: {err}"
    assert "dropped" in err and "written after the checkpoint" in err, err
    reference = references["fedavg-sparse"]
    assert (run / rundir.METRICS).read_bytes() == (reference / rundir.METRICS).read_bytes(), f"kill seed {seed}"
    assert _final(run)["final"] == _final(reference)["final"] and _final(run)["status"] == "finished"
    assert torch.equal(
        read_checkpoint(run / rundir.CHECKPOINT)["state"]["w"],
        read_checkpoint(reference / rundir.CHECKPOINT)["state"]["w"],
    )


def test_sigterm_stops_at_a_round_boundary_and_resumes_bit_identical(references, tmp_path):
    run = tmp_path / "terminated"
    proc = _start(_argv(run, "hf"))
    _kill_at(proc, run, 5, signal.SIGTERM)
    rc, _, err = _finish(proc)
    assert rc == 128 + signal.SIGTERM, err
    summary = _final(run)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    at = summary["checkpoint_round"]
    assert read_checkpoint(run / rundir.CHECKPOINT)["state"]["round"] == at
    # metrics.jsonl holds exactly the records up to the checkpoint: rounds 0..at
    assert [r["round"] for r in read_metrics(run)] == list(range(at + 1))
    assert summary["final"]["round"] == at
    assert "--resume" in err.strip().splitlines()[-1]
    rc, _, err = _resume(run)
    assert rc == 0, err
    assert (run / rundir.METRICS).read_bytes() == (references["hf"] / rundir.METRICS).read_bytes()


# -- in-process runs -----------------------------------------------------------------------------
def _cfg(*extra):
    return build_config({}, [*SMALL, *extra])


def test_huge_beta_is_reported_as_diverged_with_its_round_and_the_last_good_checkpoint(tmp_path, capsys):
    from perfedavg.cli import main

    out = tmp_path / "run"
    # beta = 2e38 in float32: each round moves w by ~1e37 (gradients ~0.1) in a random walk
    # that overflows float32 (3.4e38) after a few rounds (round 22 with seed 0)
    rc = main(
        [
            "run",
            "--out",
            str(out),
            "--no-progress",
            "--no-plot",
            *[f"--set={s}" for s in (*SMALL, "K=40", "beta=2e38", "checkpoint_every=0")],
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "diverged at round" in lines[0], err
    summary = _final(out)
    k = summary["diverged_at_round"]
    assert summary["status"] == "diverged" and 2 <= k < 40
    assert f"round {k}" in lines[0]
    # the last good round is kept (checkpoint_every=0 would otherwise have saved nothing)
    ckpt = read_checkpoint(out / rundir.CHECKPOINT)
    assert ckpt["state"]["round"] == summary["checkpoint_round"] == k - 1
    assert bool(torch.isfinite(ckpt["state"]["w"]).all())
    assert [r["round"] for r in read_metrics(out)] == list(range(k))  # every record before the bad round, no more


def test_ctrl_c_in_process_checkpoints_at_a_round_boundary(tmp_path, monkeypatch):
    """SIGINT delivered from inside round 3: the run finishes the round, checkpoints round 3, stops."""
    result = _interrupted_run(tmp_path / "run", monkeypatch, "K=10", at_round=3)
    assert result.status == "interrupted" and result.summary["signal"] == "SIGINT"
    assert result.summary["checkpoint_round"] == 3
    assert read_checkpoint(tmp_path / "run" / rundir.CHECKPOINT)["state"]["round"] == 3
    assert [r["round"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2, 3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    cpu_before = read_checkpoint(tmp_path / "run" / rundir.CHECKPOINT)["cpu_seconds"]
    resumed = run_config(_cfg("K=10"), tmp_path / "run", resume=True, progress=False)
    fresh = run_config(_cfg("K=10"), tmp_path / "fresh", progress=False)
    assert resumed.summary["final"] == fresh.summary["final"]
    assert (tmp_path / "run" / rundir.METRICS).read_bytes() == (tmp_path / "fresh" / rundir.METRICS).read_bytes()
    assert resumed.summary["cpu_seconds"] > cpu_before > 0  # CPU time, like wall time, adds up across a resume


def test_resume_refuses_a_changed_config_unless_forced(tmp_path):
    run_config(_cfg("K=3"), tmp_path / "run", progress=False)
    with pytest.raises(UsageError, match=r"differs from the checkpoint's in K"):
        run_config(_cfg("K=6"), tmp_path / "run", resume=True, progress=False)
    extended = run_config(_cfg("K=6"), tmp_path / "run", resume=True, force=True, progress=False)
    fresh = run_config(_cfg("K=6"), tmp_path / "fresh", progress=False)
    assert extended.summary["final"] == fresh.summary["final"]  # extending K continues bit for bit
    assert "K = 6" in (tmp_path / "run" / rundir.CONFIG).read_text()


def test_resume_refuses_a_changed_code_version_unless_forced(tmp_path, monkeypatch):
    run_config(_cfg("K=2"), tmp_path / "run", progress=False)
    monkeypatch.setattr(rundir, "code_version", lambda task=None: "something else")
    with pytest.raises(UsageError, match="the code that computes results changed"):
        run_config(_cfg("K=2"), tmp_path / "run", resume=True, progress=False)
    assert run_config(_cfg("K=2"), tmp_path / "run", resume=True, force=True, progress=False).status == "finished"


def _interrupted_run(out: Path, monkeypatch, *extra, at_round: int = 2):
    """An in-process run stopped by SIGINT during round ``at_round`` (checkpoint at that round)."""
    import perfedavg.engine.rounds as engine

    real, calls = engine.local_round, {"n": 0}

    def interrupting(*args, **kw):
        calls["n"] += 1
        if calls["n"] == at_round:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kw)

    monkeypatch.setattr(engine, "local_round", interrupting)
    result = run_config(_cfg(*extra), out, progress=False)
    monkeypatch.setattr(engine, "local_round", real)
    assert result.status == "interrupted" and result.summary["checkpoint_round"] == at_round
    return result


def test_resume_compares_the_source_digest_not_git_describe(tmp_path, monkeypatch, capsys):
    """A new commit or a README edit changes ``git describe`` (``abc123`` -> ``abc123-dirty``) but not
    the source that computes results: the resume goes on (and says so) and ends bit-identical.  A
    changed source digest with the same describe refuses, writing nothing, unless forced."""
    described, digest = rundir.code_version("softmax").rsplit(" src:", 1)
    monkeypatch.setattr(rundir, "code_version", lambda task=None: f"{described} src:{digest}")
    for name in ("describe", "source"):
        _interrupted_run(tmp_path / name, monkeypatch, "K=5")
    capsys.readouterr()

    monkeypatch.setattr(rundir, "code_version", lambda task=None: f"{described}-dirty-or-a-new-commit src:{digest}")
    resumed = run_config(_cfg("K=5"), tmp_path / "describe", resume=True, progress=False)
    assert resumed.status == "finished" and "the source that computes results is unchanged" in capsys.readouterr().err
    run_config(_cfg("K=5"), tmp_path / "fresh", progress=False)
    assert (tmp_path / "describe" / rundir.METRICS).read_bytes() == (tmp_path / "fresh" / rundir.METRICS).read_bytes()

    monkeypatch.setattr(rundir, "code_version", lambda task=None: f"{described} src:{'0' * 12}")
    before = {p.name: p.read_bytes() for p in (tmp_path / "source").iterdir()}
    with pytest.raises(UsageError, match="the code that computes results changed"):
        run_config(_cfg("K=5"), tmp_path / "source", resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "source").iterdir()} == before  # refused before writing
    assert run_config(_cfg("K=5"), tmp_path / "source", resume=True, force=True, progress=False).status == "finished"


def test_source_digest_ignores_docs_and_other_modules_but_not_what_a_run_imports(tmp_path):
    """On a copy of the tree: editing README.md, the CLI, or a module no run imports keeps the digest;
    editing the engine, the task's module, or a module the task imports (synthetic/common.py for
    softmax) changes it."""
    import shutil

    root = Path(rundir.__file__).resolve().parents[2]
    copy = tmp_path / "tree"
    for package in ("perfedavg", "synthetic"):
        shutil.copytree(root / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "README.md").write_text("readme\n")
    base = rundir.source_digest("softmax", copy)
    # (code_version uncached: in a tree that others edit while the suite runs, the cached value may be older)
    assert (
        base
        == rundir.source_digest("softmax", root)
        == rundir.source_digest_of(rundir.code_version.__wrapped__("softmax"))
    )

    def digest_after(edit: str) -> str:
        path = copy / edit
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            return rundir.source_digest("softmax", copy)
        finally:
            path.write_bytes(original)

    for unchanged in ("README.md", "perfedavg/runs/cli.py", "perfedavg/runs/runner.py", "synthetic/quadratic.py"):
        assert digest_after(unchanged) == base, unchanged
    for changed in (
        "perfedavg/engine/rounds.py",
        "perfedavg/engine/local.py",
        "synthetic/softmax.py",
        "synthetic/common.py",
    ):
        assert digest_after(changed) != base, changed


def test_run_directory_carries_config_code_and_library_versions(tmp_path):
    result = run_config(_cfg("K=2"), tmp_path / "run", progress=False)
    summary = _final(tmp_path / "run")
    assert summary["cpu_seconds"] > 0 and summary["wall_seconds"] > 0
    assert summary["code_version"] == rundir.code_version("softmax") and "src:" in summary["code_version"]
    assert {"python", "torch", "numpy", "perfedavg"} <= set(summary["versions"])
    assert summary["versions"]["torch"] == torch.__version__
    from perfedavg.runs.config import read_toml
    from perfedavg.runs.resolve import resolve

    # config.toml is the resolved config: reading it back gives the same config, every default filled in
    assert build_config(read_toml(tmp_path / "run" / rundir.CONFIG)) == resolve(_cfg("K=2"))[0]
    assert result.status == "finished"


# -- damaged files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    run_config(_cfg("K=4"), out, progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _damaged_checkpoints(good: bytes, path: Path):
    """(name, writer) pairs: each writes one kind of damaged checkpoint at ``path``."""
    import io

    def save(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        path.write_bytes(buf.getvalue())

    payload = torch.load(io.BytesIO(good), weights_only=True)
    return [
        ("empty", lambda: path.write_bytes(b"")),
        ("truncated half", lambda: path.write_bytes(good[: len(good) // 2])),
        ("truncated by one byte", lambda: path.write_bytes(good[:-1])),
        ("garbage", lambda: path.write_bytes(os.urandom(2048))),
        ("flipped bytes", lambda: path.write_bytes(good[:100] + bytes(b ^ 0xFF for b in good[100:400]) + good[400:])),
        ("text", lambda: path.write_text("not a checkpoint\n")),
        ("a directory", lambda: (path.unlink(), path.mkdir())),
        ("a list", lambda: save([1, 2, 3])),
        ("missing state", lambda: save({k: v for k, v in payload.items() if k != "state"})),
        ("missing metrics digest", lambda: save({k: v for k, v in payload.items() if k != "metrics_sha256"})),
        ("future format", lambda: save({**payload, "format": 99})),
        (
            "NaN model",
            lambda: save({**payload, "state": {**payload["state"], "w": payload["state"]["w"] * float("nan")}}),
        ),
        (
            "state without generator",
            lambda: save({**payload, "state": {k: v for k, v in payload["state"].items() if k != "generator_state"}}),
        ),
        (
            "bad generator state",
            lambda: save(
                {**payload, "state": {**payload["state"], "generator_state": torch.zeros(3, dtype=torch.uint8)}}
            ),
        ),
        ("model of another shape", lambda: save({**payload, "state": {**payload["state"], "w": torch.zeros(3)}})),
        ("code that runs on load", lambda: path.write_bytes(_pickle_that_runs_code())),
    ]


def _pickle_that_runs_code() -> bytes:
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/perfedavg-checkpoint-ran-code",))

    buf = io.BytesIO()
    torch.save({"x": 1}, buf)  # a zip container ...
    import zipfile

    zbuf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(zbuf, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = pickle.dumps(Evil())  # ... whose pickle would run a command
            zout.writestr(item, data)
    return zbuf.getvalue()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_every_damaged_checkpoint_is_a_clear_error_naming_the_file(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    path = run / rundir.CHECKPOINT
    good = path.read_bytes()
    tried = 0
    for name, damage in _damaged_checkpoints(good, path):
        if path.is_dir():
            path.rmdir()
        path.write_bytes(good)
        damage()
        with pytest.raises(UsageError) as info:
            run_config(_cfg("K=4"), run, resume=True, progress=False)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, (name, message)
        assert "If you are seeing this error" not in message, (
            name,
            message,
        )  # torch's first sentence only, not its advice
        tried += 1
    assert tried == 16
    assert not Path("/tmp/perfedavg-checkpoint-ran-code").exists()  # weights_only: never runs code


def test_resume_refuses_a_metrics_file_that_does_not_match_the_checkpoint(finished_run, tmp_path):
    for name, damage in [
        ("a record changed", lambda b: b.replace(b'"round": 2', b'"round": 7', 1)),
        ("records lost", lambda b: b[: len(b) // 3]),
        ("emptied", lambda b: b""),
    ]:
        run = _copy(finished_run, tmp_path / name.replace(" ", "-"))
        metrics = run / rundir.METRICS
        metrics.write_bytes(damage(metrics.read_bytes()))
        before = metrics.read_bytes()
        with pytest.raises(UsageError, match=str(metrics).replace("/", "/") + " does not match"):
            run_config(_cfg("K=4"), run, resume=True, progress=False)
        assert metrics.read_bytes() == before  # refused before writing anything


def test_truncated_metrics_recovers_the_intact_prefix_and_says_so(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    metrics = run / rundir.METRICS
    full = read_metrics(run)
    data = metrics.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 1) + 40  # 40 bytes into the last record
    metrics.write_bytes(data[:cut])
    with pytest.warns(
        DamagedFileWarning, match=rf"{metrics} is damaged at line {len(full)}.*recovered the {len(full) - 1} intact"
    ):
        records = read_metrics(run)
    assert records == full[:-1]
    with pytest.raises(UsageError, match="truncated last line"):
        read_metrics(run, strict=True)


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda lines: [*lines[:1], b"{garbage", *lines[1:]], "intact lines follow"),
        (lambda lines: [*lines[:2], lines[1], *lines[2:]], "records written twice"),
        (lambda lines: [*lines[:1], b"[1, 2]", *lines[1:]], "intact lines follow"),
        (lambda lines: [*lines[:1], b"\xff\xfe binary", *lines[1:]], "intact lines follow"),
    ],
)
def test_corrupted_metrics_is_an_error_naming_file_and_line(finished_run, tmp_path, damage, expected):
    run = _copy(finished_run, tmp_path / "run")
    metrics = run / rundir.METRICS
    lines = metrics.read_bytes().rstrip(b"\n").split(b"\n")
    metrics.write_bytes(b"\n".join(damage(lines)) + b"\n")
    with pytest.raises(UsageError, match=rf"{metrics} is damaged at line \d+.*{expected}"):
        read_metrics(run)


def test_resume_without_a_checkpoint_restarts_from_round_zero(tmp_path):
    run_config(_cfg("K=3", "checkpoint_every=0"), tmp_path / "run", progress=False)
    (tmp_path / "run" / rundir.CHECKPOINT).unlink()  # killed before its first checkpoint
    with (tmp_path / "run" / rundir.METRICS).open("ab") as fh:
        fh.write(b'{"round": 0, "F"')
    resumed = run_config(_cfg("K=3", "checkpoint_every=0"), tmp_path / "run", resume=True, progress=False)
    fresh = run_config(_cfg("K=3", "checkpoint_every=0"), tmp_path / "fresh", progress=False)
    assert resumed.summary["final"] == fresh.summary["final"]
    assert (tmp_path / "run" / rundir.METRICS).read_bytes() == (tmp_path / "fresh" / rundir.METRICS).read_bytes()


def test_force_replaces_only_run_directories(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (precious / rundir.CONFIG).write_text("x = 1\n")
    with pytest.raises(UsageError, match="not a run directory"):
        run_config(_cfg("K=1"), precious, force=True, progress=False)
    assert (precious / "thesis.tex").read_text() == "years of work"
    run_config(_cfg("K=1"), tmp_path / "run", progress=False)
    assert run_config(_cfg("K=2"), tmp_path / "run", force=True, progress=False).status == "finished"
    assert [r["round"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2]


def test_atomic_writes_respect_the_umask(tmp_path):
    """Result files get the usual permissions (umask applied), not mkstemp's private 0600."""
    import os
    import stat

    from perfedavg.runs.rundir import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_a_finished_run_missing_a_record_is_an_error_not_a_silent_read(finished_run, tmp_path):
    """Every line intact but one record gone (what two writers of one run produced): the summary says how
    many the finished run wrote, and the reader says the file disagrees instead of returning the rest."""
    run = _copy(finished_run, tmp_path / "run")
    metrics = run / rundir.METRICS
    lines = metrics.read_bytes().splitlines(keepends=True)
    assert json.loads((run / rundir.SUMMARY).read_text())["metrics_records"] == len(lines)
    metrics.write_bytes(b"".join([lines[0], *lines[2:]]))
    with pytest.raises(UsageError, match=rf"{metrics} holds {len(lines) - 1} records, but .* wrote {len(lines)}"):
        read_metrics(run)


def test_metrics_are_fsynced_before_every_checkpoint_that_counts_them(tmp_path, monkeypatch):
    """A checkpoint records the length and hash of metrics.jsonl: the file is made durable first, so that
    after a power loss the checkpoint never claims bytes that did not survive."""
    events = []
    real_fsync, real_save, real_append = os.fsync, rundir.atomic_torch_save, rundir.MetricsLog.append

    def fsync(fd):
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def save(path, obj):
        events.append("checkpoint")
        real_save(path, obj)

    def append(self, record):
        events.append("append")
        real_append(self, record)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(rundir, "atomic_torch_save", save)
    monkeypatch.setattr(rundir.MetricsLog, "append", append)
    run_config(_cfg("K=4", "checkpoint_every=2", "eval_every=1"), tmp_path / "run", progress=False)
    checkpoints = [i for i, event in enumerate(events) if event == "checkpoint"]
    assert len(checkpoints) == 3  # rounds 0, 2 and 4
    for i in checkpoints:
        last_append = max(j for j in range(i) if events[j] == "append")
        assert f"fsync {rundir.METRICS}" in events[last_append:i], events[last_append:i]


@pytest.mark.parametrize("cut", [rundir.CONFIG, rundir.METRICS, rundir.SUMMARY])
def test_a_run_killed_in_its_first_write_can_be_forced_or_resumed(tmp_path, capsys, cut):
    """A kill inside the first atomic write of ``cut`` leaves its temporary (half written) and, before it,
    the files already in place. --out --force starts over; --resume continues where a config exists and,
    where none was saved yet, says in one line how to go on, and does with the config given again."""
    from perfedavg.cli import main

    out = tmp_path / "run"
    out.mkdir()
    done = {rundir.CONFIG: [], rundir.METRICS: [rundir.CONFIG], rundir.SUMMARY: [rundir.CONFIG, rundir.METRICS]}[cut]
    reference = tmp_path / "reference"
    assert main(["run", *_argv_set("K=3"), "--out", str(reference), "--no-progress", "--no-plot"]) == 0
    for name in done:
        (out / name).write_bytes((reference / name).read_bytes() if name == rundir.CONFIG else b"")
    (out / f".{cut}.k1ll3d{rundir.TEMP_SUFFIX}").write_bytes(b"half a fi")
    if cut == rundir.CONFIG:
        assert main(["run", "--resume", str(out), "--no-progress", "--no-plot"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--force" in err and "temporary" in err, err
        assert main(["run", "--resume", str(out), *_argv_set("K=3"), "--no-progress", "--no-plot"]) == 0
    else:
        assert main(["run", "--resume", str(out), "--no-progress", "--no-plot"]) == 0
    assert (out / rundir.METRICS).read_bytes() == (reference / rundir.METRICS).read_bytes()
    forced = tmp_path / "forced"
    forced.mkdir()
    (forced / f".{cut}.k1ll3d{rundir.TEMP_SUFFIX}").write_bytes(b"half a fi")
    assert main(["run", *_argv_set("K=3"), "--out", str(forced), "--force", "--no-progress", "--no-plot"]) == 0
    assert (forced / rundir.METRICS).read_bytes() == (reference / rundir.METRICS).read_bytes()


def _argv_set(*extra: str) -> list[str]:
    """``--set`` arguments of :data:`SMALL` plus ``extra``."""
    return [arg for item in [*SMALL, *extra] for arg in ("--set", item)]


def test_a_round_too_large_for_the_machine_is_refused_before_anything_is_written(tmp_path, capsys):
    """tau = 1e11 asks a round for some 400 TiB of draws: refused with the estimate, in one line, status 2."""
    from perfedavg.cli import main

    out = tmp_path / "huge"
    assert main(["run", "--set", "tau=100000000000", "--set", "K=1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tau=100000000000 is too large for this machine" in err and "GiB" in err, err
    assert not out.exists()


def test_running_out_of_memory_mid_run_is_recorded_as_failed_in_one_line(tmp_path, capsys, monkeypatch):
    """An allocation that still fails (here: at round 3) ends the run as ``failed``, never left ``running``, with
    the last good round checkpointed, metrics.jsonl cut to it, one line and status 1."""
    import perfedavg.engine.rounds as rounds
    from perfedavg.cli import main

    real_round, calls = rounds.local_round, []

    def local_round(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes")
        return real_round(*args, **kwargs)

    monkeypatch.setattr(rounds, "local_round", local_round)
    out = tmp_path / "run"
    argv = ["run", *_argv_set("K=5", "eval_every=1", "checkpoint_every=1"), "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ran out of memory" in err and "round 2 is kept" in err, err
    summary = json.loads((out / rundir.SUMMARY).read_text())
    assert summary["status"] == "failed" and summary["checkpoint_round"] == 2
    assert [r["round"] for r in read_metrics(out)] == [0, 1, 2]
    assert read_checkpoint(out / rundir.CHECKPOINT)["state"]["round"] == 2


@pytest.mark.parametrize("key,value", [("inner_terms", "zz"), ("inner_sum", "x"), ("round", 2.5), ("w", [1.0])])
def test_a_checkpoint_with_a_wrong_typed_state_field_is_one_line_naming_it(finished_run, tmp_path, capsys, key, value):
    from perfedavg.cli import main

    run = _copy(finished_run, tmp_path / "run")
    payload = torch.load(run / rundir.CHECKPOINT, weights_only=True)
    payload["state"][key] = value
    torch.save(payload, run / rundir.CHECKPOINT)
    assert main(["run", "--resume", str(run), "--force", "--no-progress", "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"'{key}' is missing or not" in err, err


def test_a_raw_pickle_as_checkpoint_is_one_line_without_the_library_s_warning(finished_run, tmp_path):
    """torch warns (two lines of advice) on a file that is a plain pickle, not its zip format: not for users."""
    import pickle

    run = _copy(finished_run, tmp_path / "run")
    (run / rundir.CHECKPOINT).write_bytes(pickle.dumps({"format": 2}, protocol=4))
    # a process of its own: pytest would catch the warning before it reached stderr; --force, since a finished
    # run is otherwise answered "already finished" without its checkpoint being read
    argv = [sys.executable, "-m", "perfedavg", "run", "--resume", str(run), "--force", "--no-progress", "--no-plot"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "is damaged or truncated" in err, err


def test_a_full_disk_mid_run_names_the_file_and_resume_ends_bit_for_bit(tmp_path, monkeypatch, capsys):
    """The disk fills in the middle of round 4's record: one line naming metrics.jsonl and the way on, exit 1,
    status failed (not running), metrics.jsonl cut back to the last saved checkpoint (round 2, no half line);
    once there is space, --resume ends byte for byte like a run that never failed."""
    import errno

    from perfedavg.cli import main

    argv = [*_argv_set("K=6", "eval_every=1", "checkpoint_every=2"), "--no-progress", "--no-plot"]
    assert main(["run", *argv, "--out", str(tmp_path / "reference")]) == 0

    class FullDisk:
        """metrics.jsonl's file: its fifth write puts half its bytes on disk, then the disk is full."""

        def __init__(self, file):
            self.file, self.writes = file, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 5:
                self.file.write(data[: len(data) // 2])
                self.file.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

    real_enter = rundir.MetricsLog.__enter__

    def enter(self):
        real_enter(self)
        self._file = FullDisk(self._file)
        return self

    monkeypatch.setattr(rundir.MetricsLog, "__enter__", enter)
    run = tmp_path / "run"
    assert main(["run", *argv, "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"writing {run / rundir.METRICS} failed (No space left on device)" in err, err
    assert f"perfedavg run --resume {run}" in err, err
    assert json.loads((run / rundir.SUMMARY).read_text())["status"] == "failed"
    assert [r["round"] for r in read_metrics(run, strict=True)] == [0, 1, 2]
    monkeypatch.undo()
    assert main(["run", "--resume", str(run), "--no-progress", "--no-plot"]) == 0
    assert (run / rundir.METRICS).read_bytes() == (tmp_path / "reference" / rundir.METRICS).read_bytes()


def test_non_uniform_weights_without_replacement_are_refused_at_configuration():
    """Batches without replacement are uniform over a user's samples: a task whose p_i are not uniform
    and that asks for them is refused in one line (it would silently ignore its weights); with
    replacement, or with uniform weights, it is accepted."""
    import dataclasses

    from perfedavg.engine.task import ClientData
    from perfedavg.runs.registry import build_task

    task = build_task({"name": "softmax", "n_clients": 4, "dim": 3, "support": 20, "classes": 2})
    assert not task.train.has_uniform_weights()  # the softmax task's users weigh its support points unevenly
    with pytest.raises(UsageError, match="not uniform") as info:
        dataclasses.replace(task, batch_with_replacement=False)
    assert "\n" not in str(info.value)
    counts = task.train.count.tolist()
    uniform = ClientData.from_lists(  # the same samples, every one weighted 1/count
        task.train.x, task.train.y, [task.train.index[i, :k].tolist() for i, k in enumerate(counts)]
    )
    test_uniform = ClientData.from_lists(
        task.test.x, task.test.y, [task.test.index[i, :k].tolist() for i, k in enumerate(task.test.count.tolist())]
    )
    assert uniform.has_uniform_weights()
    dataclasses.replace(task, train=uniform, test=test_uniform, batch_with_replacement=False)  # accepted


def test_a_runs_source_digest_covers_no_theory_or_figures_module():
    """What a run computes depends on the engine and its task's package only: a module of theory/ or figures/ in
    the import closure (even a lazy import on an error path) would make an edit there block every resume."""
    from perfedavg.runs import provenance
    from perfedavg.runs.registry import TASKS

    root = Path(rundir.__file__).resolve().parents[2]
    for task in ("softmax", "quadratic", "mnist"):
        roots = [f"perfedavg.{name}" for name in provenance.ENGINE_MODULES] + [TASKS[task].split(":")[0]]
        outside = [
            f.relative_to(root).as_posix()
            for f in provenance.source_files(roots, root)
            if f.relative_to(root).parts[0] in ("theory", "figures")
        ]
        assert outside == [], (task, outside)
