"""``perfedavg reproduce personalization``: its flags and what it runs (:mod:`empirical.personalization`).

No torch at import time (``perfedavg --help`` loads this module through :mod:`empirical.cli`).
"""

from __future__ import annotations

from perfedavg.errors import UsageError
from perfedavg.runs.names import figure_results

from .cli import DATA_HELP, _at_least, _csv


def register_personalization(what) -> None:
    p = what.add_parser(
        "personalization",
        help="current and new users after 0, 1 and a few adaptation steps (the abstract's promise, measured)",
        description="Hold 20% of the users of the paper's split out of training (both of its groups among them) "
        "and measure current and new users after k = 0, 1, ..., N full-batch adaptation steps of size alpha (the "
        "k-step personalized objective F_k), on MNIST and CIFAR-10 at the Table 1 row where the methods differ "
        "(tau = 10, alpha = 0.01), for FedAvg, FedAvg given HF's budget per round, Per-FedAvg FO and HF (exact "
        "with --with-exact), 5 seeds, K = 1000. Writes OUT/personalization.{md,json} (accuracy of current and new "
        "users after k = 0, 1, N, mean ± std over seeds, both protocols), OUT/personalization-<dataset>.png "
        "(every user's accuracy, ECDF) and Table 1's full output for these cells (OUT/table1.md: what each "
        "column costs, every user's outcome by group). Every cell is a resumable run directory under OUT/runs/ "
        "(Table 1's runner); one training per cell serves every k.",
    )
    p.add_argument(
        "--out",
        default=figure_results("personalization"),
        metavar="DIR",
        help=f"output folder [default: {figure_results('personalization')}, where `perfedavg figures` reads it]",
    )
    p.add_argument("--data-dir", default="", metavar="DIR", help=DATA_HELP)
    p.add_argument("--download", action="store_true", help="download the official archives when missing")
    p.add_argument("--datasets", default="mnist,cifar10", help="comma-separated: mnist, cifar10 [default: both]")
    p.add_argument(
        "--alpha", type=float, default=0.01, help="alpha of the row: 0.01 (default) or the paper's other, 0.001"
    )
    p.add_argument("--steps", type=int, default=5, metavar="N", help="adaptation steps k = 0..N, >= 1 [default: 5]")
    p.add_argument(
        "--new-users",
        type=float,
        default=0.2,
        metavar="V",
        help="users held out of training: a fraction in (0, 1) or a count [default: 0.2]",
    )
    p.add_argument("--with-exact", action="store_true", help="add Per-FedAvg with exact HVPs (an extra column)")
    p.add_argument(
        "--match-rule",
        choices=("steps", "batch"),
        default="steps",
        help="how FedAvg gets HF's budget: more local steps (default) or larger batches",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell, >= 1 [default: 5; --quick: 1]")
    p.add_argument("--rounds", type=int, default=None, help="rounds K, >= 1 [default: 1000; --quick: 30]")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="cells run at once, >= 1")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch threads per cell, >= 1 [default: 1]")
    p.add_argument("--quick", action="store_true", help="reduced version (30 rounds, one seed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=personalization_main)


def personalization_main(args) -> int:
    from .personalization import personalization_markdown, personalization_plan, run_personalization

    datasets = _csv(args.datasets)
    for d in datasets:
        if d not in ("mnist", "cifar10"):
            raise UsageError(f"--datasets: {d!r} is not one of mnist, cifar10")
    if not datasets:
        raise UsageError("--datasets must name at least one data set")
    for name, value, low in (
        ("--seeds", args.seeds, 1),
        ("--rounds", args.rounds, 1),
        ("--steps", args.steps, 1),
        ("--threads", args.threads, 1),
        ("--workers", args.workers, 1),
    ):
        _at_least(name, value, low)
    if not (args.alpha > 0) or not (args.new_users > 0):
        raise UsageError(f"--alpha={args.alpha:g} and --new-users={args.new_users:g} must both be > 0")
    kw = {"datasets": datasets, "data_dir": args.data_dir, "download": args.download, "threads": args.threads}
    kw |= {"workers": args.workers, "match_rule": args.match_rule}
    if args.seeds:
        kw["seeds"] = args.seeds
    if args.rounds:
        kw["K"] = args.rounds
    plan = personalization_plan(args.quick, args.alpha, args.steps, args.new_users, **kw)
    if args.with_exact:
        from dataclasses import replace

        plan = replace(plan, methods=(*plan.methods, "exact"))
    result = run_personalization(plan, args.out, progress=not args.no_progress)
    print(personalization_markdown(result))
    print(f"written: {args.out}/personalization.md, personalization.json, personalization-*.png, table1.md")
    return 0
