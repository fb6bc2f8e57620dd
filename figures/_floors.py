r"""Shared machinery of the floor figures (2 and 3): the rate table's rows, saved once, drawn twice.

The floors are *measured by the rate table* (:func:`synthetic.rates.rate_table`, the
``perfedavg check --rates`` table): quadratic task started at its minimiser w*_α, a
burn-in of ``BURN`` mixing times, the stationary mean of φ_k with a batch-means 95 %
interval, the weighted log-log slope with its interval, and the predicted slope = the
local slope of the derived explicit bound's relevant term(s) with the task's exact
constants [derived] (the recalled shape's slope beside it [recalled]).  Nothing is
re-measured here.

:func:`ensure_rates` runs the table into ``<runs>/rates-<length>`` (finished run
directories are reused: ``rate_table`` resumes) and saves its rows as
``<runs>/rates-<length>/rows.json`` (atomic); each figure's manifest names that file
(:func:`run_figure`), and :func:`read_rows` is all ``draw`` reads.  Figures 2 and 3 share one
table per level: whichever runs second finds it saved.
The JSON carries a signature of the table's design (grid, base config, lengths, seeds,
tolerance), so a changed design is recomputed, never drawn from stale rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from . import store

#: figure level -> rate-table length (:data:`synthetic.rates.GRID`'s keys) and seeds
LENGTH = {"tiny": "smoke", "quick": "quick", "full": "full"}
SEEDS = {"tiny": [0], "quick": [0, 1, 2], "full": [0, 1, 2, 3, 4]}  # quick/full as `perfedavg check --rates`
ROWS = "rows.json"


def rates_dir(root: Path, level: str) -> Path:
    return Path(root) / f"rates-{LENGTH[level]}"


def _signature(length: str, seeds: list[int]) -> str:
    """SHA-1 of everything in ``synthetic.rates`` that decides the table's numbers at ``length``."""
    from synthetic import rates

    design = {"grid": rates.GRID[length], "base": rates.BASE, "burn": rates.BURN, "measure": rates.MEASURE[length],
              "batches": rates.BATCHES, "tolerance": rates.TOLERANCE, "seeds": list(seeds)}
    return hashlib.sha1(json.dumps(design, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ensure_rates(root: Path, level: str, progress: bool = False) -> Path:
    """``<runs>/rates-<length>/rows.json`` for ``level``, running :func:`synthetic.rates.rate_table` unless a
    saved one with the same design signature is there (its run directories are reused either way)."""
    from perfedavg.rundir import atomic_write_json, read_json
    from synthetic import rates

    length, seeds = LENGTH[level], SEEDS[level]
    out = rates_dir(root, level)
    path = out / ROWS
    signature = _signature(length, seeds)
    if path.is_file():
        try:
            if read_json(path).get("signature") == signature:
                return path
        except ValueError:
            pass  # unreadable: recompute
    rows, bound = rates.rate_table(out, seeds, length=length, progress=progress)
    atomic_write_json(path, {"length": length, "seeds": seeds, "signature": signature,
                             "tolerance": rates.TOLERANCE, "rows": [r.as_dict() for r in rows],
                             "derived_bound": bound})
    return path


def read_rows(root: Path, figure: str) -> tuple[dict, dict]:
    """``({row name: row dict}, saved table)`` of the rate table that ``figure``'s manifest names (written by
    its ``run``); :class:`figures.store.Skip` when either is missing."""
    from perfedavg.rundir import read_json

    man = store.read_manifest(root, figure)
    path = Path(root) / man["rates"]
    if not path.is_file():
        raise store.Skip(f"no saved rate table at {path} (run `perfedavg figures {figure} --runs {root}`)")
    table = read_json(path)
    return {r["name"]: r for r in table["rows"]}, table


def run_figure(root: Path, figure: str, level: str) -> None:
    """A floor figure's ``run``: the rate table for ``level`` (:func:`ensure_rates`) and a manifest naming it."""
    path = ensure_rates(root, level)
    store.write_manifest(root, figure, level, [], rates=str(path.relative_to(root)))


def slope_text(slope: float, lo: float, hi: float) -> str:
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return f"{slope:+.2f}"


def draw_row(ax, row: dict, xlabel: str, color, marker) -> dict:
    r"""One log-log panel from a rate-table row: the measured means with their 95 % intervals, the fitted
    line (slope and interval in the legend), the derived bound's predicted slope and the recalled shape's
    slope as guides through the measured points' weighted centre, the verdict in the legend.  Points with a
    non-positive mean (a difference of floors below its noise) cannot sit on a log axis: they are counted
    and returned.  Returns ``{"fitted", "low", "high", "predicted", "recalled", "verdict", "dropped"}``."""
    import numpy as np
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    from .style import BOUND_STYLE, RATE_COLOR, bound_label

    xs, m, h = (np.asarray(row[k], float) for k in ("xs", "means", "halfwidths"))
    ok = m > 0
    # lower error bar clipped above zero so the log axis can draw it (the interval itself is in the JSON)
    lower = np.minimum(np.where(np.isfinite(h), h, m), m * 0.95)
    upper = np.where(np.isfinite(h), h, 0.0)
    ax.errorbar(xs[ok], m[ok], yerr=[lower[ok], upper[ok]], fmt=marker, color=color, capsize=3, markersize=6,
                label="measured, mean ± 95% interval (batch means)")
    fitted, lo, hi = row["fitted"], row["low"], row["high"]
    predicted = row["predicted"]
    recalled = row.get("extra", {}).get("recalled_shape_slope", math.nan)
    if ok.sum() >= 1:
        # weighted centre in log-log (weights as the fit's: 1/s², s = relative half-width): the guides pass here
        s = np.where(np.isfinite(h[ok]) & (h[ok] > 0), h[ok] / (1.96 * m[ok]), 1.0)
        w = 1.0 / np.maximum(s, 1e-12) ** 2
        cx = float(np.exp((w * np.log(xs[ok])).sum() / w.sum()))
        cy = float(np.exp((w * np.log(m[ok])).sum() / w.sum()))
        grid = np.geomspace(xs.min(), xs.max(), 30)
        ax.plot(grid, cy * (grid / cx) ** fitted, color=color, linewidth=1.3,
                label=f"fitted slope {slope_text(fitted, lo, hi)}")
        ax.plot(grid, cy * (grid / cx) ** predicted, color=RATE_COLOR, linestyle="--", linewidth=1.6,
                label=f"{bound_label(f'predicted slope {predicted:+.2f}', 'derived')} (bound\'s term): {row['verdict']}")
        if math.isfinite(recalled):
            ax.plot(grid, cy * (grid / cx) ** recalled, **{**BOUND_STYLE["recalled"], "linewidth": 1.4},
                    label=bound_label(f"recalled shape's slope {recalled:+.2f}", "recalled"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    # ticks at the measured x values only, no minor labels: log-axis minor labels collide on a narrow range
    ax.xaxis.set_major_locator(FixedLocator(list(xs)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{x:.3g}" for x in xs])
    ax.set_xlabel(xlabel)
    pad = (xs.max() / xs.min()) ** 0.08
    ax.set_xlim(xs.min() / pad, xs.max() * pad)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: not labels[i].startswith("measured"))  # measured first
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7.5, loc="best")
    return {"fitted": fitted, "low": lo, "high": hi, "predicted": predicted, "recalled": recalled,
            "verdict": row["verdict"], "dropped": int((~ok).sum())}


def row_sentence(what: str, r: dict) -> str:
    """Caption sentence of one panel's numbers."""
    text = (f"{what}: fitted slope {slope_text(r['fitted'], r['low'], r['high'])} (95% interval), predicted "
            f"{r['predicted']:+.2f} by the derived bound's term [derived] (recalled shape {r['recalled']:+.2f} "
            f"[recalled]): {r['verdict']}")
    if r["dropped"]:
        text += f" ({r['dropped']} point(s) with a non-positive measured difference not drawn on the log axis)"
    return text
