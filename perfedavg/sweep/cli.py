"""``perfedavg sweep``: the command line (a sweep file in, its runs on this machine or a Ray cluster).

Imported at ``perfedavg --help`` time, so torch stays out: the worker and the scheduler (the
runner, the backends, torch) are imported when a sweep runs; a ``--dry-run`` needs the worker only.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from perfedavg.errors import UsageError
from perfedavg.outputs import output_dir
from perfedavg.sweep.spec import RUNS, SWEEP_SUMMARY_MD, Unit, expand, load_sweep


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``perfedavg sweep`` to the top-level command line."""
    parser = sub.add_parser(
        "sweep",
        help="run a sweep (a base config crossed with axes and seeds) locally or on a Ray cluster",
        description="Run every unit of a sweep file (a run config plus a [sweep] table of axes and seeds) into "
        "DIR/runs/<key=value,...>, each with the layout of `perfedavg run`, and keep DIR/sweep_summary.md and "
        "DIR/sweep_summary.json (one row per run: status, attempts, final metrics) up to date. Re-running the "
        "same command resumes: finished runs are skipped, interrupted ones continue from their checkpoint, "
        "failed ones are tried again. A worker that dies loses only its own run, which is retried.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE.toml", help="the sweep file: a run config plus a [sweep] table")
    parser.add_argument("--out", metavar="DIR", help="sweep directory [default: sweeps/<FILE stem>]")
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a process pool on this machine (default); ray: Ray tasks on the cluster "
        "given by --address, or on a Ray instance started here (needs Ray: pip install -e '.[ray]')",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="runs at once (>= 1) [default: local: the usable cores / --threads; ray: the cluster's CPUs / --threads]",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="torch threads per run (>= 1) [default: usable cores / --workers, at least 1]; on Ray "
        "each run also reserves T CPUs",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="ray only: the cluster to join, e.g. ray://head:10001 or auto [default: start a "
        "local Ray instance with --workers x --threads CPUs]",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times a run whose worker died or raised is tried again within this invocation "
        "(>= 0) [default: 2]; re-running the sweep tries failed runs again",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one base option, value as a TOML literal (repeatable), e.g. --set K=50 "
        "or --set task.n_clients=10",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and what would happen to each (skip / resume / start), run nothing",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="restart from scratch runs whose saved config differs from the sweep's "
        "[default: refuse, so an edited sweep never mixes with old results]",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the sweep's progress bar")
    parser.add_argument(
        "--bench",
        action="store_true",
        help="at the end, print JSON with the sweep runner's overhead per run (time not spent "
        "inside run_config) as a fraction of the run time",
    )
    parser.set_defaults(func=main)


_EPILOG = """\
sweep file:
  base config      top-level run options and [task], as for `perfedavg run --config`
  [sweep]
  seeds            a count n (seeds 0..n-1) or a list of seeds; the innermost axis
  [sweep.grid]     KEY = [values...]: axes crossed, the first one slowest;
                   task options as "task.h" = [...] (or a [sweep.grid.task] table)
  [[sweep.zip]]    KEY = [values...] lists of one length, taken together; each group
                   is crossed with the grid and the other groups

examples:
  perfedavg sweep examples/sweeps/alpha_h.toml --out sweeps/alpha_h --dry-run
  perfedavg sweep examples/sweeps/alpha_h.toml --out sweeps/alpha_h              # local pool
  perfedavg sweep examples/sweeps/alpha_h.toml --out sweeps/alpha_h --backend ray --address auto
"""


def main(args: argparse.Namespace) -> int:
    bounds = (("--workers", args.workers, 1), ("--threads", args.threads, 1), ("--retries", args.retries, 0))
    for option, value, low in bounds:
        if value is not None and value < low:
            raise UsageError(f"{option}={value} is out of range: must be >= {low}")
    if args.address is not None and args.backend != "ray":
        raise UsageError("--address is for --backend ray only")
    spec = load_sweep(args.file, args.overrides)
    out = Path(args.out) if args.out else Path("sweeps") / Path(args.file).stem
    units = expand(spec)

    # the runner (worker) and the backends (scheduler) bring torch: loaded when a sweep runs, not at --help
    from perfedavg.sweep.worker import plan

    # every check before anything is written: a bad file, a run of another config, a missing backend
    actions = plan(units, out, force=args.force, sweep_file=args.file)
    if args.dry_run:
        print_plan(units, actions, out)
        return 0
    from perfedavg.sweep.backends import require_ray
    from perfedavg.sweep.scheduler import SweepOptions, run_sweep

    if args.backend == "ray":
        require_ray()
    output_dir(out, "--out")

    options = SweepOptions(
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        retries=args.retries,
        force=args.force,
        progress=not args.no_progress,
    )
    report = run_sweep(units, out, options, sweep_file=args.file)
    if args.bench:
        print(json.dumps(report.bench, indent=2))
    counts = report.counts
    print(
        f"{out}: {counts.get('finished', 0)} finished, {counts.get('diverged', 0)} diverged, "
        f"{counts.get('failed', 0)} failed, {counts.get('pending', 0) + counts.get('interrupted', 0)} not done "
        f"of {len(units)} runs ({report.wall_seconds:.1f} s); table in {out / SWEEP_SUMMARY_MD}"
    )
    if report.interrupted:
        print("perfedavg: sweep interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if counts.get("failed", 0) else 0


def print_plan(units: list[Unit], actions: dict[str, str], out: Path) -> None:
    """``--dry-run``'s listing: one line per unit with its action and directory, then the counts."""
    counts = collections.Counter(actions.values())
    width = max((len(u.name) for u in units), default=0)
    for unit in units:
        print(f"{actions[unit.name]:<8} {unit.name:<{width}}  -> {Path(out) / RUNS / unit.name}")
    actions_seen = (a for a in ("skip", "resume", "start", "restart") if counts[a])
    print(f"{len(units)} runs: " + ", ".join(f"{counts[a]} {a}" for a in actions_seen))
