"""Bad input through the command line (issues 2 and 7): exit status 2, exactly one line on
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
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfedavg.cli import main

#: a quick valid base (small task); each example then adds at least one bad input after it
BASE = ["K=2", "tau=1", "r=0.5", "D=4", "D1=4", "D2=4", "task.n_clients=4", "task.dim=3", "task.support=20",
        "task.classes=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return str(value)


huge_int = st.integers(min_value=2**63, max_value=2**200)
not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
wrong_scalar = st.one_of(st.text(max_size=8), st.booleans(), st.lists(st.integers(0, 3), max_size=2))
positive_int_bad = st.one_of(st.integers(max_value=0), huge_int, st.floats(allow_nan=True), wrong_scalar)

#: (option, strategy of values that option must reject)
BAD = {
    "K": positive_int_bad, "tau": positive_int_bad, "eval_every": positive_int_bad,
    "D": st.one_of(positive_int_bad, st.integers(21, 2**62)),  # a batch larger than a client's data (20 samples)
    "D1": st.one_of(positive_int_bad, st.integers(21, 2**62)),
    "D2": st.one_of(positive_int_bad, st.integers(21, 2**62)),
    "seed": st.one_of(st.integers(max_value=-1), huge_int, st.floats(), wrong_scalar),
    "checkpoint_every": st.one_of(st.integers(max_value=-1), huge_int, st.floats(), wrong_scalar),
    "alpha": st.one_of(st.floats(max_value=-1e-300), not_finite, st.text(max_size=5), st.booleans()),
    "beta": st.one_of(st.floats(max_value=0.0), not_finite, st.text(max_size=5), st.booleans()),
    "delta": st.one_of(st.floats(max_value=0.0), not_finite, st.booleans()),
    # r outside (0, 1], NaN, and r*n < 1 with n = 4 users (round(r*4) = 0 for r <= 0.125)
    "r": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), not_finite,
                   st.floats(min_value=1e-9, max_value=0.12), wrong_scalar),
    "algorithm": st.one_of(st.text(max_size=10).filter(lambda s: s not in ("fedavg", "fo", "hf", "exact")), st.integers()),
    "protocol": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("train", "test")), st.floats()),
    "dtype": st.one_of(st.sampled_from(["float16", "int64", "", "Float32"]), st.integers()),
    "device": st.sampled_from(["cuda:99", "tpu", "cpu:x", "", "meta", "nonsense"]),
    "track_inner": st.one_of(st.integers(), st.text(max_size=4), st.floats()),
    "task.n_clients": st.one_of(st.integers(max_value=1), huge_int, st.floats(), wrong_scalar),
    "task.h": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001), not_finite, st.text(max_size=4)),
    "task.classes": st.one_of(st.integers(max_value=1), st.floats(), wrong_scalar),
    "task.name": st.one_of(st.text(max_size=8).filter(lambda s: s not in ("softmax", "logistic", "quadratic", "nonconvex", "mnist", "cifar10")), st.integers()),
}
KNOWN = {"algorithm", "K", "tau", "r", "alpha", "beta", "delta", "D", "D1", "D2", "seed", "eval_every", "protocol",
         "track_inner", "dtype", "device", "checkpoint_every", "task"}
unknown_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True).filter(lambda k: k not in KNOWN)
unknown_task_key = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(
    lambda k: k not in {"name", "n_clients", "dim", "classes", "support", "h", "radius", "classes_per_client", "data_seed"})


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
    kind = draw(st.sampled_from(["setting", "empty", "garbage", "not toml", "directory", "missing", "comments only",
                                 "task not a table", "wrong table"]))
    if kind == "setting":
        key, value = draw(bad_setting())
        lines = [f"{b.split('=')[0]} = {b.split('=')[1]}" for b in BASE if not b.startswith("task.") and b.split("=")[0] != key]
        task = [f"{b[5:].split('=')[0]} = {b.split('=')[1]}" for b in BASE if b.startswith("task.") and b.split("=")[0] != key]
        if key.startswith("task."):
            task.append(f"{key[5:]} = {value}")
        else:
            lines.append(f"{key} = {value}")
        return ("\n".join(lines) + "\n[task]\n" + "\n".join(task) + "\n").encode()
    return {
        "empty": b"", "comments only": b"# nothing here\n\n",
        "garbage": draw(st.binary(min_size=1, max_size=64).filter(lambda b: b.strip(b" \t\r\n") and not b.lstrip().startswith(b"#"))),
        "not toml": draw(st.sampled_from([b"K = = 3", b"[task\nname=1", b"K = 3\nK = 4", b"\x00\x01", b"alpha = 1e", b"= 3"])),
        "directory": None, "missing": b"MISSING",
        "task not a table": b'task = "softmax"\n', "wrong table": b"[K]\nx = 1\n",
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
    return {"sets": BASE, "config": False, "out_kind": draw(st.sampled_from(["a file", "under a file", "non-run dir --force",
                                                                          "unwritable", "resume missing"]))}


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


TRIED = {"in_process": 0, "subprocess": 0}


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(bad_invocation())
def test_bad_input_in_process_exit_2_one_line_nothing_written(case):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argv, out = _materialize(case, root)
        before = _snapshot(root)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
        _assert_refused(rc, err.getvalue(), out, before, _snapshot(root))
        TRIED["in_process"] += 1


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_invocation())
def test_bad_input_real_process_exit_2_one_line_nothing_written(case):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argv, out = _materialize(case, root)
        before = _snapshot(root)
        proc = subprocess.run([sys.executable, "-m", "perfedavg", *argv], capture_output=True, text=True, env=ENV,
                              cwd=root, timeout=120)
        _assert_refused(proc.returncode, proc.stderr, out, before, _snapshot(root))
        TRIED["subprocess"] += 1


# -- the error cases of issue 2, one by one ------------------------------------------------------
@pytest.mark.parametrize("setting,names", [
    ("alpha=-0.1", ["alpha", ">= 0"]),
    ("r=0", ["r=0", "(0, 1]"]),
    ("r=1.5", ["r=1.5", "(0, 1]"]),
    ("r=0.1", ["r=0.1", "r*n", ">= 1"]),  # n = 4 users: r*n = 0.4 samples nobody
    ("tau=0", ["tau", ">= 1"]),
    ("D=21", ["D=21", "smallest user", "<= 20"]),  # every user has 20 samples
    ("D2=1000", ["D2=1000", "<= 20"]),
    ("bogus=1", ["unknown option 'bogus'"]),
    ("task.bogus=1", ["task.bogus", "softmax"]),
    ("K=1.5", ["K=1.5", "wrong type", "int"]),
    ("beta=nan", ["beta=nan", "> 0"]),
    ("seed=99999999999999999999", ["seed", "at most"]),
    ("task.h=2", ["task.h", "[0, 1]"]),
    ("task.n_clients=2.5", ["task.n_clients", "wrong type"]),
    ("device='cuda:99'", ["device", "cuda"]),
    ("task=3", ["task", "by name"]),
])
def test_issue2_errors_name_the_option_and_range(setting, names, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--no-progress", "--no-plot", "--out", str(out), *[f"--set={s}" for s in BASE], f"--set={setting}"])
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


@pytest.mark.parametrize("make,expected", [
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot be read"),
    (lambda p: p.symlink_to(p.parent / "nowhere"), "does not exist"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b""), "is empty"),
])
def test_unreadable_config_files_name_the_file(make, expected, tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    make(path)
    rc = main(["run", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and str(path) in err and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_resume_needs_out_and_a_run_directory(tmp_path, capsys):
    assert main(["run", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["run", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []


def test_help_names_every_option_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for name in KNOWN - {"task"}:
        assert f"  {name} " in text, name
    assert "SIGTERM" in text and "--resume" in text and "Exit status" in text
