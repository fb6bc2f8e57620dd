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

import numpy as np
import torch

from perfedavg.runs.config import load_run_config
from perfedavg.runs.resolve import resolve
from perfedavg.runs.rundir import atomic_write_json, read_json
from synthetic import rates
from synthetic.rates import bound_terms

from . import pool, store
from .style import BOUND_STYLE, RATE_COLOR, bound_label, plural

#: figure level -> rate-table length (:data:`synthetic.rates.GRID`'s keys) and seeds
LENGTH = {"tiny": "smoke", "quick": "quick", "full": "full"}
SEEDS = {"tiny": [0], "quick": [0, 1, 2], "full": [0, 1, 2, 3, 4]}  # quick/full as `perfedavg check --rates`
ROWS = "rows.json"


def rates_dir(root: Path, level: str) -> Path:
    return Path(root) / f"rates-{LENGTH[level]}"


def _signature(length: str, seeds: list[int]) -> str:
    """SHA-1 of everything in ``synthetic.rates`` that decides the table's numbers at ``length``."""
    design = {
        "grid": rates.GRID[length],
        "base": rates.BASE,
        "burn": rates.BURN,
        "measure": rates.MEASURE[length],
        "batches": rates.BATCHES,
        "tolerance": getattr(rates, "TOLERANCE", None),  # a table-wide slope tolerance, where the table has one
        "judge": getattr(getattr(rates, "rate_stats", None), "__name__", None),
        "seeds": list(seeds),
    }
    return hashlib.sha1(json.dumps(design, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ensure_rates(root: Path, level: str, progress: bool = False) -> Path:
    """``<runs>/rates-<length>/rows.json`` for ``level``, running :func:`synthetic.rates.rate_table` unless a
    saved one with the same design signature is there (its run directories are reused either way).  The table's
    sweeps run in the workers of the build's :func:`figures.pool.active` pool when there is one, ahead of other
    work (every floor figure waits on them)."""
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
    workers = pool.active()
    executor = None if workers is None else workers.at(pool.URGENT)
    rows, bound = rates.rate_table(out, seeds, length=length, progress=progress, executor=executor)
    atomic_write_json(
        path,
        {
            "length": length,
            "seeds": seeds,
            "signature": signature,
            "tolerance": getattr(rates, "TOLERANCE", None),
            "rows": [r.as_dict() for r in rows],
            "derived_bound": bound,
        },
    )
    return path


def read_rows(root: Path, figure: str) -> tuple[dict, dict]:
    """``({row name: row dict}, saved table)`` of the rate table that ``figure``'s manifest names (written by
    its ``run``); :class:`figures.store.Skip` when either is missing."""
    man = store.read_manifest(root, figure)
    path = Path(root) / man["rates"]
    if not path.is_file():
        raise store.Skip(f"no saved rate table at {path} (run `perfedavg figures {figure} --runs {root}`)")
    table = read_json(path)
    table["_dir"] = str(path.parent)
    return {r["name"]: r for r in table["rows"]}, table


def run_figure(root: Path, figure: str, level: str) -> None:
    """A floor figure's ``run``: the rate table for ``level`` (:func:`ensure_rates`) and a manifest naming it."""
    path = ensure_rates(root, level)
    store.write_manifest(root, figure, level, [], rates=str(path.relative_to(root)))


def slope_text(slope: float, lo: float, hi: float) -> str:
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return f"{slope:+.2f}"


#: row fields (top level or under ``extra``) that may carry the bound term's value at each x (when the table records it)
LEVEL_FIELDS = ("bound_levels", "predicted_levels", "predicted_values", "bound_values", "term_values")
#: row fields that may say a PASS needed the slope tolerance (when recorded); else computed from the interval
TOLERANCE_FIELDS = ("needs_tolerance", "pass_needs_tolerance", "within_tolerance_only", "tolerance_pass")
#: a lower interval end at or below this fraction of the mean is "at or below 0" for the log axis
CLIP_FRACTION = 0.0


def row_field(row: dict, names):
    """The first of ``names`` present in the row or its ``extra`` (rate tables gain fields over time), else None."""
    for name in names:
        for where in (row, row.get("extra", {})):
            if isinstance(where, dict) and where.get(name) is not None:
                return where[name]
    return None


def needs_tolerance(row: dict) -> bool:
    """A PASS whose predicted slope lies outside the fitted 95 % interval (it passed through the tolerance only):
    the row's own flag when it carries one, else computed from ``predicted``, ``low``, ``high``."""
    flag = row_field(row, TOLERANCE_FIELDS)
    if flag is not None:
        return bool(flag)
    return row["verdict"] == "PASS" and not (row["low"] <= row["predicted"] <= row["high"])


def verdict_text(row: dict, tol: float | None) -> str:
    """The row's verdict (``PASS``, ``FAIL``, ``INCONCLUSIVE``), or ``PASS only within ±tol`` for a PASS that
    needed the table's slope tolerance."""
    if tol is not None and needs_tolerance(row):
        return f"PASS only within ±{tol:g}"
    return str(row["verdict"])


def draw_row(
    ax,
    row: dict,
    xlabel: str,
    color,
    marker,
    measured_label: str = "measured: mean ± 95% interval",
) -> dict:
    r"""One log-log panel from a rate-table row: the measured means with their 95 % intervals, the fitted
    line, the derived bound's predicted slope and the recalled shape's slope as guides through the measured
    points' weighted centre (the recalled one drawn on top, dotted, so it stays visible when both slopes
    agree); the three slopes' numbers in a corner the data leave empty.  Legend labels are the same in every
    panel (the caller draws one legend for the figure).  Points with a non-positive mean (a difference of
    floors below its noise) cannot sit on a log axis: they are counted and returned.  A lower interval end
    ≤ 0 cannot be drawn either: its bar is drawn down to the bottom of the axis, ending in a downward arrow
    head, and counted.  Returns ``{"fitted", "low", "high", "predicted", "recalled", "verdict", "dropped",
    "clipped"}``."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    xs, m, h = (np.asarray(row[k], float) for k in ("xs", "means", "halfwidths"))
    ok = m > 0
    h_fin = np.where(np.isfinite(h), h, 0.0)
    clipped = ok & np.isfinite(h) & (m - h <= CLIP_FRACTION * m)
    # bars whose lower end is > 0 drawn as they are; clipped ones get their lower bar after the y limits are known
    lower = np.where(clipped, 0.0, h_fin)
    ax.errorbar(
        xs[ok],
        m[ok],
        yerr=[lower[ok], h_fin[ok]],
        fmt=marker,
        color=color,
        capsize=3,
        label=measured_label,
        zorder=4,
    )
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
        if math.isfinite(fitted):
            ax.plot(grid, cy * (grid / cx) ** fitted, color=color, linewidth=1.1, zorder=3, label="fitted slope")
        ax.plot(
            grid,
            cy * (grid / cx) ** predicted,
            color=RATE_COLOR,
            linestyle="--",
            linewidth=1.8,
            zorder=2,
            label=bound_label("predicted slope", "derived"),
        )
        if math.isfinite(recalled):
            ax.plot(
                grid,
                cy * (grid / cx) ** recalled,
                **{**BOUND_STYLE["recalled"], "linewidth": 1.6},
                dashes=(1, 2.5),
                zorder=5,
                label=bound_label("recalled shape's slope", "recalled"),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if clipped.any():
        bottom, top = ax.get_ylim()
        bottom = min(bottom, float(m[clipped].min()) / 4)  # room for the arrow to be seen
        for x, y in zip(xs[clipped], m[clipped]):
            ax.annotate(
                "",
                xy=(x, bottom),
                xytext=(x, y),
                zorder=4,
                annotation_clip=False,
                arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.2, "shrinkA": 0, "shrinkB": 0},
            )
        ax.plot(
            [],
            [],
            color=color,
            marker=r"$\downarrow$",
            linestyle="none",
            label="interval reaches ≤ 0 (bar runs off the axis)",
        )
        ax.set_ylim(bottom, top)
    if (~ok).any():  # a mean ≤ 0 has no place on the log axis: an open marker on the axis's bottom edge says so
        bottom = ax.get_ylim()[0]
        ax.plot(
            xs[~ok],
            np.full((~ok).sum(), bottom),
            marker=marker,
            linestyle="none",
            color=color,
            markerfacecolor="white",
            clip_on=False,
            zorder=6,
            label="mean ≤ 0 (open marker on the bottom edge)",
        )
    # the slopes' numbers, in the corner the data leave empty (below a rising line's right end, a falling one's left)
    rising = (fitted if math.isfinite(fitted) else predicted) >= 0
    numbers = f"fitted {slope_text(fitted, lo, hi)}\npredicted {predicted:+.2f}"
    if math.isfinite(recalled):
        numbers += f"\nrecalled {recalled:+.2f}"
    ax.text(
        0.97 if rising else 0.03,
        0.04,
        numbers,
        transform=ax.transAxes,
        ha="right" if rising else "left",
        va="bottom",
        fontsize="small",
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5},
    )
    # ticks at the measured x values only, no minor labels: log-axis minor labels collide on a narrow range
    ax.xaxis.set_major_locator(FixedLocator(list(xs)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{x:.2g}" for x in xs])
    ax.set_xlabel(xlabel)
    pad = (xs.max() / xs.min()) ** 0.08
    ax.set_xlim(xs.min() / pad, xs.max() * pad)
    return {
        "fitted": fitted,
        "low": lo,
        "high": hi,
        "predicted": predicted,
        "recalled": recalled,
        "verdict": row["verdict"],
        "dropped": int((~ok).sum()),
        "clipped": [float(x) for x in xs[clipped]],
        "needs_tolerance": needs_tolerance(row),
    }


def row_sentence(what: str, r: dict) -> str:
    """Caption sentence of one panel's numbers."""
    fitted = (
        f"fitted slope {slope_text(r['fitted'], r['low'], r['high'])} (95% interval)"
        if math.isfinite(r["fitted"])
        else "no slope fitted (a measured difference is ≤ 0: not resolved from the noise)"
    )
    text = (
        f"{what}: {fitted}, predicted "
        f"{r['predicted']:+.2f} by the derived bound's term [derived] (recalled shape {r['recalled']:+.2f} "
        f"[recalled]): {r['verdict']}"
    )
    if r.get("needs_tolerance"):
        text += (
            " — the predicted slope lies outside the fitted 95% interval: this PASS holds only through the "
            "slope tolerance"
        )
    if r.get("clipped"):
        text += (
            f" (the 95% interval reaches ≤ 0 at x = {', '.join(f'{x:.3g}' for x in r['clipped'])}: "
            "drawn as a bar running down off the log axis, ending in an arrow)"
        )
    if r["dropped"]:
        text += (
            f" ({plural(r['dropped'], 'point')} with a non-positive measured mean, which a log axis cannot place: "
            "drawn as an open marker on the bottom edge)"
        )
    return text


def _saved_configs(directory: Path, key) -> dict:
    """``{key(cfg): cfg}`` over the saved run configs ``<directory>/<slug>/seed0/config.toml``."""
    out = {}
    for path in sorted(Path(directory).glob("*/seed0/config.toml")):
        cfg = load_run_config(str(path), [])
        out[key(cfg)] = cfg
    return out


def heterogeneity_levels(table: dict, row_tv: dict, row_w1: dict) -> tuple[list | None, list | None, str]:
    r"""The γ-part of the derived bound's client-sampling term at each point of the TV row (γ_G, γ_H from the
    TV statements) and of the W1 row (from the W1 statements), with the task's exact constants:
    ``(tv_levels, w1_levels, source)``.

    Taken from the rows when the rate table carries them (:data:`LEVEL_FIELDS`); otherwise evaluated here on
    the *saved* configs of the rows' runs with the rate table's own function
    :func:`synthetic.rates.bound_terms` (theory only: nothing is run).  The TV row's runs are
    ``<rates>/h/*`` (one per h, h = 0 the baseline); the W1 row's are the same runs (when its ``extra`` has
    ``h``) or ``<rates>/w1/*`` at h = 1 (when its ``extra`` has ``shift``: W1 moved by the label shift at
    fixed TV); the W1 version is evaluated at the run's start w*_α as the table does.
    A level that cannot be had is ``None`` (with the reason in ``source``)."""
    tv, w1 = row_field(row_tv, LEVEL_FIELDS), row_field(row_w1, LEVEL_FIELDS)
    if tv is not None and w1 is not None:
        return list(tv), list(w1), "the rate table's rows"
    reasons = []
    try:

        def gamma_part(cfg, how="tv", w1_x=None):
            none = bound_terms(cfg, "none")[0]["client sampling"]
            if how == "tv":
                return bound_terms(cfg)[0]["client sampling"] - none
            start = resolve(cfg)[1].init_params(torch.Generator())
            return bound_terms(cfg, "w1", w1_x, start)[0]["client sampling"] - none

        table_dir = Path(table["_dir"])
        if tv is None:
            by_h = _saved_configs(table_dir / "h", lambda c: float(c.task["h"]))
            tv = [gamma_part(by_h[float(h)]) for h in row_tv["extra"]["h"]]
        if w1 is None:
            extra = row_w1.get("extra", {})
            if "shift" in extra:
                by_s = _saved_configs(table_dir / "w1", lambda c: (float(c.task["h"]), float(c.task["shift"])))
                w1 = [gamma_part(by_s[(1.0, float(sv))], "w1", x) for sv, x in zip(extra["shift"], row_w1["xs"])]
            else:
                by_h = _saved_configs(table_dir / "h", lambda c: float(c.task["h"]))
                w1 = [gamma_part(by_h[float(h)], "w1", x) for h, x in zip(extra["h"], row_w1["xs"])]
        return list(tv), list(w1), "the saved runs' configs, evaluated with synthetic.rates.bound_terms"
    except (KeyError, OSError, ValueError, ImportError, TypeError) as exc:
        reasons.append(f"{type(exc).__name__}: {exc}")
    return (
        list(tv) if tv is not None else None,
        list(w1) if w1 is not None else None,
        "not available (" + "; ".join(reasons) + ")",
    )
