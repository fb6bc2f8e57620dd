r"""One floor figure from rate-table rows (figures 3 and 4): up to three panels, a bound check, a report.

Each panel is a rate-table row (:func:`figures._floors.draw_row`: measured floors, fitted, predicted and
recalled slopes, the row's PASS / FAIL in its title).  Beside the slopes, the derived bound on the level
itself (:func:`floor_levels`: the bound without its optimization term, exact constants) is
compared with the measured floor at every point; those ratios are the tightness the figure states, and the
panel's title says whether the bound holds there.  The bound, decades above the data, is not drawn on the
data's axis (it would flatten the data the slopes are read from); its ratio is stated instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthetic.rates import bound_terms

from . import _floors
from .style import finish, plural, render, shared_legend, suptitle, tightness, tightness_span, tightness_text

#: rate-table row names as printed (the table's own names are ASCII)
PRETTY = {"beta": "β", "tau": "τ", "alpha": "α", "delta": "δ", "Gamma~1": "Γ ≈ 1"}


def pretty(name: str) -> str:
    """A rate-table row's name with its symbols (``floor vs beta`` -> ``floor vs β``)."""
    for ascii_name, symbol in PRETTY.items():
        name = name.replace(ascii_name, symbol)
    return name


def judged(tol: float | None) -> str:
    """How the rows' verdicts were reached, for the captions' details."""
    if tol is None:
        return (
            "Verdicts are the rate table's own (perfedavg check --rates): equivalence tests of the fitted exponent "
            "against the predicted one, with a margin declared per row."
        )
    return (
        f"PASS when the predicted slope lies within ±{tol:g} of the fitted 95% interval ('only within' when it "
        "lies outside the interval itself)."
    )


def rate_report(row: dict, tol: float | None, section: str) -> dict:
    """A rate row as a line of the index's table: the measured slope against the predicted one and the
    verdict (a slope, so no bound / measured)."""
    return {
        "statement": f"slope of {pretty(row['name'])}",
        "section": section,
        "bound": row["predicted"],
        "measured": row["fitted"],
        "ratio": None,
        "verdict": _floors.verdict_text(row, tol),
        "kind": "rate",
        "note": f"fitted {_floors.slope_text(row['fitted'], row['low'], row['high'])}",
    }


#: rate-table row -> (folder of its runs under the table, the config field its x is)
FLOOR_ROWS = {"floor vs D": ("D", "D"), "floor vs beta": ("beta", "beta"), "drift vs tau": ("tau", "tau")}


def floor_levels(table: dict, row: dict) -> list[float] | None:
    r"""The derived bound on the stationary level at each point of a floor row: the bound without its
    optimization term (which K → ∞ removes; every term evaluated with the task's exact constants by
    :func:`synthetic.rates.bound_terms` on the row's *saved* run configs).  It bounds the measured floor φ and so
    also φ(τ) − φ(1) for the drift row.  Noise-free rows carry their own bound (``extra.bound``, the noise-free
    cycle's).  ``None`` when the configs are not there."""
    extra = row.get("extra", {})
    if extra.get("bound") is not None:
        return [float(v) for v in extra["bound"]]
    if row["name"] not in FLOOR_ROWS:
        return None
    folder, field = FLOOR_ROWS[row["name"]]
    by_x = _floors._saved_configs(Path(table["_dir"]) / folder, lambda c: float(getattr(c, field)))
    try:
        terms = [bound_terms(by_x[float(x)])[0] for x in row["xs"]]
    except KeyError:
        return None
    return [sum(v for k, v in t.items() if k != "optimization") for t in terms]


#: how a panel's points were obtained: noise-free rows are a closed form, the others stationary means of runs
EXACT_LABEL = "exact floor, noise-free cycle (closed form)"


def draw_floor_figure(
    root: Path, out: Path, name: str, stem: str, panels: dict[str, tuple], subject: str, section: str
) -> dict[str, Any]:
    """Draw the rows named in ``panels`` (those the rate table has, at most three) as figure ``stem``; returns
    ``{"files", "caption", "details", "report", "headline"}``.  ``subject`` names what is varied, for the
    headline."""
    rows, table = _floors.read_rows(root, name)
    tol = table.get("tolerance")
    chosen = [p for p in panels.values() if p[0] in rows][:3]
    pairs: list[dict[str, Any]] = []
    for row_name, *_ in chosen:
        levels = floor_levels(table, rows[row_name])
        if levels is not None:
            pairs.append(
                {
                    "panel": "abc"[len(pairs)],
                    "what": f"derived bound on the floor, {row_name}",
                    "row": row_name,
                    "x": list(rows[row_name]["xs"]),
                    "bound": levels,
                    "measured": list(rows[row_name]["means"]),
                }
            )
    by_row = {p["row"]: p for p in pairs}
    low, high = tightness([b for p in pairs for b in p["bound"]], [m for p in pairs for m in p["measured"]])
    verdict = ("holds" if low >= 1 else "VIOLATED") if pairs else "not drawn"
    slopes = "; ".join(f"{row[5]} {_floors.verdict_text(rows[row[0]], tol)}" for row in chosen)
    headline = f"Slopes against {subject}: {slopes}. The derived bound {verdict} ({tightness_text(low, high)})"
    results = {}

    def draw(fig, axes, profile):
        for i, (ax, (row_name, xlabel, ylabel, color, marker, short, _)) in enumerate(zip(axes, chosen)):
            row = rows[row_name]
            kwargs = {"measured_label": EXACT_LABEL} if "noise-free" in row_name else {}
            results[row_name] = _floors.draw_row(ax, row, xlabel, color, marker, **kwargs)
            ax.set_ylabel(ylabel)
            p = by_row.get(row_name)
            bound = f"bound {tightness_span(*tightness(p['bound'], p['measured']))} above" if p else "no bound"
            ax.set_title(f"({'abc'[i]}) {short}\nslope: {_floors.verdict_text(row, tol)}\n{bound}", loc="left")
        if profile == "paper":
            suptitle(fig, headline)
        else:
            suptitle(fig, f"Slopes against {subject}: {slopes}")
        shared_legend(fig, axes)

    files = render(out, stem, len(chosen), draw, height=1.1)
    parts = [_floors.row_sentence(p[6], results[p[0]]) for p in chosen]
    notes = [f"({'abc'[i]}) {rows[p[0]]['note']}" for i, p in enumerate(chosen)]
    n_seeds = len(table["seeds"])
    details = (
        "What it shows: the level at which φ_k = (1/τ)Σ_t ‖∇F(w̄ at local step t of round k+1)‖² settles "
        "(stationary mean after a burn-in, quadratic task, Per-FedAvg (exact HVP) started at the minimiser w*_α, "
        f"{plural(n_seeds, 'seed')} × batch means, 95% intervals; rate table '{table['length']}') when one knob "
        "is turned and the others held, each knob chosen to isolate one term of the derived bound. Panels: "
        + "; ".join(notes)
        + ". These are the rate table's rows (perfedavg check --rates), not a separate experiment. What the "
        "theory predicts: the orange dashed line has the local slope of the derived explicit bound's relevant "
        "terms with the task's exact constants [derived]; the grey dotted line the recalled shape's slope "
        "[recalled]; both pass through the data's weighted centre (slope guides, not levels). "
        + judged(tol)
        + " The derived bound on the level (all its terms but the optimization term, which a long "
        "run removes) is stated as bound / measured in each title; "
        f"over the figure {tightness_text(low, high)}. Measured: " + "; ".join(parts) + "."
    )
    caption = (
        f"Stationary floors on the quadratic task (Per-FedAvg with exact HVP, {plural(n_seeds, 'seed')}) as "
        f"{subject} {'is' if len(chosen) == 1 else 'are'} varied one at a time, each isolating a term of the "
        "derived bound. "
        f"Slopes against the prediction (orange): {slopes}. "
        f"The derived bound on the level {verdict} at every point, {tightness_text(low, high)}."
    )
    report = []
    for p in pairs:
        lo, hi = tightness(p["bound"], p["measured"])
        report.append(
            {
                "statement": f"floor ≤ derived bound ({pretty(p['row'])})",
                "section": section,
                "bound": max(p["bound"]),
                "measured": max(p["measured"]),
                "ratio": [lo, hi],
                "verdict": "holds" if lo >= 1 else "VIOLATED",
                "kind": "bound",
            }
        )
    report += [rate_report(rows[p[0]], tol, section) for p in chosen]
    return finish(
        out,
        stem,
        files,
        headline=headline,
        span=(low, high),
        verdict=verdict,
        pairs=pairs,
        details=details,
        caption=caption,
        report=report,
    )
