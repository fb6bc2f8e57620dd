r"""Heterogeneity through distribution distances, docs/paper.md §6.

For f_i(w) = E_{θ~p_i} l(w;θ) and the mixture p̄ = (1/n)Σ p_i (so f = (1/n)Σ f_i is
the loss under p̄), with ``tv`` the root mean square over users of TV(p_i, p̄) and
``w1`` that of W1(p_i, p̄):

* TV (needs the **per-sample** bounds ‖∇l(w;θ)‖ ≤ B_s and ‖∇²l(w;θ)‖ ≤ L_s for every θ, fields
  ``B_sample``, ``L_sample`` of :class:`theory.constants.Constants`; the per-user B, L do not suffice):
  γ_G² ≤ 4B_s²·tv², γ_H² ≤ 4L_s²·tv²  (per user: ‖∇f_i − ∇f‖ ≤ 2B_s·TV(p_i, p̄));
* W1 (needs θ ↦ ∇l(w;θ) L_θ-Lipschitz, θ ↦ ∇²l(w;θ) ρ_θ-Lipschitz):
  γ_G² ≤ L_θ²·w1², γ_H² ≤ ρ_θ²·w1²  (Kantorovich–Rubinstein along each direction).

The recalled statements and our derivations (DERIVATIONS.md §6) agree, so each is
labelled ``derived`` (re-proved here) with the paper reference kept.  A per-user check
is the same formula with ``tv`` (or ``w1``) set to that user's distance, squared on
both sides.
"""

from __future__ import annotations

import functools

from .statement import Statement
from .symbols import B_sample, L_sample, L_theta, rho_theta, tv, w1

_REF6 = "docs/paper.md §6 [recalled in form]; theory/DERIVATIONS.md §6"


@functools.cache
def tv_gradient_bound() -> Statement:
    r"""TV bound on gradient dissimilarity: :math:`\gamma_G^2 \le 4B_s^2\,\overline{TV}^2`.

    Symbols: ``B_sample`` B_s (per-sample gradient bound), ``tv`` = sqrt((1/n)Σ_i TV(p_i, p̄)²).
    Bounds (1/n)Σ_i‖∇f_i(w) − ∇f(w)‖².
    """
    return Statement(
        "gamma_G2_tv", "γ_G² from TV", _REF6, "derived", 4 * B_sample**2 * tv**2, "(1/n) Σ_i ‖∇f_i(w) − ∇f(w)‖² ≤ value"
    )


@functools.cache
def tv_hessian_bound() -> Statement:
    r"""TV bound on Hessian dissimilarity: :math:`\gamma_H^2 \le 4L_s^2\,\overline{TV}^2`.

    Symbols: ``L_sample`` L_s (per-sample Hessian operator-norm bound), ``tv`` RMS TV distance.
    Bounds (1/n)Σ_i‖∇²f_i(w) − ∇²f(w)‖².
    """
    return Statement(
        "gamma_H2_tv",
        "γ_H² from TV",
        _REF6,
        "derived",
        4 * L_sample**2 * tv**2,
        "(1/n) Σ_i ‖∇²f_i(w) − ∇²f(w)‖² ≤ value",
    )


@functools.cache
def w1_gradient_bound() -> Statement:
    r"""W1 bound on gradient dissimilarity: :math:`\gamma_G^2 \le L_\theta^2\,\overline{W}_1^2`.

    Symbols: ``L_theta`` L_θ (Lipschitz constant of θ ↦ ∇l(w;θ)), ``w1`` RMS W1 distance.
    Bounds (1/n)Σ_i‖∇f_i(w) − ∇f(w)‖².
    """
    return Statement(
        "gamma_G2_w1", "γ_G² from W1", _REF6, "derived", L_theta**2 * w1**2, "(1/n) Σ_i ‖∇f_i(w) − ∇f(w)‖² ≤ value"
    )


@functools.cache
def w1_hessian_bound() -> Statement:
    r"""W1 bound on Hessian dissimilarity: :math:`\gamma_H^2 \le \rho_\theta^2\,\overline{W}_1^2`.

    Symbols: ``rho_theta`` ρ_θ (Lipschitz constant of θ ↦ ∇²l(w;θ), operator norm),
    ``w1`` RMS W1 distance.  Bounds (1/n)Σ_i‖∇²f_i(w) − ∇²f(w)‖².
    """
    return Statement(
        "gamma_H2_w1", "γ_H² from W1", _REF6, "derived", rho_theta**2 * w1**2, "(1/n) Σ_i ‖∇²f_i(w) − ∇²f(w)‖² ≤ value"
    )


def all_distance_bounds() -> tuple[Statement, ...]:
    r"""The four bounds: γ_G² ≤ 4B_s²tv², γ_H² ≤ 4L_s²tv², γ_G² ≤ L_θ²w1², γ_H² ≤ ρ_θ²w1²."""
    return (tv_gradient_bound(), tv_hessian_bound(), w1_gradient_bound(), w1_hessian_bound())
