"""Quick-look pictures: one run's stationarity and personalized accuracy against rounds."""

from __future__ import annotations

import io
from pathlib import Path

from perfedavg.runs.rundir import atomic_write_bytes, read_metrics


def plot_run(run_dir: str | Path, filename: str = "curves.png") -> Path:
    """Draw ``||grad F(w_k)||^2`` (log scale) and personalized test accuracy against ``k``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    rounds = [r["round"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax1.semilogy(
        rounds, [r["grad_norm_sq_F"] for r in records], "o-", color="#0072B2", label=r"$\|\nabla F(w_k)\|^2$ (exact)"
    )
    ax1.semilogy(
        rounds,
        [r["grad_norm_sq_f"] for r in records],
        "s--",
        color="#D55E00",
        label=r"$\|\nabla f(w_k)\|^2$ (FedAvg objective)",
    )
    if "stationarity_avg" in records[-1]:
        ax1.semilogy(
            [r["round"] for r in records if "stationarity_avg" in r],
            [r["stationarity_avg"] for r in records if "stationarity_avg" in r],
            "^-",
            color="#009E73",
            label=r"$\frac{1}{\tau k}\sum\sum\|\nabla F(\bar w_{k,t})\|^2$",
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    path = run_dir / filename
    atomic_write_bytes(path, buffer.getvalue())
    return path
