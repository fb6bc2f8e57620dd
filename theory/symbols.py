r"""Sympy symbols of the Per-FedAvg analysis (docs/paper.md §3-§6).

Every symbol is declared ``positive=True, real=True``; numeric values of zero (e.g.
``gamma_G = 0``) are handled by substitution, which sympy allows.  The symbol *names*
are the field names of :class:`theory.constants.Constants`, so an expression's free
symbols map one-to-one to a ``Constants`` instance (``D1`` is D', ``D2`` is D'').

=========  ==================  ==================================================
symbol     argument            meaning
=========  ==================  ==================================================
L          ``L``               smoothness of each f_i
\rho       ``rho``             Lipschitz constant of the Hessian of each f_i
B          ``B``               bound on the gradient norm of each f_i
B_s        ``B_sample``        bound on the per-sample gradient norm ‖∇l(w;θ)‖
L_s        ``L_sample``        bound on the per-sample Hessian ‖∇²l(w;θ)‖ (op. norm)
\rho_s     ``rho_sample``      Lipschitz constant of the per-sample Hessian
\sigma_G   ``sigma_G``         per-sample gradient standard deviation
\sigma_H   ``sigma_H``         per-sample Hessian standard deviation (operator norm)
\gamma_G   ``gamma_G``         gradient dissimilarity between users
\gamma_H   ``gamma_H``         Hessian dissimilarity between users
\alpha     ``alpha``           inner (personalization) step
\beta      ``beta``            outer (local) step of Algorithm 1
\delta     ``delta``           finite-difference radius of Per-FedAvg (HF)
\tau       ``tau``             local steps per round
K          ``K``               rounds
r          ``r``               fraction of users sampled per round
n          ``n``               number of users
D, D', D'' ``D, D1, D2``       batch sizes of the inner step, the outer gradient,
                               and the Hessian (or HF finite difference)
\Delta     ``F0_gap``          F(w_0) - F^*
=========  ==================  ==================================================

Extra symbols used only by the distance bounds of §6: ``tv`` (root mean square over
users of TV(p_i, p̄)), ``w1`` (same for the 1-Wasserstein distance), ``L_theta`` and
``rho_theta`` (Lipschitz constants of θ ↦ ∇l(w;θ) and θ ↦ ∇²l(w;θ)), and ``g_norm``
(a bound on the norm of the vector the HF finite difference is taken along).
"""

from __future__ import annotations

import sympy as sp

_kw = dict(positive=True, real=True)

L = sp.Symbol("L", **_kw)
rho = sp.Symbol("rho", **_kw)
B = sp.Symbol("B", **_kw)
sigma_G = sp.Symbol("sigma_G", **_kw)
sigma_H = sp.Symbol("sigma_H", **_kw)
gamma_G = sp.Symbol("gamma_G", **_kw)
gamma_H = sp.Symbol("gamma_H", **_kw)
alpha = sp.Symbol("alpha", **_kw)
beta = sp.Symbol("beta", **_kw)
delta = sp.Symbol("delta", **_kw)
tau = sp.Symbol("tau", **_kw)
K = sp.Symbol("K", **_kw)
r = sp.Symbol("r", **_kw)
n = sp.Symbol("n", **_kw)
D = sp.Symbol("D", **_kw)
D1 = sp.Symbol("D1", **_kw)
D2 = sp.Symbol("D2", **_kw)
F0_gap = sp.Symbol("F0_gap", **_kw)
# per-sample bounds (a per-sample bound also bounds every f_i, not conversely): the HF direction's extra
# term and the TV statements need them; the other lemmas need only the per-user L, rho, B above
B_sample = sp.Symbol("B_sample", **_kw)
L_sample = sp.Symbol("L_sample", **_kw)
rho_sample = sp.Symbol("rho_sample", **_kw)

# §6 and HF extras (not fields of Constants; passed as keyword arguments)
tv = sp.Symbol("tv", **_kw)
w1 = sp.Symbol("w1", **_kw)
L_theta = sp.Symbol("L_theta", **_kw)
rho_theta = sp.Symbol("rho_theta", **_kw)
g_norm = sp.Symbol("g_norm", **_kw)

#: LaTeX spelling of each symbol (sympy's default spelling otherwise)
LATEX_NAMES = {
    rho: r"\rho",
    sigma_G: r"\sigma_G",
    sigma_H: r"\sigma_H",
    gamma_G: r"\gamma_G",
    gamma_H: r"\gamma_H",
    D1: "D'",
    D2: "D''",
    F0_gap: r"\Delta_0",
    B_sample: r"B_{\mathrm{s}}",
    L_sample: r"L_{\mathrm{s}}",
    rho_sample: r"\rho_{\mathrm{s}}",
    tv: r"\overline{\mathrm{TV}}",
    w1: r"\overline{W}_1",
    L_theta: r"L_\theta",
    rho_theta: r"\rho_\theta",
    g_norm: r"\|g\|",
}

#: symbols supplied as keyword arguments to an evaluator (``perfedavg bounds`` has a flag for each)
EXTRA_SYMBOLS = (tv, w1, L_theta, rho_theta, g_norm)


def latex(expr: sp.Basic) -> str:
    r"""LaTeX of ``expr`` with the paper's spelling of the symbols (D' for ``D1`` ...)."""
    text: str = sp.latex(expr, symbol_names=LATEX_NAMES)
    return text
