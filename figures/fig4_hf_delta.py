r"""Figure 4: error of the Hessian-free central difference against δ, exact HVP as reference.

On one user's full data of the synthetic logistic task (exact ρ, B) at a random point w
and a direction g of norm B, :func:`synthetic.measure.hf_error` measures

.. math:: e(\delta) = \Big\|\frac{\nabla f_i(w+\delta g)-\nabla f_i(w-\delta g)}{2\delta}
          - \nabla^2 f_i(w)\,g\Big\|

against the exact Hessian-vector product (double backward), in float64 and float32.
The derived bound ρδ‖g‖²/2 (``theory.lemmas.hf_hvp_error``, provenance ``derived``) is
drawn over it where it applies (the truncation branch); below the best δ the error grows like
ε_mach‖∇f_i‖/δ (round-off of the difference of two nearly equal gradients), a regime no bound of the
paper covers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perfedavg.runs.registry import build_task
from perfedavg.runs.rundir import atomic_write_json, read_json
from synthetic.measure import hf_error

from . import store
from .style import (
    BOUND_STYLE,
    OKABE_ITO,
    bound_label,
    finish,
    plural,
    render,
    shared_legend,
    suptitle,
    tightness,
    tightness_span,
    tightness_text,
)

NAME = "hf_delta"
TITLE = "Hessian-free finite-difference error against δ"
TASK = {"name": "logistic", "radius": 2.0}
DELTAS = {
    "tiny": [10.0**-e for e in (1, 4, 8)],
    "quick": [10.0**-e for e in range(0, 13)],
    "full": [10.0 ** (-e / 2) for e in range(0, 27)],
}
POINTS = {"tiny": 1, "quick": 3, "full": 10}
#: the paper's finite-difference width for Per-FedAvg (HF) (docs/paper.md §7, [recalled])
PAPER_DELTA = 1e-3
#: consecutive errors within this relative difference count as "flat" (float32 perturbation lost to rounding)
FLAT_RELATIVE = 0.01


def _flat_stretch(deltas, errors) -> tuple[float, float] | None:
    """(largest δ from which the error stays constant to the smallest δ, that level), or None: the stretch where
    w ± δg rounds to w and the central difference is exactly 0 (needs at least two such δ)."""
    i = len(errors) - 1
    while i > 0 and abs(errors[i - 1] - errors[-1]) <= FLAT_RELATIVE * errors[-1]:
        i -= 1
    return (float(deltas[i]), float(errors[-1])) if i < len(errors) - 1 else None


def tasks(root: Path, level: str) -> list[tuple[Any, tuple]]:
    """:func:`run` as one piece of work (:func:`figures.build.build` runs it in a worker process beside the other
    figures'; :func:`run` then finds ``hf_delta/results.json`` up to date)."""
    return [(run, (root, level))]


def run(root: Path, level: str) -> None:
    """Measure e(δ) at a few random points (float64 and float32) into ``hf_delta/results.json``."""
    path = Path(root) / NAME / "results.json"
    want = {"level": level, "task": TASK, "deltas": DELTAS[level], "points": POINTS[level]}
    if path.is_file():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in want} == want:
            return
    task64 = build_task(TASK).to(torch.float64)
    task32 = task64.to(torch.float32)
    B, rho = task64.constants["B"], task64.constants["rho"]
    gen = torch.Generator().manual_seed(0)
    P = task64.init_params(gen).shape[0]
    rows = []
    for point in range(POINTS[level]):
        w = torch.randn(P, generator=gen, dtype=torch.float64)
        g = torch.randn(P, generator=gen, dtype=torch.float64)
        g = g / g.norm() * B
        client = point % task64.n_clients
        X, Y, Pw = task64.train.gather(torch.tensor([client]))
        with torch.enable_grad():
            W = w.clone().unsqueeze(0).requires_grad_(True)
            (grad,) = torch.autograd.grad((Pw * task64.per_sample_loss(W, X, Y)).sum(), W)
        rows.append(
            {
                "point": point,
                "client": client,
                "grad_norm": float(grad.norm()),
                "float64": [hf_error(task64, w, client, g, d) for d in DELTAS[level]],
                "float32": [hf_error(task32, w.float(), client, g.float(), d) for d in DELTAS[level]],
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**want, "B": B, "rho": rho, "g_norm": B, "rows": rows})


def truncation_branch(deltas, rho: float, g_norm: float, eps: float, grad_norm: float) -> np.ndarray:
    r"""Where the bound applies: the δ at which the round-off model ε‖∇f_i‖/δ lies below the truncation bound
    ρδ‖g‖²/2 (the bound covers the exact-arithmetic error only; below that δ the floating-point error of the
    difference of two nearly equal gradients, which no bound of the paper covers, takes over)."""
    d = np.asarray(deltas, float)
    return eps * grad_norm / d < rho * d * g_norm**2 / 2


def draw(root: Path, out: Path) -> dict[str, Any]:
    """Draw e(δ) from ``hf_delta/results.json``, float64 in (a) and float32 in (b), each with the derived bound
    ρδ‖g‖²/2 drawn over its truncation branch only (:func:`truncation_branch`); returns ``{"files", "caption",
    "details", "report", "headline"}``."""
    path = Path(root) / NAME / "results.json"
    if not path.is_file():
        raise store.Skip(f"no saved results for '{NAME}' in {root}")
    res = read_json(path)
    d = np.asarray(res["deltas"])
    rho, g_norm = res["rho"], res["g_norm"]
    bound = rho * d * g_norm**2 / 2
    gnorm = float(np.mean([r["grad_norm"] for r in res["rows"]]))
    kinds = (
        ("float64", OKABE_ITO["blue"], "o", float(np.finfo(np.float64).eps)),
        ("float32", OKABE_ITO["vermillion"], "s", float(np.finfo(np.float32).eps)),
    )
    summary: dict[str, tuple] = {}
    pairs: list[dict[str, Any]] = []
    curves: dict[str, tuple] = {}
    for key, _, _, eps in kinds:
        E = np.array([r[key] for r in res["rows"]])
        mean = E.mean(0)
        on = truncation_branch(d, rho, g_norm, eps, gnorm)
        curves[key] = (E, mean, on)
        best = int(np.argmin(mean))
        summary[key] = (d[best], mean[best])
        pairs.append(
            {
                "panel": "ab"[len(pairs)],
                "what": f"ρδ‖g‖²/2 on the truncation branch, {key}",
                "x": d[on].tolist(),
                "bound": bound[on].tolist(),
                "measured": mean[on].tolist(),
                "measured_max": E.max(0)[on].tolist(),
            }
        )
    low, high = tightness([b for p in pairs for b in p["bound"]], [m for p in pairs for m in p["measured"]])
    holds = all(all(m <= b for m, b in zip(p["measured_max"], p["bound"])) for p in pairs)
    verdict = "holds" if holds else "VIOLATED"
    headline = (
        f"HF's error stays under ρδ‖g‖²/2 wherever truncation dominates: {verdict}, {tightness_text(low, high)}; "
        "round-off takes over below (no bound covers it)"
    )
    n_points = len(res["rows"])
    flat = _flat_stretch(d, curves["float32"][1])

    def panels(fig, axes, profile):
        for i, (ax, (key, color, marker, eps)) in enumerate(zip(axes, kinds)):
            E, mean, on = curves[key]
            ax.loglog(
                d,
                mean,
                marker=marker,
                color=color,
                label=f"measured error, {key} (mean of {plural(n_points, 'point')})",
            )
            if len(E) > 1:
                ax.fill_between(d, E.min(0), E.max(0), color=color, alpha=0.15, linewidth=0)
            ax.loglog(
                d,
                eps * gnorm / d,
                color=OKABE_ITO["grey"],
                linestyle=":",
                linewidth=1.2,
                label=r"round-off model $\varepsilon\|\nabla f_i\|/\delta$",
            )
            ax.loglog(
                d[on],
                bound[on],
                **BOUND_STYLE["derived"],
                label=bound_label(r"bound $\rho\delta\|g\|^2/2$", "derived"),
            )
            if (~on).any():
                edge = float(d[on].min()) if on.any() else float(d.max())
                ax.axvspan(
                    edge,
                    float(d.min()) / 3,
                    color=OKABE_ITO["grey"],
                    alpha=0.1,
                    linewidth=0,
                    label="round-off branch: no bound",
                )
            ax.axvline(
                PAPER_DELTA,
                color=OKABE_ITO["grey"],
                linestyle="--",
                linewidth=1.0,
                label=f"paper's δ = {PAPER_DELTA:g} [recalled]",
            )
            ax.set_xlim(float(d.max()) * 3, float(d.min()) / 3)  # δ decreasing to the right
            ax.set_xlabel(r"finite-difference width $\delta$ (decreasing →)")
            ax.set_ylabel(r"$\|\mathrm{HF}(\delta) - \nabla^2 f_i(w)g\|$")
            lo_k, hi_k = tightness(pairs[i]["bound"], pairs[i]["measured"])
            ax.set_title(f"({'ab'[i]}) {key}: bound {tightness_span(lo_k, hi_k)} above\nwhere it applies", loc="left")
        suptitle(
            fig,
            headline
            if profile == "paper"
            else f"HF's error under its bound: {verdict}, {tightness_span(low, high)} above",
        )
        shared_legend(fig, axes)

    files = render(out, "fig4_hf_delta", 2, panels, height=1.05)
    smallest = "; ".join(f"{k}: smallest error {v[1]:.2g} at δ = {v[0]:.0e}" for k, v in summary.items())
    details = (
        "What it shows: the error of Per-FedAvg (HF)'s central difference [∇f_i(w+δg) − ∇f_i(w−δg)]/(2δ) against "
        "the exact Hessian-vector product ∇²f_i(w)g (double backward) as δ shrinks (x-axis reversed), in float64 "
        f"(a) and float32 (b), on the synthetic logistic task (ρ = {rho:.3g}, ‖g‖ = B = {g_norm:.3g}), mean over "
        f"{plural(n_points, 'random point')}. What the theory predicts: the error is at most ρδ‖g‖²/2 [derived] "
        "(the Hessian is ρ-Lipschitz), so it falls at least linearly in δ (like δ² for a smooth loss, as here); "
        "below the best δ the round-off of subtracting two nearly equal gradients takes over and the error grows "
        "like ε‖∇f_i‖/δ (dotted), which the bound does not cover: the bound is drawn only where that model lies "
        f"below it (the grey region is the round-off branch). {smallest}. The paper's δ = 1e-3 is on the "
        f"{'truncation' if summary['float64'][0] <= 1e-3 else 'round-off'} branch in float64 and on the "
        f"{'truncation' if summary['float32'][0] <= 1e-3 else 'round-off'} branch in float32 (grey dashed line)."
        + (
            f" The float32 curve is flat at {flat[1]:.2g} for δ ≤ {flat[0]:.0e}: there δ‖g‖ is below float32's "
            "resolution of w's coordinates (about 6e-8 relative), so w + δg and w − δg round to w itself, the two "
            "gradients are identical, the difference quotient is 0, and the error is the whole ‖∇²f_i(w)g‖; the "
            "ε/δ round-off model (dotted), which assumes the perturbation is represented, stops applying there."
            if flat
            else ""
        )
    )
    caption = (
        "The error of Per-FedAvg (HF)'s finite-difference Hessian-vector product against the exact one, as the "
        "width δ shrinks, in float64 (a) and float32 (b). "
        f"Where truncation dominates, the derived bound ρδ‖g‖²/2 {verdict} ({tightness_text(low, high)}); "
        "at smaller δ round-off takes over, which no bound covers (grey). "
        f"The paper's δ = 1e-3 lies on the "
        f"{'truncation' if summary['float32'][0] <= 1e-3 else 'round-off'} branch in float32."
    )
    report = [
        {
            "statement": f"HF error ≤ ρδ‖g‖²/2, {key} (truncation branch)",
            "section": "§4",
            "bound": max(p["bound"]) if p["bound"] else None,
            "measured": max(p["measured"]) if p["measured"] else None,
            "ratio": tightness(p["bound"], p["measured"]),
            "verdict": "holds" if all(m <= b for m, b in zip(p["measured_max"], p["bound"])) else "VIOLATED",
            "kind": "bound",
        }
        for (key, *_), p in zip(kinds, pairs)
    ]
    return finish(
        out,
        "fig4_hf_delta",
        files,
        headline=headline,
        span=(low, high),
        verdict=verdict,
        pairs=pairs,
        details=details,
        caption=caption,
        report=report,
    )
