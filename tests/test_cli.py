"""Bad input through the command line: exit status 2, exactly one line on
stderr naming the option, no traceback, nothing written.

Most examples call :func:`perfedavg.cli.main` in-process (fast); a handful run the real
``python -m perfedavg`` to prove the same at the process boundary.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfedavg.cli import main
from perfedavg.runs.config import FIRST_RUN
from tests.helpers import bounded_address_space, limit_child_address_space

#: a quick valid base (small task); each example then adds at least one bad input after it
BASE = [
    "K=2",
    "tau=1",
    "r=0.5",
    "D=4",
    "D1=4",
    "D2=4",
    "task.n_clients=4",
    "task.dim=3",
    "task.support=20",
    "task.classes=2",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return str(value)


huge_int = st.integers(min_value=2**63, max_value=2**200)
#: a float that is no whole number (a whole one, 3.0 or 1e3, is read as the integer for an integer option)
not_whole = st.floats(allow_nan=True).filter(lambda x: not (math.isfinite(x) and x.is_integer()))
not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
wrong_scalar = st.one_of(st.text(max_size=8), st.booleans(), st.lists(st.integers(0, 3), max_size=2))
positive_int_bad = st.one_of(st.integers(max_value=0), huge_int, not_whole, wrong_scalar)
#: sizes that are valid integers but far too large to build (the task caps them up front; the engine turns a
#: failed allocation into a one-line error): 1e9 .. 2^62
huge_valid_size = st.integers(min_value=10**9, max_value=2**62)

#: (option, strategy of values that option must reject)
BAD = {
    "K": positive_int_bad,
    "tau": positive_int_bad,
    "eval_every": positive_int_bad,
    "D": st.one_of(positive_int_bad, st.integers(21, 2**62)),  # a batch larger than a client's data (20 samples)
    "D1": st.one_of(positive_int_bad, st.integers(21, 2**62)),
    "D2": st.one_of(positive_int_bad, st.integers(21, 2**62)),
    "seed": st.one_of(st.integers(max_value=-1), huge_int, not_whole, wrong_scalar),
    "checkpoint_every": st.one_of(st.integers(max_value=-1), huge_int, not_whole, wrong_scalar),
    # negative, or more than the largest user's data (the default task's users hold 20 training samples)
    "eval_batch": st.one_of(st.integers(max_value=-1), st.integers(21, 2**62), huge_int, not_whole, wrong_scalar),
    "alpha": st.one_of(st.floats(max_value=-1e-300), not_finite, st.text(max_size=5), st.booleans()),
    "beta": st.one_of(st.floats(max_value=0.0), not_finite, st.text(max_size=5), st.booleans()),
    "delta": st.one_of(st.floats(max_value=0.0), not_finite, st.booleans()),
    # r outside (0, 1], NaN, and r*n < 1 with n = 4 users (r < 0.25; m = floor(r*n) would be 0)
    "r": st.one_of(
        st.floats(max_value=0.0),
        st.floats(min_value=1.0, exclude_min=True),
        not_finite,
        st.floats(min_value=1e-9, max_value=0.2499),
        wrong_scalar,
    ),
    "algorithm": st.one_of(
        st.text(max_size=10).filter(lambda s: s not in ("fedavg", "fo", "hf", "exact")), st.integers()
    ),
    "protocol": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("train", "test")), st.floats()),
    "dtype": st.one_of(st.sampled_from(["float16", "int64", "", "Float32"]), st.integers()),
    "device": st.sampled_from(["cuda:99", "tpu", "cpu:x", "", "meta", "nonsense"]),
    "track_inner": st.one_of(st.integers(), st.text(max_size=4), st.floats()),
    "task.n_clients": st.one_of(st.integers(max_value=1), huge_int, huge_valid_size, not_whole, wrong_scalar),
    "task.dim": st.one_of(st.integers(max_value=0), huge_int, huge_valid_size, not_whole, wrong_scalar),
    "task.support": st.one_of(st.integers(max_value=1), huge_int, huge_valid_size, not_whole, wrong_scalar),
    "task.h": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001), not_finite, st.text(max_size=4)),
    "task.classes": st.one_of(st.integers(max_value=1), huge_valid_size, not_whole, wrong_scalar),
    "task.name": st.one_of(
        st.text(max_size=8).filter(
            lambda s: s not in ("softmax", "logistic", "quadratic", "nonconvex", "mnist", "cifar10")
        ),
        st.integers(),
    ),
}
KNOWN = {
    "algorithm",
    "K",
    "tau",
    "r",
    "alpha",
    "beta",
    "delta",
    "D",
    "D1",
    "D2",
    "seed",
    "eval_every",
    "eval_batch",
    "protocol",
    "track_inner",
    "dtype",
    "device",
    "checkpoint_every",
    "task",
}
unknown_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True).filter(lambda k: k not in KNOWN)
unknown_task_key = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(
    lambda k: (
        k not in {"name", "n_clients", "dim", "classes", "support", "h", "radius", "classes_per_client", "data_seed"}
    )
)


@st.composite
def bad_setting(draw):
    """One (key, TOML literal) that must be refused."""
    kind = draw(st.sampled_from(["value"] * 6 + ["unknown", "unknown_task"]))
    if kind == "unknown":
        return draw(unknown_key), toml_literal(draw(st.integers(0, 9)))
    if kind == "unknown_task":
        return "task." + draw(unknown_task_key), toml_literal(draw(st.integers(0, 9)))
    key = draw(st.sampled_from(sorted(BAD)))
    return key, toml_literal(draw(BAD[key]))


@st.composite
def bad_config_file(draw):
    """Contents (bytes) of a config file that must be refused, or None for 'a directory'."""
    kind = draw(
        st.sampled_from(
            [
                "setting",
                "empty",
                "garbage",
                "not toml",
                "directory",
                "missing",
                "comments only",
                "task not a table",
                "wrong table",
            ]
        )
    )
    if kind == "setting":
        key, value = draw(bad_setting())
        lines = [
            f"{b.split('=')[0]} = {b.split('=')[1]}"
            for b in BASE
            if not b.startswith("task.") and b.split("=")[0] != key
        ]
        task = [
            f"{b[5:].split('=')[0]} = {b.split('=')[1]}"
            for b in BASE
            if b.startswith("task.") and b.split("=")[0] != key
        ]
        if key.startswith("task."):
            task.append(f"{key[5:]} = {value}")
        else:
            lines.append(f"{key} = {value}")
        return ("\n".join(lines) + "\n[task]\n" + "\n".join(task) + "\n").encode()
    return {
        "empty": b"",
        "comments only": b"# nothing here\n\n",
        "garbage": draw(
            st.binary(min_size=1, max_size=64).filter(lambda b: b.strip(b" \t\r\n") and not b.lstrip().startswith(b"#"))
        ),
        "not toml": draw(
            st.sampled_from([b"K = = 3", b"[task\nname=1", b"K = 3\nK = 4", b"\x00\x01", b"alpha = 1e", b"= 3"])
        ),
        "directory": None,
        "missing": b"MISSING",
        "task not a table": b'task = "softmax"\n',
        "wrong table": b"[K]\nx = 1\n",
    }[kind]


@st.composite
def bad_invocation(draw):
    """argv pieces after ``run --out OUT``: a bad --set, a bad --config, or a bad --out."""
    kind = draw(st.sampled_from(["set"] * 5 + ["config"] * 3 + ["out"]))
    if kind == "set":
        key, value = draw(bad_setting())
        return {"sets": [*BASE, f"{key}={value}"], "config": False, "out_kind": "fresh"}
    if kind == "config":
        return {"sets": [], "config": draw(bad_config_file()), "out_kind": "fresh"}
    return {
        "sets": BASE,
        "config": False,
        "out_kind": draw(
            st.sampled_from(["a file", "under a file", "non-run dir --force", "unwritable", "resume missing"])
        ),
    }


def _materialize(case, root: Path) -> tuple[list[str], Path]:
    """The argv for ``case`` in the scratch folder ``root``; returns (argv, the --out path)."""
    argv = ["run", "--no-progress", "--no-plot"]
    out = root / "out"
    if case["config"] is not False:
        path = root / "cfg.toml"
        if case["config"] is None:
            path.mkdir()
        elif case["config"] != b"MISSING":
            path.write_bytes(case["config"])
        argv += ["--config", str(path)]
    kind = case["out_kind"]
    if kind == "a file":
        out.write_text("a file")
    elif kind == "under a file":
        (root / "f").write_text("a file")
        out = root / "f" / "run"
    elif kind == "non-run dir --force":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        argv.append("--force")
    elif kind == "unwritable":
        out = Path("/proc/perfedavg-cannot-exist/run")  # mkdir fails here even for root
    elif kind == "resume missing":
        argv.append("--resume")
    return [*argv, "--out", str(out), *[f"--set={s}" for s in case["sets"]]], out


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _assert_refused(rc, err, out, before, after):
    lines = err.strip("\n").split("\n")
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("perfedavg: error: "), err
    assert "Traceback" not in err
    assert before == after, "something was written"
    assert not out.exists() or out.is_file() or [p.name for p in out.iterdir()] == ["notes.txt"]


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(bad_invocation())
def test_bad_input_in_process_exit_2_one_line_nothing_written(case):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argv, out = _materialize(case, root)
        before = _snapshot(root)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), bounded_address_space():
            rc = main(argv)
        _assert_refused(rc, err.getvalue(), out, before, _snapshot(root))


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_invocation())
def test_bad_input_real_process_exit_2_one_line_nothing_written(case):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argv, out = _materialize(case, root)
        before = _snapshot(root)
        proc = subprocess.run(
            [sys.executable, "-m", "perfedavg", *argv],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=root,
            timeout=120,
            preexec_fn=limit_child_address_space,
        )
        _assert_refused(proc.returncode, proc.stderr, out, before, _snapshot(root))


# -- bad options and values, one by one -----------------------------------------------------------
@pytest.mark.parametrize(
    "setting,names",
    [
        ("alpha=-0.1", ["alpha", ">= 0"]),
        ("r=0", ["r=0", "(0, 1]"]),
        ("r=1.5", ["r=1.5", "(0, 1]"]),
        ("r=0.1", ["r=0.1", "r*n", ">= 1"]),  # n = 4 users: r*n = 0.4 samples nobody
        ("r=0.15", ["r=0.15", "r*n = 0.6", ">= 1"]),  # r*n = 0.6 would round to 1 user; floor(r*n) = 0 is refused
        ("r=0.2499", ["r=0.2499", "r*n", ">= 1"]),  # just below r*n = 1
        ("task.dim=1000000000000", ["task.dim=1000000000000"]),  # valid integers, far too large to build
        ("task.support=100000000000", ["task.support=100000000000"]),
        ("task.n_clients=10000000000", ["task.n_clients=10000000000"]),
        ("tau=0", ["tau", ">= 1"]),
        ("D=21", ["D=21", "smallest user", "<= 20"]),  # every user has 20 samples
        ("D2=1000", ["D2=1000", "<= 20"]),
        ("eval_batch=-1", ["eval_batch", ">= 0"]),
        ("eval_batch=21", ["eval_batch=21", "larger than any user's data", "<= 20"]),
        ("bogus=1", ["unknown option 'bogus'"]),
        ("task.bogus=1", ["task.bogus", "softmax"]),
        ("K=1.5", ["K=1.5", "whole number"]),
        ("beta=nan", ["beta=nan", "> 0"]),
        ("seed=99999999999999999999", ["seed", "at most"]),
        ("task.h=2", ["task.h", "[0, 1]"]),
        ("task.n_clients=2.5", ["task.n_clients", "whole number"]),
        ("device='cuda:99'", ["device", "cuda"]),
        ("task=3", ["task", "by name"]),
    ],
)
def test_errors_name_the_option_and_range(setting, names, tmp_path, capsys):
    out = tmp_path / "run"
    with bounded_address_space():
        rc = main(
            ["run", "--no-progress", "--no-plot", "--out", str(out), *[f"--set={s}" for s in BASE], f"--set={setting}"]
        )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_unreadable_config_file(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text("K = 3\n")
    path.chmod(0)
    rc = main(["run", "--config", str(path), "--out", str(tmp_path / "run")])
    assert rc == 2 and str(path) in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot be read"),
        (lambda p: p.symlink_to(p.parent / "nowhere"), "does not exist"),
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), "is empty"),
    ],
)
def test_unreadable_config_files_name_the_file(make, expected, tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    make(path)
    rc = main(["run", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and str(path) in err and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_unreadable_config_file_even_as_root(tmp_path, capsys, monkeypatch):
    """A read that fails with PermissionError (what chmod 000 gives a non-root user), simulated so
    that the case runs under root too."""
    path = tmp_path / "cfg.toml"
    path.write_text("K = 3\n")
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    rc = main(["run", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and "cannot be read: Permission denied" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml"]


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["run", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume needs the run directory" in err and "--resume DIR" in err and "--resume --out DIR" in err
    (tmp_path / "empty").mkdir()
    for argv in (["--resume", "--out", str(tmp_path / "empty")], ["--resume", str(tmp_path / "empty")]):
        assert main(["run", *argv]) == 2
        assert "not a run directory" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []
    assert main(["run", "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert "name two run directories" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_resume_dir_and_resume_out_dir_both_continue_a_run(tmp_path, capsys):
    sets = [f"--set={s}" for s in BASE]
    for form in (lambda d: ["--resume", d], lambda d: ["--resume", "--out", d]):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        assert (
            main(["run", "--no-progress", "--no-plot", "--out", str(out), *sets, "--set=K=1", "--set=eval_every=1"])
            == 0
        )
        # extend K: a changed config, so --force; the resume continues from round 1
        assert main(["run", "--no-progress", "--no-plot", *form(str(out)), "--set=K=3", "--force"]) == 0
        assert [json.loads(line)["round"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    capsys.readouterr()


def test_help_names_every_option_its_default_and_the_exit_statuses(capsys):
    from perfedavg.engine.config import RunConfig

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    defaults = RunConfig()
    for name in KNOWN - {"task"}:
        assert f"  {name} " in text, name
        block = flat[flat.index(f" {name} ", flat.index("config options")) :]
        block = block[: block.index("[default: ")]  # this option's text, up to its default
        value = getattr(defaults, name)
        shown = (
            str(value).lower() if isinstance(value, bool) else json.dumps(value) if isinstance(value, str) else value
        )
        # the first run's own value, where it differs, follows the default: [default: 100; without --config: 500]
        assert f"{block}[default: {shown}]" in flat or f"{block}[default: {shown}; without --config: " in flat, name
    assert "SIGTERM" in text and "--resume DIR" in text and "Exit status" in text
    assert "m = floor(r*n)" in flat and "r*n < 1 is refused" in flat
    assert "D, D' (D1) and D'' (D2) must not exceed the smallest user's" in flat
    assert "perfedavg run --list-tasks" in flat


def test_list_tasks_shows_every_task_option_with_its_default_and_doc(capsys):
    from dataclasses import fields

    from perfedavg.runs.registry import TASKS, task_spec

    assert main(["run", "--list-tasks"]) == 0
    text = capsys.readouterr().out
    for name in TASKS:
        assert f"task.name = {name}" in text
        block = text[text.index(f"task.name = {name}") :].split("\n\n")[0]
        flat = " ".join(block.split())
        for f in fields(task_spec(name).options):
            assert f"task.{f.name} " in block, (name, f.name)
            assert " ".join(f.metadata["doc"].split()) in flat, (name, f.name)
        assert flat.count("[default: ") == len(fields(task_spec(name).options))


def test_rn_not_an_integer_samples_floor_rn_users(tmp_path, capsys, monkeypatch):
    """r*n = 0.625*4 = 2.5: the documented rule, m = floor(r*n) = 2 users per round (not round-half-even's 2
    by luck: 0.875*4 = 3.5 gives 3, where Python's round would give 4)."""
    import perfedavg.engine.rounds as engine

    seen = []
    real = engine.sample_clients
    monkeypatch.setattr(engine, "sample_clients", lambda gen, n, m: seen.append((n, m)) or real(gen, n, m))
    for r, m in (("0.625", 2), ("0.875", 3)):
        seen.clear()
        out = tmp_path / f"r{r}"
        rc = main(
            ["run", "--no-progress", "--no-plot", "--out", str(out), *[f"--set={s}" for s in BASE], f"--set=r={r}"]
        )
        assert rc == 0, capsys.readouterr().err
        assert seen and set(seen) == {(4, m)}, (r, seen)


def test_a_task_too_large_to_allocate_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """The engine's safety net behind the tasks' own size caps: a failed allocation while building
    the task (MemoryError, torch's "can't allocate memory", an overflowing size) is one line naming
    the task's size options, exit 2, nothing written.  Any other error is not disguised."""
    import torch

    import perfedavg.runs.registry as tasks

    failures = [
        lambda: torch.empty(2**62, 5),
        lambda: (_ for _ in ()).throw(MemoryError()),
        lambda: (_ for _ in ()).throw(
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                "can't allocate memory: you tried to allocate 40 bytes"
            )
        ),
    ]
    for fail in failures:
        monkeypatch.setattr(tasks, "build_task", lambda table, fail=fail: fail())
        with bounded_address_space():
            rc = main(
                ["run", "--no-progress", "--no-plot", "--out", str(tmp_path / "run"), *[f"--set={s}" for s in BASE]]
            )
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "too large for this machine" in err and "task.n_clients=4" in err and "task.dim=3" in err, err
        assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(tasks, "build_task", lambda table: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["run", "--no-progress", "--no-plot", "--out", str(tmp_path / "run"), *[f"--set={s}" for s in BASE]])


def test_missing_mnist_through_run_names_runs_own_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PERFEDAVG_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "run"
    for extra in ([], ["--set=task.data_dir='" + str(tmp_path / "elsewhere") + "'"]):
        rc = main(["run", "--no-progress", "--no-plot", "--out", str(out), "--set=task=mnist", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "MNIST not found" in err and "--set task.data_dir=DIR" in err and "--set task.download=true" in err, err
        assert "--data-dir" not in err and "with --download" not in err, err
    assert list(tmp_path.iterdir()) == []


#: keys every metrics record carries (README / engine.evaluate), besides per-task extras
RECORD_KEYS = {
    "round",
    "F",
    "grad_norm_sq_F",
    "f",
    "grad_norm_sq_f",
    "personalized_loss",
    "personalized_accuracy",
    "personalized_loss_train_step",
    "personalized_accuracy_train_step",
    "personalized_loss_test_step",
    "personalized_accuracy_test_step",
    "global_loss",
    "global_accuracy",
    "per_client",
}
PER_CLIENT_KEYS = {"F", "f", "loss_train_step", "accuracy_train_step", "loss_test_step", "accuracy_test_step"}


def test_a_successful_run_writes_config_metrics_summary_and_a_png(tmp_path, capsys):
    from perfedavg.runs.config import build_config, read_toml

    out = tmp_path / "run"
    sets = [*BASE, "K=4", "eval_every=3", "protocol='test'"]
    rc = main(["run", "--no-progress", "--out", str(out), *[f"--set={s}" for s in sets]])
    stdout = capsys.readouterr().out
    assert rc == 0 and "4 rounds" in stdout and "CPU" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.toml",
        "curves.png",
        "metrics.jsonl",
        "summary.json",
    ]
    cfg = build_config(read_toml(out / "config.toml"))
    first_h = FIRST_RUN["task"]["h"]  # no --config: the first run's task
    assert (cfg.K, cfg.eval_every, cfg.protocol, cfg.task["n_clients"], cfg.task["h"]) == (4, 3, "test", 4, first_h)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 3, 4]  # round 0, every eval_every, and K
    for r in records:
        assert set(r) >= RECORD_KEYS, RECORD_KEYS - set(r)
        assert set(r["per_client"]) == PER_CLIENT_KEYS and all(len(v) == 4 for v in r["per_client"].values())
        assert r["personalized_accuracy"] == r["personalized_accuracy_test_step"]  # protocol = test
        assert all(math.isfinite(r[k]) for k in RECORD_KEYS - {"round", "per_client"})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["rounds_completed"] == 4
    assert summary["final"] == {k: v for k, v in records[-1].items() if k != "per_client"}
    assert summary["wall_seconds"] > 0 and summary["cpu_seconds"] > 0 and "src:" in summary["code_version"]
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(out / "curves.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and float(image.std()) > 0


SWEEP_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "alpha_h.toml"


@pytest.mark.parametrize(
    "argv, option",
    [
        (["figures", "--quick", "--no-progress", "--out", "{bad}"], "--out"),
        (["figures", "--quick", "--no-progress", "--out", "{ok}", "--runs", "{bad}"], "--runs"),
        (["sweep", str(SWEEP_EXAMPLE), "--no-progress", "--out", "{bad}"], "--out"),
        (["check", "--rates", "--no-progress", "--out", "{bad}"], "--out"),
        (["check", "--speed-sweep", "{bad}", "--no-progress"], "--speed-sweep"),
        (["bench", "--rounds", "1", "--warmup", "0", "--json-out", "{bad}/bench.json"], "--json-out"),
        (["reproduce", "constants", "--run", "{ok}", "--out", "{bad}/constants.json"], "--out"),
    ],
    ids=[
        "figures-out",
        "figures-runs",
        "sweep-out",
        "check-rates-out",
        "speed-sweep",
        "bench-json-out",
        "constants-out",
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(argv, option, tmp_path, capsys):
    """Every command's output option is checked first: a path under a regular file (mkdir fails there
    even for root) is one line naming the option, exit status 2, before any work and with nothing written."""
    (tmp_path / "a-file").write_text("not a folder")
    ok = tmp_path / "ok"
    ok.mkdir()
    bad = tmp_path / "a-file" / "sub"
    argv = [a.format(bad=bad, ok=ok) for a in argv]
    before = _snapshot(tmp_path)
    start = time.perf_counter()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip("\n").split("\n")
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"perfedavg: error: {option} "), err
    assert "Traceback" not in err
    assert time.perf_counter() - start < 5.0  # refused up front, not after the command's minutes of work
    assert _snapshot(tmp_path) == before


def test_an_output_file_option_given_a_folder_is_refused(tmp_path, capsys):
    rc = main(["bench", "--json-out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"perfedavg: error: --json-out {tmp_path} is a folder, not a file"


def test_a_file_system_error_mid_work_is_one_line_exit_1(monkeypatch, capsys):
    """An OSError no option check could foresee (disk full, a folder removed under a running command)
    is reported as one line with the file it concerns, exit status 1, never a traceback."""
    import theory.cli

    def full_disk(args):
        raise OSError(28, "No space left on device", "/somewhere/table.md")

    monkeypatch.setattr(theory.cli, "run", full_disk)
    rc = main(["bounds"])
    err = capsys.readouterr().err
    assert rc == 1 and err == "perfedavg: error: No space left on device: /somewhere/table.md\n"


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["run", "--no-such-option"], "perfedavg: error: perfedavg run: unrecognized arguments: --no-such-option"),
        (["check", "--rates", "--set", "x=1"], "perfedavg: error: perfedavg check: unrecognized arguments: --set x=1"),
        (["no-such-command"], "perfedavg: error: argument COMMAND: invalid choice: 'no-such-command'"),
        (
            ["figures", "nonsense"],
            "perfedavg: error: perfedavg figures: argument NAME: 'nonsense' is not a figure: "
            "choose from flagship, heterogeneity, floors, drift, hf_delta, table1, mnist_bound, new_users, "
            "personalization\n",
        ),
    ],
)
def test_unknown_arguments_are_named_with_their_subcommand(argv, prefix, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(prefix) and err.count("\n") == 1, err
