"""The mutation suite: every planted formula error is killed by a named check, on the same measurements."""

from __future__ import annotations

import argparse

import pytest

#: how each mutant dies on the witnesses alone: "fails" (a bound below an exact measurement) or "loose" (a
#: witness margin above its factor); a check that loses its power changes this map
KILLS = {
    "L_F without (1+aL)^2": "fails",
    "L_F with (1+aL) unsquared": "fails",
    "L_F without a*rho*B": "fails",
    "L_F with a*rho*B/2": "fails",
    "bias with 1/D for 1/sqrt(D)": "fails",
    "bias without (1+aL)": "fails",
    "bias halved": "fails",
    "sigma_F^2 without the Hessian-noise term": "fails",
    "sigma_F^2 halved": "fails",
    "sigma_F^2 without (1+aL)^2": "fails",
    "sigma_F^2 with (1+aL) unsquared": "fails",
    "sigma_F^2 without the inner-batch term a^2L^2/D": "fails",
    "sigma_F^2 Hessian term without B^2": "fails",
    "gamma_F^2 = gamma_G^2": "fails",
    "gamma_F^2 without a*B*gamma_H": "fails",
    "gamma_F^2 with (1+aL) unsquared": "fails",
    "gamma_F^2 without the cross term": "fails",
    "FO bias without a*L*B": "fails",
    "FO bias without the noise term": "fails",
    "FO MSE without a*L*B": "fails",
    "HF error /6 for /2": "fails",
    "HF error with delta^2": "fails",
    "HF error with |g| unsquared": "fails",
    "HF bias without a*rho*delta*B^2/2": "fails",
    "HF MSE without its HF term": "fails",
    "HF MSE without sigma_F": "fails",
    "TV gamma_G^2 with B^2 for 4B^2": "fails",
    "TV gamma_H^2 with L^2 for 4L^2": "fails",
    "TV gamma_G^2 with the per-user B for B_sample": "fails",
    "TV gamma_H^2 with the per-user L for L_sample": "fails",
    "W1 gamma_G^2 with (L_theta w1/2)^2": "fails",
    "W1 gamma_H^2 with rho_theta/2": "fails",
    "bias 4x too large": "loose",
    "sigma_F^2 with Young's factor 3 on each term": "loose",
    "TV gamma_G^2 with (2B*2TV)^2 for (2B*TV)^2": "loose",
}


@pytest.fixture(scope="module")
def verdicts():
    from synthetic.mutations import judge_mutants
    from synthetic.witnesses import witness_records

    return judge_mutants(witness_records())


def test_the_kill_list_is_exact(verdicts):
    got = {v.mutant.name: ("fails" if v.failing else "loose" if v.loose else "survives") for v in verdicts}
    assert got == KILLS
    assert len(verdicts) >= 20 and sum(v.mutant.loosening for v in verdicts) == 3


def test_without_a_mutant_nothing_fails_and_no_witness_is_loose():
    """The control: theory's own statements on the same records (a suite that kills everything because every
    check fails anyway would pass the kill-list test)."""
    from synthetic.rows import judge
    from synthetic.witnesses import factor_of, witness_records

    derived = [r for r in judge(witness_records()) if r.provenance == "derived"]
    assert derived and all(r.holds and r.margin <= factor_of(r) for r in derived)


def test_a_mutant_that_changes_nothing_is_refused():
    """A substitution that no longer matches the formula (the formula moved on) must not count as a kill."""
    import sympy as sp

    from synthetic.mutations import Mutant
    from theory import lemmas
    from theory.symbols import gamma_H

    with pytest.raises(ValueError, match="does not change"):
        Mutant("L_F without gamma_H", "L_F", lambda e: e.subs({gamma_H: 0})).apply(lemmas.smoothness_derived())
    halved = Mutant("x", "L_F", lambda e: e * sp.Rational(1, 2)).apply(lemmas.smoothness_derived())
    assert halved.provenance == "derived" and halved.expr == lemmas.smoothness_derived().expr / 2


#: every line ``perfedavg check --mutations`` prints fits a terminal this wide (perfedavg.words.MAX_WIDTH, restated)
WIDEST = 100


def test_perfedavg_check_mutations_prints_each_mutant_and_the_count(monkeypatch, capsys):
    import synthetic.checks as checks
    from synthetic import check_cli

    monkeypatch.setattr(checks, "collect", lambda **kw: [])  # the witnesses alone (the default tasks take a minute)
    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--mutations", "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"killed {len(KILLS)} of {len(KILLS)}" in out
    assert all(name[:52] in out for name in KILLS) and "survives" not in out
    widest = max(out.splitlines(), key=len)
    assert len(widest) <= WIDEST, f"{len(widest)} characters: {widest}"


@pytest.mark.parametrize("extra", [["--rates"], ["--speed-sweep"]])
def test_mutations_with_another_command_is_refused_before_any_work(extra, capsys):
    """One line, exit status 2, nothing run (the rate table takes minutes: --rates must not start it)."""
    from perfedavg.cli import main

    assert main(["check", "--mutations", *extra]) == 2
    err = capsys.readouterr().err
    assert "--mutations is a command of its own" in err and "Traceback" not in err
