r"""The flagship figure's data-dependent bound: computed once per design, saved beside its runs, read back.

Panel (b) of :mod:`figures.fig1_flagship` draws, beside each variant's worst-case derived bound, the
**data-dependent** bound on Φ_K of the exact variant (:func:`synthetic.tightness.bound_curves`: the proof of
DERIVATIONS.md §10 with the constants of the region the run visits) and, on the quadratic task, the estimate of
E Φ_K it bounds (:func:`synthetic.region.expected_stationarity`; the bound is on the expectation, not on one
seed's Φ_K).  Only the exact variant: its bound is the tightest, and :func:`bound_curves` reruns the seeds
itself (seconds at the quick scale, a minute or two at the full one), so the result is saved as
``<runs>/flagship/data_dependent.json`` with a signature of its design and reused while the design is unchanged.

:func:`pair` turns the curves into the figure data's pair (bound and what it bounds at every K drawn) and
:func:`summary` into the stated tightness (:func:`figures.style.tightness`) and verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from perfedavg.runs.rundir import atomic_write_json, read_json

from .style import OKABE_ITO, algorithm_label, bound_label, tightness, tightness_span, tightness_text

FILE = "data_dependent.json"
#: the variant whose data-dependent bound is drawn
ALGORITHM = "exact"
#: the bound: thin black, over every other line (it nearly meets the data it bounds); the E Φ_K estimate it
#: bounds: dotted sky blue over the bound, so that both stay visible where they meet
BOUND_LINE = {"color": OKABE_ITO["black"], "linestyle": "-", "linewidth": 1.0, "zorder": 5}
EXPECTED_LINE = {"color": OKABE_ITO["sky blue"], "linestyle": ":", "linewidth": 2.0, "zorder": 6}


def _signature(config: dict[str, Any], seeds: list[int], Ks: list[int]) -> str:
    design = {"config": config, "seeds": seeds, "K": Ks}
    return hashlib.sha1(json.dumps(design, sort_keys=True, default=str).encode()).hexdigest()[:12]


def curves(directory: Path, config: dict[str, Any], seeds: list[int], Ks: list[int]) -> dict[str, Any]:
    """``{"K", "data_dependent", "worst_case", "measured" (seeds × K), "expected" (seeds × K, or None)}`` of
    :func:`synthetic.tightness.bound_curves` on ``config`` (its ``algorithm`` set to :data:`ALGORITHM`) over
    ``seeds`` at the rounds ``Ks``: read from ``directory/data_dependent.json`` when its signature matches,
    else computed and saved there (atomically)."""
    from synthetic.tightness import bound_curves  # torch: imported only when the figure is drawn

    config = {**config, "algorithm": ALGORITHM}
    signature = _signature(config, seeds, Ks)
    path = Path(directory) / FILE
    if path.is_file():
        saved = read_json(path)
        if saved.get("signature") == signature:
            return saved
    bc = bound_curves(config, seeds, Ks)
    out = {
        "signature": signature,
        "algorithm": ALGORITHM,
        "seeds": seeds,
        "K": bc.K.tolist(),
        "data_dependent": bc.data_dependent.tolist(),
        "worst_case": bc.worst_case.tolist(),
        "measured": bc.measured.tolist(),
        "expected": None if bc.expected is None else bc.expected.tolist(),
    }
    atomic_write_json(path, out)
    return out


def pair(saved: dict[str, Any], label: str) -> dict[str, Any]:
    """The figure data's pair: the data-dependent bound and what it bounds at every K, the mean over seeds of the
    E Φ_K estimate where there is one (the bound is on the expectation), else of the seeds' Φ_K; the seeds' Φ_K
    (mean and largest) beside it for the caption.  ``stated: false``: the headline states the worst-case bound's
    tightness; this pair's is stated by :func:`summary`."""
    measured = np.asarray(saved["measured"], float)
    bounded = measured if saved["expected"] is None else np.asarray(saved["expected"], float)
    return {
        "panel": "b",
        "what": f"data-dependent bound on E Φ_K, {label}",
        "algorithm": saved["algorithm"],
        "kind": "data-dependent",
        "against": "Φ_K, mean over seeds" if saved["expected"] is None else "E Φ_K (estimate), mean over seeds",
        "x": [float(k) for k in saved["K"]],
        "bound": list(saved["data_dependent"]),
        "measured": bounded.mean(0).tolist(),
        "seeds_mean": measured.mean(0).tolist(),
        "seeds_max": measured.max(0).tolist(),
        "seeds": list(saved["seeds"]),
        "stated": False,
    }


def summary(p: dict[str, Any]) -> dict[str, Any]:
    """The stated tightness of the data-dependent pair ``p`` (bound / what it bounds), its verdict, and how close
    the seeds' own Φ_K come to the bound (largest seed's Φ_K / bound: above 1 is a seed above a bound on the
    mean, which the bound allows)."""
    low, high = tightness(p["bound"], p["measured"])
    holds = all(m <= b for b, m in zip(p["bound"], p["measured"]))
    seed_over = max((m / b for b, m in zip(p["bound"], p["seeds_max"]) if b > 0), default=math.nan)
    what = "E Φ_K" if p["against"].startswith("E") else "Φ_K"
    return {
        "tightness": [low, high],
        "tightness_text": tightness_text(low, high).replace("measured", what),
        "against": p["against"],
        "verdict": "holds" if holds else "VIOLATED",
        "largest_seed_over_bound": seed_over,
    }


def evaluate(directory: Path, config: dict[str, Any], seeds: list[int], Ks) -> tuple[dict[str, Any], dict[str, Any]]:
    """(:func:`pair`, :func:`summary`) of the saved or computed :func:`curves` at the rounds ``Ks``."""
    saved = curves(directory, config, seeds, [int(k) for k in Ks])
    p = pair(saved, algorithm_label(ALGORITHM))
    return p, summary(p)


def draw(ax: Any, p: dict[str, Any]) -> None:
    """The bound of pair ``p`` on ``ax`` and, where it is E Φ_K's estimate, what it bounds."""
    short = algorithm_label(p["algorithm"]).replace("Per-FedAvg ", "").strip("()")
    ax.loglog(p["x"], p["bound"], **BOUND_LINE, label=bound_label(f"data-dependent bound, {short}", "derived"))
    if p["against"].startswith("E"):
        ax.loglog(p["x"], p["measured"], **EXPECTED_LINE, label=f"E$\\Phi_K$ (estimate), {short}")


def sentence(p: dict[str, Any], dd: dict[str, Any]) -> str:
    """The details' sentence on the data-dependent bound (every number computed from ``p`` and ``dd``)."""
    return (
        "Data-dependent bound (thin black): the derived bound's proof redone with the constants of the region the "
        f"runs of {algorithm_label(p['algorithm'])} visit (DERIVATIONS.md §10, Δ₀ = F(w₀) − F*, "
        f"{len(p['seeds'])} seeds); it bounds E Φ_K, drawn as its estimate (dotted) where the task gives one: "
        f"{dd['tightness_text']} against {p['against']}, {dd['verdict']} at every K drawn; the largest seed's Φ_K "
        f"is at most {dd['largest_seed_over_bound']:.4g}× the bound (one seed may lie above a bound on the mean)."
    )


def title_line(dd: dict[str, Any] | None) -> str:
    """Panel (b)'s title line stating the data-dependent bound's tightness (empty when it is not drawn)."""
    if dd is None:
        return ""
    what = "E$\\Phi_K$ (estimate)" if dd["against"].startswith("E") else "$\\Phi_K$"
    return f"\ndata-dependent = {tightness_span(*dd['tightness'])} {what}"


def caption_clause(dd: dict[str, Any] | None) -> str:
    """The end of the caption's sentence on panel (b): the data-dependent bound's verdict and tightness."""
    if dd is None:
        return "."
    return f"; the exact variant's data-dependent bound on E Φ_K {dd['verdict']} ({dd['tightness_text']})."


def report_row(p: dict[str, Any], dd: dict[str, Any]) -> dict[str, Any]:
    """The index's row for the data-dependent bound (its last K, its stated tightness and verdict)."""
    return {
        "statement": f"E Φ_K ≤ data-dependent bound, a posteriori (theory/DERIVATIONS.md §10), "
        f"{algorithm_label(p['algorithm'])}",
        "section": "§5",
        "bound": p["bound"][-1],
        "measured": p["measured"][-1],
        "ratio": tuple(dd["tightness"]),
        "verdict": dd["verdict"],
        "a_posteriori": True,  # its constants are measured on the run it bounds: not a tightness of the theory
        "kind": "bound",
    }
