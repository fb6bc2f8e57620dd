r"""``perfedavg check --tightness``: the worst-case and the data-dependent bound on Φ_K beside the measured Φ_K.

Rows (every stochastic Φ_K row of the project at its largest K, two rows started at the minimiser of F, and the
noise-free drift rows):

* ``K-row``: the rate table's K-row (:data:`synthetic.rate_runs.BASE`, K = the quick grid's largest);
* ``flagship (exact | hf | fo)``: the flagship figure's setting (:data:`FLAGSHIP`, its quick length);
* ``logistic, paper-like``: :data:`LOGISTIC` (τ = 10, r = 0.2, D = D' = D'' = 40, the paper's α = 0.01);
* ``noise floor``: :data:`FLOOR`, the K-row's task started at the minimiser of F, where the stochastic term is
  the whole bound;
* ``identical users``: :data:`IDENTICAL`, one user in ten sampled (r = 0.1), τ = 8, started at the minimiser:
  the drift is all noise, and Step 6's term (the sampled model's distance from the users' average) is large;
* ``noise-free``: the drift rows of ``check --rates --full`` without noise (quadratic, h = 1, r = 1,
  whole-distribution batches, K → ∞, τ up to 16), with the cost of each step of the proof
  (:func:`noise_free_row`).

The noise floor, the identical users and the noise-free rows at τ = 16 are there for :mod:`synthetic.bound_mutations`:
each is where a term of the bound is large enough for a wrong formula in it to show (DERIVATIONS.md §10.5).  The
noise floor and the identical users take β beyond the worst-case bound's step-size condition
(Γ = 1 − 6β²τ²L_F² ≤ 0), so their worst-case column is infinite.

Columns (printed by :mod:`synthetic.tightness_cli`): the **worst-case** derived bound
(:func:`theory.checks_api.convergence` on the task's global constants,
γ from the TV statements, Δ₀ = F(w₀)); the **data-dependent** bound (:func:`theory.data_dependent.data_dependent_bound`
on the constants :mod:`synthetic.region` measures over the region the run visits, Δ₀ = F(w₀) − F*); the
**measured** Φ_K (the engine's runs, :func:`synthetic.batched.run_seeds`, mean over seeds with its 95 % interval)
and, on the quadratic task, an unbiased low-variance estimate of E Φ_K
(:func:`synthetic.region.expected_stationarity`), which is what the bound bounds; the two factors bound / measured.

:func:`bound_curves` gives a figure both bounds and the measurement at every K.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import stats

from perfedavg.engine.config import RunConfig
from perfedavg.runs.resolve import resolve
from theory import data_dependent as dd
from theory import lemmas
from theory.checks_api import convergence

from .batched import run_seeds
from .glm import GLM, objective_F
from .measure import global_constants
from .quadratic import noise_free_cycle
from .rate_runs import BASE as RATE_BASE
from .rate_runs import GRID as RATE_GRID
from .region import expected_stationarity, region_constants, virtual_run

#: the flagship figure's configuration (figures/fig1_flagship.py ``BASE`` at its quick length; a test pins it)
FLAGSHIP: dict[str, Any] = {
    "alpha": 0.5,
    "beta": 0.15,
    "tau": 1,
    "r": 1.0,
    "D": 100,
    "D1": 100,
    "D2": 100,
    "delta": 1e-3,
    "dtype": "float64",
    "K": 600,
    "task": {
        "name": "quadratic",
        "dim": 2,
        "n_clients": 10,
        "clusters": 5,
        "support": 200,
        "h": 1.0,
        "w_radius": 2.0,
        "init": "zero",
    },
}
#: a paper-like logistic run: the logistic task's defaults (n = 20, d = 10, h = 0.5), τ = 10, r = 0.2, batches 40
#: and the paper's α = 0.01 (docs/paper.md §7); β = 0.05 meets the worst-case bound's step-size condition
#: (β_max ≈ 0.16) and lets the run leave its start (βτK = 50)
LOGISTIC: dict[str, Any] = {
    "algorithm": "exact",
    "alpha": 0.01,
    "beta": 0.05,
    "tau": 10,
    "r": 0.2,
    "D": 40,
    "D1": 40,
    "D2": 40,
    "K": 100,
    "dtype": "float64",
    "task": {"name": "logistic"},
}


def _at_the_minimiser(changes: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The rate table's K-row configuration (:data:`synthetic.rate_runs.BASE`) with ``changes`` and ``task``'s
    changes, started at the minimiser w* of F (so Δ₀ = 0: the rows where the optimization term is absent)."""
    data = json.loads(json.dumps(RATE_BASE))
    data["task"].update(task, init="minimizer", init_alpha=data["alpha"])
    return {**data, **changes}


#: the noise floor: started at w*, τ = 1, r = 1, so the stochastic term L_Fβs²/(2nκ) is the whole bound (a slip in
#: it, such as a lost 1/n, shows only here); β = 2 (L_Fβ ≈ 0.5, beyond the worst-case step-size condition) mixes in
#: about two rounds (1/(βμ_F)), so 200 rounds and the table's seeds estimate E Φ_K closely enough to judge a bound
#: that is tight there (the K-row's β = 0.16 mixes in 26 rounds: its interval stays too wide at any affordable K)
FLOOR: dict[str, Any] = _at_the_minimiser({"beta": 2.0, "K": 200}, {})
#: identical users (h = 0), one of the ten sampled each round (r = 0.1: c = (1−r)/(r(n−1)) = 1), τ = 8 local steps of
#: β = 1, started at w*: the users' drift is all noise (a drift formula without its noise is 0 here), c is large, and
#: Step 6's L_F²cȲ is about as large as the rest of the bound; 40 rounds (a mixing time is under one round)
IDENTICAL: dict[str, Any] = _at_the_minimiser({"beta": 1.0, "tau": 8, "r": 0.1, "K": 40}, {"h": 0.0})
#: seeds of every stochastic row: five, so that the 95 % interval of the quadratic task's E Φ_K estimate
#: (Student t with 4 degrees of freedom) resolves bounds that lie within 0.1 % of it
SEEDS = (0, 1, 2, 3, 4)
#: the noise-free drift rows of ``check --rates --full``: β·τ_max ∈ {0.16, 0.06}, τ ∈ {2, 4, 8, 16}, h = 1 (τ = 16 is
#: where a drift growing like τ instead of τ² falls below φ_∞: up to τ = 8 it stays inside the bound's factor)
NOISE_FREE_BETA_TAU_MAX = (0.16, 0.06)
NOISE_FREE_TAUS = (2, 4, 8, 16)


def _config(data: dict[str, Any]) -> RunConfig:
    return RunConfig(**json.loads(json.dumps(data)))


def k_row_config() -> dict[str, Any]:
    """The rate table's K-row: its base configuration at the quick grid's largest K."""
    return {**json.loads(json.dumps(RATE_BASE)), "K": int(max(RATE_GRID["quick"]["K"]))}


def _interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the upper end of its two-sided 95 % Student-t interval over seeds."""
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), math.inf
    return float(v.mean()), float(v.mean() + stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


@dataclass
class TightnessRow:
    r"""One row: ``worst_case`` and ``data_dependent`` bounds on Φ_K, ``measured`` (mean over seeds, upper end
    ``measured_high`` of its 95 % interval), ``expected`` the quadratic task's estimate of E Φ_K (NaN elsewhere,
    upper end ``expected_high``), the data-dependent ``terms`` and, for a noise-free row, ``steps`` (the cost of
    each step of the proof)."""

    name: str
    K: float
    worst_case: float
    data_dependent: float
    measured: float
    measured_high: float = math.nan
    expected: float = math.nan
    expected_high: float = math.nan
    terms: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    note: str = ""
    #: what the data-dependent bound was computed from (the row's region and run configuration), kept so that a
    #: changed bound (:mod:`synthetic.bound_mutations`) is judged on the same measurements; not in :meth:`as_dict`
    region: dd.RegionConstants | None = field(default=None, repr=False, compare=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def worst_factor(self) -> float:
        """worst-case bound / measured."""
        return self.worst_case / self.measured

    @property
    def data_factor(self) -> float:
        """data-dependent bound / measured."""
        return self.data_dependent / self.measured

    @property
    def holds(self) -> bool:
        """The data-dependent bound lies above the upper end of the measurement's interval (of E Φ_K's estimate
        where there is one: the bound is on the expectation)."""
        high = self.expected_high if math.isfinite(self.expected_high) else self.measured_high
        return bool(self.data_dependent >= (self.measured if math.isnan(high) else high))

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("region", "config")}
        out.update(worst_factor=self.worst_factor, data_factor=self.data_factor, holds=self.holds)
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in out.items()}


def worst_case_bound(task, cfg: RunConfig, noise_free: bool = False, Ks: Sequence[int] | None = None) -> list[float]:
    r"""The worst-case derived bound (:func:`theory.checks_api.convergence`) on ``cfg`` with the task's global
    constants (:func:`synthetic.measure.global_constants`), at every K of ``Ks`` (default: ``cfg.K``);
    ``noise_free``: σ_G = σ_H = 0 and K → ∞ (the optimization term left out)."""
    c = global_constants(
        task, cfg.alpha, beta=cfg.beta, tau=cfg.tau, K=cfg.K, r=cfg.r, D=cfg.D, D1=cfg.D1, D2=cfg.D2, delta=cfg.delta
    )
    if noise_free:
        report = convergence(replace(c, sigma_G=0.0, sigma_H=0.0), cfg.algorithm)
        return [float(sum(v for k, v in report.derived_terms.items() if k != "optimization"))]
    return [convergence(replace(c, K=float(K)), cfg.algorithm).derived for K in (Ks or [cfg.K])]


@dataclass
class BoundCurves:
    r"""What :func:`bound_curves` returns: rounds ``K``, the engine's measured Φ_K per seed ``measured (S, len(K))``,
    the ``worst_case`` and ``data_dependent`` bounds at each K, the quadratic task's estimate of E Φ_K per seed
    ``expected`` (None elsewhere), and the data-dependent region itself."""

    K: np.ndarray
    measured: np.ndarray
    worst_case: np.ndarray
    data_dependent: np.ndarray
    expected: np.ndarray | None
    region: dd.RegionConstants


def bound_curves(config: dict[str, Any], seeds: Sequence[int], Ks: Sequence[int] | None = None) -> BoundCurves:
    r"""Both bounds on Φ_K and the measurement at every K of ``Ks`` (default 1..config's K) for a Per-FedAvg
    ``config`` (a run configuration's dict, e.g. :data:`FLAGSHIP`) on a GLM task (quadratic, logistic,
    nonconvex), over ``seeds``: for a figure to draw the data-dependent bound beside the worst-case one."""
    cfg, task = resolve(_config(config))
    Ks = list(range(1, cfg.K + 1)) if Ks is None else [int(k) for k in Ks]
    torch.set_num_threads(1)  # tiny tensors: threads only contend on a shared machine
    runs = run_seeds(task, cfg, list(seeds), track_inner=True)
    virtual = virtual_run(task, cfg, list(seeds))
    region = region_constants(task, cfg, virtual)
    expected = expected_stationarity(task, cfg, virtual) if task.name == "quadratic" else None
    return BoundCurves(
        np.asarray(Ks),
        runs.stationarity[:, Ks],
        np.array(worst_case_bound(task, cfg, Ks=Ks)),
        np.array(dd.bound_curve(region, Ks)),
        None if expected is None else expected[:, np.asarray(Ks) - 1],
        region,
    )


def stochastic_row(name: str, config: dict[str, Any], seeds: Sequence[int]) -> TightnessRow:
    """A stochastic row at its configuration's K (:func:`bound_curves` at that K alone)."""
    K = int(config["K"])
    curves = bound_curves(config, seeds, [K])
    measured, high = _interval(curves.measured[:, -1])
    expected, expected_high = _interval(curves.expected[:, -1]) if curves.expected is not None else (math.nan,) * 2
    bound = dd.data_dependent_bound(curves.region, K)
    beyond = "; β beyond the worst-case step-size condition" if math.isinf(curves.worst_case[-1]) else ""
    return TightnessRow(
        name,
        K,
        float(curves.worst_case[-1]),
        float(curves.data_dependent[-1]),
        measured,
        high,
        expected,
        expected_high,
        terms=dict(bound.terms),
        note=f"{len(seeds)} seeds; Δ₀ = F(w₀) − F* = {curves.region.Delta0:.3g}; "
        f"L_F (region) = {curves.region.L_F:.3g}{beyond}",
        region=curves.region,
        config=config,
    )


def _descent_ratio(L_F: float, beta: float) -> float:
    r"""min over ε of θ/κ (Step 1, :func:`theory.data_dependent.descent_coefficients`; a fine log grid)."""
    g = abs(1.0 - L_F * beta)
    hi = (2.0 - L_F * beta) / g if g > 0 else 1e12
    best = math.inf
    for j in range(1, 4000):
        kappa, theta = dd.descent_coefficients(L_F, beta, hi * 10 ** (-8 + 8 * j / 4000))
        if kappa > 0:
            best = min(best, theta / kappa)
    return best


def noise_free_row(beta: float, tau: int) -> TightnessRow:
    r"""The noise-free cycle of the rate table's drift rows (:func:`synthetic.quadratic.noise_free_cycle`: every
    user, whole-distribution batches, K → ∞) with both bounds and the cost of each step of the proof, computed
    on the cycle's own points: φ_∞ → ``step 1`` (θ/κ)·mean_t‖∇F(u_t) − h_t‖² (the descent step, optimal ε; the
    cycle returns to its start, so no Δ₀) → ``step 2`` (θ/κ)·mean_t γ_HF² Ξ_t (Cauchy–Schwarz with the Hessian
    dissimilarity) → ``step 3`` (θ/κ)·mean_t γ_HF² y_t² (the drift recursion: the data-dependent bound).  The
    ratio worst-case / data-dependent is split into five factors whose product it is (``§7 vs here``): the
    worst-case L_F², §7's polarisation with 2L_F² against the optimal ε with γ_HF², the §4 dissimilarity through
    TV against γ_F on the cycle, 1/Γ, and §7's drift polynomial against the recursion."""
    data = {**json.loads(json.dumps(RATE_BASE)), "tau": tau, "beta": beta, "K": 1}
    data["task"] = {**data["task"], "h": 1.0}
    cfg, task = resolve(_config(data))
    task = task.to(torch.float64)
    glm = GLM(task)
    alpha = cfg.alpha
    cycle = noise_free_cycle(task.train, alpha, beta, tau)
    W = glm.shared(cycle.w[None])[0].clone()  # (n, d): every user at the cycle's start
    path = [W]
    for _ in range(tau):
        W = W - beta * glm.personalized(W[None], alpha)["gradF"][0]
        path.append(W)
    clients = torch.stack(path)  # (tau+1, n, d)
    u = clients.mean(1)
    _, gF_u, HF_u = objective_F(glm, u, alpha)
    phi = float(gF_u[:tau].square().sum(-1).mean())
    at_u = glm.personalized(glm.shared(u), alpha)
    at_w = glm.personalized(clients, alpha)
    e = gF_u - at_w["gradF"].mean(1)  # ∇F(u_t) − h_t, exact (no noise, no bias)
    Xi = (clients - u[:, None]).square().sum(-1).mean(1)
    hess_dev = torch.linalg.eigvalsh(at_w["hessF"] - HF_u[:, None]).abs().amax(-1)
    gamma_HF = float(hess_dev.square().mean(1).sqrt().max())
    eig = torch.linalg.eigvalsh(at_w["hessF"])
    contraction = float(torch.maximum((1 - beta * eig.amin(-1)).abs(), (1 - beta * eig.amax(-1)).abs()).max())
    gF = at_u["gradF"]
    gamma_F = float((gF - gF.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()[:tau].max())
    L_F = float(torch.linalg.eigvalsh(HF_u).abs().max())
    rc = dd.RoundConstants(s2=0.0, gamma_F=gamma_F, gamma_HF=gamma_HF, contraction=contraction, b_mean=0.0, b_rms=0.0)
    region = dd.RegionConstants(L_F=L_F, Delta0=0.0, beta=beta, tau=tau, r=1.0, n=glm.n, rounds=(rc,))
    bound = dd.data_dependent_bound(region)
    ratio = _descent_ratio(L_F, beta)
    ys = dd.drift_rms(rc, beta, tau, glm.n)
    step1 = ratio * float(e[:tau].square().sum(-1).mean())
    step2 = ratio * gamma_HF**2 * float(Xi[:tau].mean())
    step3 = ratio * gamma_HF**2 * float(np.mean(np.square(ys[:tau])))
    (worst,) = worst_case_bound(task, cfg, noise_free=True)
    # the worst-case noise-free bound is 2 L_wc^2 beta^2 (tau-1)(2tau-1) gamma_wc^2 / Gamma (section 7, s = b = c = 0);
    # the data-dependent one is R gamma_HF^2 Ybar: their ratio split into the factors named below (product exact)
    c = global_constants(task, alpha, beta=beta, tau=tau, K=1, r=1.0, D=cfg.D, D1=cfg.D1, D2=cfg.D2)
    L_wc = float(lemmas.smoothness_derived()(c))
    gamma_wc2 = float(lemmas.dissimilarity_derived()(c))
    Gamma = 1 - 6 * (beta * tau * L_wc) ** 2
    ybar = float(np.mean(np.square(ys[:tau])))
    poly = beta**2 * (tau - 1) * (2 * tau - 1)
    steps = {
        "step 1 (descent, optimal ε) / φ_∞": step1 / phi,
        "step 2 (coupling, γ_HF) / step 1": step2 / step1,
        "step 3 (drift recursion) / step 2": step3 / step2,
        "§7 vs here: L_F worst-case² / L_F region²": L_wc**2 / L_F**2,
        "§7 vs here: 2 L_F² (polarisation) / (θ/κ) γ_HF² (steps 1-2)": 2 * L_F**2 / (ratio * gamma_HF**2),
        "§7 vs here: γ² of §4 with TV / γ_F² on the cycle": gamma_wc2 / gamma_F**2,
        "§7 vs here: 1/Γ": 1 / Gamma,
        "§7 vs here: β²(τ-1)(2τ-1)γ_F² / mean y_t² (step 3)": poly * gamma_F**2 / ybar,
    }
    return TightnessRow(
        f"noise-free β={beta:g} τ={tau}",
        math.inf,
        worst,
        bound.value,
        phi,
        phi,
        terms=dict(bound.terms),
        steps=steps,
        note=f"φ_∞ of the cycle (closed form {cycle.phi:.4g}); step 3 equals the data-dependent bound",
        region=region,
        config=data,
    )


def tightness_table(seeds: Sequence[int] = SEEDS) -> list[TightnessRow]:
    """Every row of the module docstring."""
    rows = [stochastic_row("K-row (rate table)", k_row_config(), seeds)]
    for algorithm in ("exact", "hf", "fo"):
        rows.append(stochastic_row(f"flagship ({algorithm})", {**FLAGSHIP, "algorithm": algorithm}, seeds))
    rows.append(stochastic_row("logistic, paper-like", LOGISTIC, seeds))
    rows.append(stochastic_row("noise floor, β=2", FLOOR, seeds))
    rows.append(stochastic_row("identical users, r=0.1", IDENTICAL, seeds))
    for bt in NOISE_FREE_BETA_TAU_MAX:
        for tau in NOISE_FREE_TAUS:
            rows.append(noise_free_row(bt / max(NOISE_FREE_TAUS), tau))
    return rows
