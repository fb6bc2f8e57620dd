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


@pytest.mark.parametrize("count", [1, 2])
def test_the_killed_by_line_counts_in_words(count):
    """ "1 row FAILS", "2 rows FAIL", "1 witness looser", "2 witnesses looser" (perfedavg.words.plural), never "(s)"."""
    from synthetic.mutations import Mutant, Verdict, format_mutations
    from synthetic.rows import Row

    row = Row("witness", "L_F", "L_F", "derived", 2.0, 1.9, 2.1, 1.0, "somewhere: x = 1")
    mutant = Mutant("a mutant", "L_F", lambda e: e)
    text = " ".join(format_mutations([Verdict(mutant, (row,) * count, (row,) * count)]).split())
    rows, witnesses = ("1 row FAILS", "1 witness looser") if count == 1 else ("2 rows FAIL", "2 witnesses looser")
    assert rows in text and witnesses in text and "(s)" not in text and "(es)" not in text


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


#: how each mutant of the convergence bound dies on the cached tightness rows (tests/bound_rows.py): "below" (the
#: mutated bound under a measurement's 95 % interval), "loose" (above the row's loosening factor) or "survives" (a
#: survivor must document why and which row would kill it); a check that loses its power changes this map
BOUND_KILLS = {
    "optimization with 1/K^2 for 1/K": "below",
    "optimization with 1/sqrt(K) for 1/K": "loose",
    "optimization without its 1/tau": "loose",
    "optimization with 1/tau^2 for 1/tau": "below",
    "optimization without its 1/beta": "below",
    "optimization with Delta_0 for 2 Delta_0 (a 2 lost)": "below",
    "descent: kappa without -L_F beta/2": "below",
    "stochastic with 1/D^2 for 1/D": "below",
    "stochastic without its 1/n": "loose",
    "drift with tau for tau^2 (added in quadrature)": "below",
    "drift with tau for tau - 1 (one step more)": "loose",
    "drift without its noise": "below",
    "gradient error without the drift": "below",
    "client sampling: c without its (1 - r)": "loose",
    "client sampling: c with r for 1/r": "below",
    "client sampling without Step 6's L_F^2 c Ybar": "below",
}

#: the rows of the tightness table that are there for the bound mutants (synthetic/tightness.py): the only row that
#: kills each of these (DERIVATIONS.md §10.5), by the start of its name
KILLED_ONLY_BY = {
    "stochastic without its 1/n": "noise floor",
    "drift without its noise": "identical users",
    "client sampling: c with r for 1/r": "identical users",
    "client sampling without Step 6's L_F^2 c Ybar": "identical users",
}
#: ... and the rows that kill "drift with tau for tau^2": the noise-free rows at tau = 16 (up to tau = 8 it stays inside
#: the true bound's factor)
DRIFT_TAU_ROWS = ("noise-free β=0.01 τ=16", "noise-free β=0.00375 τ=16")
#: the rows of ``perfedavg check --tightness``: 5 stochastic ones of the project, the noise floor, identical users,
#: 8 noise-free
ROWS = 15


def _kill_map(verdicts):
    return {v.mutant.name: v.how for v in verdicts}


@pytest.fixture(scope="module")
def bound_rows():
    from tests.bound_rows import load_rows

    return load_rows()


@pytest.fixture(scope="module")
def bound_verdicts(bound_rows):
    from synthetic.bound_mutations import judge_bound_mutants

    return judge_bound_mutants(bound_rows)


def test_the_bound_kill_list_is_exact(bound_verdicts):
    from synthetic.bound_mutations import unexplained

    assert _kill_map(bound_verdicts) == BOUND_KILLS
    assert not unexplained(bound_verdicts)
    for v in bound_verdicts:  # a survivor is documented, and a documented survivor that dies is a list to update
        assert bool(v.mutant.survives_because) == (v.how == "survives"), v.mutant.name
        assert any(j.bound != j.row.data_dependent for j in v.judged), f"{v.mutant.name} changes no row"
    assert sum(v.mutant.loosening for v in bound_verdicts) == 5


def test_the_rows_added_for_the_bound_mutants_are_the_ones_that_kill_them(bound_verdicts):
    """Without its row each of these mutants survives (the other rows cannot see it: DERIVATIONS.md §10.5)."""
    by_name = {v.mutant.name: v for v in bound_verdicts}
    for name, row in KILLED_ONLY_BY.items():
        kills = [j.row.name for j in by_name[name].judged if j.below or j.loose]
        assert len(kills) == 1 and kills[0].startswith(row), (name, kills)
    kills = [j.row.name for j in by_name["drift with tau for tau^2 (added in quadrature)"].judged if j.below]
    assert tuple(kills) == DRIFT_TAU_ROWS


def test_without_a_bound_mutant_every_row_is_reproduced_holds_and_is_inside_its_factor(bound_rows):
    """The control: the true bound recomputed from each cached region equals the row's bound (so the regions are
    the ones the rows were measured with) and is killed on no row (a judge that kills everything would pass the
    kill-list test)."""
    from synthetic.bound_mutations import RowJudgement, bound_of, loose_factor

    assert len(bound_rows) == ROWS
    for row in bound_rows:
        judged = RowJudgement(row, bound_of(row))
        assert judged.bound == row.data_dependent, row.name
        assert row.holds and not judged.below and not judged.loose, row.name
        assert row.data_factor < loose_factor(row) / 1.9, row.name  # "twice the true factor", as stated


def test_a_judge_that_never_kills_fails_the_check(bound_rows, monkeypatch):
    """Planted: the row judgement never finds a bound below a measurement nor too loose.  The kill list no longer
    matches and every mutant is an unexplained survivor, so ``perfedavg check --mutations`` would exit 1."""
    from synthetic import bound_mutations as bm

    monkeypatch.setattr(bm.RowJudgement, "below", property(lambda self: False))
    monkeypatch.setattr(bm.RowJudgement, "loose", property(lambda self: False))
    verdicts = bm.judge_bound_mutants(bound_rows[:2])
    assert _kill_map(verdicts) != BOUND_KILLS
    assert len(bm.unexplained(verdicts)) == sum(not why for why in [m.survives_because for m in bm.mutants()])


def test_a_bound_mutant_that_changes_nothing_survives_unexplained_and_a_null_substitution_is_refused(bound_rows):
    import sympy as sp

    from synthetic import bound_mutations as bm
    from theory.symbols import D

    null = bm.BoundMutant("changes nothing", "none", lambda config: {})
    (verdict,) = bm.judge_bound_mutants(bound_rows[:3], [null])
    assert verdict.how == "survives" and bm.unexplained([verdict]) == [verdict]
    assert "NO DOCUMENTED REASON" in bm.format_bound_mutations([verdict])
    with pytest.raises(ValueError, match="does not alter"):
        bm._sampling(lambda e: e.xreplace({D: sp.Integer(2)}))({})


def test_a_planted_step_is_restored_after_an_error(bound_rows):
    from synthetic import bound_mutations as bm
    from theory import data_dependent as dd

    true = (dd.step_terms, dd.drift_rms, dd.sampling_factor_at)
    mutant = next(m for m in bm.mutants() if m.name.startswith("drift with tau for tau - 1"))
    with pytest.raises(RuntimeError), bm.planted(mutant, bound_rows[0].config):
        assert dd.drift_rms is not true[1]
        raise RuntimeError
    assert (dd.step_terms, dd.drift_rms, dd.sampling_factor_at) == true


#: every line ``perfedavg check --mutations`` prints fits a terminal this wide (perfedavg.words.MAX_WIDTH, restated)
WIDEST = 100


@pytest.mark.parametrize("as_json", [False, True])
def test_perfedavg_check_mutations_prints_each_mutant_and_the_count(as_json, bound_rows, monkeypatch, capsys):
    import json

    import synthetic.checks as checks
    import synthetic.tightness as tightness
    from synthetic import check_cli

    monkeypatch.setattr(checks, "collect", lambda **kw: [])  # the witnesses alone (the default tasks take a minute)
    monkeypatch.setattr(tightness, "tightness_table", lambda seeds: bound_rows)  # cached (measuring takes minutes)
    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--mutations", "--no-progress"] + (["--json"] if as_json else []))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    survivors = [name for name, how in BOUND_KILLS.items() if how == "survives"]
    if as_json:
        data = json.loads(out)
        assert data["killed"] == data["mutants"] == len(KILLS)
        bound = data["bound_mutants"]
        assert bound["mutants"] == len(BOUND_KILLS) and bound["killed"] == len(BOUND_KILLS) - len(survivors)
        assert {v["mutant"]: v["how"] for v in bound["verdicts"]} == BOUND_KILLS and bound["unexplained"] == []
        return
    lemmas, bound = out.split("bound mutant ", 1)
    assert f"killed {len(KILLS)} of {len(KILLS)}" in lemmas
    assert all(name[:52] in lemmas for name in KILLS) and "survives" not in lemmas
    assert all(name in bound for name in BOUND_KILLS)
    killed = len(BOUND_KILLS) - len(survivors)
    assert f"bound mutants: killed {killed} of {len(BOUND_KILLS)}" in bound and "0 unexplained" in bound
    assert bound.count(f"survives on all {ROWS} rows") == len(survivors)
    widest = max(out.splitlines(), key=len)
    assert len(widest) <= WIDEST, f"{len(widest)} characters: {widest}"


@pytest.mark.slow
def test_the_cached_rows_are_what_the_tightness_table_measures_now():
    """The cache the default tests judge on is the table ``perfedavg check --tightness`` measures today (minutes).
    On a failure, regenerate it: ``.venv/bin/python -c "from tests.bound_rows import regenerate; regenerate()"``
    and update BOUND_KILLS if the kill list moved."""
    from synthetic.bound_mutations import judge_bound_mutants
    from synthetic.tightness import tightness_table
    from tests.bound_rows import load_rows

    fresh, cached = tightness_table(), load_rows()
    assert [r.name for r in fresh] == [r.name for r in cached]
    for a, b in zip(fresh, cached):
        assert a.data_dependent == pytest.approx(b.data_dependent, rel=1e-9), a.name
        assert a.measured == pytest.approx(b.measured, rel=1e-9), a.name
    assert _kill_map(judge_bound_mutants(fresh)) == BOUND_KILLS


@pytest.mark.parametrize("extra", [["--rates"], ["--speed-sweep"]])
def test_mutations_with_another_command_is_refused_before_any_work(extra, capsys):
    """One line, exit status 2, nothing run (the rate table takes minutes: --rates must not start it)."""
    from perfedavg.cli import main

    assert main(["check", "--mutations", *extra]) == 2
    err = capsys.readouterr().err
    assert "--mutations is a command of its own" in err and "Traceback" not in err
