r"""A new user's personalized gradient against the training population's, docs/paper.md §6.

A new user draws its data from :math:`q`, the training users from :math:`p_1..p_n` with mixture
:math:`\bar p = \frac1n\sum_i p_i`.  With :math:`f_q(w) = E_{\theta\sim q}\,l(w;\theta)` and the
one-step personalized objective :math:`F_q(w) = f_q(w - \alpha\nabla f_q(w))` (likewise
:math:`F_{\bar p}` for the mixture), DERIVATIONS.md §11 shows, for every w,

.. math:: \|\nabla F_q(w) - \nabla F_{\bar p}(w)\| \le (1+\alpha L)^2\,\delta_G + \alpha B\,\delta_H,

where :math:`\delta_G` bounds :math:`\|\nabla f_q - \nabla f_{\bar p}\|` at the points the step
evaluates and :math:`\delta_H` bounds :math:`\|\nabla^2 f_q(w) - \nabla^2 f_{\bar p}(w)\|`: the
same inequality as the derived dissimilarity :math:`\gamma_F` (:func:`theory.lemmas.dissimilarity_derived`),
now between two distributions.  The heterogeneity statements of §6 turn the distance between
:math:`q` and :math:`\bar p` into :math:`\delta_G, \delta_H`: with total variation
:math:`\delta_G = 2B_s\,TV(q,\bar p)`, :math:`\delta_H = 2L_s\,TV(q,\bar p)`; with the Wasserstein
distance :math:`\delta_G = L_\theta W_1(q,\bar p)`, :math:`\delta_H = \rho_\theta W_1(q,\bar p)`.
Both bounds are linear in the distance: a new user's gap grows at most linearly in how far its data
lie from the training mixture.  Each statement bounds the *squared* gap (as γ_F² does), with the
symbol ``tv`` (``w1``) standing for that user's distance to :math:`\bar p`.
"""

from __future__ import annotations

import functools

from .lemmas import dissimilarity_derived
from .statement import Statement
from .symbols import B_sample, L_sample, L_theta, gamma_G, gamma_H, rho_theta, tv, w1

_REF = "docs/paper.md §6 (new users); theory/DERIVATIONS.md §11"
_MEANING = "‖∇F_q(w) − ∇F_p̄(w)‖² ≤ value, q the new user's distribution"


@functools.cache
def new_user_gap_tv() -> Statement:
    r"""New user, TV form: :math:`\|\nabla F_q-\nabla F_{\bar p}\|^2 \le
    \big(2\,TV\,(\alpha B L_s + (1+\alpha L)^2 B_s)\big)^2` with ``tv`` = TV(q, p̄)."""
    return dissimilarity_derived().subs(
        {gamma_G: 2 * B_sample * tv, gamma_H: 2 * L_sample * tv},
        key="new_user_gap2_tv",
        name="new user's gap from TV",
        ref=_REF,
        meaning=_MEANING,
    )


@functools.cache
def new_user_gap_w1() -> Statement:
    r"""New user, W1 form: :math:`\|\nabla F_q-\nabla F_{\bar p}\|^2 \le
    \big(W_1\,(\alpha B\rho_\theta + (1+\alpha L)^2 L_\theta)\big)^2` with ``w1`` = W1(q, p̄)."""
    return dissimilarity_derived().subs(
        {gamma_G: L_theta * w1, gamma_H: rho_theta * w1},
        key="new_user_gap2_w1",
        name="new user's gap from W1",
        ref=_REF,
        meaning=_MEANING,
    )


def new_user_statements() -> tuple[Statement, ...]:
    """Both forms."""
    return (new_user_gap_tv(), new_user_gap_w1())
