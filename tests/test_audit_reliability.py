"""Paths a new user took that ran but reported wrongly or refused without cause: a run's participation in
its bound, the speed sweep's timing after a resume and on SIGTERM, the sweep's refusals (before writing
anything, naming the real cause), and ``run --resume`` of a finished run."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from perfedavg.cli import main


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


# ----------------------------------------------------------------------------- the participation r = m/n
#: r = 0.125 of the softmax task's 20 users: r*n = 2.5, the engine samples floor(2.5) = 2, i.e. r = 0.1
R_CONFIGURED, R_SAMPLED = 0.125, 0.1
#: a tiny run of the default (softmax, 20 users) task at that r
SHORT = ["K=2", "eval_every=1", f"r={R_CONFIGURED}"]


def bounds_json(argv: list[str], capsys) -> dict:
    assert main(["bounds", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_bounds_task_uses_the_users_a_round_samples(capsys):
    """``bounds --task softmax --r 0.125`` is evaluated for the 2 of 20 users a run samples, exactly as
    ``--r 0.1``, and says so in one note; a whole r*n gives no note."""
    got = bounds_json(["--task", "softmax", "--r", str(R_CONFIGURED)], capsys)
    want = bounds_json(["--task", "softmax", "--r", str(R_SAMPLED)], capsys)
    assert got["constants"]["r"] == R_SAMPLED and got["constants"] == want["constants"]
    assert got["convergence"] == want["convergence"]
    assert want["notes"] == []
    assert len(got["notes"]) == 1 and "r = 0.1 (2 of 20)" in got["notes"][0] and "floor(2.5)" in got["notes"][0]
    assert main(["bounds", "--task", "softmax", "--r", str(R_CONFIGURED)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the report wraps its lines to the terminal
    assert text.count("r = 0.1 (2 of 20)") == 1


def test_explain_a_run_whose_r_n_is_not_whole(tmp_path, capsys):
    """A run that ``run`` accepts (r*n = 2.5) is explained, its bound for r = 0.1 stated in one line."""
    from figures.bounds import bound_for, constants_for_config
    from perfedavg.runs.config import load_run_config

    out = tmp_path / "r0125"
    assert main(["run", "--no-progress", "--no-plot", "--no-compare", "--out", str(out), *sets(SHORT)]) == 0
    capsys.readouterr()
    assert main(["explain", "--run", str(out)]) == 0
    text = capsys.readouterr().out
    assert sum("so the bound uses r = 0.1 (2 of 20)" in line for line in text.splitlines()) == 1
    at_sampled = load_run_config(None, [*SHORT[:-1], f"r={R_SAMPLED}"]).to_dict()
    bound, _, _ = bound_for(constants_for_config(at_sampled), "hf")
    assert f"derived bound {bound:.4g} on Phi_K" in text.splitlines()[0]


def test_a_refused_bound_names_its_cause_not_a_constants_file(capsys):
    """``explain --set alpha=5``: alpha > 1/L is the cause; no --constants file can change it."""
    assert main(["explain", "--set", "alpha=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "alpha" in err and "1/L" in err and "--constants" not in err, err


# ----------------------------------------------------------------------------- the speed sweep's record
#: seconds are printed to 0.01 and seconds per run to 0.0001: seconds / 4 and seconds_per_run agree to
#: half of each unit (0.005 / 4 + 0.00005)
PRINTED_PER_RUN = 0.005 / 4 + 5e-5


def _tiny_grid(K: int = 50) -> list:
    """Three quick configurations standing in for the 100 of :func:`synthetic.speed.speed_grid`."""
    from synthetic import rates

    base = {"K": 3, "tau": 2, "r": 0.2, "alpha": 1.0, "D": 5, "D1": 5, "D2": 5}
    return [
        rates._config({**base, "beta": b, "task": {"name": "logistic", "dim": 3, "h": 0.5}}) for b in (0.1, 0.2, 0.4)
    ]


def test_speed_sweep_stops_on_sigterm_in_one_line_and_times_only_what_it_ran(tmp_path, capsys, monkeypatch):
    """SIGTERM after the first configuration: exit 143 and ``run``'s one line (what is kept, the command that
    continues); the resumed sweep counts runs, times the runs it ran, and does not judge the 10-minute
    target on part of the sweep."""
    from synthetic import speed

    monkeypatch.setattr(speed, "speed_grid", _tiny_grid)
    real = speed.run_sweep
    calls = []

    def then_sigterm(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(speed, "run_sweep", then_sigterm)
    out = tmp_path / "speed"
    argv = ["check", "--speed-sweep", str(out), "--seeds", "2", "--no-progress"]
    assert main(argv) == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert captured.out == "" and len(calls) == 1
    last = captured.err.strip().splitlines()[-1]
    assert last == (
        f"perfedavg: interrupted by SIGTERM (1 of 3 configurations finished); "
        f"continue with: perfedavg check --speed-sweep {out}"
    )
    monkeypatch.setattr(speed, "run_sweep", real)
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["runs"], record["already_finished"], record["ran"]) == (6, 2, 4)
    assert record["seconds_per_run"] == pytest.approx(record["seconds"] / 4, abs=PRINTED_PER_RUN)
    assert record["under_10_minutes"] is None and record["estimated_seconds"] > 0 and "2 of 6" in record["note"]
    full = speed.speed_sweep(tmp_path / "fresh", seeds=2, progress=False)
    assert (full["already_finished"], full["ran"]) == (0, 6)
    assert full["under_10_minutes"] is True and full["estimated_seconds"] is None and full["note"] == ""


def test_a_finished_speed_sweep_runs_nothing_and_times_nothing(tmp_path, monkeypatch):
    from synthetic import speed

    monkeypatch.setattr(speed, "speed_grid", _tiny_grid)
    speed.speed_sweep(tmp_path, seeds=2, progress=False)
    again = speed.speed_sweep(tmp_path, seeds=2, progress=False)
    assert (again["already_finished"], again["ran"], again["seconds"]) == (6, 0, 0.0)
    assert again["seconds_per_run"] is None and again["under_10_minutes"] is None


# ----------------------------------------------------------------------------- sweep: refusals before writing
#: one tiny unit: a sweep whose runs exist is built by writing their config.toml, nothing is trained
SWEEP = """
K = 6
r = 0.5
D = 5
D1 = 5
D2 = 5

[task]
name = "softmax"
n_clients = 4
dim = 3
classes = 2
support = 20

[sweep]
seeds = 1

[sweep.grid]
alpha = [0.01]
"""


def _sweep_with_a_run(tmp_path: Path, copy: str | None) -> tuple[Path, Path]:
    """A sweep file and an --out holding its one run's config.toml (as a run of that sweep leaves it), and
    ``copy`` as the sweep.toml the last sweep there left (None: none)."""
    from perfedavg.runs import rundir
    from perfedavg.sweep.spec import RUNS, SWEEP_COPY, expand, load_sweep

    path, out = tmp_path / "s.toml", tmp_path / "out"
    path.write_text(SWEEP)
    (unit,) = expand(load_sweep(path))
    (out / RUNS / unit.name).mkdir(parents=True)
    rundir.write_config(out / RUNS / unit.name, dict(unit.config))
    if copy is not None:
        (out / SWEEP_COPY).write_text(copy)
    return path, out


@pytest.mark.parametrize(
    "copy, edit, overrides, cause",
    [
        (SWEEP, None, ["K=4"], "the sweep file is the one last run there: the --set overrides differ"),
        (SWEEP, "K = 4", [], "the sweep file changed since the last sweep there"),
        (None, None, ["K=4"], "the sweep file or its --set overrides changed"),
    ],
)
def test_a_sweep_of_another_config_names_what_changed(tmp_path, capsys, copy, edit, overrides, cause):
    """The README's ``--set K=300`` on the same --out: the file did not change, --set did, and the refusal
    says which (from the copy of the sweep file the last sweep there left)."""
    path, out = _sweep_with_a_run(tmp_path, copy)
    if edit is not None:
        path.write_text(SWEEP.replace("K = 6", edit))
    assert main(["sweep", str(path), "--out", str(out), "--dry-run", *sets(overrides)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another config than this sweep's ({cause})" in err, err
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == (0 if edit is None else 2)


def test_the_readme_sweep_lines_work_in_sequence():
    """Every ``perfedavg sweep`` line of the README, in order: one that changes the base (--set) on the --out
    of a line before it with other overrides would be refused (previous test), unless it says --force."""
    import itertools
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [shlex.split(line.split("#", 1)[0]) for line in text.splitlines() if line.startswith("perfedavg sweep ")]
    assert sum("--set" in argv for argv in lines) >= 1 and len(lines) >= 4
    seen: dict[str, tuple[str, ...]] = {}  # --out -> the --set overrides of the runs there
    for argv in lines:
        out = argv[argv.index("--out") + 1]
        overrides = tuple(v for flag, v in itertools.pairwise(argv) if flag == "--set")
        if "--dry-run" not in argv and "--force" not in argv:
            assert seen.setdefault(out, overrides) == overrides, argv


def test_a_ray_sweep_without_ray_writes_nothing_and_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--backend", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[ray]'" in err and "perfedavg[ray]" not in err, err
    assert not out.exists()


# ----------------------------------------------------------------------------- run --resume of a finished run
#: a tiny synthetic run (4 users, 2 per round)
TINY = ["K=3", "tau=2", "r=0.5", "D=4", "D1=4", "D2=4", "eval_every=1"]
TINY += ["task.n_clients=4", "task.dim=3", "task.support=20", "task.classes=2"]


def test_resuming_a_finished_run_says_so_and_does_nothing(tmp_path, capsys, monkeypatch):
    from perfedavg.runs import cli as run_cli
    from perfedavg.runs import rundir

    out = tmp_path / "run"
    assert main(["run", "--no-progress", "--no-plot", "--no-compare", "--out", str(out), *sets(TINY)]) == 0
    capsys.readouterr()
    # another config (--set) is checked as before: refused, nothing written
    assert main(["run", "--resume", str(out), "--set", "K=5", "--no-progress"]) == 2
    assert "differs from the checkpoint's in K" in capsys.readouterr().err
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}

    def no_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(run_cli, "run_config", no_run)
    assert main(["run", "--resume", str(out)]) == 0
    captured = capsys.readouterr()
    summary = out / rundir.SUMMARY
    assert captured.out == f"{out}: already finished (3 of 3 rounds): nothing to resume; its summary is {summary}\n"
    assert captured.err == ""
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
