"""The rate table's statistics (:mod:`synthetic.rate_stats`) on synthetic data of known law: each test plants a
law (a wrong exponent, a wrong shape, pure noise) and checks the verdict the statistics must reach."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from synthetic.rate_stats import (
    FAMILY_LEVEL,
    Point,
    _chi2_of_q,
    assign_verdicts,
    difference,
    holm,
    judge_exact,
    judge_points,
    judge_replicates,
    margin,
    mean_se,
    replicate_exponents,
)

XS = np.array([0.25, 0.5, 1.0])
#: standard errors of the planted points: 5 % of the mean, estimated with 23 degrees of freedom (3 seeds x 8
#: batch-means blocks, as in the quick table)
REL_SE, DOF = 0.05, 23
#: Monte Carlo tables per level check; the binomial standard error of a 5 % rate over 200 tables is 1.5 %,
#: so a true rate of 5 % exceeds LEVEL_SLACK = 0.1 with probability < 0.2 %
TABLES, LEVEL_SLACK = 200, 0.1


def _points(rng, exponent, xs=XS, rel=REL_SE, amplitude=1.0):
    y = amplitude * xs**exponent
    se = rel * y
    return [Point(float(m + s * rng.standard_normal()), float(s), DOF) for m, s in zip(y, se)]


def _verdict(j):
    assign_verdicts([j])
    return j.verdict


def test_planted_wrong_exponent_fails_right_one_passes_noise_is_inconclusive():
    rng = np.random.default_rng(0)
    law = XS**2  # predicted: exponent 2
    assert _verdict(judge_points(XS, _points(rng, 1.0), law, 0.25)) == "FAIL"  # data with exponent 1
    assert _verdict(judge_points(XS, _points(rng, 3.0), law, 0.25)) == "FAIL"  # data with exponent 3
    right = judge_points(XS, _points(rng, 2.0), law, 0.25)
    assert _verdict(right) == "PASS" and -0.25 < right.q_low < right.q < right.q_high < 0.25
    noise = [Point(float(0.1 * rng.standard_normal()), 0.1, DOF) for _ in XS]  # no signal at all
    j = judge_points(XS, noise, law, 0.25)
    assert _verdict(j) == "INCONCLUSIVE" and j.q_high - j.q_low > 1.0
    # a resolved exponent just outside the margin (1.8 vs 2 +- 0.1): FAIL; the same with 10x the noise: undecided
    assert _verdict(judge_points(XS, _points(rng, 1.8, rel=0.005), law, 0.1)) == "FAIL"
    assert _verdict(judge_points(XS, _points(rng, 1.8, rel=0.05), law, 0.1)) == "INCONCLUSIVE"


def test_a_wrong_shape_with_the_right_end_to_end_slope_fails_by_the_amplitude_fit():
    """Data x^2 at the ends but 1.6x too high in the middle: a log-log slope through the points is ~2 (the old
    statistic passed it); no law A·x^(2+q) with |q| <= margin fits, so the row FAILs and the exponent model does
    not fit either."""
    rng = np.random.default_rng(1)
    xs = np.array([0.125, 0.25, 0.5, 1.0])
    pts = _points(rng, 2.0, xs=xs, rel=0.02)
    pts[1] = Point(pts[1].mean * 1.6, pts[1].se * 1.6, DOF)
    pts[2] = Point(pts[2].mean * 1.6, pts[2].se * 1.6, DOF)
    assert abs(np.polyfit(np.log(xs), np.log([p.mean for p in pts]), 1)[0] - 2.0) < 0.15
    j = judge_points(xs, pts, xs**2, 0.25)
    assert _verdict(j) == "FAIL" and j.p_model < FAMILY_LEVEL and j.p_law < 1e-6


def test_error_rates_are_at_most_the_level_at_the_margin_and_under_the_law():
    """Type I errors by simulation: data exactly on the margin's edge (exponent 2.25 against 2 +- 0.25) PASS in
    at most ~5 % of tables; data on the predicted law FAIL in at most ~5 %; and an equivalence test has power:
    data on the law PASS in most tables."""
    rng = np.random.default_rng(2)
    law = XS**2
    edge = [_verdict(judge_points(XS, _points(rng, 2.25), law, 0.25)) for _ in range(TABLES)]
    exact = [_verdict(judge_points(XS, _points(rng, 2.0), law, 0.25)) for _ in range(TABLES)]
    assert edge.count("PASS") / TABLES <= LEVEL_SLACK
    assert exact.count("FAIL") / TABLES <= LEVEL_SLACK
    assert exact.count("PASS") / TABLES > 0.8


def test_replicates_per_seed_exponents_planted_errors():
    """One exponent per seed (the K-row, the HF row): exponent 1 against predicted 2 FAILs, exponent 2 PASSes,
    seeds that disagree wildly leave it INCONCLUSIVE; the interval uses Student t with S − 1 degrees of freedom."""
    rng = np.random.default_rng(3)
    law = XS**2
    curves = lambda p, spread: [XS ** (p + spread * rng.standard_normal()) for _ in range(3)]  # noqa: E731
    assert _verdict(judge_replicates(replicate_exponents(XS, curves(1.0, 0.02), law), 0.25)) == "FAIL"
    assert _verdict(judge_replicates(replicate_exponents(XS, curves(2.0, 0.02), law), 0.25)) == "PASS"
    assert _verdict(judge_replicates(replicate_exponents(XS, curves(2.0, 2.0), law), 0.25)) == "INCONCLUSIVE"
    q = np.array([0.1, -0.05, 0.02])
    j = judge_replicates(q, 0.25)
    half = stats.t.ppf(1 - FAMILY_LEVEL, 2) * q.std(ddof=1) / math.sqrt(3)
    assert j.q_high - j.q == pytest.approx(half, rel=1e-12) and j.dof == 2
    # a seed whose curve is not positive has no exponent: the row cannot be decided
    bad = replicate_exponents(XS, [XS**2, -(XS**2), XS**2], law)
    assert _verdict(judge_replicates(bad, 0.25)) == "INCONCLUSIVE"


def test_holm_adjusts_step_down_and_a_family_can_undo_a_lone_pass():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    law = XS**2

    def row(rel):  # points exactly on the law, standard errors rel x mean: q = 0, p_equiv set by rel
        return judge_points(XS, [Point(float(v), float(rel * v), DOF) for v in law], law, 0.25)

    rel = next(r for r in np.geomspace(0.01, 0.2, 60) if 0.005 < row(r).p_equiv < 0.02)
    lone = row(rel)
    assign_verdicts([lone])
    assert lone.verdict == "PASS"  # a PASS on its own ...
    family = [row(rel) for _ in range(10)]
    assign_verdicts(family)  # ... not as one of twenty tests (Holm: the smallest p is multiplied by 20)
    assert all(j.verdict == "INCONCLUSIVE" and j.p_equiv_holm > FAMILY_LEVEL for j in family)


def test_exact_rows_and_margins():
    assert judge_exact(0.1, 0.16).verdict == "PASS" and judge_exact(0.17, 0.16).verdict == "FAIL"
    xs = [2.0, 4.0, 8.0]
    assert margin(xs, [x**3 for x in xs], [x**2 for x in xs]) == pytest.approx(0.25)
    j = judge_exact(0.17, 0.16)
    assign_verdicts([j])  # an exact row keeps its verdict and has no p-values
    assert j.verdict == "FAIL" and j.p_equiv is None and j.p_equiv_holm is None


def test_difference_uses_welch_satterthwaite_and_mean_se_student():
    a, b = Point(3.0, 0.3, 10), Point(1.0, 0.4, 20)
    d = difference(a, b)
    se2 = 0.3**2 + 0.4**2
    assert d.mean == 2.0 and d.se == pytest.approx(math.sqrt(se2))
    assert d.dof == pytest.approx(se2**2 / (0.3**4 / 10 + 0.4**4 / 20))
    p = mean_se([1.0, 2.0, 4.0])
    assert p.dof == 2 and p.halfwidth() == pytest.approx(stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / 3**0.5)


def test_vectorized_profile_chi2_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    xs = [0.5, 1.0, 2.0, 4.0]
    y, se, shape = rng.random(4) + 0.5, rng.random(4) * 0.1 + 0.01, [1.0, 1.5, 3.5, 7.0]
    chi2 = _chi2_of_q(xs, y, se, shape)
    qs = np.linspace(-3, 3, 13)
    xg = math.exp(sum(math.log(x) for x in xs) / 4)
    for q, vec in zip(qs, chi2(qs)):
        g = [s * (x / xg) ** q for s, x in zip(shape, xs)]
        w = [1 / e**2 for e in se]
        A = sum(wi * yi * gi for wi, yi, gi in zip(w, y, g)) / sum(wi * gi * gi for wi, gi in zip(w, g))
        plain = sum(wi * (yi - A * gi) ** 2 for wi, yi, gi in zip(w, y, g))
        assert vec == pytest.approx(plain, rel=1e-12) and chi2(float(q)) == pytest.approx(plain, rel=1e-12)


def test_an_exponent_outside_the_margin_fails_where_the_shape_test_alone_cannot_tell():
    """Points exactly on x^1.4 against predicted x^2 +- 0.25, 10 % standard errors: three points leave the
    goodness-of-fit test of the laws within the margin weak (p ~ 0.01 on 2 dof), the exponent's own test is
    sharper (p ~ 0.003), and the row FAILs."""
    pts = [Point(float(v), float(0.1 * v), DOF) for v in XS**1.4]
    j = judge_points(XS, pts, XS**2, 0.25)
    assert j.extra["p_outside"] < j.extra["p_shape"] and j.q_high < -0.25
    assert _verdict(j) == "FAIL"
