"""``perfedavg check``: lemma checks hold on small tasks; the seed-batched runner equals the engine;
a smoke version of the rate table (resumable run directories, derived bound above the measurement)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.rounds import initial_state, local_round
from perfedavg.runs.config import build_config
from perfedavg.runs.names import seed_batch_name
from perfedavg.runs.resolve import resolve

SMALL_LOGISTIC = {"n_clients": 6, "dim": 4, "support": 40, "clusters": 3, "h": 0.7}


def test_check_module_does_not_import_torch():
    code = "import sys, synthetic.check_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize(
    "name,options", [("logistic", SMALL_LOGISTIC), ("softmax", {"n_clients": 6, "dim": 4, "classes": 3, "support": 40})]
)
def test_every_derived_statement_holds_on_a_small_task(name, options):
    from synthetic.checks import check_task

    rows = check_task(name, options, samples=400)
    keys = {r.key for r in rows}
    assert {"L_F", "bias", "sigma_F2", "gamma_F2", "hf_hvp_error", "gamma_G2_tv", "gamma_H2_w1"} <= keys
    failing = [(r.statement, r.measured, r.bound) for r in rows if r.provenance == "derived" and not r.holds]
    assert not failing, failing
    # measurements are real numbers, not zeros: the smoothness and variance are measured
    assert all(r.measured > 0 for r in rows if r.key in ("L_F", "sigma_F2"))


@pytest.mark.parametrize("algorithm", ["hf", "fedavg"])
def test_seed_batched_runner_equals_the_engine(algorithm):
    from synthetic.batched import run_seeds

    sets = [
        'task.name="logistic"',
        "task.n_clients=6",
        "task.support=40",
        "task.dim=4",
        "K=3",
        "tau=2",
        "r=0.5",
        f'algorithm="{algorithm}"',
        'dtype="float64"',
        "alpha=0.5",
        "beta=0.3",
        "D=5",
        "D1=6",
        "D2=7",
    ]
    cfg, task = resolve(build_config({}, sets))
    runs = run_seeds(task, cfg, [3, 4], track_inner=False)
    for i, seed in enumerate((3, 4)):
        c = cfg.replace(seed=seed)
        state = initial_state(task, c)
        w = state.w
        for _ in range(c.K):
            w, _, _ = local_round(task, make_oracle(task), c, w, state.generator)
        # same draws, same arithmetic on stacked rows: equal to float64 round-off
        assert torch.allclose(w, runs.w[i], rtol=0, atol=1e-12)


def test_rate_smoke_derived_bound_and_resume(tmp_path):
    from synthetic import rates

    cfg = rates._config(
        {"K": 8, "tau": 2, "beta": 0.2, "task": {"support": 60, "n_clients": 6}, "D": 20, "D1": 20, "D2": 20}
    )
    (res,) = rates.run_sweep([cfg], [0, 1], tmp_path, track_inner=True, progress=False)
    summary = tmp_path / seed_batch_name(cfg) / "seed0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    (again,) = rates.run_sweep([cfg], [0, 1], tmp_path, track_inner=True, progress=False)
    assert summary.stat().st_mtime_ns == stamp  # finished runs are reused, not redone
    assert (again["stationarity"] == res["stationarity"]).all()
    records = [json.loads(l) for l in (summary.parent / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["round"] == 8 and "stationarity_avg" in records[-1]
    check = rates.derived_bound_check(cfg, res["stationarity"], [2, 4, 8])
    assert check["holds_at_every_K"], check


def test_hf_error_shrinks_with_delta_then_roundoff():
    from synthetic import rate_stats
    from synthetic.rates import hf_delta_row

    row = hf_delta_row([0, 1])
    rate_stats.assign_verdicts([row.judgement])  # the table assigns verdicts (Holm); alone, a family of one
    assert row.passed, row.as_dict()
    assert row.fitted >= 1.0  # at least the bound's exponent


@pytest.mark.slow
def test_perfedavg_check_cli_holds_in_under_two_minutes():
    import time

    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "perfedavg", "check", "--json", "--no-progress"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert not out["errors"] and out["smallest_derived_margin"] > 1
    assert elapsed < 120, elapsed


def _check_exit(monkeypatch, capsys, rows):
    """``perfedavg check`` (text output) on injected rows: (exit status, stdout, stderr)."""
    import argparse

    import synthetic.checks as checks
    from synthetic import check_cli

    monkeypatch.setattr(checks, "run_checks", lambda **kw: rows)
    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--no-progress"])
    status = args.func(args)
    out = capsys.readouterr()
    return status, out.out, out.err


def _row(provenance, measured, low, high, bound=1.0):
    from synthetic.checks import Row

    return Row("toy", "k", f"toy statement [{provenance}]", provenance, measured, low, high, bound, "here")


def test_check_exit_status_derived_failure_is_an_error(monkeypatch, capsys):
    status, out, err = _check_exit(
        monkeypatch, capsys, [_row("derived", 2.0, 1.5, 2.5), _row("recalled", 0.5, 0.4, 0.6)]
    )
    assert status == 1
    assert "ERROR (derived/sure statement fails)" in err and "FINDING" not in out


def test_check_exit_status_sure_failure_is_an_error(monkeypatch, capsys):
    status, _, err = _check_exit(monkeypatch, capsys, [_row("sure", 2.0, 2.0, 2.0)])
    assert status == 1 and "ERROR" in err


def test_check_recalled_failure_is_a_finding_with_exit_0(monkeypatch, capsys):
    status, out, err = _check_exit(
        monkeypatch, capsys, [_row("recalled", 2.0, 1.5, 2.5), _row("derived", 0.5, 0.4, 0.6)]
    )
    assert status == 0
    assert "FINDING (recalled statement fails): toy: toy statement [recalled]" in out and "ERROR" not in err


def test_one_verdict_rule_uses_the_upper_confidence_limit(monkeypatch, capsys):
    """Row and CheckRow share theory.checks_api.upper_bound_holds: an interval straddling the bound is not
    evidence that the bound holds (FAILS), whatever the point estimate."""
    from theory.checks_api import CheckRow, upper_bound_holds

    straddling = _row("derived", 0.9, 0.7, 1.1)
    assert not straddling.holds and not CheckRow("s", "derived", 0.9, 1.0, 1.1).holds
    assert not upper_bound_holds(0.9, 1.0, 1.1) and upper_bound_holds(0.9, 1.0, 0.95) and upper_bound_holds(1.0, 1.0)
    below = _row("derived", 0.5, 0.4, 0.6)
    assert below.holds and CheckRow("s", "derived", 0.5, 1.0, 0.6).holds and below.margin > 1
    status, _, _ = _check_exit(monkeypatch, capsys, [straddling])
    assert status == 1


def test_heterogeneity_is_recorded_along_the_run_and_meets_the_tv_w1_bounds():
    """run_seeds(track_heterogeneity) records the exact gamma_G^2, gamma_H^2 at every w_bar (equal to
    measure.heterogeneity_at there), and perfedavg check's trajectory rows compare them with the TV / W1
    statements at every recorded point."""
    from synthetic import checks, measure
    from synthetic.batched import run_seeds

    cfg, task = resolve(
        build_config(
            {
                "algorithm": "exact",
                "K": 3,
                "tau": 2,
                "r": 0.5,
                "alpha": 0.5,
                "beta": 1.0,
                "D": 5,
                "D1": 5,
                "D2": 5,
                "dtype": "float64",
                "task": {"name": "logistic", **SMALL_LOGISTIC},
            }
        )
    )
    runs = run_seeds(task, cfg, [0, 1], track_inner=True, track_heterogeneity=True)
    assert runs.gamma_G2.shape == (2, 1 + cfg.K * cfg.tau) == runs.gamma_H2.shape
    het = measure.heterogeneity_at(task.to(torch.float64), runs.w[1])
    assert runs.gamma_G2[1, -1] == pytest.approx(het.gamma_G2, rel=1e-9)
    assert runs.gamma_H2[1, -1] == pytest.approx(het.gamma_H2, rel=1e-9)
    assert runs.theta_lipschitz[1, -1, 0] == pytest.approx(het.L_theta, rel=1e-12)
    assert len(set(runs.gamma_G2[0].round(12))) > 1  # the run moves: gamma_G^2 changes along it

    rows = checks.trajectory_rows("logistic", SMALL_LOGISTIC)
    assert {r.key for r in rows} == {
        k + "_trajectory" for k in ("gamma_G2_tv", "gamma_H2_tv", "gamma_G2_w1", "gamma_H2_w1")
    }
    for r in rows:
        assert r.provenance == "derived" and r.holds and 0 < r.measured <= r.bound, r
        assert "max measured" in r.where


def test_check_json_lists_the_rows(monkeypatch, capsys):
    """--json prints every row (the summary's row count once overwrote the list)."""
    import argparse

    import synthetic.checks as checks
    from synthetic import check_cli

    monkeypatch.setattr(
        checks, "run_checks", lambda **kw: [_row("derived", 0.5, 0.4, 0.6), _row("recalled", 2.0, 1.5, 2.5)]
    )
    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--no-progress", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["provenance"] for r in out["rows"]] == ["derived", "recalled"] and out["row_count"] == 2
    assert len(out["findings"]) == 1 and not out["errors"]


def test_check_table_tells_repeated_rows_apart_and_agrees_with_its_help(monkeypatch, capsys):
    """The same statement measured at two step sizes, and along a run, prints three different lines (the α
    column and 'along a run'); every column of the table is one the help describes, 'high' is explained under
    the table, and the help promises no column the table lacks (a 'ratio' the text table does not print)."""
    import argparse
    import dataclasses

    from synthetic import check_cli

    base = _row("derived", 0.5, 0.4, 0.6)
    rows = [
        dataclasses.replace(base, where="alpha=0.25/L, point 0"),
        dataclasses.replace(base, where="alpha=1/L, point 0"),
        dataclasses.replace(
            base, statement="toy statement [derived] along run", where="trajectory: 2 seeds x 9 points (alpha=0.25/L)"
        ),
    ]
    status, out, _ = _check_exit(monkeypatch, capsys, rows)
    assert status == 0
    lines = [line for line in out.splitlines() if line.startswith("toy ")]
    assert len(lines) == 3 and len(set(lines)) == 3, lines
    assert "0.25/L" in lines[0] and "1/L" in lines[1] and "along a run" in lines[2] and "[derived]" not in lines[2]
    assert "upper end of the 99.7% Monte Carlo interval" in out
    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    help_text = " ".join(parser._subparsers._group_actions[0].choices["check"].description.split())
    header = out.splitlines()[0].split()
    assert header == ["task", "α", "statement", "prov.", "measured", "high", "bound", "verdict", "margin"]
    for word in ("task", "step size α", "statement", "provenance", "measured", "high", "bound", "HOLDS", "margin"):
        assert word in help_text, word
    assert "high = the upper end" in help_text and "ratio = measured/bound" not in help_text


def test_check_help_leaves_durations_to_the_readme_table():
    """Durations depend on the machine and its load: ``check --help`` states none (but --full's warning of an
    hour or more) and points to the README's table, where each one is measured with the load it was taken at."""
    import argparse
    import re

    from synthetic import check_cli

    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    check = parser._subparsers._group_actions[0].choices["check"]
    text = " ".join((check.description + " " + " ".join(a.help or "" for a in check._actions)).split())
    # the --mutations sentence is another part's (its own duration stays with it)
    text = re.sub(r"With --mutations:.*?(?=With --rates:)", "", text)
    durations = re.findall(r"\b(?:[\w-]+ ){0,2}(?:seconds?|minutes?|hours?)\b(?: or \w+)?", text)
    assert [d for d in durations if d != "an hour or more"] == [], durations
    assert "README" in text and "how long it takes" in text
