"""``perfedavg bench``: the command line (time the engine against a per-client loop, or pool saved runs).

Imported at ``perfedavg --help`` time, so torch stays out: the measurement (torch) and the
picture (matplotlib) are imported when a bench runs or draws.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from perfedavg.bench.pool import MEASURED, QUIET_SPREAD, pool, pool_files
from perfedavg.bench.workload import SHAPES, VARIANTS
from perfedavg.errors import UsageError
from perfedavg.outputs import output_file
from perfedavg.runs.rundir import atomic_write_text
from perfedavg.words import plural

#: picture formats ``--plot`` writes (matplotlib's, by the file's suffix)
PLOT_FORMATS = (".png", ".pdf", ".svg")


def _positive(name: str) -> Callable[[str], int]:
    """argparse type of ``--NAME``: an integer >= 1 (>= 0 for ``--warmup`` and ``--threads``)."""
    low = 0 if name in ("warmup", "threads") else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"--{name}={text!r} is not an integer") from None
        if value < low:
            raise UsageError(f"--{name}={value} is out of range: must be >= {low}")
        return value

    return parse


def _variants(text: str) -> list[str]:
    """argparse type of ``--variants``: a comma-separated subset of :data:`VARIANTS`."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise UsageError(f"--variants={text!r}: each must be one of {', '.join(VARIANTS)} (comma-separated)")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``perfedavg bench`` to the top-level command line."""
    p = subparsers.add_parser(
        "bench",
        help="time the engine against a per-client nn.Module loop on the paper's MNIST workload shape",
        description="Time one round of each variant on the paper's workload shape (n = 50, r = 0.2, tau = 10, "
        "batches of 40, MLP 784-80-60-10 ELU, random MNIST-shaped data; --shape cifar10 for CIFAR-10's): the engine "
        "(perfedavg.engine.rounds.local_round with the hand-written MLP oracle) and a per-client nn.Module + "
        "torch.optim.SGD loop with a deepcopy per client, interleaved round by round in the same run. Prints "
        "JSON: median ms per round of both, their ratio, matmul FLOPs per round, and the fraction of this "
        "machine's bmm throughput (measured in the same run on the first layer's shapes) the engine achieves, "
        "and how far that throughput moved within the run (more than 15%: the host was busy, and a warning "
        "says so). --repeat N runs it all N times and adds the distribution over the runs; --pool FILE... "
        "pools saved results without timing anything; --plot FILE draws the runs.",
        epilog="On a loaded machine wall times with several threads are dominated by OpenMP threads waiting for "
        "descheduled siblings: compare 'speedup' (same run) rather than absolute times, try --threads 1 "
        "(see engine_cpu_ms / loop_cpu_ms), or set OMP_WAIT_POLICY=PASSIVE in the environment.",
    )
    p.add_argument(
        "--rounds", type=_positive("rounds"), default=20, help="timed rounds per variant, >= 1 [default: 20]"
    )
    p.add_argument("--warmup", type=_positive("warmup"), default=3, help="untimed rounds first, >= 0 [default: 3]")
    p.add_argument(
        "--threads",
        type=_positive("threads"),
        default=0,
        help="torch threads (torch.set_num_threads), >= 0; 0 = all cores [default: 0]",
    )
    p.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="floating-point type [default: float32]"
    )
    p.add_argument(
        "--variants",
        type=_variants,
        default=",".join(VARIANTS),
        help="comma-separated subset of fedavg,fo,hf,exact [default: all four]",
    )
    p.add_argument(
        "--clients",
        type=_positive("clients"),
        default=50,
        help="users n, >= 5; floor(0.2 n) of them are sampled per round [default: 50]",
    )
    p.add_argument(
        "--samples",
        type=_positive("samples"),
        default=0,
        help="random samples per user, >= 40 [default: 1000 for mnist, 340 for cifar10, the larger users "
        "of the paper's CIFAR-10 split]; with few samples of many features per user the engine runs whole "
        "rounds in the users' sample space (JSON: engine_rounds)",
    )
    p.add_argument(
        "--shape",
        choices=tuple(SHAPES),
        default="mnist",
        help="input shape of the random data: mnist (1x28x28, the MLP 784-80-60-10; default) or cifar10 "
        "(3x32x32, 3072-80-60-10)",
    )
    p.add_argument(
        "--no-malloc-tuning",
        dest="malloc_tuning",
        action="store_false",
        help="keep glibc's malloc defaults; by default perfedavg.engine.mlp.tune_malloc() is applied to the "
        "whole process (engine and loop alike) to avoid page faults on freed parameter-sized buffers",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of both the engine and the loop: cpu, cuda or cuda:N [default: cpu]; on CUDA "
        "every timing waits for the device's queued work first",
    )
    p.add_argument(
        "--repeat",
        type=_positive("repeat"),
        default=1,
        help="whole bench runs one after another, >= 1 [default: 1]; with more than one the JSON holds "
        "each run ('runs') and their distribution per variant ('pooled': median, least and greatest "
        "speedup, and the median over the runs on a quiet host), since on a shared host one run's ratio "
        "moves with the neighbours' load",
    )
    p.add_argument(
        "--pool",
        nargs="+",
        default=None,
        metavar="FILE",
        help="time nothing: pool saved bench JSONs (--json-out files of single or --repeat runs of one "
        "workload, dtype, device and thread count) into that same distribution",
    )
    p.add_argument("--json-out", default=None, metavar="FILE", help="also write the JSON to FILE, atomically")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also draw the runs to FILE (.png, .pdf or .svg), atomically: per variant each run's speedup "
        "and fraction of the bmm throughput, quiet-host runs filled, busy ones hollow, the medians as bars",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from perfedavg.bench import measure  # torch: loaded when the bench runs, not at --help

    measure.check_options(args)
    if args.json_out:
        output_file(args.json_out, "--json-out")  # before the minutes of timing, not after
    if args.plot:
        output_file(args.plot, "--plot")
        if Path(args.plot).suffix.lower() not in PLOT_FORMATS:
            raise UsageError(f"--plot {args.plot}: the file must end in {', '.join(PLOT_FORMATS)}")
    if args.pool:
        result = pool_files(args.pool)
    else:
        runs = [
            measure.run_bench(args, "bench" if args.repeat == 1 else f"bench {i + 1}/{args.repeat}")
            for i in range(args.repeat)
        ]
        busy = sum(not run["host_quiet"] for run in runs)
        if busy:
            print(
                f"perfedavg bench: warning: the host was busy in {busy} of {plural(len(runs), 'run')} "
                f"(bmm throughput moved by more than {QUIET_SPREAD:.0%} within the run; JSON: matmul_gflops_spread, "
                "host_quiet): their ratios are not representative",
                file=sys.stderr,
            )
        result = (
            runs[0]
            if len(runs) == 1
            else {
                **{k: v for k, v in runs[0].items() if k not in MEASURED},
                "repeat": len(runs),
                "runs": [{k: run[k] for k in MEASURED} for run in runs],
                "pooled": pool(runs),
            }
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        atomic_write_text(args.json_out, text + "\n")
    if args.plot:
        from perfedavg.bench.plot import plot_bench  # matplotlib: loaded only to draw

        pooled = result.get("pooled") or pool([result])
        shape = result["workload"]
        plot_bench(
            pooled,
            f"perfedavg bench: {plural(pooled['runs'], 'run')}, {shape['shape']} shape "
            f"(MLP {'-'.join(map(str, shape['mlp']))}), {result['dtype']}, {plural(result['threads'], 'thread')}, "
            f"{result['device']}",
            args.plot,
        )
    return 0
