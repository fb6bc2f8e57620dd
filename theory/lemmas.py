r"""Lemmas of docs/paper.md §4 (α ∈ (0, 1/L]) and the extra error of the FO and HF variants.

Each function returns a :class:`theory.statement.Statement`.  For every quantity there
is the *recalled* form (docs/paper.md, reconstructed from memory of the paper, unverified)
and a *derived* form proved in ``theory/DERIVATIONS.md`` (§1-§4 there).  Every derived
form is at most the recalled one when αL ≤ 1 (see the tests), so the recalled forms are
consistent with our derivation, only looser.

Notation: F_i(w) = f_i(w − α∇f_i(w)); ∇̃F_i(w) = (I − α∇̃²f_i(w, D'')) ∇̃f_i(w − α∇̃f_i(w, D), D'),
the stochastic direction of Algorithm 1's exact local step, with three independent
batches of sizes D, D', D'' (arguments ``D``, ``D1``, ``D2``).
"""

from __future__ import annotations

import functools

import sympy as sp

from perfedavg.errors import UsageError

from .statement import Statement
from .symbols import (
    D1,
    D2,
    B,
    B_sample,
    D,
    L,
    alpha,
    delta,
    g_norm,
    gamma_G,
    gamma_H,
    rho,
    rho_sample,
    sigma_G,
    sigma_H,
)

VARIANTS = ("exact", "fo", "hf")
_REF4 = "docs/paper.md §4"


# --------------------------------------------------------------------------- L_F
@functools.cache
def smoothness_recalled() -> Statement:
    r"""Smoothness of F_i, recalled form: :math:`L_F = 4L + \alpha\rho B`.

    Symbols: ``L`` is L, ``alpha`` is α, ``rho`` is ρ, ``B`` is B.  Needs αL ≤ 1.
    Provenance: recalled (high confidence), docs/paper.md §4 "Smoothness".
    """
    return Statement(
        "L_F",
        "L_F smoothness of F_i",
        _REF4 + " Lemma (smoothness)",
        "recalled",
        4 * L + alpha * rho * B,
        "‖∇F_i(u) − ∇F_i(v)‖ ≤ L_F ‖u − v‖",
    )


@functools.cache
def smoothness_derived() -> Statement:
    r"""Smoothness of F_i, derived: :math:`L_F = L(1+\alpha L)^2 + \alpha\rho B`.

    Symbols: ``L`` is L, ``alpha`` is α, ``rho`` is ρ, ``B`` is B.  Valid for every
    α ≥ 0; at αL ≤ 1 it is ≤ 4L + αρB (the recalled form).
    Derivation: DERIVATIONS.md §1 (triangle inequality, L-smoothness, ρ-Lipschitz Hessian).
    """
    return Statement(
        "L_F",
        "L_F smoothness of F_i",
        "theory/DERIVATIONS.md §1",
        "derived",
        L * (1 + alpha * L) ** 2 + alpha * rho * B,
        "‖∇F_i(u) − ∇F_i(v)‖ ≤ L_F ‖u − v‖",
    )


# --------------------------------------------------------------------------- bias
@functools.cache
def bias_recalled() -> Statement:
    r"""Bias of the stochastic gradient of F_i, recalled: :math:`2\alpha L\sigma_G/\sqrt{D}`.

    Symbols: ``alpha`` α, ``L`` L, ``sigma_G`` σ_G, ``D`` inner batch size D.
    Bounds ‖E[∇̃F_i(w)] − ∇F_i(w)‖.  Provenance: recalled, docs/paper.md §4 "Bias".
    """
    return Statement(
        "bias",
        "bias of ∇̃F_i",
        _REF4 + " Lemma (bias)",
        "recalled",
        2 * alpha * L * sigma_G / sp.sqrt(D),
        "‖E[∇̃F_i(w)] − ∇F_i(w)‖ ≤ value",
    )


@functools.cache
def bias_derived() -> Statement:
    r"""Bias of the stochastic gradient of F_i, derived:
    :math:`b_F = (1+\alpha L)\,\alpha L\,\sigma_G/\sqrt{D}`.

    Symbols: ``alpha`` α, ``L`` L, ``sigma_G`` σ_G, ``D`` inner batch size D.
    Bounds ‖E[∇̃F_i(w)] − ∇F_i(w)‖.  Derivation: DERIVATIONS.md §2 (independence of
    D'' from (D, D'), ‖I − α∇̃²f_i‖ ≤ 1 + αL, L-smoothness, Jensen).
    """
    return Statement(
        "bias",
        "bias of ∇̃F_i",
        "theory/DERIVATIONS.md §2",
        "derived",
        (1 + alpha * L) * alpha * L * sigma_G / sp.sqrt(D),
        "‖E[∇̃F_i(w)] − ∇F_i(w)‖ ≤ value",
    )


# --------------------------------------------------------------------------- variance
@functools.cache
def variance_recalled() -> Statement:
    r"""Mean squared error of the stochastic gradient of F_i, recalled:

    .. math:: \sigma_F^2 = 12\Big[B^2 + \sigma_G^2\big(\tfrac{1}{D'} + \tfrac{(\alpha L)^2}{D}\big)\Big]
              \Big[1 + \tfrac{\sigma_H^2\alpha^2}{4D''}\Big] - 12B^2

    Symbols: ``B`` B, ``sigma_G`` σ_G, ``sigma_H`` σ_H, ``alpha`` α, ``L`` L, ``D`` D,
    ``D1`` D', ``D2`` D''.  Bounds E‖∇̃F_i(w) − ∇F_i(w)‖².  Provenance: recalled.
    """
    return Statement(
        "sigma_F2",
        "σ_F² variance of ∇̃F_i",
        _REF4 + " Lemma (variance)",
        "recalled",
        12 * (B**2 + sigma_G**2 * (1 / D1 + (alpha * L) ** 2 / D)) * (1 + sigma_H**2 * alpha**2 / (4 * D2)) - 12 * B**2,
        "E‖∇̃F_i(w) − ∇F_i(w)‖² ≤ value",
    )


@functools.cache
def variance_derived() -> Statement:
    r"""Mean squared error of the stochastic gradient of F_i, derived:

    .. math:: \sigma_F^2 = \frac{\alpha^2\sigma_H^2}{D''}\Big(B^2 + \frac{\sigma_G^2}{D'}\Big)
              + (1+\alpha L)^2\,\sigma_G^2\Big(\frac{1}{D'} + \frac{\alpha^2L^2}{D}\Big)

    Symbols: ``alpha`` α, ``sigma_H`` σ_H, ``D2`` D'', ``B`` B, ``sigma_G`` σ_G,
    ``D1`` D', ``L`` L, ``D`` D.  Bounds E‖∇̃F_i(w) − ∇F_i(w)‖² (bias included).
    Derivation: DERIVATIONS.md §3 (independence of batches kills cross terms, batch
    variance σ²/D for i.i.d. or without-replacement draws, smoothness).
    """
    return Statement(
        "sigma_F2",
        "σ_F² variance of ∇̃F_i",
        "theory/DERIVATIONS.md §3",
        "derived",
        alpha**2 * sigma_H**2 / D2 * (B**2 + sigma_G**2 / D1)
        + (1 + alpha * L) ** 2 * sigma_G**2 * (1 / D1 + alpha**2 * L**2 / D),
        "E‖∇̃F_i(w) − ∇F_i(w)‖² ≤ value",
    )


# --------------------------------------------------------------------------- dissimilarity
@functools.cache
def dissimilarity_recalled() -> Statement:
    r"""Dissimilarity of the users' ∇F_i, recalled: :math:`\gamma_F^2 = 3B^2\alpha^2\gamma_H^2 + 192\gamma_G^2`.

    Symbols: ``B`` B, ``alpha`` α, ``gamma_H`` γ_H, ``gamma_G`` γ_G.
    Bounds (1/n)Σ_i‖∇F_i(w) − ∇F(w)‖².  Provenance: recalled.
    """
    return Statement(
        "gamma_F2",
        "γ_F² dissimilarity of ∇F_i",
        _REF4 + " Lemma (dissimilarity)",
        "recalled",
        3 * B**2 * alpha**2 * gamma_H**2 + 192 * gamma_G**2,
        "(1/n) Σ_i ‖∇F_i(w) − ∇F(w)‖² ≤ value",
    )


@functools.cache
def dissimilarity_derived() -> Statement:
    r"""Dissimilarity of the users' ∇F_i, derived:
    :math:`\gamma_F^2 = \big(\alpha B\gamma_H + (1+\alpha L)^2\gamma_G\big)^2`.

    Symbols: ``alpha`` α, ``B`` B, ``gamma_H`` γ_H, ``L`` L, ``gamma_G`` γ_G.
    Bounds (1/n)Σ_i‖∇F_i(w) − ∇F(w)‖².  Derivation: DERIVATIONS.md §4 (the mean
    minimises the mean square, Minkowski over users, smoothness).
    """
    return Statement(
        "gamma_F2",
        "γ_F² dissimilarity of ∇F_i",
        "theory/DERIVATIONS.md §4",
        "derived",
        (alpha * B * gamma_H + (1 + alpha * L) ** 2 * gamma_G) ** 2,
        "(1/n) Σ_i ‖∇F_i(w) − ∇F(w)‖² ≤ value",
    )


# --------------------------------------------------------------------------- HF / FO extras
@functools.cache
def hf_hvp_error() -> Statement:
    r"""Error of the HF central difference against the exact Hessian-vector product:

    .. math:: \Big\|\frac{\nabla h(w+\delta g) - \nabla h(w-\delta g)}{2\delta} - \nabla^2 h(w)\,g\Big\|
              \le \frac{\rho\,\delta\,\|g\|^2}{2}

    for any h whose Hessian is ρ-Lipschitz (here h is the D''-batch loss; this needs
    ρ to bound the per-sample Hessian Lipschitz constant).  Symbols: ``rho`` ρ,
    ``delta`` δ, ``g_norm`` ‖g‖.  The HF *direction* errs by α times this.
    Derivation: DERIVATIONS.md §5 (fundamental theorem of calculus, Hessian Lipschitz).
    """
    return Statement(
        "hf_hvp_error",
        "HF finite-difference error",
        "theory/DERIVATIONS.md §5",
        "derived",
        rho * delta * g_norm**2 / 2,
        "‖(∇h(w+δg) − ∇h(w−δg))/(2δ) − ∇²h(w) g‖ ≤ value",
    )


@functools.cache
def fo_term_recalled() -> Statement:
    r"""Extra floor of Per-FedAvg (FO), recalled order: :math:`\alpha^2L^2B^2`
    (the dropped Hessian term α∇²f_i g has norm ≤ αLB).

    Symbols: ``alpha`` α, ``L`` L, ``B`` B.  Provenance: recalled (order only).
    """
    return Statement(
        "fo_term",
        "FO extra term",
        "docs/paper.md §5 (FO)",
        "recalled",
        alpha**2 * L**2 * B**2,
        "order of the extra floor of FO in the bound",
    )


@functools.cache
def hf_term_recalled() -> Statement:
    r"""Extra term of Per-FedAvg (HF), recalled order: :math:`(\alpha\rho\delta B^2)^2`.

    Symbols: ``alpha`` α, ``rho`` ρ, ``delta`` δ, ``B`` B.  Provenance: recalled (order only).
    """
    return Statement(
        "hf_term",
        "HF extra term",
        "docs/paper.md §5 (HF)",
        "recalled",
        (alpha * rho * delta * B**2) ** 2,
        "order of the extra term of HF in the bound",
    )


@functools.cache
def direction_bias(variant: str = "exact") -> Statement:
    r"""Bias b of a local-step direction d_i relative to ∇F_i, derived, per variant:

    * exact: :math:`b = (1+\alpha L)\alpha L\sigma_G/\sqrt{D}` (= :func:`bias_derived`);
    * fo:    :math:`b = \alpha L(\sigma_G/\sqrt{D} + B)`;
    * hf:    :math:`b = (1+\alpha L)\alpha L\sigma_G/\sqrt{D} + \alpha\rho_s\delta B_s^2/2`, with the
      **per-sample** :math:`\rho_s` (``rho_sample``) and :math:`B_s` (``B_sample``): the finite difference is
      taken on the D''-batch loss, whose Hessian is :math:`\rho_s`-Lipschitz, along
      :math:`\tilde v`, a batch mean of per-sample gradients (:math:`\|\tilde v\|\le B_s`).

    Bounds ‖E[d_i(w)] − ∇F_i(w)‖.  HF assumes per-sample gradients bounded by B and
    per-sample Hessians ρ-Lipschitz.  Derivation: DERIVATIONS.md §2, §5.
    Symbols: ``alpha`` α, ``L`` L, ``sigma_G`` σ_G, ``D`` D, ``B`` B, ``rho`` ρ, ``delta`` δ.
    """
    variant = _check_variant(variant)
    if variant == "exact":
        return bias_derived()
    if variant == "fo":
        expr = alpha * L * (sigma_G / sp.sqrt(D) + B)
    else:
        expr = bias_derived().expr + alpha * rho_sample * delta * B_sample**2 / 2
    return Statement(
        "bias_" + variant,
        f"bias of the {variant.upper()} direction",
        "theory/DERIVATIONS.md §2, §5",
        "derived",
        expr,
        "‖E[d_i(w)] − ∇F_i(w)‖ ≤ value",
    )


@functools.cache
def direction_mse(variant: str = "exact") -> Statement:
    r"""Mean squared error s² of a local-step direction d_i around ∇F_i, derived:

    * exact: :math:`s^2 = \sigma_F^2` of :func:`variance_derived`;
    * fo:    :math:`s^2 = \big(\sigma_G\sqrt{1/D' + \alpha^2L^2/D} + \alpha L B\big)^2`;
    * hf:    :math:`s^2 = \big(\sigma_F + \alpha\rho_s\delta B_s^2/2\big)^2` (σ_F² derived; per-sample
      :math:`\rho_s, B_s` as in :func:`direction_bias`).

    Bounds E‖d_i(w) − ∇F_i(w)‖².  Derivation: DERIVATIONS.md §3, §5 (Minkowski in L²).
    Symbols: ``sigma_G`` σ_G, ``D1`` D', ``alpha`` α, ``L`` L, ``D`` D, ``B`` B,
    ``rho`` ρ, ``delta`` δ, and those of :func:`variance_derived`.
    """
    variant = _check_variant(variant)
    if variant == "exact":
        return variance_derived()
    if variant == "fo":
        expr = (sigma_G * sp.sqrt(1 / D1 + alpha**2 * L**2 / D) + alpha * L * B) ** 2
    else:
        expr = (sp.sqrt(variance_derived().expr) + alpha * rho_sample * delta * B_sample**2 / 2) ** 2
    return Statement(
        "mse_" + variant,
        f"MSE of the {variant.upper()} direction",
        "theory/DERIVATIONS.md §3, §5",
        "derived",
        expr,
        "E‖d_i(w) − ∇F_i(w)‖² ≤ value",
    )


def _check_variant(variant: str) -> str:
    v = str(variant).lower()
    if v not in VARIANTS:
        raise UsageError(f"variant={variant!r}: allowed {', '.join(VARIANTS)}")
    return v


#: every lemma statement, recalled beside derived
def all_lemmas() -> tuple[Statement, ...]:
    r"""All lemma statements: for each of L_F, bias, σ_F², γ_F² the recalled then the
    derived form (e.g. L_F = 4L + αρB [recalled], L_F = L(1+αL)² + αρB [derived]); then
    the HF finite-difference error ρδ‖g‖²/2 and the FO / HF extra terms."""
    return (
        smoothness_recalled(),
        smoothness_derived(),
        bias_recalled(),
        bias_derived(),
        variance_recalled(),
        variance_derived(),
        dissimilarity_recalled(),
        dissimilarity_derived(),
        hf_hvp_error(),
        fo_term_recalled(),
        hf_term_recalled(),
        direction_bias("fo"),
        direction_mse("fo"),
        direction_bias("hf"),
        direction_mse("hf"),
    )
