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
from .bounds import bound_for, constants_from_json
from .fig5_table1 import DATASET_NAMES
from .style import ALGORITHM_STYLE, algorithm_label, bound_label, save, setup

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
    plt = setup()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    text = []
    for method, r in runs.items():
        ks, g = r.series("grad_norm_sq_F")
        st = ALGORITHM_STYLE[method]
        ax.semilogy(
            ks,
            g,
            color=st["color"],
            marker=st["marker"],
            markersize=3,
            linewidth=1,
            label=f"{algorithm_label(method)}: " + r"$\|\nabla F(w_k)\|^2$",
        )
        avg = np.cumsum(g) / np.arange(1, len(g) + 1)
        ax.semilogy(
            ks,
            avg,
            color=st["color"],
            linestyle="--",
            linewidth=1.2,
            label=f"{algorithm_label(method)}: running mean (Φ_K proxy)",
        )
    cfg = runs.get("hf", next(iter(runs.values()))).config
    c, notes = constants_from_json(cpath, cfg)
    Ks = [k for k in next(iter(runs.values())).series("grad_norm_sq_F")[0] if k > 0]
    for alg in ("hf", "fo"):
        vals = [bound_for(c.replace(K=float(k)), alg)[0] for k in Ks]
        if all(math.isfinite(v) for v in vals):
            ax.semilogy(
                Ks,
                vals,
                color=ALGORITHM_STYLE[alg]["color"],
                **BOUND_LINES[alg],
                label=bound_label(f"explicit bound, {algorithm_label(alg)}, estimated constants", "derived"),
            )
            text.append(f"{algorithm_label(alg)} {vals[-1]:.3g}")
        elif c.missing:
            text.append(f"{algorithm_label(alg)}: not evaluable ({', '.join(sorted(c.missing))} not estimated)")
        else:
            beta_max = convergence(c, alg).beta_max["derived"]
            text.append(
                f"{algorithm_label(alg)}: not valid (step-size condition 6β²τ²L_F² < 1 fails: the run's "
                f"β = {c.beta:g} is {c.beta / beta_max:.3g}× the largest step the derived bound allows with "
                f"these constants, β_max = {beta_max:.3g})"
            )
    ax.set_xlabel("communication round k (= K for the bound)")
    ax.set_ylabel(r"$\|\nabla F\|^2$ (squared gradient norm of F)")
    dataset = str(cfg["task"].get("name", "?"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(
        f"{DATASET_NAMES.get(dataset, dataset)} (read from {row.name})\nτ = {cfg['tau']}, "
        f"α = {cfg['alpha']:g}, β = {cfg['beta']:g} (constants: {cpath.name})",
        fontsize=10,
    )
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1)
    files = save(fig, out, "fig6_mnist_bound")
    caption = (
        "What it shows: the exact squared gradient norm of the personalized objective F at the server model, "
        f"and its running mean, on {DATASET_NAMES.get(dataset, dataset)} (paper's split and MLP), for the Table 1 row "
        f"{row.name} (the row figure 5 shows: largest α, where the adaptation step matters most; seed 0), against "
        f"the derived explicit bound evaluated with constants estimated from the data ({cpath}). "
        f"Bound at the last K: {'; '.join(text)}. "
        + (f"Notes: {'; '.join(notes)}. " if notes else "")
        + "What the theory predicts: the running mean stays below the bound if the estimated constants are upper "
        "bounds; the bound is [derived], its inputs estimated, so it is a consistency check rather than a proof."
    )
    return {"files": files, "caption": caption}
