"""theory/: symbolic and numeric checks of the bounds (fast; no torch)."""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from perfedavg.errors import UsageError
from theory import checks_api, distances, lemmas, theorem
from theory import symbols as S
from theory.constants import Constants

BASE = dict(L=1.0, rho=1.0, B=1.0, sigma_G=1.0, sigma_H=1.0, gamma_G=0.5, gamma_H=0.5, F0_gap=1.0)
RTOL = 1e-9  # lambdified vs symbolic


def make(**kw) -> Constants:
    return Constants.from_dict({**BASE, **kw})


def random_constants(rng, k=6):
    """k random valid Constants (αL ≤ 1, small β)."""
    out = []
    for _ in range(k):
        L = float(rng.uniform(0.2, 5))
        tau = int(rng.integers(1, 12))
        out.append(
            Constants(
                L=L,
                rho=float(rng.uniform(0, 3)),
                B=float(rng.uniform(0, 3)),
                sigma_G=float(rng.uniform(0, 2)),
                sigma_H=float(rng.uniform(0, 2)),
                gamma_G=float(rng.uniform(0, 1)),
                gamma_H=float(rng.uniform(0, 1)),
                F0_gap=float(rng.uniform(0.1, 5)),
                alpha=float(rng.uniform(0, 1 / L)),
                beta=float(rng.uniform(1e-4, 1e-2)) / (tau * L * 10),
                delta=float(rng.uniform(1e-4, 0.1)),
                tau=tau,
                K=int(rng.integers(1, 5000)),
                r=0.25,
                n=int(rng.choice([4, 8, 40])),
                D=int(rng.integers(1, 64)),
                D1=int(rng.integers(1, 64)),
                D2=int(rng.integers(1, 64)),
            )
        )
    return out


def all_statements():
    sts = list(lemmas.all_lemmas()) + list(distances.all_distance_bounds())
    for v in lemmas.VARIANTS:
        sts += list(theorem.all_theorem_statements(v))
    return sts


EXTRA = dict(tv=0.3, w1=0.7, L_theta=1.5, rho_theta=0.4, g_norm=1.2)


# --------------------------------------------------------------------------- torch-free
def _no_torch(code: str):
    code += "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_theory_never_imports_torch():
    _no_torch(
        "import argparse, theory, theory.symbols, theory.constants, theory.statement, theory.lemmas,"
        " theory.distances, theory.theorem, theory.checks_api, theory.cli\n"
        "p = argparse.ArgumentParser(); theory.cli.register(p.add_subparsers())\n"
        "a = p.parse_args(['bounds', '--L', '1', '--rho', '1', '--B', '1', '--sigma-G', '1', '--sigma-H', '1',"
        " '--gamma-G', '1', '--gamma-H', '1', '--F0-gap', '1'])\n"
        "assert a.func(a) == 0\n"
    )


def test_perfedavg_bounds_command_does_not_import_torch():
    """Project-level: building the whole CLI parser and running `bounds` stays torch-free
    (a failure here may come from another subcommand's module-level import)."""
    _no_torch("from perfedavg.cli import main\nassert main(['bounds', '--latex']) == 0\n")


# --------------------------------------------------------------------------- constants
def test_constants_from_dict_toml_roundtrip(tmp_path):
    c = make(alpha=0.1, tau=5)
    p = tmp_path / "c.toml"
    p.write_text(c.to_toml())
    assert Constants.from_toml(p) == c
    p.write_text("[constants]\n" + c.to_toml())
    assert Constants.from_toml(p, {"beta": 0.002}).beta == 0.002
    assert all(isinstance(v, float) for v in c.as_dict().values())


@pytest.mark.parametrize(
    "bad, word",
    [
        (dict(L=0.0), "L"),
        (dict(alpha=2.0), "alpha"),
        (dict(tau=2.5), "tau"),
        (dict(r=1.5), "r"),
        (dict(r=0.33, n=50), "r*n"),
        (dict(sigma_G=-1.0), "sigma_G"),
        (dict(beta=float("nan")), "beta"),
        (dict(K=0), "K"),
        (dict(D2="x"), "D2"),
    ],
)
def test_constants_validation_names_the_field(bad, word):
    with pytest.raises(UsageError) as e:
        make(**bad)
    assert word in str(e.value) and "\n" not in str(e.value)


def test_constants_unknown_and_missing():
    with pytest.raises(UsageError, match="unknown constant"):
        Constants.from_dict({**BASE, "Lipschitz": 1})
    with pytest.raises(UsageError, match="missing constant"):
        Constants.from_dict({"L": 1})


# --------------------------------------------------------------------------- symbolic == numeric
def test_lambdified_agrees_with_symbolic_on_grid():
    rng = np.random.default_rng(0)
    for c in random_constants(rng, 3):
        vals = {**c.as_dict(), **EXTRA}
        for st in all_statements():
            sym = float(st.expr.subs({s: vals[s.name] for s in st.expr.free_symbols}).evalf(30))
            num = st(c, **EXTRA)
            assert math.isclose(num, sym, rel_tol=RTOL, abs_tol=1e-300), (st.key, num, sym)
            if st.terms:
                assert math.isclose(sum(st.evaluate_terms(c, **EXTRA).values()), num, rel_tol=1e-9)


def test_evaluator_broadcasts_arrays():
    st = lemmas.smoothness_derived()
    a = np.linspace(0, 1, 5)
    out = st(make(), alpha=a)
    assert out.shape == (5,)
    np.testing.assert_allclose(out, [st(make(alpha=x)) for x in a])


def test_every_statement_has_provenance_and_latex():
    for st in all_statements():
        assert st.provenance in ("sure", "recalled", "derived")
        assert st.latex and st.ref and st.meaning
        assert f"[{st.provenance}]" in st.label


# --------------------------------------------------------------------------- derived vs recalled
@pytest.mark.parametrize("key", ["L_F", "bias", "sigma_F2", "gamma_F2"])
def test_derived_lemma_is_within_recalled_when_alpha_L_le_1(key):
    """Our derived constants are never above the recalled ones (so the recalled forms
    are consistent with the derivation, only looser), on a random grid."""
    rng = np.random.default_rng(1)
    for c in random_constants(rng, 40):
        rec, der = checks_api.lemma_bounds(c)[key]
        assert rec.provenance == "recalled" and der.provenance == "derived"
        assert der.value <= rec.value * (1 + 1e-12) + 1e-15


# --------------------------------------------------------------------------- limits
def test_alpha_to_zero_gives_fedavg_bound():
    fed = theorem.fedavg_bound().expr
    for v in lemmas.VARIANTS:
        st = theorem.convergence_bound_derived(v)
        at0 = st.expr.subs(S.alpha, 0).subs(S.D1, S.D)
        assert sp.simplify(at0 - fed) == 0, v
        # and continuity: the limit α → 0 of the numeric bound
        c = make(alpha=1e-9, D1=40, D=40)
        assert math.isclose(st(c), theorem.fedavg_bound()(c), rel_tol=1e-6)


def test_zero_heterogeneity_removes_heterogeneity_terms():
    zero = {S.gamma_G: 0, S.gamma_H: 0}
    assert lemmas.dissimilarity_derived().expr.subs(zero) == 0
    assert lemmas.dissimilarity_recalled().expr.subs(zero) == 0
    for v in lemmas.VARIANTS:
        st = theorem.convergence_bound_derived(v)
        expect = sp.Add(
            *[
                e
                for _, e in theorem.local_sgd_bound(
                    lemmas.smoothness_derived().expr,
                    lemmas.direction_bias(v).expr,
                    lemmas.direction_mse(v).expr,
                    sp.Integer(0),
                )
            ]
        )
        assert sp.simplify(st.expr.subs(zero) - expect) == 0
        shape = dict(theorem.convergence_bound_recalled(v).terms)
        assert shape["client sampling"].subs(zero) == 0
    # FedAvg with γ_G = 0 and full participation (r = 1) and τ = 1: only the optimization
    # and stochastic terms remain (classical SGD bound 2Δ/(βK) + Lβσ²/(nD))
    fed = theorem.fedavg_bound().expr.subs({S.gamma_G: 0, S.r: 1, S.tau: 1})
    assert sp.simplify(fed - (2 * S.F0_gap / (S.beta * S.K) + S.L * S.beta * S.sigma_G**2 / (S.n * S.D))) == 0


def test_bias_floor_is_the_only_term_left_as_K_to_infinity():
    c = make()
    rep = checks_api.convergence(c.replace(K=1e12))
    assert rep.derived_terms["optimization"] < 1e-8
    assert rep.derived_terms["bias floor"] > 0


# --------------------------------------------------------------------------- step size, corollary
def test_step_size_conditions():
    c = make(beta=1e-3)
    assert theorem.condition_ok(c) == {"recalled": True, "derived": True}
    bad = c.replace(beta=1.0)
    assert theorem.condition_ok(bad)["derived"] is False
    assert checks_api.convergence(bad).derived == math.inf
    # recalled condition implies the derived one (1/(10τL_F^rec) < 1/(√6 τ L_F^der))
    for cc in random_constants(np.random.default_rng(2), 30):
        assert theorem.step_size_recalled()(cc) < theorem.step_size_derived()(cc)


@pytest.mark.parametrize("variant", lemmas.VARIANTS)
@pytest.mark.parametrize("kw", [dict(), dict(r=1.0, n=10), dict(gamma_G=0.0, gamma_H=0.0, r=0.5, n=4)])
def test_corollary_condition_holds_past_threshold(variant, kw):
    c = make(**kw)
    cor = theorem.corollary(variant)
    k0 = cor.threshold_K(c)
    assert math.isfinite(k0) and k0 >= 1
    for Kv in np.geomspace(k0, k0 * 1e9, 25):
        assert cor.condition_holds(c, Kv)
        assert cor.condition_holds(c, Kv, continuous=False)  # integer τ = ⌊K^{1/3}⌋
        b, t = cor.choose(c, Kv)
        assert theorem.condition_ok(c.replace(beta=b, tau=t, K=round(Kv)))["derived"]
    if k0 > 1.01:
        assert not cor.condition_holds(c, k0 * 0.99)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(), -0.5),  # partial participation, heterogeneity
        (dict(r=1.0, n=10), -2 / 3),  # full participation
    ],
)
def test_corollary_rate_exponent(kw, expected):
    c = make(**kw)
    cor = theorem.corollary("exact")
    assert cor.claimed_exponent(c) == pytest.approx(expected)
    assert cor.measured_exponent(c) == pytest.approx(expected, abs=0.01)


def test_corollary_rate_exponent_symbolic_limit():
    """sympy: lim_{K→∞} log(bound − floor)/log K equals the claimed exponent."""
    for kw in (dict(), dict(r=1.0, n=10)):
        c = make(**kw)
        cor = theorem.corollary("exact")
        vals = {s: sp.nsimplify(v) for s, v in ((getattr(S, k), v) for k, v in c.as_dict().items()) if s != S.K}
        g = (cor.bound_of_K().expr - cor.floor()).subs(vals)
        # leading power: K*d/dK log g → exponent
        e = sp.limit(sp.log(g) / sp.log(S.K), S.K, sp.oo)
        assert float(e) == pytest.approx(cor.claimed_exponent(c), abs=1e-12)


# --------------------------------------------------------------------------- docstrings
MODULES = [
    "theory.symbols",
    "theory.constants",
    "theory.statement",
    "theory.lemmas",
    "theory.distances",
    "theory.theorem",
    "theory.checks_api",
    "theory.cli",
]
FORMULA_MARKS = ("=", "≤", "<", ":math:", "‖")


def _public(mod):
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


@pytest.mark.parametrize("modname", MODULES)
def test_every_public_function_has_a_docstring_with_a_formula(modname):
    mod = importlib.import_module(modname)
    assert mod.__doc__
    for name, obj in _public(mod):
        doc = inspect.getdoc(obj) or ""
        assert doc, f"{modname}.{name} has no docstring"
        if modname in ("theory.lemmas", "theory.distances", "theory.theorem", "theory.checks_api"):
            assert any(m in doc for m in FORMULA_MARKS), f"{modname}.{name}: no formula in docstring"


# --------------------------------------------------------------------------- numeric sanity (numpy toy)
# 1-D logistic: l(w; θ) = log(1 + exp(−(w − θ))).  l' = −σ(θ − w) ∈ (−1, 0): B = 1;
# l'' = σ(1−σ) ≤ 1/4: L = 1/4; |l'''| = |σ(1−σ)(1−2σ)| ≤ 1/(6√3): ρ = 1/(6√3).
def _sig(x):
    return 1 / (1 + np.exp(-x))


def _d1(w, th):
    return -_sig(th - w)


def _d2(w, th):
    s = _sig(th - w)
    return s * (1 - s)


TOY = dict(L=0.25, B=1.0, rho=1 / (6 * math.sqrt(3)))


def _grad_F(w, thetas, alpha):
    """∇F for f(w) = mean_θ l(w;θ): (1 − α f''(w)) f'(w − α f'(w))."""
    f1 = _d1(w[:, None], thetas[None]).mean(1)
    f2 = _d2(w[:, None], thetas[None]).mean(1)
    wt = w - alpha * f1
    return (1 - alpha * f2) * _d1(wt[:, None], thetas[None]).mean(1)


def test_toy_smoothness_of_F_within_derived_L_F():
    thetas = np.array([-1.0, 0.3, 2.0])
    w = np.linspace(-12, 12, 20001)
    for alpha in (1.0, 2.0, 4.0):  # up to 1/L
        gF = _grad_F(w, thetas, alpha)
        measured = np.max(np.abs(np.diff(gF)) / np.diff(w))
        c = make(**TOY, alpha=alpha)
        bound = lemmas.smoothness_derived()(c)
        assert measured <= bound, (alpha, measured, bound)
        assert bound <= lemmas.smoothness_recalled()(c)


def test_toy_hf_finite_difference_error_within_bound():
    thetas = np.array([-1.0, 0.3, 2.0])
    w = np.linspace(-6, 6, 241)
    for delta in (1e-1, 1.0, 3.0):
        for g in (0.5, 1.0):
            f1 = lambda x: _d1(x[:, None], thetas[None]).mean(1)  # noqa: E731
            fd = (f1(w + delta * g) - f1(w - delta * g)) / (2 * delta)
            exact = _d2(w[:, None], thetas[None]).mean(1) * g
            measured = np.max(np.abs(fd - exact))
            bound = lemmas.hf_hvp_error()(make(**TOY, delta=delta), g_norm=g)
            assert measured <= bound, (delta, g, measured, bound)


def test_toy_dissimilarity_within_derived_gamma_F():
    users = [np.array([-2.0, -1.0]), np.array([0.0, 0.5]), np.array([1.5, 3.0])]
    w = np.linspace(-8, 8, 1601)
    g_i = np.stack([_d1(w[:, None], u[None]).mean(1) for u in users])
    h_i = np.stack([_d2(w[:, None], u[None]).mean(1) for u in users])
    gamma_G2 = np.max(np.mean((g_i - g_i.mean(0)) ** 2, 0)) * 1.0001
    gamma_H2 = np.max(np.mean((h_i - h_i.mean(0)) ** 2, 0)) * 1.0001
    for alpha in (1.0, 4.0):
        gF = np.stack([_grad_F(w, u, alpha) for u in users])
        measured = np.max(np.mean((gF - gF.mean(0)) ** 2, 0))
        c = make(**TOY, alpha=alpha, gamma_G=math.sqrt(gamma_G2), gamma_H=math.sqrt(gamma_H2))
        bound = lemmas.dissimilarity_derived()(c)
        assert measured <= bound, (alpha, measured, bound)


def test_toy_bias_and_variance_within_derived_by_monte_carlo():
    """Exact local step on a finite data set, batches with replacement; E over 200k draws."""
    rng = np.random.default_rng(3)
    thetas = np.array([-3.0, -0.5, 0.0, 1.0, 4.0])
    grid = np.linspace(-10, 10, 4001)
    sigG2 = np.max(np.var(_d1(grid[:, None], thetas[None]), axis=1))
    sigH2 = np.max(np.var(_d2(grid[:, None], thetas[None]), axis=1))
    alpha, D, D1, D2, N = 4.0, 2, 3, 2, 200_000
    c = make(
        **TOY, alpha=alpha, sigma_G=math.sqrt(sigG2) * 1.0001, sigma_H=math.sqrt(sigH2) * 1.0001, D=D, D1=D1, D2=D2
    )
    for w0 in (-1.0, 0.5, 2.0):
        truth = _grad_F(np.array([w0]), thetas, alpha)[0]
        bD = thetas[rng.integers(0, 5, (N, D))]
        b1 = thetas[rng.integers(0, 5, (N, D1))]
        b2 = thetas[rng.integers(0, 5, (N, D2))]
        wt = w0 - alpha * _d1(w0, bD).mean(1)
        est = (1 - alpha * _d2(w0, b2).mean(1)) * _d1(wt[:, None], b1).mean(1)
        err = est - truth
        bias = abs(err.mean()) + 4 * err.std() / math.sqrt(N)
        mse = np.mean(err**2) * (1 + 4 * math.sqrt(2 / N) * 3)  # generous CI on a mean of squares
        assert bias <= lemmas.bias_derived()(c)
        assert mse <= lemmas.variance_derived()(c), (w0, mse, lemmas.variance_derived()(c))


# --------------------------------------------------------------------------- derived bound vs a simulation
def _simulate_perfedavg(variant, alpha, beta, tau, K, r, D=2, D1=2, D2=2, S=2000, seed=0):
    """Algorithm 1 on four 1-D logistic users (l = log(1+exp(−y(w−θ)))), numpy, S seeds.
    Returns (constants, mean over seeds of Φ_K, its upper 3-sigma limit)."""
    from scipy.optimize import minimize_scalar

    TH = np.array([[-2.0, -1.0, 0.5, 1.0], [0.0, 0.5, 2.0, 3.0], [-1.0, 1.0, 1.5, 4.0], [-3.0, 0.0, 0.2, 2.0]])
    Y = np.array([[1, -1, 1, -1.0], [1, 1, -1, -1.0], [-1, 1, 1, -1.0], [1, -1, -1, 1.0]])
    n = len(TH)
    m = round(r * n)

    def d1(w, th, y):
        return -y * _sig(-y * (w - th))

    def d2(w, th, y):
        s = _sig(-y * (w - th))
        return s * (1 - s)

    def f1(w, i):
        return d1(np.asarray(w)[..., None], TH[i], Y[i]).mean(-1)

    def gF(w):
        return np.mean(
            [
                (1 - alpha * d2(np.asarray(w)[..., None], TH[i], Y[i]).mean(-1)) * f1(w - alpha * f1(w, i), i)
                for i in range(n)
            ],
            0,
        )

    def F(w):
        return np.mean(
            [
                np.log1p(np.exp(-Y[i] * (np.asarray(w - alpha * f1(w, i))[..., None] - TH[i]))).mean(-1)
                for i in range(n)
            ],
            0,
        )

    grid = np.linspace(-30, 30, 30001)
    per = np.stack([d1(grid[:, None], TH[i], Y[i]) for i in range(n)])
    per2 = np.stack([d2(grid[:, None], TH[i], Y[i]) for i in range(n)])
    g, h = per.mean(-1), per2.mean(-1)
    j = int(np.argmin(F(grid)))
    f_star = minimize_scalar(F, bracket=(grid[j - 5], grid[j], grid[j + 5])).fun
    w0 = 6.0
    c = Constants(
        **TOY,
        sigma_G=math.sqrt(per.var(-1).max()) * 1.001,
        sigma_H=math.sqrt(per2.var(-1).max()) * 1.001,
        gamma_G=math.sqrt(((g - g.mean(0)) ** 2).mean(0).max()) * 1.001,
        gamma_H=math.sqrt(((h - h.mean(0)) ** 2).mean(0).max()) * 1.001,
        F0_gap=float(F(w0) - f_star),
        alpha=alpha,
        beta=beta,
        delta=1e-3,
        tau=tau,
        K=K,
        r=r,
        n=n,
        D=D,
        D1=D1,
        D2=D2,
    )
    rng = np.random.default_rng(seed)
    w, acc = np.full(S, w0), np.zeros(S)
    for _ in range(K):
        A = np.argsort(rng.random((S, n)), 1)[:, :m]
        W, thA, yA = np.repeat(w[:, None], m, 1), TH[A], Y[A]

        def batch(sz, thA=thA, yA=yA):
            idx = rng.integers(0, TH.shape[1], (S, m, sz))
            return np.take_along_axis(thA, idx, 2), np.take_along_axis(yA, idx, 2)

        for _t in range(tau):
            acc += gF(W.mean(1)) ** 2
            wt = W - alpha * d1(W[..., None], *batch(D)).mean(-1)
            v = d1(wt[..., None], *batch(D1)).mean(-1)
            tb, yb = batch(D2)
            if variant == "exact":
                d = (1 - alpha * d2(W[..., None], tb, yb).mean(-1)) * v
            elif variant == "fo":
                d = v
            else:
                dl = c.delta
                d = v - alpha * (
                    d1((W + dl * v)[..., None], tb, yb).mean(-1) - d1((W - dl * v)[..., None], tb, yb).mean(-1)
                ) / (2 * dl)
            W = W - beta * d
        w = W.mean(1)
    acc /= K * tau
    return c, acc.mean(), acc.mean() + 3 * acc.std() / math.sqrt(S)


@pytest.mark.parametrize(
    "variant, kw",
    [
        ("exact", dict(alpha=2.0, beta=0.2, tau=2, K=30, r=0.5)),
        ("fo", dict(alpha=2.0, beta=0.1, tau=3, K=15, r=0.5)),
        ("hf", dict(alpha=1.0, beta=0.1, tau=3, K=15, r=1.0)),
    ],
)
def test_derived_convergence_bound_holds_on_a_simulated_toy(variant, kw):
    c, measured, high = _simulate_perfedavg(variant, **kw)
    rep = checks_api.convergence(c, variant)
    assert rep.condition["derived"]
    row = checks_api.compare(checks_api.BoundValue("bound", "Φ_K", "", "derived", rep.derived, "", ""), measured, high)
    assert row.verdict == "HOLDS", (measured, rep.derived_terms)
    assert 0.01 < row.ratio < 1


def test_checks_api_rows_and_keys():
    c = make()
    b = checks_api.lemma_bounds(c)
    assert "hf_hvp_error" not in b and "gamma_G2_tv" not in b  # need extras
    b = checks_api.lemma_bounds(c, **EXTRA)
    assert {
        "L_F",
        "bias",
        "sigma_F2",
        "gamma_F2",
        "hf_hvp_error",
        "gamma_G2_tv",
        "gamma_H2_tv",
        "gamma_G2_w1",
        "gamma_H2_w1",
        "bias_fo",
        "mse_fo",
        "bias_hf",
        "mse_hf",
    } <= set(b)
    assert b["hf_hvp_error"][0].value == pytest.approx(c.rho * c.delta * 1.2**2 / 2)
    rows = [checks_api.compare(b["L_F"][0], 5.0), checks_api.compare(b["L_F"][1], 0.5)]
    assert [r.verdict for r in rows] == ["FAILS", "HOLDS"]
    assert not checks_api.must_hold(rows[0]) and checks_api.must_hold(rows[1])
    text = checks_api.format_rows(rows)
    assert "recalled" in text and "derived" in text and "FAILS" in text and "ratio" in text


def test_corollary_beta_is_solved_with_sympy_and_is_the_minimiser():
    """DERIVATIONS §8: beta(K) is the positive root of d/dbeta [2 D0/(beta tau K) + beta C] = 0 (sympy.solve), equal
    to sqrt(2 D0/(tau K C)), and the corollary's numeric choice uses the same value."""
    import math

    import sympy as sp

    from theory import theorem
    from theory.symbols import F0_gap, K, tau

    root = theorem.beta_star_in_C()
    assert sp.simplify(root - sp.sqrt(2 * F0_gap / (tau * K * theorem.C_LIN))) == 0
    g = 2 * F0_gap / (sp.Symbol("b", positive=True) * tau * K) + sp.Symbol("b", positive=True) * theorem.C_LIN
    assert sp.simplify(sp.diff(g, sp.Symbol("b", positive=True)).subs(sp.Symbol("b", positive=True), root)) == 0
    c = Constants(L=1.0, rho=0.5, B=1.0, sigma_G=1.0, sigma_H=1.0, gamma_G=0.3, gamma_H=0.2, F0_gap=2.0, K=1000.0)
    cor = theorem.corollary("exact")
    b_num, t = cor.choose(c, 1000.0)
    vals = {**c.as_dict(), "tau": t}
    b_sym = float(cor.beta_star.subs({s: vals[s.name] for s in cor.beta_star.free_symbols}))
    assert math.isclose(b_num, b_sym, rel_tol=1e-12)
