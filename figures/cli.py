r"""``perfedavg figures``: every figure and table regenerated from saved runs by one command.

No torch or matplotlib at import time (``perfedavg --help`` loads this module): the figures are
built by :mod:`figures.build`, imported inside :func:`main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfedavg.outputs import output_dir
from perfedavg.runs.names import FIGURE_RUNS, FIGURE_RUNS_QUICK

FIGURE_NAMES = (
    "flagship",
    "heterogeneity",
    "floors",
    "drift",
    "hf_delta",
    "table1",
    "mnist_bound",
    "new_users",
    "personalization",
)


def _figure_name(text: str) -> str:
    """One NAME argument, checked (argparse's ``choices`` would list a stray ``[]`` for ``nargs="*"``)."""
    if text not in FIGURE_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a figure: choose from {', '.join(FIGURE_NAMES)}")
    return text


def _jobs(text: str) -> int:
    """``--jobs``: a whole number of worker processes, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of worker processes (a whole number >= 1)")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "figures",
        help="regenerate every figure and table (or the named ones) from saved runs, then an index page",
        description=(
            "Regenerate figures and tables into --out from the run directories under --runs, running any "
            "missing experiment through the normal runner first (finished runs are reused), then write "
            "index.html and index.md showing every figure with a caption saying what it shows and what the "
            "theory predicts. Figures: flagship (Φ_K vs K with the derived bound), heterogeneity (floor vs "
            "TV and W1), floors (floor vs D and β), drift (local drift vs τ), hf_delta (HF error vs δ), "
            "table1 (Table 1 and accuracy curves on MNIST / CIFAR-10; needs the data), mnist_bound (MNIST "
            "gradient norms vs the bound with estimated constants; needs the data), new_users (a new user's "
            "personalized-gradient gap vs its distance to the training users, with the TV and W1 bounds), "
            "personalization (every user's accuracy after a few adaptation steps, read from `perfedavg reproduce "
            "personalization`'s output; never run here)."
        ),
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        type=_figure_name,
        help=f"figures to regenerate [default: all]: {', '.join(FIGURE_NAMES)}",
    )
    p.add_argument(
        "--out",
        default="figures-out",
        metavar="DIR",
        help="folder of the figures (PNG + PDF), tables (Markdown + LaTeX) and index [default: figures-out]",
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="DIR",
        help=f"folder of the saved runs, read and completed [default: {FIGURE_RUNS_QUICK} with --quick, "
        f"else {FIGURE_RUNS}]",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fast draft of everything (short synthetic runs, 2 seeds; a few minutes); MNIST / CIFAR-10 "
        "figures are drawn only from saved results unless named",
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="worker processes running the figures' experiments and drawings side by side [default: one per core "
        "this process may use]; the figures are the same for every N",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from perfedavg.sweep.backends import default_workers

    from .build import build  # torch

    level = "quick" if args.quick else "full"
    runs = args.runs or (FIGURE_RUNS_QUICK if args.quick else FIGURE_RUNS)
    output_dir(args.out, "--out")
    output_dir(runs, "--runs")
    jobs = args.jobs or default_workers()
    entries = build(args.names, args.out, runs, level=level, progress=not args.no_progress, jobs=jobs)
    for e in entries:
        status = f"skipped: {e.note}" if e.note else ", ".join(str(f) for f in e.files)
        print(f"{e.name:14s} {e.seconds:6.1f} s  {status}")
    print(f"index: {Path(args.out) / 'index.html'} (also index.md)")
    return 0
