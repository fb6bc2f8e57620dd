"""The data-dependent bound on Phi_K (theory/data_dependent.py, synthetic/region.py, synthetic/tightness.py):
its pieces against plain computations, and the bound against measured runs, with planted errors that break it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from perfedavg.engine.config import RunConfig
from perfedavg.engine.objective import client_objectives
from perfedavg.runs.resolve import resolve
from synthetic import tightness, tightness_cli
from synthetic.glm import GLM, psi_autograd, psi_closed_form
from synthetic.region import expected_stationarity, region_constants, virtual_run
from theory import data_dependent as dd

#: agreement of the closed forms with autograd: both are float64 sums of a few hundred O(1) terms, so
#: round-off is ~1e-15; 1e-12 leaves three orders of magnitude and still catches any wrong term
ROUND_OFF = 1e-12


def _resolved(data: dict):
    return resolve(RunConfig(**json.loads(json.dumps(data))))


@pytest.mark.parametrize("name", ["quadratic", "logistic", "nonconvex"])
def test_glm_closed_forms_match_autograd(name):
    _, task = _resolved({"task": {"name": name}, "alpha": 0.3, "D": 5, "D1": 5, "D2": 5, "dtype": "float64"})
    task = task.to(torch.float64)
    glm = GLM(task)
    Z = torch.randn(3, 4, glm.X.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    for a, b in zip(psi_autograd(glm.loss, Z, glm.Y), psi_closed_form(name, Z, glm.Y)):
        assert float((a - b).abs().max()) < ROUND_OFF
    w = torch.randn(glm.d, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.5
    out = glm.personalized(glm.shared(w[None]), 0.3)
    ref = client_objectives(task.per_sample_loss, w, task.train, 0.3)
    assert float((out["gradF"][0] - ref.grad_F).abs().max()) < ROUND_OFF
    assert float((out["F"][0] - ref.F).abs().max()) < ROUND_OFF
    for i in (0, glm.n - 1):  # the Hessian of F_i by double autograd, one user at a time
        X, Y, P = task.train.gather(torch.tensor([i]))

        def F_i(v, X=X, Y=Y, P=P):
            g = torch.func.grad(lambda u: (P[0] * task.per_sample_loss(u, X[0], Y[0])).sum())(v)
            return (P[0] * task.per_sample_loss(v - 0.3 * g, X[0], Y[0])).sum()

        assert float((torch.func.hessian(F_i)(w) - out["hessF"][0, i]).abs().max()) < ROUND_OFF
    # sigma_G^2 at the point against a plain loop over the support
    i = 1
    rows = []
    for x, y in zip(task.train.x.double(), task.train.y):
        W = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(task.per_sample_loss(W, x[None], y[None]).sum(), W)
        rows.append(g)
    grads = torch.stack(rows)
    p = task.train.weight[i].double()
    mean = (p[:, None] * grads).sum(0)
    sigma2 = float((p * (grads - mean).square().sum(1)).sum())
    assert abs(float(out["sigma_G2"][0, i]) - sigma2) < ROUND_OFF


def test_descent_step_reduces_to_polarisation_and_to_the_descent_lemma():
    # epsilon = 1 is section 7's polarisation (kappa = theta = 1/2 when L beta <= 1)
    assert dd.descent_coefficients(0.8, 1.0, 1.0) == pytest.approx((0.5, 0.5), abs=1e-15)
    # epsilon -> 0 gives the descent lemma's 1 - L beta / 2 (what a zero gradient error can use)
    kappa, _ = dd.descent_coefficients(0.8, 1.0, 1e-12)
    assert kappa == pytest.approx(0.6, abs=1e-9)


def test_drift_recursion_lies_below_its_gronwall_closed_form():
    gen = np.random.default_rng(0)
    for _ in range(200):
        rc = dd.RoundConstants(*gen.uniform(0, 2, size=6))
        rc = dd.RoundConstants(rc.s2, rc.gamma_F, rc.gamma_HF, 0.5 + rc.contraction / 2, rc.b_mean, rc.b_rms)
        beta, tau, n = float(gen.uniform(0.001, 0.3)), int(gen.integers(1, 12)), int(gen.integers(2, 30))
        ys = dd.drift_rms(rc, beta, tau, n)
        for t, y in enumerate(ys):
            assert y * y <= dd.drift_gronwall(rc, beta, t, n) * (1 + 1e-12)


def test_noise_free_drift_recursion_is_exact_for_one_step():
    rc = dd.RoundConstants(s2=0.0, gamma_F=0.3, gamma_HF=0.1, contraction=1.0, b_mean=0.0, b_rms=0.0)
    assert dd.drift_rms(rc, 0.1, 1, 5) == pytest.approx([0.0, 0.03])


# ----------------------------------------------------------------------------- the bound against runs
#: a shorter K-row (the rate table's base configuration; 120 rounds: past the transient) and FO on the flagship's
#: task
SHORT_K_ROW = {**tightness.k_row_config(), "K": 120}
SHORT_FO = {**tightness.FLAGSHIP, "algorithm": "fo", "K": 40}
#: the same run started at the minimiser of F: Delta_0 = 0, Phi_K is the noise floor alone
SHORT_FLOOR = {
    **SHORT_K_ROW,
    "K": 40,
    "task": {**SHORT_K_ROW["task"], "init": "minimizer", "init_alpha": SHORT_K_ROW["alpha"]},
}
SEEDS = [0, 1, 2, 3]


def _interval_high(values: np.ndarray) -> float:
    from scipy import stats

    v = np.asarray(values, float)
    return float(v.mean() + stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def _region_and_expectation(data: dict):
    cfg, task = _resolved(data)
    run = virtual_run(task, cfg, SEEDS)
    return region_constants(task, cfg, run), expected_stationarity(task, cfg, run)[:, -1]


@pytest.fixture(scope="module")
def short_k_row():
    return _region_and_expectation(SHORT_K_ROW)


@pytest.fixture(scope="module")
def short_floor():
    return _region_and_expectation(SHORT_FLOOR)


def test_virtual_run_has_the_engines_law_where_it_draws_the_same():
    # r = 1, tau = 1: every user is sampled and the draws come in the engine's order, so the virtual run is
    # the engine's run itself
    from synthetic.batched import run_seeds

    cfg, task = _resolved({**SHORT_K_ROW, "K": 6})
    engine = run_seeds(task, cfg, [0, 1], track_inner=True).stationarity[:, 1:]
    virtual = virtual_run(task, cfg, [0, 1]).stationarity
    assert np.allclose(engine, virtual, rtol=1e-10, atol=0)


def test_data_dependent_bound_holds_and_is_tight_on_the_k_row(short_k_row):
    region, expected = short_k_row
    bound = dd.data_dependent_bound(region).value
    high = _interval_high(expected)
    assert bound >= high  # an upper bound on E Phi_K ...
    assert bound <= 1.01 * expected.mean()  # ... within 1 % of it (the descent lemma is exact on a quadratic)


def test_data_dependent_bound_holds_on_the_noise_floor(short_floor):
    region, expected = short_floor
    assert region.Delta0 < 1e-12  # started at the minimiser
    bound = dd.data_dependent_bound(region)
    assert bound.value >= _interval_high(expected)
    assert bound.value <= 10 * expected.mean()


def test_planted_error_dropping_the_noise_term_breaks_the_floor(short_floor):
    region, expected = short_floor
    # planted: the stochastic-gradient term L_F beta s^2 / (2n) dropped (s^2 := 0 in every round)
    rounds = tuple(dd.RoundConstants(**{**rc.__dict__, "s2": 0.0}) for rc in region.rounds)
    planted = dd.RegionConstants(**{**region.__dict__, "rounds": rounds})
    assert dd.data_dependent_bound(planted).value < expected.mean()


def test_planted_error_in_the_descent_step_breaks_the_k_row(short_k_row, monkeypatch):
    region, expected = short_k_row
    original = dd.descent_coefficients

    def planted(L_F, beta, eps):  # kappa without its - L_F beta / 2
        kappa, theta = original(L_F, beta, eps)
        return kappa + L_F * beta / 2, theta

    monkeypatch.setattr(dd, "descent_coefficients", planted)
    assert dd.data_dependent_bound(region).value < expected.mean()


@pytest.mark.slow
def test_data_dependent_bound_holds_for_fo_with_its_bias():
    cfg, task = _resolved(SHORT_FO)
    run = virtual_run(task, cfg, SEEDS)
    region = region_constants(task, cfg, run)
    expected = expected_stationarity(task, cfg, run)[:, -1]
    bound = dd.data_dependent_bound(region)
    assert bound.value >= _interval_high(expected)
    assert bound.terms["gradient error (drift + bias)"] > 0  # FO's dropped Hessian term is a bias


def test_flagship_setting_is_the_figures():
    from figures.fig1_flagship import BASE, SCALE

    figure = {k: v for k, v in BASE.items() if k not in ("track_inner", "checkpoint_every")}
    mine = {k: v for k, v in tightness.FLAGSHIP.items() if k != "K"}
    assert mine == figure
    assert tightness.FLAGSHIP["K"] == SCALE["quick"]["K"]


def test_region_needs_a_margin_loss():
    from perfedavg.errors import UsageError

    _, task = _resolved({"task": {"name": "softmax"}, "D": 5, "D1": 5, "D2": 5})
    with pytest.raises(UsageError, match="margin loss"):
        GLM(task)


def test_tightness_flag_is_a_command_of_its_own(capsys):
    from perfedavg.cli import main

    assert main(["check", "--tightness", "--rates"]) == 2
    assert "--tightness is a separate command" in capsys.readouterr().err
    assert main(["check", "--tightness", "--mutations"]) == 2


@pytest.mark.slow
def test_tightness_table_holds_within_ten_on_every_stochastic_row():
    rows = tightness.tightness_table()
    assert all(r.holds for r in rows)
    for r in rows:
        if math.isfinite(r.K):
            assert r.data_factor <= 10.0, r.name


def test_noise_free_row_bounds_the_cycle_and_its_factors_multiply_to_the_gap():
    row = tightness.noise_free_row(0.02, 2)
    assert row.data_dependent >= row.measured
    assert row.data_factor <= 10.0
    chain = math.prod(v for k, v in row.steps.items() if k.startswith("§7"))
    assert chain == pytest.approx(row.worst_case / row.data_dependent, rel=1e-6)
    steps = math.prod(v for k, v in row.steps.items() if k.startswith("step"))
    assert steps == pytest.approx(row.data_factor, rel=1e-6)


def test_bound_curves_give_a_figure_both_bounds_above_the_expectation_at_every_K():
    Ks = [1, 3, 10, 30]
    curves = tightness.bound_curves({**tightness.FLAGSHIP, "algorithm": "exact", "K": 30}, [0, 1, 2], Ks)
    assert curves.measured.shape == curves.expected.shape == (3, len(Ks))
    assert list(curves.K) == Ks
    expected = curves.expected.mean(0)
    assert np.all(curves.data_dependent >= expected)
    assert np.all(curves.worst_case >= curves.data_dependent)


#: every line ``perfedavg check --tightness`` prints fits a terminal this wide (perfedavg.words.MAX_WIDTH, restated)
WIDEST = 100


def test_tightness_table_fits_the_terminal_and_keeps_every_number():
    """format_tightness (what ``perfedavg check --tightness`` prints) on a real noise-free row with the longest
    name and its proof's step costs, beside stochastic rows (hand-made: the real ones take minutes) with E Phi_K's
    estimate and without, and one whose worst-case bound is infinite (β beyond its step-size condition): every line
    at most WIDEST characters, and every number still printed."""
    noise_free = tightness.noise_free_row(min(tightness.NOISE_FREE_BETA_TAU_MAX) / 16, 16)
    rows = [
        tightness.TightnessRow("K-row (rate table)", 4000, 6432.1, 1.23456e-05, 9.87654e-06, 1.1e-5, 9.9e-6, 1.2e-5),
        tightness.TightnessRow("logistic, paper-like", 1000, 16.4, 0.0123456, 0.0111111, 0.0121),
        tightness.TightnessRow("identical users, r=0.1", 4000, math.inf, 1.9e-4, 8.9e-5, 9.5e-5, 8.5e-5, 9.1e-5),
        noise_free,
    ]
    text = tightness_cli.format_tightness(rows)
    widest = max(text.splitlines(), key=len)
    assert len(widest) <= WIDEST, f"{len(widest)} characters: {widest}"
    flat = " ".join(text.split())
    for r in rows:
        assert r.name in flat and f"{r.data_dependent:.5g}" in flat and f"{r.measured:.5g}" in flat, r.name
        assert f"{r.worst_case:.4g}" in flat and f"{r.data_factor:.3g}" in flat and f"{r.worst_factor:.3g}" in flat
    assert "K=4000" in flat and f"{rows[0].expected:.5g}" in flat
    assert all(f"{k} {v:.3g}" in flat for k, v in noise_free.steps.items())
