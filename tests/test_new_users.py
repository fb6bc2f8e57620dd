"""New users at a distance from the training mixture (theory/new_users.py, synthetic/new_users.py):
the statements are §4's inequality composed with §6's distances, every new user tried lies below both
bounds, the witnesses attain each term, planted formula errors are caught, and the exponent judge
tells a linear gap from a non-vanishing or a quadratic one."""

from __future__ import annotations

import json

import pytest
import sympy as sp

import synthetic.new_users as nu
from perfedavg.cli import main
from theory.lemmas import dissimilarity_derived
from theory.new_users import new_user_gap_tv, new_user_gap_w1
from theory.statement import Statement
from theory.symbols import B, B_sample, L, L_sample, L_theta, alpha, gamma_G, gamma_H, rho_theta, tv, w1


def test_statements_are_the_dissimilarity_inequality_with_the_distances():
    expected_tv = (2 * tv * (alpha * B * L_sample + (1 + alpha * L) ** 2 * B_sample)) ** 2
    expected_w1 = (w1 * (alpha * B * rho_theta + (1 + alpha * L) ** 2 * L_theta)) ** 2
    assert sp.simplify(new_user_gap_tv().expr - expected_tv) == 0
    assert sp.simplify(new_user_gap_w1().expr - expected_w1) == 0
    assert new_user_gap_tv().provenance == "derived" == new_user_gap_w1().provenance


@pytest.fixture(scope="module")
def logistic_and_quadratic():
    return [p for name, options in nu.TASKS if name in ("logistic", "quadratic") for p in nu.task_gaps(name, options)]


def test_every_new_user_lies_below_both_bounds(logistic_and_quadratic):
    points = logistic_and_quadratic
    assert len(points) > 150 and {p.target for p in points} == set(nu.TARGETS)
    assert max(p.t for p in points) > 1  # past the farthest training user too
    info = nu.summary(points)
    assert nu.failures(points, info) == []
    assert all(p.gap <= p.bound_tv and p.gap <= p.bound_w1 for p in points)
    assert info["exponent"]["verdict"] == "PASS" and abs(info["exponent"]["q"]) < 0.05


def test_the_witnesses_attain_each_term():
    rows = nu.witnesses()
    assert {(w["witness"], w["form"]) for w in rows} == {
        ("linear", "TV"),
        ("linear", "W1"),
        ("concave", "W1"),
        ("curvature", "W1"),
    }
    for w in rows:
        assert 1 - nu.WITNESS_ROUNDOFF <= w["margin"] <= nu.WITNESS_FACTOR, w


def _mutant(statement: Statement, mapping=None, expr=None) -> Statement:
    if expr is not None:
        return Statement(statement.key, statement.name, statement.ref, statement.provenance, expr, statement.meaning)
    return statement.subs(mapping)


MUTANTS = {
    "TV without its factor 2": (
        "tv",
        lambda: dissimilarity_derived().subs({gamma_G: B_sample * tv, gamma_H: L_sample * tv}),
    ),
    "(1+aL)^2 dropped": ("w1", lambda: _mutant(new_user_gap_w1(), {L: 0})),
    "(1+aL) not squared": (
        "w1",
        lambda: _mutant(new_user_gap_w1(), expr=(w1 * (alpha * B * rho_theta + (1 + alpha * L) * L_theta)) ** 2),
    ),
    "Hessian term dropped": ("w1", lambda: _mutant(new_user_gap_w1(), {rho_theta: 0})),
    "W1 with L_theta / 2": ("w1", lambda: _mutant(new_user_gap_w1(), {L_theta: L_theta / 2})),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_a_planted_formula_error_is_caught_by_a_witness(name, monkeypatch):
    form, mutant = MUTANTS[name]
    monkeypatch.setattr(nu, f"new_user_gap_{form}", mutant)
    info = {"exponent": {"verdict": "PASS"}, "witnesses": nu.witnesses()}
    assert nu.failures([], info), name


def _curve(gaps):
    return [nu.GapPoint("t", "r", 0, 0.1, t, t, t, g, 1.0, 1.0) for t, g in zip(nu.FRACTIONS, gaps)]


def test_the_exponent_judge_fails_a_gap_that_does_not_vanish_or_is_quadratic():
    linear = _curve([3 * t for t in nu.FRACTIONS])
    assert nu.exponent_judgement(linear).verdict == "PASS"
    offset = _curve([1e-3 + 3 * t for t in nu.FRACTIONS])  # compared with the wrong population: no zero at p̄
    quadratic = _curve([3 * t**2 for t in nu.FRACTIONS])
    assert nu.exponent_judgement(offset).verdict == "FAIL"
    assert nu.exponent_judgement(quadratic).verdict == "FAIL"


def test_check_new_users_prints_json(monkeypatch, capsys):
    monkeypatch.setattr(nu, "TASKS", (("logistic", {}),))
    assert main(["check", "--new-users", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["margins"]) == {"logistic"} and data["failures"] == [] and len(data["witnesses"]) == 4
