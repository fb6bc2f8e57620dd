r"""Current and new users after a few adaptation steps: the figure of ``perfedavg reproduce personalization``
(:mod:`empirical.personalization`, docs/paper.md §1, §7).

That command trains on MNIST / CIFAR-10 for a long time, so the figures pipeline never runs it: the figure is
drawn from its saved ``<runs>/personalization/personalization.json`` (every user's accuracy, seeds pooled, per
method, group of users and k), one figure per data set, in both sizes of :mod:`figures.style`; the panels are
:func:`empirical.personalization.draw_user_ecdfs`, the one drawing the command's own pictures also use.  The
focused table ``personalization.md`` is shown beside it.  Without saved output the entry is skipped with a note
naming the command that makes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from empirical.personalization import GROUPS, draw_user_ecdfs
from empirical.reproduce import METHOD_NAMES
from perfedavg.runs.rundir import read_json

from . import store
from .style import ALGORITHM_STYLE, OKABE_ITO, finish, plural, render, shared_legend, suptitle

NAME = "personalization"
TITLE = "Current and new users after a few adaptation steps: every user's accuracy (MNIST, CIFAR-10)"
EMPIRICAL = True
STEM = "fig8_personalization"
#: the protocol drawn: the adaptation step on test data, Table 1's (the JSON holds the leak-free one too)
PROTOCOL = "test"
#: the Per-FedAvg variant the headline and report compare with FedAvg: the first of these the run has
PER_FEDAVG = ("hf", "fo", "exact")
#: the k the headline compares at: one step, the abstract's "one or a few steps"
ONE_STEP = 1
#: FedAvg given a Per-FedAvg variant's budget (a method of Table 1's runner, not an algorithm of figures.style)
BUDGET_COLOR = OKABE_ITO["orange"]


def _missing(root: Path) -> store.Skip:
    src = Path(root) / NAME
    return store.Skip(
        f"no saved results in {src}: run `perfedavg reproduce personalization --out {src}` (needs the data; "
        "`--quick` for a reduced version)"
    )


def run(root: Path, level: str) -> None:
    """Nothing is run here (the command's training takes hours): skipped with a note when its output is missing."""
    if not (Path(root) / NAME / "personalization.json").is_file():
        raise _missing(root)


def means(result: dict, label: str) -> dict[str, dict[str, dict[str, float]]]:
    """The mean accuracy (%, over seeds: the focused table's) per method, group (``current``, ``new``) and k of
    the data set ``label``, from the saved rows."""
    return {
        row["method"]: {
            name.split()[0]: {k: stat["mean"] for k, stat in row["cells"][f"{PROTOCOL}{who}"].items()}
            for who, name, _ in GROUPS
        }
        for row in result["rows"]
        if row["dataset"] == label
    }


def _colors(methods: list[str]) -> dict[str, str]:
    """Each method's colour: figures.style's for an algorithm; FedAvg given a variant's budget orange, beside
    FedAvg's vermillion."""
    return {m: ALGORITHM_STYLE[m]["color"] if m in ALGORITHM_STYLE else BUDGET_COLOR for m in methods}


def _headline(label: str, acc: dict, per: str, short: bool = False) -> str:
    """The point at a glance, from the mean accuracies: Per-FedAvg against FedAvg (and FedAvg given its budget,
    where run) after one step, for current and new users, and the shared models before adapting."""
    one, zero, name = f"k={ONE_STEP}", "k=0", METHOD_NAMES[per]
    p, f = acc[per], acc["fedavg"]
    if short:
        return (
            f"{label}, mean accuracy after {plural(ONE_STEP, 'step')} (current / new users): {name} "
            f"{p['current'][one]:.1f}% / {p['new'][one]:.1f}%, FedAvg {f['current'][one]:.1f}% / {f['new'][one]:.1f}%"
        )
    budget = f"fedavg-{per}"
    matched = (
        f", {METHOD_NAMES[budget]} {acc[budget]['current'][one]:.1f}% and {acc[budget]['new'][one]:.1f}%"
        if budget in acc
        else ""
    )
    before = "below" if p["current"][zero] < f["current"][zero] else "at or above"
    return (
        f"{label}, mean accuracy after {plural(ONE_STEP, 'step')}: {name} {p['current'][one]:.1f}% for current and "
        f"{p['new'][one]:.1f}% for new users, FedAvg {f['current'][one]:.1f}% and {f['new'][one]:.1f}%{matched}; "
        f"before adapting, {name}'s shared model is {before} FedAvg's ({p['current'][zero]:.1f}% vs "
        f"{f['current'][zero]:.1f}%)"
    )


def _report(label: str, acc: dict, per: str) -> list[dict[str, Any]]:
    """The index's rows: is the Per-FedAvg variant's mean accuracy ahead of FedAvg's after one step, per group."""
    one = f"k={ONE_STEP}"
    return [
        {
            "statement": f"{METHOD_NAMES[per]} ahead of FedAvg after {plural(ONE_STEP, 'step')}, {group} users "
            f"({label}, mean accuracy)",
            "section": "§1",
            "bound": None,
            "measured": acc[per][group][one] - acc["fedavg"][group][one],
            "ratio": None,
            "verdict": "holds" if acc[per][group][one] > acc["fedavg"][group][one] else "FAILS",
            "kind": "comparison",
            "note": f"{acc[per][group][one]:.1f}% vs {acc['fedavg'][group][one]:.1f}%",
        }
        for group in ("current", "new")
    ]


def draw(root: Path, out: Path) -> dict[str, Any]:
    """Draw, per data set, every user's accuracy before adapting and after 1 and N steps (ECDFs) from the saved
    ``personalization.json``, in both sizes, each with its ``<stem>.json``; returns ``{"files", "caption",
    "details", "report", "headline", "table_markdown"}``."""
    src = Path(root) / NAME
    if not (src / "personalization.json").is_file():
        raise _missing(root)
    result = read_json(src / "personalization.json")
    if "users" not in result:
        raise store.Skip(
            f"{src / 'personalization.json'} holds no per-user accuracies: rerun `perfedavg reproduce "
            f"personalization --out {src}` with the options that made it (finished cells are read, not trained)"
        )
    plan, ks, alpha = result["plan"], [int(k) for k in result["steps"]], result["alpha"]
    seeds, one = plural(plan["seeds"], "seed"), f"k={ONE_STEP}"
    sets = []  # per data set: its key, label, curves, Per-FedAvg variant, mean accuracies, users per curve
    for dataset, users in result["users"].items():
        curves = users["methods"]
        first = next(iter(curves.values()))
        counts = {name.split()[0]: len(first[f"{PROTOCOL}{who}"]["k=0"]) for who, name, _ in GROUPS}
        per = next(m for m in PER_FEDAVG if m in curves)
        sets.append((dataset, users["label"], curves, per, means(result, users["label"]), counts))
    per_names = " / ".join(dict.fromkeys(METHOD_NAMES[per] for *_, per, _, _ in sets))
    compared = "; ".join(
        f"{label} {acc[per]['current'][one]:.1f}% and {acc[per]['new'][one]:.1f}% against "
        f"{acc['fedavg']['current'][one]:.1f}% and {acc['fedavg']['new'][one]:.1f}%"
        for _, label, _, per, acc, _ in sets
    )
    caption = (
        f"Every user's {PROTOCOL} accuracy (ECDF over users, {seeds} pooled; a curve further right is better) for "
        "current users (solid) and new users held out of training (dashed), before adapting and after 1 and "
        f"{ks[-1]} full-batch steps of size α = {alpha:g}, one colour per method. After one step current and new "
        f"users of {per_names} reach {compared} with FedAvg (mean accuracy). "
        "The table gives the means over seeds; read from `perfedavg reproduce personalization`'s output."
    )
    summaries = "; ".join(
        f"{label} ({counts['current']} current and {counts['new']} new users' values per curve): "
        + ", ".join(
            f"{METHOD_NAMES[m]} "
            + " and ".join(f"{g} " + "/".join(f"{acc[m][g][f'k={k}']:.1f}" for k in ks) for g in ("current", "new"))
            for m in curves
        )
        for _, label, curves, _, acc, counts in sets
    )
    details = (
        "What it shows: how current users and new users (held out of training) fare after k = "
        f"{', '.join(map(str, ks))} adaptation steps from each method's shared model (empirical/personalization.py; "
        f"τ = {result['tau']}, K = {plan['K']}, {seeds}, steps on {PROTOCOL} data as in Table 1; the JSON also "
        "holds the leak-free steps on training data). FedAvg (HF's budget) is FedAvg given HF's gradient "
        "evaluations per round. What the theory and the paper predict: Per-FedAvg's model is one that current or "
        "new users adapt to in one or a few steps (docs/paper.md §1) and new users' personalized gradient stays "
        "close to the training users' (figure new_users); no bound is drawn here. The mean accuracy (%, over seeds) "
        f"at k = {'/'.join(map(str, ks))}: {summaries}."
    )
    files: list[Path] = []
    headlines, reports = [], []
    for dataset, label, curves, per, acc, counts in sets:
        colors = _colors(list(curves))

        def panels(fig, axes, profile, curves=curves, colors=colors, label=label, acc=acc, per=per):
            draw_user_ecdfs(axes, curves, ks, colors, PROTOCOL)
            suptitle(fig, _headline(label, acc, per, short=profile == "slide"))
            shared_legend(fig, axes)

        stem = f"{STEM}_{dataset}"
        headline, report = _headline(label, acc, per), _report(label, acc, per)
        files += finish(
            out,
            stem,
            render(out, stem, len(ks), panels, height=1.2),
            headline=headline,
            span=(math.nan, math.nan),
            verdict="no bound drawn",
            pairs=[],
            details=details,
            caption=caption,
            report=report,
            tight_text="no bound drawn",
            dataset=label,
            means=acc,
            users_per_curve=counts,
        )["files"]
        headlines.append(headline)
        reports += report
    md = (src / "personalization.md").read_text() if (src / "personalization.md").is_file() else ""
    md = "\n".join(line for line in md.splitlines() if not line.startswith("# "))  # the entry has its own title
    return {
        "files": files,
        "caption": caption,
        "details": details,
        "report": reports,
        "headline": ". ".join(headlines),
        "table_markdown": md,
    }
