r"""Figure 6: measured gradient norms on MNIST against the bound with *estimated* constants.

Reads the MNIST runs of Table 1 (``<runs>/table1/runs/mnist/...``): ‖∇F(w_k)‖² (exact from
full local data at every evaluated round) and its running average over the evaluated
rounds (a proxy of Φ_K taken at the server iterates w_k only), and the estimated
constants written beside them by ``empirical/constants.py`` (a ``constants.json`` in the
run directory, in ``<runs>/table1/``, or ``<runs>/table1/constants/mnist.json``; layouts
read by :func:`figures.bounds.constants_from_json`).  The derived explicit bound is
evaluated on those constants at every K (``derived``, but with estimated inputs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from empirical.constants import estimate_run, write_constants
from theory.checks_api import convergence

from . import store
from ._flagship_details import SHORT
from .bounds import bound_for, constants_from_json
from .fig5_table1 import DATASET_NAMES
from .style import (
    ALGORITHM_STYLE,
    OKABE_ITO,
    algorithm_label,
    bound_label,
    finish,
    render,
    shared_legend,
    suptitle,
    tightness,
    tightness_text,
)

NAME = "mnist_bound"
TITLE = "MNIST: measured gradient norms against the bound with estimated constants"
EMPIRICAL = True
#: line style of each variant's bound (own colour and dash: the two stay apart when they coincide)
BOUND_LINES: dict[str, dict[str, Any]] = {
    "hf": {"linestyle": "-", "linewidth": 2.6, "alpha": 0.55},
    "fo": {"linestyle": (0, (5, 3)), "linewidth": 1.6},
}


def row_key(directory: Path) -> tuple[float, int]:
    """(α, τ) of a Table 1 row directory ``tau<τ>-alpha<α>``."""
    tau, alpha = directory.name[len("tau") :].split("-alpha")
    return float(alpha), int(tau)


def chosen_row_dir(src: Path) -> Path | None:
    """The row figure 5 shows (largest α, then τ: :func:`figures.fig5_table1.chosen_row`'s rule), among the
    row directories present under ``src``."""
    rows = sorted(src.glob("tau*-alpha*")) if src.is_dir() else []
    return max(rows, key=row_key) if rows else None


def find_constants(root: Path, run_dir: Path) -> Path | None:
    """The first constants file found next to the MNIST runs (module docstring)."""
    base = Path(root) / "table1"
    for p in (
        run_dir / "constants.json",
        run_dir.parent / "constants.json",
        base / "constants" / "mnist.json",
        base / "constants_mnist.json",
        base / "constants.json",
    ):
        if p.is_file():
            return p
    return None


def run(root: Path, level: str) -> None:
    """Estimate the constants of Table 1's first MNIST HF run (``empirical.constants.estimate_run``)
    into its ``constants.json`` when none is there; the runs themselves come from figure ``table1``."""
    row = chosen_row_dir(Path(root) / "table1" / "runs" / "mnist")
    runs = sorted(row.glob("hf-seed0")) if row else []
    if not runs or find_constants(root, runs[0]) is not None:
        return
    write_constants(estimate_run(runs[0], rounds="0,final", progress=False), runs[0] / "constants.json")


def draw(root: Path, out: Path) -> dict[str, Any]:
    """Draw from Table 1's MNIST runs and their estimated constants; returns ``{"files", "caption"}``."""
    from matplotlib.ticker import MaxNLocator

    src = Path(root) / "table1" / "runs" / "mnist"
    row = chosen_row_dir(src)
    if row is None:
        raise store.Skip(f"no MNIST runs in {src} (run the 'table1' figure with the data available)")
    runs = {m: store.load_run(d) for m in ("fedavg", "fo", "hf") for d in sorted(row.glob(f"{m}-seed0"))}
    # the constants are estimated on the HF run (see run()), so look beside that one first
    cpath = find_constants(root, runs.get("hf", next(iter(runs.values()))).directory)
    if cpath is None:
        raise store.Skip(f"no estimated constants for MNIST near {row} (empirical/constants.py writes constants.json)")
    cfg = runs.get("hf", next(iter(runs.values()))).config
    c, notes = constants_from_json(cpath, cfg)
    Ks = [k for k in next(iter(runs.values())).series("grad_norm_sq_F")[0] if k > 0]
    curves = {}
    for method, r in runs.items():
        ks, g = r.series("grad_norm_sq_F")
        curves[method] = (np.asarray(ks, float), np.asarray(g), np.cumsum(g) / np.arange(1, len(g) + 1))
    text: list[str] = []
    bounds: dict[str, list[float]] = {}
    pairs: list[dict[str, Any]] = []
    for alg in ("hf", "fo"):
        vals = [bound_for(c.replace(K=float(k)), alg)[0] for k in Ks]
        if all(math.isfinite(v) for v in vals):
            bounds[alg] = vals
            text.append(f"{algorithm_label(alg)} {vals[-1]:.3g}")
            if alg in curves:
                at = dict(zip(curves[alg][0].tolist(), curves[alg][2].tolist()))
                pairs.append(
                    {
                        "panel": "a",
                        "what": f"derived bound with estimated constants over the running mean, {algorithm_label(alg)}",
                        "x": [float(k) for k in Ks if k in at],
                        "bound": [v for k, v in zip(Ks, vals) if k in at],
                        "measured": [at[k] for k in Ks if k in at],
                        "stated": alg == "hf",
                    }
                )
        elif c.missing:
            text.append(f"{algorithm_label(alg)}: not evaluable ({', '.join(sorted(c.missing))} not estimated)")
        else:
            beta_max = convergence(c, alg).beta_max["derived"]
            text.append(
                f"{algorithm_label(alg)}: not valid (step-size condition 6β²τ²L_F² < 1 fails: the run's "
                f"β = {c.beta:g} is {c.beta / beta_max:.3g}× the largest step the derived bound allows with "
                f"these constants, β_max = {beta_max:.3g})"
            )
    stated = [p for p in pairs if p["stated"]] or pairs
    low, high = tightness([b for p in stated for b in p["bound"]], [m for p in stated for m in p["measured"]])
    holds = all(m <= b for p in pairs for m, b in zip(p["measured"], p["bound"]))
    verdict = ("holds" if holds else "VIOLATED") if pairs else "not drawn (" + "; ".join(text) + ")"
    dataset = str(cfg["task"].get("name", "?"))
    name = DATASET_NAMES.get(dataset, dataset)
    headline = (
        f"{name}: the derived bound with estimated constants {verdict} ({tightness_text(low, high)}, HF)"
        if pairs
        else f"{name}: the derived bound is not drawn"
    )

    def panels(fig, axes, profile):

        ax = axes[0]
        for method, (ks, g, avg) in curves.items():
            st = ALGORITHM_STYLE[method]
            ax.semilogy(ks, g, color=st["color"], marker=st["marker"], linewidth=0.8, label=algorithm_label(method))
            ax.semilogy(ks, avg, color=st["color"], linestyle="--", linewidth=1.1)
        for alg, vals in bounds.items():
            ax.semilogy(
                Ks,
                vals,
                color=ALGORITHM_STYLE[alg]["color"],
                **BOUND_LINES[alg],
                label=bound_label(f"bound, {SHORT.get(alg, alg)}", "derived"),
            )
        ax.plot([], [], color=OKABE_ITO["grey"], linestyle="--", label="running mean (Φ$_K$ proxy)")
        ax.set_xlabel("communication round k (= K for the bound)")
        ax.set_ylabel(r"$\|\nabla F(w_k)\|^2$")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"τ = {cfg['tau']}, α = {cfg['alpha']:g}, β = {cfg['beta']:g}", loc="left")
        suptitle(fig, headline)
        shared_legend(fig, axes)

    files = render(out, "fig6_mnist_bound", 1, panels, height=1.4)
    details = (
        "What it shows: the exact squared gradient norm of the personalized objective F at the server model, "
        f"and its running mean, on {name} (paper's split and MLP), for the Table 1 row "
        f"{row.name} (the row figure 5 shows: largest α, where the adaptation step matters most; seed 0), against "
        f"the derived explicit bound evaluated with constants estimated from the data ({cpath}). "
        f"Bound at the last K: {'; '.join(text)}. "
        + (f"Notes: {'; '.join(notes)}. " if notes else "")
        + "What the theory predicts: the running mean stays below the bound if the estimated constants are upper "
        "bounds; the bound is [derived], its inputs estimated, so it is a consistency check rather than a proof."
    )
    caption = (
        f"Squared gradient norm of F at the server model on {name} (solid) and its running mean (dashed), against "
        "the derived bound evaluated with constants estimated from the data. "
        + (
            f"The bound {verdict} over the running mean ({tightness_text(low, high)} for HF); its inputs are "
            "estimated, so this is a consistency check, not a proof."
            if pairs
            else f"The bound is not drawn: {'; '.join(text)}."
        )
    )
    report = [
        {
            "statement": f"Φ_K ≤ derived bound, estimated constants ({name}, {p['what'].rsplit(', ', 1)[-1]})",
            "section": "§5",
            "bound": p["bound"][-1],
            "measured": p["measured"][-1],
            "ratio": tightness(p["bound"], p["measured"]),
            "verdict": "holds" if all(m <= b for m, b in zip(p["measured"], p["bound"])) else "VIOLATED",
            "kind": "bound",
        }
        for p in pairs
    ]
    return finish(
        out,
        "fig6_mnist_bound",
        files,
        headline=headline,
        span=(low, high),
        verdict=verdict,
        pairs=pairs,
        details=details,
        caption=caption,
        report=report,
    )
