"""The picture of pooled ``perfedavg bench`` runs (``--plot FILE``).

Drawn on a :class:`matplotlib.figure.Figure` of its own (no pyplot), so drawing selects no
global backend and leaves no figure open.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from perfedavg.runs.rundir import atomic_write_bytes

#: colours of the variants (colour-blind safe, as the run picture's)
VARIANT_COLOURS = {"fedavg": "#D55E00", "fo": "#009E73", "hf": "#0072B2", "exact": "#CC79A7"}


def plot_bench(pooled: dict, title: str, path: str | Path) -> Path:
    """Draw bench runs (:func:`perfedavg.bench.pool.pool`'s ``pooled``): per variant, every run's speedup
    (loop time over engine time, same run) and fraction of the bmm throughput, filled on a quiet host
    and hollow on a busy one, the median as a bar; written atomically to ``path`` (format from its suffix)."""
    path = Path(path)
    quiet = pooled["host_quiet"]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, median_key, label in (
        (axes[0], "speedups", "speedup_median", "loop time / engine time (same run)"),
        (axes[1], "fractions_of_matmul", "fraction_of_matmul_median", "engine FLOP rate / measured bmm rate"),
    ):
        for x, (variant, entry) in enumerate(pooled["variants"].items()):
            values = entry[key]
            colour = VARIANT_COLOURS.get(variant, "#555555")
            offsets = [0.25 * ((i * 0.618) % 1 - 0.5) for i in range(len(values))]  # golden-ratio jitter: deterministic
            for flag, face in ((True, colour), (False, "none")):
                chosen = [(x + o, v) for o, v, q in zip(offsets, values, quiet) if q == flag]
                if chosen:
                    ax.scatter(*zip(*chosen), s=22, facecolors=face, edgecolors=colour, linewidths=1.0, zorder=3)
            median = entry[median_key]
            ax.hlines(median, x - 0.22, x + 0.22, colors="black", linewidth=2, zorder=4)
            text = f"{median:.2f}" if key == "speedups" else f"{median:.0%}"
            ax.annotate(text, (x + 0.24, median), va="center", fontsize=8)
        ax.set_xticks(range(len(pooled["variants"])), list(pooled["variants"]))
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    busy = pooled["runs"] - pooled["quiet_runs"]
    axes[0].scatter([], [], s=22, color="grey", label=f"quiet host ({pooled['quiet_runs']})")
    axes[0].scatter([], [], s=22, facecolors="none", edgecolors="grey", label=f"busy host ({busy})")
    axes[0].plot([], [], color="black", linewidth=2, label="median")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower(), dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path
