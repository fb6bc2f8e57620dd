"""``perfedavg reproduce table1``: the paper's Table 1, regenerated."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "reproduce",
        help="regenerate the paper's experiments (Table 1)",
        description="Run FedAvg, Per-FedAvg (FO) and Per-FedAvg (HF) on MNIST and CIFAR-10 with the paper's split, "
        "model and hyper-parameters (PAPER.md §7), over several seeds, and write OUT/table1.{md,tex,json} with "
        "mean ± std personalized accuracy under both protocols (adaptation on test data as the paper did; on "
        "training data, leak-free). Finished cells are reused; an interrupted reproduction resumes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=["table1"], help="what to reproduce")
    parser.add_argument("--out", default="runs/table1", metavar="DIR", help="output folder (default: runs/table1)")
    parser.add_argument("--data-dir", default="", metavar="DIR",
                        help="data root (default: $PERFEDAVG_DATA, else the user cache directory)")
    parser.add_argument("--datasets", default="mnist,cifar10", help="comma-separated: mnist, cifar10 (default: both)")
    parser.add_argument("--methods", default="fedavg,fo,hf",
                        help="comma-separated: fedavg, fo, hf, exact (default: fedavg,fo,hf; exact is the extra column)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 5; --quick: 1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds K (default 1000 as in the paper; --quick: 100)")
    parser.add_argument("--quick", action="store_true", help="reduced version (100 rounds, one seed) for a smoke test")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=main)


def main(args) -> int:
    from perfedavg.errors import UsageError

    from .reproduce import METHOD_NAMES, Plan, run_plan

    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    for d in datasets:
        if d not in ("mnist", "cifar10"):
            raise UsageError(f"--datasets: {d!r} is not one of mnist, cifar10")
    for m in methods:
        if m not in METHOD_NAMES:
            raise UsageError(f"--methods: {m!r} is not one of {', '.join(METHOD_NAMES)}")
    for name, value in (("--seeds", args.seeds), ("--rounds", args.rounds)):
        if value is not None and value < 1:
            raise UsageError(f"{name}={value} is out of range: must be >= 1")
    base = Plan.quick() if args.quick else Plan()
    kw = {"datasets": datasets, "methods": methods, "data_dir": args.data_dir}
    if args.seeds:
        kw["seeds"] = args.seeds
    if args.rounds:
        kw["K"] = args.rounds
        kw["eval_every"] = max(1, min(base.eval_every, args.rounds))
    plan = Plan(**{**base.__dict__, **kw})
    # fail fast on missing data, before any run starts
    from .data import load_dataset

    for d in datasets:
        load_dataset(d, args.data_dir or None)
    from .reproduce import markdown

    table = run_plan(plan, args.out, progress=not args.no_progress)
    print(markdown(table))
    print(f"written: {args.out}/table1.md, table1.tex, table1.json")
    return 0
