"""``perfedavg run``: one configuration into one run directory."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from .config import field_docs

    options = "\n".join(f"  {name:<17} {doc}" for name, doc in field_docs().items())
    parser = sub.add_parser(
        "run",
        help="run FedAvg or Per-FedAvg on a task and write a run directory",
        description="Run FedAvg / Per-FedAvg (FO, HF, exact) and write DIR/config.toml (resolved config), "
        "DIR/metrics.jsonl (one JSON record per evaluated round), DIR/summary.json, DIR/checkpoint.pt "
        "and DIR/curves.png. Without --config the embedded default runs (synthetic softmax regression). "
        "Ctrl-C or SIGTERM stops at the next round boundary with a checkpoint (twice: at once); continue with "
        "--resume. Exit status: 0 finished, 1 diverged (NaN/inf; the last good round is kept), 2 bad input "
        "(nothing written), 130/143 interrupted.",
        epilog="config options (TOML top-level keys, or --set key=value):\n" + options
        + "\n\ntask options: --set task.KEY=VALUE (e.g. --set task.h=0.9); see the task's documentation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE.toml", help="TOML config (top-level options plus a [task] table)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, value as a TOML literal (repeatable), e.g. --set alpha=0.01")
    parser.add_argument("--out", metavar="DIR", help="run directory to create (default: runs/<algorithm>-<task>-seed<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (its saved config.toml, changed by --config "
                        "/ --set only with --force); bit-identical to an uninterrupted run")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing run directory --out (only run files are deleted), or resume despite a "
                        "changed config or code version")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--no-plot", action="store_true", help="do not draw DIR/curves.png")
    parser.set_defaults(func=main)


def main(args) -> int:
    """Exit status: 0 finished, 1 diverged, 128 + signal number when interrupted
    (130 for Ctrl-C, 143 for SIGTERM), 2 for bad input (raised as UsageError)."""
    import signal
    import sys

    from .errors import UsageError
    from .runner import load_resume_config, load_run_config, run_config

    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out DIR (the run directory to continue)")
        cfg = load_resume_config(args.out, args.config, args.overrides)
    else:
        cfg = load_run_config(args.config, args.overrides)
    out = args.out or f"runs/{cfg.algorithm}-{cfg.task['name']}-seed{cfg.seed}"
    result = run_config(cfg, out, resume=args.resume, force=args.force, progress=not args.no_progress,
                        plot=not args.no_plot)
    summary = result.summary
    final = summary["final"]
    if result.status == "diverged":
        print(f"perfedavg: run diverged: {summary['message']}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print(f"perfedavg: {summary['message']}", file=sys.stderr)
        return 128 + int(getattr(signal, summary["signal"]))
    print(
        f"{out}: {summary['rounds_completed']} rounds, ||grad F||^2 = {final.get('grad_norm_sq_F', float('nan')):.4g}, "
        f"personalized accuracy = {100 * final.get('personalized_accuracy', float('nan')):.2f}% ({summary['wall_seconds']:.1f} s)"
    )
    return 0
