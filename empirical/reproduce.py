r"""Table 1 of the paper, regenerated (PAPER.md §7).

Personalized test accuracy after one adaptation step of size α, for FedAvg,
Per-FedAvg (FO) and Per-FedAvg (HF) (and, as an extra column the paper could not
afford, Per-FedAvg with the exact Hessian-vector product), on MNIST and CIFAR-10 with
the paper's split and MLP, for the rows (τ, α) = (10, 0.001), (4, 0.001), (10, 0.01),
with K = 1000, r = 0.2, β = 0.001, batch sizes 40, δ = 0.001 [recalled], over several
seeds, mean ± standard deviation, under both protocols: the adaptation step on the
user's test data (the paper's) and on its training data (leak-free).

Every cell is a run directory (``runs/<dataset>/tau<τ>-alpha<α>/<method>-seed<s>``)
written by the normal runner, so an interrupted reproduction resumes where it stopped
and finished cells are never recomputed.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from perfedavg import rundir
from perfedavg.config import build_config
from perfedavg.errors import UsageError

ROWS = ((10, 0.001), (4, 0.001), (10, 0.01))
METHODS = ("fedavg", "fo", "hf")
METHOD_NAMES = {"fedavg": "FedAvg", "fo": "Per-FedAvg (FO)", "hf": "Per-FedAvg (HF)", "exact": "Per-FedAvg (exact HVP)"}
PROTOCOLS = {"test": "adaptation step on test data (paper's protocol)", "train": "adaptation step on training data (leak-free)"}
#: the paper's hyper-parameters [recalled]
PAPER = {"K": 1000, "r": 0.2, "beta": 0.001, "D": 40, "D1": 40, "D2": 40, "delta": 0.001}


@dataclass(frozen=True)
class Plan:
    """What to run: data sets, rows, methods, seeds, rounds."""

    datasets: tuple[str, ...] = ("mnist", "cifar10")
    rows: tuple[tuple[int, float], ...] = ROWS
    methods: tuple[str, ...] = METHODS
    seeds: int = 5
    K: int = PAPER["K"]
    eval_every: int = 100
    data_dir: str = ""

    @staticmethod
    def quick(**kw) -> "Plan":
        """A reduced version (fewer rounds, one seed) for smoke tests: a few minutes."""
        return Plan(**{"seeds": 1, "K": 100, "eval_every": 50, **kw})

    def cells(self):
        for dataset in self.datasets:
            for tau, alpha in self.rows:
                for method in self.methods:
                    for seed in range(self.seeds):
                        yield dataset, tau, alpha, method, seed


def cell_dir(out: Path, dataset: str, tau: int, alpha: float, method: str, seed: int) -> Path:
    return out / "runs" / dataset / f"tau{tau}-alpha{alpha:g}" / f"{method}-seed{seed}"


def cell_config(plan: Plan, dataset: str, tau: int, alpha: float, method: str, seed: int):
    sets = {**PAPER, "K": plan.K, "tau": tau, "alpha": alpha, "algorithm": method, "seed": seed,
            "eval_every": plan.eval_every, "checkpoint_every": max(1, plan.K // 10)}
    task = {"name": dataset, "data_dir": plan.data_dir}
    return build_config({**sets, "task": task})


def run_plan(plan: Plan, out: str | Path, progress: bool = True) -> dict:
    """Run every missing cell of ``plan`` into ``out`` and write the table; returns it."""
    from tqdm import tqdm

    from perfedavg.runner import run_config

    out = Path(out)
    cells = list(plan.cells())
    timings: dict[str, float] = {}
    bar = tqdm(cells, desc="Table 1", unit="run", disable=not progress, dynamic_ncols=True)
    for dataset, tau, alpha, method, seed in bar:
        directory = cell_dir(out, dataset, tau, alpha, method, seed)
        bar.set_postfix_str(f"{dataset} tau={tau} alpha={alpha:g} {method} seed {seed}")
        status = _status(directory)
        if status == "finished":
            continue
        started = time.perf_counter()
        run_config(cell_config(plan, dataset, tau, alpha, method, seed), directory,
                   resume=(directory / rundir.CHECKPOINT).exists(), force=True, progress=False)
        timings[method] = timings.get(method, 0.0) + time.perf_counter() - started
    table = collect(plan, out)
    table["seconds_this_invocation"] = timings
    write_table(table, out)
    return table


def _status(directory: Path) -> str | None:
    try:
        return json.loads((directory / rundir.SUMMARY).read_text()).get("status")
    except (OSError, ValueError):
        return None


def collect(plan: Plan, out: Path) -> dict:
    """Mean ± std over seeds of the final personalized accuracy of every cell, both protocols."""
    rows = []
    for dataset in plan.datasets:
        for tau, alpha in plan.rows:
            row = {"dataset": dataset, "tau": tau, "alpha": alpha, "cells": {}}
            for method in plan.methods:
                finals, label = [], dataset
                for seed in range(plan.seeds):
                    directory = cell_dir(out, dataset, tau, alpha, method, seed)
                    summary = rundir.read_json(directory / rundir.SUMMARY)
                    if summary["status"] != "finished":
                        raise UsageError(f"{directory} did not finish ({summary['status']}: {summary['message']})")
                    finals.append(summary["final"])
                    label = summary.get("task", dataset)
                row["label"] = label
                row["cells"][method] = {
                    protocol: _mean_std([100 * f[f"personalized_accuracy_{protocol}_step"] for f in finals])
                    for protocol in PROTOCOLS
                } | {"global": _mean_std([100 * f["global_accuracy"] for f in finals]),
                     "wall_seconds": sum(rundir.read_json(cell_dir(out, dataset, tau, alpha, method, s) / rundir.SUMMARY)["wall_seconds"] for s in range(plan.seeds))}
            rows.append(row)
    return {"plan": {"K": plan.K, "seeds": plan.seeds, "methods": list(plan.methods), **{k: v for k, v in PAPER.items() if k != "K"}},
            "rows": rows}


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def markdown(table: dict) -> str:
    methods = table["plan"]["methods"]
    lines = []
    for protocol, caption in PROTOCOLS.items():
        lines.append(f"### Personalized test accuracy (%), {caption}\n")
        lines.append(f"K = {table['plan']['K']}, {table['plan']['seeds']} seed(s), mean ± std.\n")
        lines.append("| data set | τ | α | " + " | ".join(METHOD_NAMES[m] for m in methods) + " |")
        lines.append("|---|---|---|" + "---|" * len(methods))
        for row in table["rows"]:
            cells = [f"{row['cells'][m][protocol]['mean']:.2f} ± {row['cells'][m][protocol]['std']:.2f}" for m in methods]
            lines.append(f"| {row['label']} | {row['tau']} | {row['alpha']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def latex(table: dict) -> str:
    methods = table["plan"]["methods"]
    out = []
    for protocol, caption in PROTOCOLS.items():
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{Personalized test accuracy (\%), {caption}; K={table['plan']['K']}, "
                rf"{table['plan']['seeds']} seed(s), mean $\pm$ std.}}",
                r"\begin{tabular}{ll" + "c" * (1 + len(methods)) + "}", r"\toprule",
                r"Data set & $\tau$ & $\alpha$ & " + " & ".join(METHOD_NAMES[m] for m in methods) + r" \\", r"\midrule"]
        for row in table["rows"]:
            cells = [f"${row['cells'][m][protocol]['mean']:.2f} \\pm {row['cells'][m][protocol]['std']:.2f}$" for m in methods]
            out.append(f"{row['label']} & {row['tau']} & {row['alpha']:g} & " + " & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_table(table: dict, out: Path) -> None:
    rundir.atomic_write_json(out / "table1.json", table)
    rundir.atomic_write_text(out / "table1.md", markdown(table))
    rundir.atomic_write_text(out / "table1.tex", latex(table))
