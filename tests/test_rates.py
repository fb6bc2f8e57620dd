"""The rate table (``perfedavg check --rates``): structure, a smoke version, and the pieces it rests on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from perfedavg.runs.names import seed_batch_name
from perfedavg.runs.resolve import resolve

#: closed-form and autograd evaluations of the same float64 quantity agree to this (relative) round-off
ROUNDOFF = 1e-10


def test_quadratic_minimizer_is_a_zero_of_grad_F_and_closed_form_matches_autograd():
    from perfedavg.engine.objective import client_objectives
    from synthetic import rates
    from synthetic.quadratic import exact_objectives, minimizer_F

    cfg = rates._config({"K": 1, "alpha": 0.5, "task": {"support": 100, "h": 0.7}})
    _, task = resolve(cfg)
    w = minimizer_F(task.train, 0.5)
    obj = client_objectives(task.per_sample_loss, w, task.train, 0.5)
    assert float(obj.grad_F.mean(0).norm()) < 1e-12  # exact minimiser: a linear solve
    W = torch.stack([w, w + 0.3, torch.zeros_like(w)])
    F, gF2, _f, _gf2 = exact_objectives(task.train, W, 0.5)
    for j in range(3):
        o = client_objectives(task.per_sample_loss, W[j], task.train, 0.5)
        assert math.isclose(float(F[j]), float(o.F.mean()), rel_tol=ROUNDOFF, abs_tol=1e-14)
        assert math.isclose(float(gF2[j]), float(o.grad_F.mean(0).square().sum()), rel_tol=ROUNDOFF, abs_tol=1e-20)


def test_quadratic_constants_hold_on_the_stated_domain():
    """Per-sample ‖∇l‖ ≤ B for ‖w‖ ≤ W, ‖∇²l‖ = ‖x‖² ≤ L (attained), ρ = 0: Hessians do not move."""
    from synthetic import rates
    from synthetic.common import per_sample_grads, per_sample_hessians

    _, task = resolve(rates._config({"K": 1, "task": {"support": 100}}))
    c, x, y = task.constants, task.train.x, task.train.y
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.randn(2, generator=g, dtype=torch.float64)
        w = w / w.norm() * c["w_radius"] * float(torch.rand(1, generator=g))
        assert float(per_sample_grads(task.per_sample_loss, w, x, y).norm(dim=1).max()) <= c["B"] * (1 + 1e-12)
    H0 = per_sample_hessians(task.per_sample_loss, torch.zeros(2, dtype=torch.float64), x, y)
    H1 = per_sample_hessians(task.per_sample_loss, torch.ones(2, dtype=torch.float64), x, y)
    assert torch.allclose(H0, H1, atol=1e-14) and c["rho"] == 0.0
    assert math.isclose(float(torch.linalg.matrix_norm(H0, ord=2).max()), c["L"], rel_tol=1e-12)


def _own_cluster_task(tau, beta, h=1.0):
    """The rate table's drift configuration on data where each user holds exactly its own distribution's
    support with uniform weights (h = 1: p_i is uniform on its cone), so that batches of all of a user's samples
    drawn without replacement are whole-distribution batches, and the engine makes no random choice that matters."""
    from dataclasses import replace

    from perfedavg.engine.task import ClientData
    from synthetic import rates

    cfg = rates._config({"tau": tau, "beta": beta, "task": {"h": h}})
    _, task = resolve(cfg)

    def own(d: ClientData) -> ClientData:
        assert all(torch.allclose(p[p > 0], p[p > 0][0]) for p in d.weight)  # p_i uniform on its support: own = p_i
        return ClientData.from_lists(
            d.x, d.y, [row[:c][p[:c] > 0] for row, p, c in zip(d.index, d.weight, d.count.tolist())]
        )

    train = own(task.train)
    counts = set(train.count.tolist())
    assert len(counts) == 1
    size = counts.pop()
    cfg = cfg.replace(D=size, D1=size, D2=size)
    return cfg, replace(task, train=train, test=own(task.test), batch_with_replacement=False)


@pytest.mark.parametrize("tau", [1, 3, 8])
def test_noise_free_cycle_is_the_engines_round_without_noise(tau):
    """With every user in every round and each batch a user's whole (uniform) distribution, one engine round of
    Per-FedAvg (exact) from the closed form's fixed point returns to it through the closed form's w_bar_t, and
    the theorem's integrand there is the closed form's phi, to round-off (float64)."""
    from perfedavg.engine.oracle import make_oracle
    from perfedavg.engine.rounds import local_rounds
    from synthetic.quadratic import exact_objectives, noise_free_cycle

    cfg, task = _own_cluster_task(tau, beta=0.02)
    cycle = noise_free_cycle(task.train, cfg.alpha, cfg.beta, tau)
    w_next, _, trajectory = local_rounds(
        task, make_oracle(task), cfg, cycle.w[None], [torch.Generator().manual_seed(3)], track=True
    )
    scale = float(cycle.w.norm())
    assert float((w_next[0] - cycle.w).norm()) < ROUNDOFF * scale
    assert float((torch.cat(trajectory) - cycle.w_bar).norm()) < ROUNDOFF * scale
    _, grad_sq, _, _ = exact_objectives(task.train, torch.cat(trajectory), cfg.alpha)
    if tau == 1:  # no drift: the fixed point is the minimiser of F
        assert cycle.phi < 1e-25
    else:
        assert math.isclose(float(grad_sq.mean()), cycle.phi, rel_tol=ROUNDOFF)


def test_noise_free_drift_is_beta_squared_tau_minus_one_squared_and_under_the_derived_bound():
    r"""The noise-free rows: φ_∞(τ) ≈ Cβ²(τ−1)² (the first-order law of ``noise_free_cycle``'s docstring, to
    2 % where βτL_F is small), under the derived noise-free bound at every τ; the recalled shape τ² has slope
    exactly 2; the slope interval is round-off only."""
    from synthetic import rates

    rows = rates.drift_noise_free_rows([2, 4, 8, 16])
    assert [r.name for r in rows] == ["drift vs tau (noise-free)", "drift vs tau (noise-free, Gamma~1)"]
    for r in rows:
        assert r.extra["bound_holds"] and all(b > m for b, m in zip(r.extra["bound"], r.means))
        assert r.extra["recalled_shape_slope"] == pytest.approx(2.0, abs=1e-9)
        d = r.as_dict()  # exact: no interval beyond the point, no p-value, outside the Holm family
        assert r.high == r.low == r.fitted and d["p_pass"] is None and d["method"] == "exact"
        # the margin is a quarter of the gap to the recalled tau^2, declared from the bound terms alone
        assert d["margin"] == pytest.approx(abs(r.predicted - 2.0) / 4, rel=1e-9)
        assert r.verdict == ("PASS" if abs(r.fitted - r.predicted) <= d["margin"] else "FAIL")
    gamma1 = rows[1]
    beta = 0.06 / 16
    C = [m / (beta * (t - 1)) ** 2 for m, t in zip(gamma1.means, gamma1.xs)]
    assert max(C) / min(C) < 1.02, C


def test_batched_run_dirs_have_the_runner_layout(tmp_path):
    from perfedavg.runs.config import read_toml
    from synthetic import rates

    cfg = rates._config({"K": 5, "tau": 2, "task": {"support": 60, "n_clients": 6}, "D": 20, "D1": 20, "D2": 20})
    (res,) = rates.run_sweep([cfg], [0, 1], tmp_path, track_inner=True, progress=False)
    run = tmp_path / seed_batch_name(cfg) / "seed1"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("status", "final", "wall_seconds", "task", "code_version"):
        assert key in summary, key
    assert summary["status"] == "finished" and summary["final"]["round"] == 5
    assert read_toml(run / "config.toml")["seed"] == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert set(records[-1]) == {"round", "F", "grad_norm_sq_F", "f", "grad_norm_sq_f", "stationarity_avg"}
    # Φ_K is the running mean of the per-round φ_k
    assert np.allclose(res["stationarity"][:, -1], res["phi"].mean(1), rtol=1e-12)


def test_smoke_rate_table(tmp_path):
    r"""The whole table at smoke scale (2 seeds, 2-3 points per row, ~6 mixing times per floor): every row is
    present with finite numbers, a verdict among PASS / FAIL / INCONCLUSIVE, its margin, p-values (Holm-adjusted
    ones at least as large as the raw ones) and the correction.  Robust at this scale: the HF error's δ² law
    PASSes (one exponent per seed, nearly identical), and no sampled row FAILs where the derived bound term is
    the measured law's shape; the derived bound holds at every K and every run stays in the domain of B, σ_G."""
    from synthetic import rates

    rows, bound = rates.rate_table(tmp_path, [0, 1], progress=False, length="smoke")
    names = [r.name for r in rows]
    assert names == [
        "opt. term vs beta",
        "floor vs beta",
        "drift vs tau",
        "drift vs tau (noise-free)",
        "drift vs tau (noise-free, Gamma~1)",
        "floor vs D",
        "floor vs TV",
        "floor vs W1",
        "FO floor vs alpha",
        "HF error vs delta",
        "HF error vs delta (Lipschitz Hessian)",
        "exact bias vs D (rho > 0)",
    ]  # the stochastic Γ≈1 drift row: --full
    for r in rows:
        d = r.as_dict()
        assert d["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE") and not d["pass_needs_tolerance"]
        assert d["margin"] > 0 and d["assumption"] and d["correction"]
        assert math.isfinite(r.predicted) and math.isfinite(r.fitted) and r.low <= r.fitted <= r.high, d
        assert len(r.xs) == len(r.means) == len(r.halfwidths) >= 2
        if d["method"] != "exact":
            assert d["p_pass_holm"] >= d["p_pass"] and d["p_fail_holm"] >= d["p_fail"]
            assert "Holm" in d["correction"]
    verdict = {r.name: r.verdict for r in rows}
    assert verdict["HF error vs delta"] == "PASS"
    assert all(verdict[n] != "FAIL" for n in ("opt. term vs beta", "floor vs beta", "floor vs D")), verdict
    # the optimization row measures the method's rate: the derived term 2Δ₀/(βτ) within a factor 2-3 of the
    # transient's sum Δ₀/(β(1 − βλ/2)) of gradient descent on a quadratic
    opt = next(r for r in rows if r.name == "opt. term vs beta")
    assert opt.predicted == pytest.approx(-1.0, abs=1e-9) and all(1 < v < 4 for v in opt.extra["bound_over_measured"])
    assert bound["holds_at_every_K"] and bound["domain_respected"]
    assert bound["fedavg"]["holds_at_every_K"], bound["fedavg"]  # FedAvg's own stationarity under its derived bound
    assert len(bound["fedavg"]["rows"]) == max(rates.GRID["smoke"]["K"])
    # the W1 row is not the TV data again: W1 varies at fixed TV
    w1_row = next(r for r in rows if r.name == "floor vs W1")
    assert len(set(w1_row.extra["tv"])) == 1 and w1_row.xs[-1] > 1.5 * w1_row.xs[0]
    # the HF row: Taylor's δ² predicted, theory's bound (exponent 1) as the competitor, the recalled term's slope 1
    hf = next(r for r in rows if r.name == "HF error vs delta")
    assert hf.predicted == pytest.approx(2.0, abs=1e-9) and hf.extra["bound_slope"] == pytest.approx(1.0, abs=1e-9)
    assert hf.extra["recalled_shape_slope"] == pytest.approx(1.0, abs=1e-9)
    text = rates.format_rates(rows, bound)
    assert "PASS" in text and "derived explicit bound" in text and "Holm" in text


@pytest.mark.slow
def test_quick_rate_table_fails_no_row_whose_law_is_the_measured_shape(tmp_path):
    from synthetic import rates

    rows, bound = rates.rate_table(tmp_path, [0, 1, 2], progress=False)
    assert bound["holds_at_every_K"] and bound["domain_respected"]
    verdict = {r.name: r.verdict for r in rows}
    # rows whose predicted law is the measured law's shape never FAIL; the findings (drift, W1) may
    assert all(verdict[n] != "FAIL" for n in ("opt. term vs beta", "floor vs beta", "floor vs D", "FO floor vs alpha"))
    assert verdict["opt. term vs beta"] == verdict["HF error vs delta"] == "PASS", verdict


def _speed_cli(tmp_path, capsys):
    import argparse

    from synthetic import check_cli

    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--speed-sweep", str(tmp_path / "speed"), "--no-progress"])
    status = args.func(args)
    return status, json.loads(capsys.readouterr().out)


def test_speed_sweep_command_prints_json_timing_and_resumes(tmp_path, capsys, monkeypatch):
    """``perfedavg check --speed-sweep DIR`` on a 2-configuration stand-in grid: JSON timing, run directories
    under DIR, and a second call finds every run finished (resume) and reruns nothing."""
    from synthetic import rates, speed

    small = [
        rates._config(
            {
                "K": 3,
                "tau": 2,
                "r": 0.2,
                "alpha": 1.0,
                "beta": b,
                "D": 5,
                "D1": 5,
                "D2": 5,
                "task": {"name": "logistic", "dim": 3, "h": 0.5},
            }
        )
        for b in (0.1, 0.2)
    ]
    monkeypatch.setattr(speed, "speed_grid", lambda K=50: small)
    status, first = _speed_cli(tmp_path, capsys)
    assert status == 0 and first["configs"] == 2 and first["seeds"] == 5 and first["runs"] == 10
    assert first["already_finished"] == 0 and first["seconds"] > 0
    assert len(list((tmp_path / "speed").glob("*/seed*/summary.json"))) == 10
    status, second = _speed_cli(tmp_path, capsys)
    assert status == 0 and second["already_finished"] == 10 and second["ran"] == 0  # in runs, like "runs"
    assert second["seconds"] < first["seconds"]


@pytest.mark.slow
def test_speed_sweep_100_configs_5_seeds_under_10_minutes(tmp_path, capsys):
    """The 100 x 5 logistic sweep finishes in under 10 minutes and resumes at once."""
    status, first = _speed_cli(tmp_path, capsys)
    assert status == 0 and first["configs"] == 100 and first["runs"] == 500
    assert first["seconds"] < 600, first
    _, again = _speed_cli(tmp_path, capsys)
    assert again["already_finished"] == 500 and again["seconds"] < 30, again


#: z of the two-sided 99.7 % normal interval of a Monte Carlo mean (as synthetic.measure.Z)
Z_MC = 3.0


def test_quadratic_sigma_G_and_sigma_H_against_monte_carlo():
    r"""Monte Carlo over θ ~ p_i (10^5 draws per user): at points on the boundary ‖w‖ = W the per-sample gradient
    variance E‖∇l − ∇f_i‖² stays below σ_G² (upper confidence limit) and equals the exact σ_{G,i}²(w); the
    Hessian variance E‖xxᵀ − H_i‖²_op (w-free) equals σ_H² for the worst user within its interval."""
    from synthetic import rates
    from synthetic.common import _client_weights_on_pool, per_sample_grads, sigma_G2_at
    from synthetic.quadratic import client_moments

    _, task = resolve(rates._config({"K": 1, "task": {"support": 100, "h": 0.8}}))
    c, x, y = task.constants, task.train.x.double(), task.train.y.double()
    weights = _client_weights_on_pool(task.train).double()
    H, _ = client_moments(task.train)
    g = torch.Generator().manual_seed(0)
    N = 100_000
    sigma_H2_mc = []
    for i in range(task.n_clients):
        idx = torch.multinomial(weights[i], N, replacement=True, generator=g)
        outer = x[idx, :, None] * x[idx, None, :]
        dev = torch.linalg.matrix_norm(outer - H[i], ord=2).square()
        sigma_H2_mc.append((float(dev.mean()), Z_MC * float(dev.std()) / math.sqrt(N)))
        for _ in range(2):
            w = torch.randn(2, generator=g, dtype=torch.float64)
            w = w / w.norm() * c["w_radius"]
            G = per_sample_grads(task.per_sample_loss, w, x[idx], y[idx])
            sq = (G - G.mean(0)).square().sum(1)
            mean, half = float(sq.mean()), Z_MC * float(sq.std()) / math.sqrt(N)
            assert mean + half <= c["sigma_G"] ** 2  # the stated bound on the domain
            exact = float(sigma_G2_at(task.per_sample_loss, w, task.train)[i])
            assert abs(mean - exact) <= half + 1e-12, (i, mean, exact, half)
    worst_mean, worst_half = max(sigma_H2_mc)
    assert abs(worst_mean - c["sigma_H"] ** 2) <= worst_half, (worst_mean, c["sigma_H"] ** 2, worst_half)


def _fake_table(out, seeds, full=False, progress=True, length=None):
    """A two-row stand-in for ``rate_table`` (planted laws, no runs): exponent 1 against a predicted 2 and the
    predicted law itself, both with 2 % standard errors."""
    from synthetic import rate_rows, rate_stats

    xs = [0.25, 0.5, 1.0]
    rows = []
    for name, p in (("planted exponent 1 vs 2", 1.0), ("planted exponent 2 vs 2", 2.0)):
        pts = [rate_stats.Point(x**p, 0.02 * x**p, 23) for x in xs]
        rows.append(rate_rows.points_row(name, xs, pts, [x**2 for x in xs], [x**2 for x in xs], ("x^1", -1.0)))
    rate_stats.assign_verdicts([r.judgement for r in rows])
    bound = {"holds_at_every_K": True, "domain_respected": True, "rows": [{"K": 1}]}
    return rows, bound


def _check(argv):
    import argparse

    from synthetic import check_cli

    parser = argparse.ArgumentParser()
    check_cli.register(parser.add_subparsers())
    args = parser.parse_args(["check", *argv])
    return args.func(args)


def test_rates_json_path_writes_verdicts_p_values_margins_and_correction(tmp_path, monkeypatch, capsys):
    from synthetic import rate_report, rates

    monkeypatch.setattr(rates, "rate_table", _fake_table)
    monkeypatch.setattr(rate_report, "format_rates", lambda rows, bound: "table")
    path = tmp_path / "rates.json"
    assert _check(["--rates", "--no-progress", "--out", str(tmp_path / "runs"), "--json", str(path)]) == 0
    assert "table" in capsys.readouterr().out
    record = json.loads(path.read_text())
    assert record["statistics"]["family_level"] == 0.05 and "Holm" in record["statistics"]["correction"]
    assert record["verdicts"] == {"PASS": 1, "FAIL": 1, "INCONCLUSIVE": 0}
    wrong, right = record["rows"]
    assert wrong["verdict"] == "FAIL" and right["verdict"] == "PASS"
    for row in (wrong, right):
        for key in ("p_pass", "p_fail", "p_pass_holm", "p_fail_holm", "low", "high", "margin", "correction"):
            assert row[key] is not None, key
        assert row["margin"] == pytest.approx(0.25) and row["interval_level"] == pytest.approx(0.9)
    assert wrong["high"] < 2 - wrong["margin"] and 2 - right["margin"] < right["low"] < right["high"] < 2.25
    # --json alone prints the JSON instead of the table
    assert _check(["--rates", "--no-progress", "--out", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdicts"]["FAIL"] == 1


def test_rates_json_path_errors_are_one_line(tmp_path):
    from perfedavg.errors import UsageError

    with pytest.raises(UsageError, match="--json PATH only applies with --rates"):
        _check(["--json", str(tmp_path / "x.json")])
    with pytest.raises(UsageError, match="--json"):
        _check(["--rates", "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "missing" / "x.json")])


def test_exact_bias_enumeration_matches_a_plain_loop_over_ordered_batches():
    """Every ordered batch of size 3 from 3 points (27 of them, product probabilities), plain float64 loop,
    against the multinomial enumeration of :func:`synthetic.rate_bias.exact_bias`."""
    import itertools

    from perfedavg.runs.registry import build_task
    from synthetic import rate_bias

    task = build_task({"name": "logistic"}).to(torch.float64)
    X, Y = task.train.x[:3].double(), task.train.y[:3]
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    w = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss, alpha = task.per_sample_loss, 0.7

    def grad_f(v):
        v = v.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad((p * loss(v, X, Y)).sum(), v)
        return g

    def grad_l(v, s):
        v = v.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(v, X[s : s + 1], Y[s : s + 1]).sum(), v)
        return g

    mean = torch.zeros_like(w)
    for batch in itertools.product(range(3), repeat=3):
        prob = float(p[batch[0]] * p[batch[1]] * p[batch[2]])
        g_D = sum(grad_l(w, s) for s in batch) / 3
        mean += prob * grad_f(w - alpha * g_D)
    H = torch.autograd.functional.hessian(lambda v: (p * loss(v, X, Y)).sum(), w)
    plain = float(((torch.eye(len(w), dtype=w.dtype) - alpha * H) @ (mean - grad_f(w - alpha * grad_f(w)))).norm())
    assert rate_bias.exact_bias(loss, w, X, Y, p, alpha, 3) == pytest.approx(plain, rel=1e-10)
    assert len(rate_bias.compositions(64, 3)) == math.comb(66, 2)
    assert rate_bias.multinomial_weights(rate_bias.compositions(5, 3), np.array([0.5, 0.3, 0.2])).sum() == (
        pytest.approx(1.0, rel=1e-12)
    )


def test_exact_bias_row_is_second_order_and_rejects_the_bounds_exponent():
    """The exact bias falls as D^-1 (PASS against the Taylor law); the same numbers judged against the derived
    bound's D^-1/2 FAIL (planted: the first-order law); on the quadratic task (ρ = 0: ∇f affine) the bias is 0."""
    from synthetic import rate_bias, rate_stats

    row = rate_bias.exact_bias_row()
    assert row.verdict == "PASS" and abs(row.fitted + 1) < row.judgement.margin
    Ds = row.xs
    planted = rate_stats.judge_exact(rate_stats.local_slope(Ds, np.divide(row.means, row.extra["bound"])), 0.125)
    assert planted.verdict == "FAIL"
    from synthetic import rates

    _, task = resolve(rates._config({"K": 1, "task": {"support": 100}}))
    X, Y = task.train.x[:3].double(), task.train.y[:3].double()
    w = torch.tensor([0.3, -0.4], dtype=torch.float64)
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    assert rate_bias.exact_bias(task.per_sample_loss, w, X, Y, p, 0.5, 8) < 1e-15


def test_opt_term_row_fails_a_wrongly_rated_and_a_stalling_method(tmp_path, monkeypatch):
    """The optimization row at two step sizes (β = 0.08, 0.16; floors taken as 0: K·floor ≈ 1e-4 of the sums):
    Per-FedAvg as it is PASSes (exponent −1); planted, the same row FAILs for a method whose effective step is
    β²/0.16 (a wrong rate: its transient sums to ∝ β⁻²) and for a method that stalls 0.02 above the floor (its
    sum grows with K whatever the step)."""
    from synthetic import rate_rows, rate_stats

    def zero_floors(name, changes):
        return None, None, [(rate_stats.Point(0.0, 0.0, math.inf), 0.0) for _ in changes]

    real_sweep = rate_rows.run_sweep

    def judged(sweep):
        monkeypatch.setattr(rate_rows, "run_sweep", sweep)
        row = rate_rows.opt_term_row([0.08, 0.16], [0, 1, 2], tmp_path / sweep.__name__, zero_floors, False, [])
        rate_stats.assign_verdicts([row.judgement])
        return row

    def as_it_is(cfgs, seeds, out, **kw):
        return real_sweep(cfgs, seeds, out, **kw)

    def wrong_rate(cfgs, seeds, out, **kw):
        return real_sweep([c.replace(beta=c.beta**2 / 0.16) for c in cfgs], seeds, out, **kw)

    def stalls(cfgs, seeds, out, **kw):
        res = real_sweep(cfgs, seeds, out, **kw)
        for r in res:
            r["stationarity"] = r["stationarity"] + 0.02
        return res

    assert judged(as_it_is).verdict == "PASS"
    wrong = judged(wrong_rate)
    assert wrong.verdict == "FAIL" and wrong.fitted == pytest.approx(-2.0, abs=0.1)
    assert judged(stalls).verdict == "FAIL"


def test_hf_exponent_is_two_sided_each_row_fails_against_the_others_law():
    """At a Hessian kink the central difference errs as δ (theory's bound ρδ‖g‖²/2 attained up to a constant):
    PASS against δ¹; on the smooth logistic loss it errs as δ²: PASS against δ² (smoke: 2 seeds).  Planted: each
    row's numbers judged against the other row's law FAIL."""
    from synthetic import rate_hf, rate_stats

    kink = rate_hf.hf_kink_row()
    assert kink.verdict == "PASS" and kink.predicted == pytest.approx(1.0, abs=1e-9)
    ratio = np.divide(kink.means, kink.extra["bound"])
    assert ratio.max() / ratio.min() < 1 + 1e-6 and ratio.max() <= 1  # under the bound, a constant fraction of it
    as_taylor = rate_stats.judge_exact(rate_stats.local_slope(kink.xs, ratio / np.array(kink.xs)), 0.25)
    assert as_taylor.verdict == "FAIL"
    smooth = rate_hf.hf_delta_row([0, 1])
    rate_stats.assign_verdicts([smooth.judgement])
    assert smooth.verdict == "PASS" and smooth.predicted == pytest.approx(2.0, abs=1e-9)
    curves = np.array([smooth.extra["all_means"][i] for i in range(len(smooth.xs))])
    planted = rate_stats.judge_exact(rate_stats.local_slope(smooth.xs, curves / np.array(smooth.xs)), 0.25)
    assert planted.verdict == "FAIL"  # the smooth row's errors against the bound's δ¹
