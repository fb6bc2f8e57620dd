r"""Figure 2: the stationarity floor against heterogeneity, measured by TV and by W1.

Drawn from the rate table's rows "floor vs TV" and "floor vs W1"
(:func:`synthetic.rates.rate_table`, through :mod:`figures._floors`): quadratic task,
heterogeneity dial h moving every user's distribution away from the mixture, partial
participation r = 0.2, τ = 1, batches 200, each run started at the minimiser w*_α; the
measured quantity is φ(h) − φ(0), the part of the stationary floor that heterogeneity
adds (batch-means 95 % intervals), against the RMS over users of TV(p_i, p̄) and of
W1(p_i, p̄) (exact, linear program).  The predicted slope is the local slope of the
γ-part of the derived bound's client-sampling term, with γ_G, γ_H from the distance
statements of docs/paper.md §6 (γ ≤ 2B·TV, 2L·TV; γ ≤ L_θ·W1, ρ_θ·W1 with L_θ, ρ_θ at w*);
the recalled shape's slope beside it.  Both panels share the same runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from . import _floors
from ._floor_figure import judged, rate_report
from .style import (
    BOUND_STYLE,
    OKABE_ITO,
    finish,
    plural,
    render,
    shared_legend,
    suptitle,
    tightness,
    tightness_span,
    tightness_text,
)

NAME = "heterogeneity"
TITLE = "Stationarity floor against heterogeneity (TV and W1)"
#: panel -> (rate-table row, x label, colour, marker); sky blue: no algorithm's colour (figure 1), not a bound's
PANELS = {
    "TV": ("floor vs TV", r"RMS over users of TV$(p_i, \bar p)$", OKABE_ITO["sky blue"], "o"),
    "W1": (
        "floor vs W1",
        r"RMS W$_1(p_i, \bar p)$ on $\theta=(x, y)$",
        OKABE_ITO["sky blue"],
        "s",
    ),
}
#: W1 and TV are called proportional on this task when W1/TV varies by less than this (relative) over the points
PROPORTIONAL = 1e-6


def run(root: Path, level: str) -> None:
    """The rate table at ``level`` (reused when saved) and this figure's manifest naming it."""
    _floors.run_figure(root, NAME, level)


def same_runs(row_tv: dict, row_w1: dict) -> bool:
    """Whether the W1 row re-plots the TV row's runs (a W1 row without a label-shift sweep) rather than its own
    experiment."""
    return "shift" not in row_w1.get("extra", {}) and row_w1["means"] == row_tv["means"]


def w1_over_tv(row_tv: dict, row_w1: dict) -> tuple[bool, float]:
    """(whether W1 = c·TV at every point, the mean ratio c); only meaningful when both rows share their runs."""
    if not same_runs(row_tv, row_w1):
        return False, math.nan
    ratios = [w / t for w, t in zip(row_w1["xs"], row_tv["xs"]) if t > 0]
    if not ratios:
        return False, math.nan
    c = sum(ratios) / len(ratios)
    return max(abs(r / c - 1) for r in ratios) < PROPORTIONAL, c


def ratio_panel(ax, pairs: list[dict], colors: dict[str, Any]) -> None:
    """Panel (c): bound / measured at every point of each row, on a log axis with the line bound = measured (1×):
    a bound that holds sits above that line; how far above is its tightness."""
    position = 0
    ticks, labels = [], []
    for p in pairs:
        ratios = [b / m for b, m in zip(p["bound"], p["measured"]) if m > 0]
        xs = list(range(position, position + len(ratios)))
        ax.plot(xs, ratios, marker=p["marker"], linestyle="none", color=colors[p["distance"]], label=None)
        ticks += xs
        labels += [f"{x:.2g}" for x, m in zip(p["x"], p["measured"]) if m > 0]
        ax.text((xs[0] + xs[-1]) / 2, 0.5, p["distance"], transform=ax.get_xaxis_transform(), ha="center")
        position += len(ratios) + 1
    ax.set_yscale("log")
    ax.axhline(1.0, color=BOUND_STYLE["derived"]["color"], linewidth=1.0, label="bound = measured (1×)")
    ax.set_ylim(0.3, None)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=60)
    ax.set_xlim(-0.7, position - 0.3)
    ax.set_xlabel("each point's TV, then W$_1$")
    ax.set_ylabel("bound's term / measured")


def draw(root: Path, out: Path) -> dict:
    """Draw from the rate table's rows; returns ``{"files", "caption", "details", "report", "headline"}``.

    (a), (b): the measured rise of the floor against TV and W1 with the fitted, predicted and recalled slopes;
    (c): the derived bound's γ-part over the measured rise at every point (its tightness), on its own axis
    instead of a rescaled twin axis."""
    rows, table = _floors.read_rows(root, NAME)
    tol = table.get("tolerance")
    row_tv, row_w1 = rows[PANELS["TV"][0]], rows[PANELS["W1"][0]]
    tv_levels, w1_levels, level_source = _floors.heterogeneity_levels(table, row_tv, row_w1)
    levels = {"TV": tv_levels, "W1": w1_levels}
    shared = same_runs(row_tv, row_w1)
    ylabels = {
        "TV": r"$\varphi(h)-\varphi(0)$",
        "W1": r"$\varphi(h)-\varphi(0)$" if shared else r"$\varphi(h{=}1, s)-\varphi(h{=}0, s)$",
    }
    pairs = []
    for dist, (row_name, _, _, marker) in PANELS.items():
        level = levels[dist]
        if level is not None:
            row = rows[row_name]
            pairs.append(
                {
                    "panel": "c",
                    "what": f"γ-part of the client-sampling term, γ via {dist}",
                    "distance": dist,
                    "marker": marker,
                    "x": list(row["xs"]),
                    "bound": list(level),
                    "measured": list(row["means"]),
                }
            )
    low, high = tightness([b for p in pairs for b in p["bound"]], [m for p in pairs for m in p["measured"]])
    tight_text = tightness_text(low, high)
    verdict = ("holds" if low >= 1 else "VIOLATED") if pairs else "not drawn"
    slopes = ", ".join(f"{d}: {_floors.verdict_text(rows[PANELS[d][0]], tol)}" for d in PANELS)
    headline = f"The floor rises with heterogeneity (slopes {slopes}); the bound's term {verdict} ({tight_text})"
    colors = {"TV": PANELS["TV"][2], "W1": OKABE_ITO["blue"]}
    results = {}

    def panels(fig, axes, profile):
        for i, (ax, (dist, (row_name, xlabel, _color, marker))) in enumerate(zip(axes, PANELS.items())):
            row = rows[row_name]
            results[dist] = _floors.draw_row(ax, row, xlabel, colors[dist], marker)
            ax.set_ylabel(ylabels[dist])
            what = "" if dist == "TV" or shared else " (s varied)"
            ax.set_title(f"({'ab'[i]}) floor vs {dist}{what}:\n{_floors.verdict_text(row, tol)}", loc="left")
        ratio_panel(axes[2], pairs, colors)
        axes[2].set_title(f"(c) bound / measured: {verdict}\n{tightness_span(low, high)}", loc="left")
        short = f"Heterogeneity raises the floor; bound {verdict}, {tight_text}"
        suptitle(fig, headline if profile == "paper" else short)
        shared_legend(fig, axes)

    files = render(out, "fig2_heterogeneity", 3, panels, height=1.1)
    parts = [_floors.row_sentence(f"against {d}", results[d]) for d in PANELS]
    hs = row_tv.get("extra", {}).get("h", [])
    proportional, c = w1_over_tv(row_tv, row_w1)
    if proportional:
        w1_note = (
            f"On this task W1 = {c:.3g}·TV at every h (the dial moves all users' distributions along the same "
            "segment), so the two panels show the same runs on rescaled x axes and cannot tell which distance "
            "governs the floor; only the bound's levels differ (γ from the TV statements vs the W1 ones). "
        )
    elif shared:
        w1_note = "Both panels show the same runs; W1 is not proportional to TV over them. "
    else:
        tv_fixed = row_w1.get("extra", {}).get("tv")
        tv_text = f" (TV = {tv_fixed[0]:.3g} at every point)" if isinstance(tv_fixed, list) and tv_fixed else ""
        w1_note = (
            "Panel (b) is a different sweep of the rate table: at h = 1 the per-cone label shift s is "
            f"varied, which moves W1 while TV stays fixed{tv_text}, so the two panels can tell the distances "
            "apart. "
        )
    level_note = (
        "Panel (c) divides the derived bound's γ-part of the client-sampling term (γ_G, γ_H from the TV or W1 "
        f"statements and the task's exact constants, from {level_source}) by the measured rise at each point. "
        if pairs
        else f"The bound's level is not drawn: {level_source}. "
    )
    n_seeds = len(table["seeds"])
    details = (
        "What it shows: the part of the stationary floor that heterogeneity adds, φ(h) − φ(0) with "
        "φ = (1/τ)Σ_t ‖∇F(w̄ at local step t of round k+1)‖² averaged after a burn-in, on the quadratic task with "
        f"Per-FedAvg (exact HVP) started at the minimiser w*_α ({plural(n_seeds, 'seed')} × batch means, 95% "
        f"intervals; rate table '{table['length']}'), against the RMS total variation (a, dial "
        f"h = {', '.join(f'{h:g}' for h in hs)}) and the RMS 1-Wasserstein distance (b) between each user's "
        f"distribution and the mixture (both exact). Runs (a): {row_tv['note']}. Runs (b): {row_w1['note']}. "
        "These are the rate table's rows 'floor vs TV' and 'floor vs W1' (perfedavg check --rates), not a "
        "separate experiment. "
        + w1_note
        + "What the theory predicts: with partial participation the client-sampling term grows with γ², and the "
        "distance statements (docs/paper.md §6) bound γ_G, γ_H linearly by TV or W1. "
        + level_note
        + "The orange dashed line has the local slope of that term [derived] and the grey dotted one the recalled "
        "shape's slope [recalled], both drawn through the data's weighted centre (guides for the slope, not "
        "levels). " + judged(tol) + " Measured: " + "; ".join(parts) + "."
    )
    caption = (
        f"On the quadratic task (Per-FedAvg with exact HVP, r = 0.2, {plural(n_seeds, 'seed')}), the part of the "
        "stationary floor that heterogeneity adds rises with the users' distance from the mixture, measured as "
        "total variation (a) and as W1 at fixed TV (b). "
        f"The theory predicts slopes of {row_tv['predicted']:+.2f} and {row_w1['predicted']:+.2f} (orange); the "
        f"fitted ones are {_floors.slope_text(row_tv['fitted'], row_tv['low'], row_tv['high'])} and "
        f"{_floors.slope_text(row_w1['fitted'], row_w1['low'], row_w1['high'])} ({slopes}). "
        f"(c) The derived bound's term over the measured rise: {verdict}, {tight_text}."
    )
    report = [
        {
            "statement": f"rise of the floor ≤ γ-part of the client-sampling term, γ via {p['distance']}",
            "section": "§6",
            "bound": max(p["bound"]),
            "measured": max(p["measured"]),
            "ratio": tightness(p["bound"], p["measured"]),
            "verdict": "holds" if min(tightness(p["bound"], p["measured"])) >= 1 else "VIOLATED",
            "kind": "bound",
        }
        for p in pairs
    ] + [rate_report(rows[PANELS[d][0]], tol, "§6") for d in PANELS]
    return finish(
        out,
        "fig2_heterogeneity",
        files,
        headline=headline,
        span=(low, high),
        verdict=verdict,
        pairs=pairs,
        details=details,
        caption=caption,
        report=report,
        tight_text=tight_text,
        twin_axes=0,
    )
