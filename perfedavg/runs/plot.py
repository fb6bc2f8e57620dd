"""Quick-look pictures: one run's stationarity and personalized accuracy against rounds, and the
distribution of ``perfedavg bench`` runs."""

from __future__ import annotations

from pathlib import Path


def plot_run(run_dir: str | Path, filename: str = "curves.png") -> Path:
    """Draw ``||grad F(w_k)||^2`` (log scale) and personalized test accuracy against ``k``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from perfedavg.runs.rundir import atomic_write_bytes, read_metrics

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    rounds = [r["round"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax1.semilogy(rounds, [r["grad_norm_sq_F"] for r in records], "o-", color="#0072B2", label=r"$\|\nabla F(w_k)\|^2$ (exact)")
    ax1.semilogy(rounds, [r["grad_norm_sq_f"] for r in records], "s--", color="#D55E00", label=r"$\|\nabla f(w_k)\|^2$ (FedAvg objective)")
    if "stationarity_avg" in records[-1]:
        ax1.semilogy(
            [r["round"] for r in records if "stationarity_avg" in r],
            [r["stationarity_avg"] for r in records if "stationarity_avg" in r],
            "^-", color="#009E73", label=r"$\frac{1}{\tau k}\sum\sum\|\nabla F(\bar w_{k,t})\|^2$",
        )
    ax1.set_xlabel("round k")
    ax1.set_ylabel("squared gradient norm")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    for key, style, label in (
        ("personalized_accuracy_train_step", "o-", "personalized (step on train data)"),
        ("personalized_accuracy_test_step", "s--", "personalized (step on test data, paper)"),
        ("global_accuracy", "^:", "shared model, no adaptation"),
    ):
        ax2.plot(rounds, [100 * r[key] for r in records], style, label=label)
    ax2.set_xlabel("round k")
    ax2.set_ylabel("test accuracy (%)")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{run_dir.name}")
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    path = run_dir / filename
    atomic_write_bytes(path, buffer.getvalue())
    return path


#: colours of the bench picture's variants (colour-blind safe, as the run picture's)
VARIANT_COLOURS = {"fedavg": "#D55E00", "fo": "#009E73", "hf": "#0072B2", "exact": "#CC79A7"}


def plot_bench(pooled: dict, title: str, path: str | Path) -> Path:
    """Draw bench runs (:func:`perfedavg.bench.run.pool`'s ``pooled``): per variant, every run's speedup
    (loop time over engine time, same run) and fraction of the bmm throughput, filled on a quiet host
    and hollow on a busy one, the median as a bar; written atomically to ``path`` (format from its suffix)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    from perfedavg.runs.rundir import atomic_write_bytes

    path = Path(path)
    quiet = pooled["host_quiet"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
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
            ax.annotate(f"{median:.2f}" if key == "speedups" else f"{median:.0%}", (x + 0.24, median), va="center", fontsize=8)
        ax.set_xticks(range(len(pooled["variants"])), list(pooled["variants"]))
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes[0].scatter([], [], s=22, color="grey", label=f"quiet host ({pooled['quiet_runs']})")
    axes[0].scatter([], [], s=22, facecolors="none", edgecolors="grey", label=f"busy host ({pooled['runs'] - pooled['quiet_runs']})")
    axes[0].plot([], [], color="black", linewidth=2, label="median")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower(), dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
