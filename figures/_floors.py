r"""Shared machinery of the floor figures (2 and 3): runs at several values of one knob,
the stationary floor of each, its fitted log-log slope, and the derived bound's floor.

The *floor* of a run is the mean of ‖∇F(w_k)‖² (exact) over the evaluated rounds of the
last half (:meth:`figures.store.Run.tail_mean`); averaged over seeds with a Student-t
95 % interval.  The experiment designs follow ``synthetic/rates.py`` (logistic task,
exact constants, float64), where each knob isolates one term of the bound.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import store

#: base of every floor experiment: logistic task with feature radius 2 (L = 1, so the transient
#: from w_0 = 0 dies out within the quick K), α = 1/(2L), r = 0.1 (two users per round)
BASE = {"algorithm": "exact", "alpha": 0.5, "beta": 0.1, "tau": 1, "r": 0.1, "D": 100, "D1": 100, "D2": 100,
        "dtype": "float64", "eval_every": 2, "checkpoint_every": 0, "task": {"name": "logistic", "radius": 2.0}}
SCALE = {"tiny": {"K": 6, "seeds": 1}, "quick": {"K": 120, "seeds": 2}, "full": {"K": 400, "seeds": 5}}


def config(changes: dict, level: str, seed: int) -> dict:
    """BASE with ``changes`` (a ``task`` entry updates the task table), the level's K, and ``seed``."""
    cfg = {**BASE, **{k: v for k, v in changes.items() if k != "task"}}
    cfg["task"] = {**BASE["task"], **changes.get("task", {})}
    cfg.update(K=SCALE[level]["K"], seed=seed)
    return cfg


def run_knob(root: Path, figure: str, knob: str, values, changes_of, level: str) -> list[dict]:
    """Run ``changes_of(value)`` for every value and seed; manifest entries ``{dir, knob, x, seed}``."""
    entries = []
    for x in values:
        for seed in range(SCALE[level]["seeds"]):
            cfg = config(changes_of(x), level, seed)
            d = Path(root) / figure / store.run_name(f"{knob}{x:g}-seed{seed}", cfg)
            store.ensure_run(cfg, d)
            entries.append({"dir": str(d.relative_to(root)), "knob": knob, "x": float(x), "seed": seed})
    return entries


def floors(root: Path, entries: list[dict], knob: str):
    """``(xs, means, halfwidths, runs_by_x)`` of the floors of ``knob``'s runs."""
    by_x: dict[float, list] = {}
    for e in entries:
        if e["knob"] == knob:
            by_x.setdefault(e["x"], []).append(store.load_run(Path(root) / e["dir"]))
    xs = sorted(by_x)
    stats = [store.mean_and_halfwidth([r.tail_mean() for r in by_x[x]]) for x in xs]
    return xs, [m for m, _ in stats], [h for _, h in stats], by_x


def slope_text(name: str, slope: float, lo: float, hi: float) -> str:
    if math.isfinite(lo):
        return f"{name} {slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return f"{name} {slope:+.2f}"


def draw_panel(ax, xs, means, halfs, bound_xs, bound_vals, predicted: float, xlabel: str, color, marker,
               bound_label_text: str):
    """One log-log panel: measured floors with 95 % intervals, the fitted slope, the predicted
    slope (guide through the measured geometric mean) and the derived bound's floor.  Returns
    ``(fitted, low, high, bound_slope)``."""
    import numpy as np

    from .style import BOUND_STYLE, RATE_COLOR, bound_label

    xs_a, m_a = np.asarray(xs, float), np.asarray(means, float)
    ok = m_a > 0
    fitted, lo, hi = store.fit_slope(xs_a[ok], m_a[ok]) if ok.sum() >= 2 else (math.nan, math.nan, math.nan)
    yerr = np.minimum(np.asarray(halfs), m_a * 0.999)
    ax.errorbar(xs_a, m_a, yerr=yerr, fmt=marker + "-", color=color, capsize=3,
                label=slope_text("measured floor (95% CI); fitted slope", fitted, lo, hi))
    gx = np.exp(np.log(xs_a[ok]).mean())
    gy = np.exp(np.log(m_a[ok]).mean())
    grid = np.geomspace(xs_a.min(), xs_a.max(), 20)
    ax.plot(grid, gy * (grid / gx) ** predicted, color=RATE_COLOR, linestyle="--", linewidth=1.4,
            label=bound_label(f"predicted slope {predicted:+g}", "derived"))
    bx, bv = np.asarray(bound_xs, float), np.asarray(bound_vals, float)
    bound_slope = math.nan
    fin = np.isfinite(bv) & (bv > 0)
    if fin.sum() >= 2:
        bound_slope = store.fit_slope(bx[fin], bv[fin])[0]
        ax.plot(bx[fin], bv[fin], **BOUND_STYLE["derived"],
                label=bound_label(f"{bound_label_text} (slope {bound_slope:+.2f})", "derived"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    return fitted, lo, hi, bound_slope
