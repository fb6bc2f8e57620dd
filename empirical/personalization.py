r"""Current and new users after a few adaptation steps: the abstract's promise, measured (docs/paper.md §1, §7).

The paper's abstract asks for "an initial shared model that current or new users can easily adapt to their
local dataset by performing one or a few steps of gradient descent"; its Table 1 measures current users after
one step.  This reproduction holds 20 % of the users of the paper's split out of training (both of its groups,
:mod:`perfedavg.runs.holdout`) and measures current and new users after k = 0, 1, ..., N full-batch steps of
size α (:mod:`perfedavg.engine.adaptation`: the k-step personalized objective F_k's accuracy), at the Table 1
row where the methods differ (τ = 10, α = 0.01; ``--alpha 0.001`` for the other), for FedAvg, FedAvg given HF's
budget per round (:func:`perfedavg.engine.costs.budget_matched`: "FedAvg + k-step fine-tuning" with the same
gradient evaluations, the baseline that answers the usual critique), Per-FedAvg FO and HF (exact as an extra).

It runs on Table 1's runner (:func:`empirical.reproduce.run_plan`: every cell a resumable run directory, one
training per cell serving every k), writes Table 1's full output for these cells (``table1.md``: costs,
every user's outcome by group), and ``personalization.{md,json}``: the focused table, accuracy (%) of current
and new users after k = 0, 1 and N steps, mean ± std over seeds, under both protocols; and
``personalization-<dataset>.png``: each method's distribution over users (ECDF, all seeds pooled) of the
accuracy of current and new users before adaptation and after 1 and N steps (:func:`draw_user_ecdfs`, the one
drawing the figure ``personalization`` also calls, from the per-user accuracies saved in the JSON).
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from perfedavg.runs import rundir
from perfedavg.words import plural, seed_summary

from .reproduce import METHOD_NAMES, PROTOCOLS, Plan, cell_dir, run_plan, users_file

#: the Table 1 row where the methods differ, and the paper's other α
ALPHA = 0.01
TAU = 10
METHODS = ("fedavg", "fedavg-hf", "fo", "hf")
NEW_USERS = 0.2
STEPS = 5
#: rounds and seeds of ``--quick``
QUICK_K = 30


def personalization_plan(
    quick: bool = False, alpha: float = ALPHA, steps: int = STEPS, new_users: float = NEW_USERS, **kw: Any
) -> Plan:
    """The cells: both data sets, one row (τ = 10, ``alpha``), :data:`METHODS`, ``new_users`` held out, curves to
    ``steps``; 5 seeds and K = 1000 (``quick``: one seed, :data:`QUICK_K` rounds); ``kw`` overrides."""
    base = Plan.quick(K=QUICK_K) if quick else Plan()
    task = {**base.task, "holdout_users": new_users, **kw.pop("task", {})}
    return replace(base, rows=((TAU, alpha),), methods=METHODS, adapt_steps=steps, task=task, **kw)


def shown_steps(steps: int) -> tuple[int, ...]:
    """The k the focused table shows: 0, 1 and the last."""
    return tuple(sorted({0, 1, steps}))


def personalization_table(table: dict) -> dict:
    """From Table 1's collected ``table`` (with ``users`` statistics): per data set and method, the accuracy (%)
    of current and new users after each shown k, per protocol (mean ± std over seeds)."""
    steps = table["plan"]["adapt_steps"]
    rows = []
    for row in table["rows"]:
        for method in table["plan"]["methods"]:
            curves = row["cells"][method]["users"]["steps"]
            cells = {
                f"{protocol}{who}": {f"k={k}": curves[f"{protocol}{who}"][k] for k in shown_steps(steps)}
                for protocol in PROTOCOLS
                for who in ("", "_new")
            }
            rows.append({"dataset": row["label"], "method": method, "cells": cells})
    first = table["rows"][0]
    return {
        "plan": table["plan"],
        "tau": first["tau"],
        "alpha": first["alpha"],
        "steps": list(shown_steps(steps)),
        "rows": rows,
    }


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.2f}" + (f" ± {stat['std']:.2f}" if stat["n"] > 1 else "")


def personalization_markdown(result: dict) -> str:
    """The focused table, one section per protocol."""
    plan, ks = result["plan"], result["steps"]
    lines = [
        "# Current and new users after a few adaptation steps",
        "",
        f"τ = {result['tau']}, α = {result['alpha']:g}, K = {plan['K']}, {seed_summary(plan['seeds'])}. "
        f"New users: held out of training (task.holdout_users), both groups of the "
        "paper's split among them. k: full-batch adaptation steps of size α; each column estimates the accuracy of "
        "the k-step personalized objective F_k (k = 0: the shared model). FedAvg (HF's budget): FedAvg with HF's "
        "gradient evaluations per round (table1.md counts every column's cost).",
        "",
    ]
    head = (
        "| data set | method | "
        + " | ".join(f"current, k={k}" for k in ks)
        + " | "
        + " | ".join(f"new, k={k}" for k in ks)
        + " |"
    )
    for protocol, caption in PROTOCOLS.items():
        lines += [f"## Test accuracy (%), {caption}", "", head, "|---|---|" + "---|" * (2 * len(ks))]
        for row in result["rows"]:
            cells = [_pm(row["cells"][f"{protocol}{who}"][f"k={k}"]) for who in ("", "_new") for k in ks]
            lines.append(f"| {row['dataset']} | {METHOD_NAMES[row['method']]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


#: the two groups of users a curve is about: the suffix of their saved accuracies, their name, their line style
GROUPS = (("", "current users", "-"), ("_new", "new users", "--"))


def user_accuracies(plan: Plan, out: Path, dataset: str) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Every user's accuracy (%), all seeds pooled, read from the cells' ``users-k<N>.json``: per method, per
    ``{protocol}{who}`` (``test``, ``test_new``, ``train``, ``train_new``) and per shown k (``"k=<k>"``,
    :func:`shown_steps`).  Saved in ``personalization.json`` (``users``): what the ECDFs draw."""
    tau, alpha = plan.rows[0]
    ks = shown_steps(plan.adapt_steps)
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for method in plan.methods:
        records = [
            rundir.read_json(cell_dir(out, dataset, tau, alpha, method, seed) / users_file(plan.adapt_steps))["record"]
            for seed in range(plan.seeds)
        ]
        per_client = [r["per_client"] for r in records]
        curves[method] = {
            f"{protocol}{who}": {
                f"k={k}": [round(100 * a, 3) for pc in per_client for a in pc[f"accuracy_{protocol}_steps{who}"][k]]
                for k in ks
            }
            for protocol in PROTOCOLS
            for who, _, _ in GROUPS
        }
    return curves


def step_title(k: int) -> str:
    """A panel's name for k adaptation steps: the shared model itself at k = 0."""
    return "before adapting (k = 0)" if k == 0 else f"after {plural(k, 'step')} (k = {k})"


def draw_user_ecdfs(
    axes: Any, curves: dict, ks: Any, colors: dict[str, str] | None = None, protocol: str = "test"
) -> None:
    """The one drawing of every user's accuracy (``perfedavg reproduce personalization``'s pictures and the
    figure ``personalization``): on ``axes``, one panel per k of ``ks``, per method (one colour) the ECDF over
    users, seeds pooled, of the accuracy (%) of current users (solid) and new users (dashed) after k steps on
    the ``protocol``'s data.  ``curves`` is :func:`user_accuracies`'s dict of one data set; ``colors`` maps a
    method to its colour (matplotlib's cycle otherwise).  The legend's entries (one per method, one per group
    of users) are added to the first panel."""
    import matplotlib as mpl

    colors = colors or {m: f"C{i}" for i, m in enumerate(curves)}
    width = 1.25 * mpl.rcParams["lines.linewidth"]  # eight step curves a panel: a little bolder than the default
    for i, (ax, k) in enumerate(zip(axes, ks)):
        for method, mine in curves.items():
            for who, _, style in GROUPS:
                values = sorted(mine[f"{protocol}{who}"][f"k={k}"])
                ecdf = [(j + 1) / len(values) for j in range(len(values))]
                ax.step(values, ecdf, where="post", linestyle=style, color=colors[method], linewidth=width)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"({'abcdefgh'[i]}) {step_title(k)}", loc="left")
        ax.set_xlabel(f"user's {protocol} accuracy (%) → better")
    axes[0].set_ylabel("share of users at or below x")
    for method in curves:
        axes[0].plot([], [], color=colors[method], linewidth=2 * width, label=METHOD_NAMES.get(method, method))
    for _, name, style in GROUPS:
        axes[0].plot([], [], color="0.2", linestyle=style, linewidth=width, label=name)


def plot_users(result: dict, out: Path, dataset: str, protocol: str = "test") -> Path:
    """``personalization-<dataset>.png``: :func:`draw_user_ecdfs` of the data set's saved accuracies
    (``result["users"]``) before adaptation (k = 0) and after 1 and N steps on the ``protocol``'s data."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    users = result["users"][dataset]
    ks = result["steps"]
    fig = Figure(figsize=(4.0 * len(ks), 3.8), layout="constrained")
    axes = fig.subplots(1, len(ks), sharey=True, squeeze=False)[0]
    draw_user_ecdfs(axes, users["methods"], ks, protocol=protocol)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.suptitle(
        f"{users['label']}: every user's accuracy, τ = {result['tau']}, α = {result['alpha']:g}, steps on "
        f"{protocol} data"
    )
    path = out / f"personalization-{dataset}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    rundir.atomic_write_bytes(path, buffer.getvalue())
    return path


def run_personalization(plan: Plan, out: str | Path, progress: bool = True) -> dict:
    """Run every missing cell of ``plan`` (Table 1's runner, resumable) and write ``table1.*``,
    ``personalization.{md,json}`` and the per-user pictures into ``out``; returns the focused table."""
    out = Path(out)
    table = run_plan(plan, out, progress=progress)
    result = personalization_table(table)
    labels = {row["dataset"]: row["label"] for row in table["rows"]}
    result["users"] = {d: {"label": labels.get(d, d), "methods": user_accuracies(plan, out, d)} for d in plan.datasets}
    result["pictures"] = [plot_users(result, out, dataset).name for dataset in plan.datasets]
    rundir.atomic_write_json(out / "personalization.json", result)
    rundir.atomic_write_text(out / "personalization.md", personalization_markdown(result))
    return result
