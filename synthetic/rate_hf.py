r"""The rate table's HF rows: the central difference's error against δ on a smooth loss (Taylor δ², per seed)
and at a Hessian kink (theory's bound's δ¹, exact): together a two-sided test of the HF exponent."""

from __future__ import annotations

import math

import numpy as np
import torch

from perfedavg.engine.local import StepSizes, meta_gradient
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.sampling import draw_batch
from perfedavg.runs.registry import build_task
from perfedavg.runs.resolve import resolve

from . import rate_stats
from .rate_rows import TAYLOR_ASSUMPTION, RateRow, replicates_row
from .rate_runs import _config
from .rate_stats import judge_exact, local_slope

#: the HF row's decay branch: δ at or above this is far above the round-off turn (float64 central differences
#: of gradients of size ~1 lose ~1e-16/δ, below 1e-12 of the δ² error here), so the Taylor law alone is measured
HF_DECAY_MIN = 1e-3


def hf_delta_row(seeds) -> RateRow:
    r"""‖d_HF − d_exact‖ (same batches, logistic, α = 1: ρ > 0, unlike the quadratic task where the central
    difference is exact) for δ = 10^-1 … 10^-10, a two-sided test of the exponent on the decay branch
    (δ ≥ :data:`HF_DECAY_MIN`).  Predicted law δ²: the central difference of a gradient with a C² Hessian errs by
    (δ²/6)∇⁴h[g, g, g] + O(δ⁴) (Taylor to fourth order; the logistic loss is smooth); competitor δ¹: theory's
    HF error bound ρδ‖g‖²/2 (``lemmas.hf_hvp_error``), attained only where the Hessian is merely Lipschitz, so
    a bound whose exponent is 1 would be loose by a power here.  The seeds are the independent units (every δ
    uses a seed's same batches).  The round-off rise below the minimiser δ* is recorded."""
    from theory import lemmas

    task = build_task({"name": "logistic"}).to(torch.float64)
    oracle = make_oracle(task)
    deltas = [10.0**-e for e in range(1, 11)]
    per_seed = []
    for s in seeds:
        gen = torch.Generator().manual_seed(s)
        w = torch.randn(task.init_params(gen).shape, generator=gen, dtype=torch.float64)
        clients = torch.arange(4)
        batches = (
            draw_batch(gen, task.train, clients, 10, True),
            draw_batch(gen, task.train, clients, 10, True),
            draw_batch(gen, task.train, clients, 10, True),
        )  # D, D', D'' in this order
        W = w.expand(4, -1).clone()
        exact = meta_gradient(oracle, W, batches, StepSizes(1.0, 1.0, 1e-3), "exact")
        per_seed.append(
            [float((meta_gradient(oracle, W, batches, StepSizes(1.0, 1.0, d), "hf") - exact).norm()) for d in deltas]
        )
    errs = np.array(per_seed)
    means = errs.mean(0)
    decay = [i for i, d in enumerate(deltas) if d >= HF_DECAY_MIN]
    xs = [deltas[i] for i in decay]
    c = task.constants
    bound = [lemmas.hf_hvp_error()(rho=c["rho"], delta=d, g_norm=c["B"]) for d in xs]
    recalled_term = lemmas.hf_term_recalled()
    recalled = [math.sqrt(recalled_term(alpha=1.0, rho=c["rho"], delta=d, B=c["B"])) for d in xs]
    taylor = [d * b for d, b in zip(xs, bound)]  # δ² law, amplitude free
    best = int(np.argmin(means))
    rises = best < len(deltas) - 1 and means[-1] > 10 * means[best]
    row = replicates_row(
        "HF error vs delta",
        xs,
        errs[:, decay],
        taylor,
        recalled,
        ("delta^1 (theory's bound rho delta ||g||^2/2)", -1.0),
        f"decay branch δ ≥ {HF_DECAY_MIN:g}: Taylor δ² against theory's bound ρδ‖g‖²/2 (exponent 1) as competitor; "
        f"minimum at δ* = {deltas[best]:g}, round-off rise below: {rises}",
        bound_slope=local_slope(xs, bound),
        recalled_scale="square root of the recalled squared term",
        delta_star=deltas[best],
        roundoff_rise=bool(rises),
        all_deltas=deltas,
        all_means=means.tolist(),
    )
    row.assumption = TAYLOR_ASSUMPTION
    return row


#: the δ grid of the Lipschitz-Hessian HF row: far above round-off (the error is ≈ 2e-3 δ, round-off ≈ 1e-16/δ)
HF_KINK_DELTAS = (1e-1, 1e-2, 1e-3, 1e-4)


def cubic_residual_loss(W: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    r"""Per-sample loss :math:`|x^\top w - y|^3/6`: its Hessian :math:`|x^\top w - y|\,xx^\top` is Lipschitz
    (ρ = ‖x‖³) but not differentiable where the residual is 0, so there no Taylor δ² law holds."""
    r = (X * W.unsqueeze(-2)).sum(-1) - Y
    return r.abs() ** 3 / 6


def hf_kink_row() -> RateRow:
    r"""The HF error against δ where only a Lipschitz Hessian holds: the quadratic task's data with the loss
    :func:`cubic_residual_loss`, user 0's central-difference error (:func:`synthetic.measure.hf_error`, the
    user's full data) at a point where one of its samples has residual 0, direction g = (0.6, −0.8).  Predicted
    law: theory's HF error bound ρδ‖g‖²/2 (``lemmas.hf_hvp_error``, exponent 1: the bound's exponent is attained
    here); competitor: Taylor's δ² of the smooth row.  Exact (no sampling).  With "HF error vs delta" (δ² on the
    smooth logistic loss) this makes the HF exponent a two-sided test: each row FAILs against the other's law."""
    from dataclasses import replace

    from theory import lemmas

    from .measure import hf_error

    _, task = resolve(_config({"K": 1, "D": 10, "D1": 10, "D2": 10, "task": {"support": 20, "h": 1.0}}))
    task = replace(task, per_sample_loss=cubic_residual_loss)
    X, Y, P = (v[0] for v in task.train.gather(torch.tensor([0])))
    s = int(torch.argmax(P))
    x, y = X[s].double(), float(Y[s])
    w = y * x / x.dot(x)  # residual of sample s is 0: the Hessian's kink
    g = torch.tensor([0.6, -0.8], dtype=torch.float64)
    deltas = list(HF_KINK_DELTAS)
    errors = [hf_error(task, w, 0, g, d) for d in deltas]
    rho = float(P[s]) * float(x.norm()) ** 3  # the kinked sample's share of the user's Hessian-Lipschitz constant
    bound = [float(lemmas.hf_hvp_error()(rho=rho, delta=d, g_norm=1.0)) for d in deltas]
    taylor = [d * b for d, b in zip(deltas, bound)]
    row = RateRow(
        "HF error vs delta (Lipschitz Hessian)",
        local_slope(deltas, bound),
        deltas,
        errors,
        [0.0] * len(deltas),
        judge_exact(local_slope(deltas, np.divide(errors, bound)), rate_stats.margin(deltas, bound, taylor)),
        "Taylor delta^2 (a smooth loss)",
        f"loss |xᵀw − y|³/6 on the quadratic task's data, user 0's full data, at a zero residual of one sample; "
        f"error / (ρ_s δ‖g‖²/2) with that sample's ρ_s = p_s‖x_s‖³: "
        f"{', '.join(f'{e / b:.3g}' for e, b in zip(errors, bound))}",
        {"recalled_shape_slope": math.nan, "bound": bound},
    )
    return row
