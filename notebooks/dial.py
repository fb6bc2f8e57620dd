r"""The tutorial's dial: rerun a short synthetic run at the settings of the sliders and draw it with the bound.

Plain functions, so the notebook's widgets only wire sliders to them and a test calls them directly:

* :func:`dial` runs Per-FedAvg (or FedAvg) through the public API (:func:`perfedavg.run`) on the quadratic
  task, started at the minimiser of F so that what Φ_K measures is the stationary floor (no transient),
  for a few seeds, and returns the measured Φ_K beside the derived bound and its terms for the same
  constants (docs/paper.md §5);
* :func:`draw` draws one :class:`Dial` (the bound's terms as bars, the measured floor as a line, on one
  log axis: every term and the floor in the same units);
* :func:`on_change` is the widgets' callback: :func:`dial`, then :func:`draw`, then one line of numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the slider ranges of the notebook (and their defaults): heterogeneity h, inner step α, outer step β, local
#: steps τ, participation r, batch size (D = D' = D''), algorithm
SLIDERS: dict[str, Any] = {
    "h": (0.0, 1.0, 0.25, 0.5),
    "alpha": (0.1, 0.5, 0.1, 0.5),
    "beta": (0.02, 0.15, 0.01, 0.1),
    "tau": (1, 4, 1, 1),
    "r": (0.1, 1.0, 0.1, 0.1),
    "batch": (20, 200, 20, 200),
    "algorithm": ("exact", "hf", "fo", "fedavg"),
}
#: the quadratic task of the flagship figure (exact constants; ten users on five cones), started at the minimiser
#: of F (``init_alpha`` set to the dial's α) so that Φ_K measures the stationary floor
TASK = {"name": "quadratic", "dim": 2, "n_clients": 10, "clusters": 5, "support": 200, "w_radius": 2.0}
#: rounds of each run and its seeds: short enough for a redraw in about a second per seed on two cores
ROUNDS = 100
SEEDS = (0, 1, 2)
#: torch threads of the dial's runs: one (a run this small is slower on two threads that contend)
THREADS = 1


@dataclass(frozen=True)
class Dial:
    """One setting of the dial: the measured Φ_K of each seed, the derived bound and its terms, the time taken."""

    settings: dict[str, Any]
    measured: np.ndarray
    bound: float
    terms: dict[str, float]
    seconds: float


def dial(
    h: float = 0.5,
    alpha: float = 0.5,
    beta: float = 0.1,
    tau: int = 1,
    r: float = 0.1,
    batch: int = 200,
    algorithm: str = "exact",
    seeds: tuple[int, ...] = SEEDS,
    rounds: int = ROUNDS,
) -> Dial:
    """Run the settings for each seed (in memory) and return the measured Φ_K and the derived bound.  The runs
    are tiny, so they use one torch thread (:data:`THREADS`): a second thread costs more than it shares."""
    import torch

    import perfedavg

    settings = {"h": h, "alpha": alpha, "beta": beta, "tau": tau, "r": r, "batch": batch, "algorithm": algorithm}
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        results = [
            perfedavg.run(
                algorithm=algorithm,
                K=rounds,
                tau=tau,
                alpha=alpha,
                beta=beta,
                r=r,
                D=batch,
                D1=batch,
                D2=batch,
                seed=seed,
                eval_every=rounds,
                track_inner=True,
                dtype="float64",
                checkpoint_every=0,
                task={**TASK, "h": h, "init": "minimizer", "init_alpha": alpha},
            )
            for seed in seeds
        ]
    finally:
        torch.set_num_threads(threads)
    last = results[-1]
    return Dial(
        settings,
        np.asarray([result.measured for result in results], float),
        float(last.bound),
        dict(last.bound_terms),
        time.perf_counter() - started,
    )


def draw(ax: Any, d: Dial) -> None:
    """The bound's terms as bars and the measured Φ_K (mean over seeds, band: min to max) as a line, one log axis."""
    names = [k for k, v in d.terms.items() if v > 0]
    ax.barh(names, [d.terms[k] for k in names], color="#999999", label="terms of the derived bound [derived]")
    ax.axvline(d.measured.mean(), color="#0072B2", linewidth=2, label="measured $\\Phi_K$ (mean of seeds)")
    ax.axvspan(d.measured.min(), d.measured.max(), color="#0072B2", alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("value (same units as $\\Phi_K$)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize="small", ncol=2)


def summary(d: Dial) -> str:
    """One line: the measured floor, the bound, their ratio, the dominant term, the time taken."""
    dominant = max(d.terms, key=lambda k: d.terms[k]) if d.terms else "none"
    return (
        f"measured Phi_K = {d.measured.mean():.3g} (seeds {d.measured.min():.3g} to {d.measured.max():.3g}); "
        f"derived bound = {d.bound:.3g} ({d.bound / d.measured.mean():.3g}x above); dominant term: {dominant}; "
        f"{d.seconds:.1f} s"
    )


def on_change(**settings: Any) -> Dial:
    """The widgets' callback: run, draw, print one line; returns the :class:`Dial` (for a test)."""
    import matplotlib.pyplot as plt

    d = dial(**settings)
    _, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    draw(ax, d)
    ax.set_title(", ".join(f"{k} = {v}" for k, v in d.settings.items()), fontsize="small")
    plt.show()
    print(summary(d))
    return d


def bench(repeat: int = 1) -> dict[str, Any]:
    """The dial's redraw time, as a benchmark (not a timed test): from the default setting, each slider moved
    once to another value of its range (every algorithm once), each change run and drawn off screen as the
    notebook does (:func:`dial` then :func:`draw`), ``repeat`` times; seconds per change, median and largest."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    defaults = {k: v[-1] if k != "algorithm" else v[0] for k, v in SLIDERS.items()}
    changes = [{"algorithm": a} for a in SLIDERS["algorithm"][1:]]
    changes += [{k: v[0]} for k, v in SLIDERS.items() if k != "algorithm"]
    dial(**defaults, seeds=SEEDS[:1], rounds=2)  # imports and first-call costs, untimed
    times = []
    for _ in range(repeat):
        for change in changes:
            started = time.perf_counter()
            _, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
            draw(ax, dial(**{**defaults, **change}))
            ax.figure.canvas.draw()
            plt.close(ax.figure)
            times.append(time.perf_counter() - started)
    return {
        "what": "seconds per dial change (run + draw), tutorial section 5",
        "changes": len(times),
        "median_s": float(np.median(times)),
        "max_s": float(np.max(times)),
        "seconds": [round(t, 3) for t in times],
        "seeds": len(SEEDS),
        "rounds": ROUNDS,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench(repeat=int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2))
