"""``perfedavg reproduce``: the paper's Table 1 regenerated, and the constants of §3 on real models.

* ``perfedavg reproduce table1 [--quick]``: every cell a resumable run directory, then
  ``OUT/table1.{md,tex,json}`` and the users' split (``OUT/partition-<dataset>.{png,md}``);
* ``perfedavg reproduce personalization [--quick]``: current and new users after k = 0, 1, N adaptation
  steps on Table 1's runner (:mod:`empirical.personalization`);
* ``perfedavg reproduce constants --run DIR [--rounds 0,final]``: L, B, σ_G, σ_H, γ_G,
  γ_H and ρ estimated on a run's model, written to ``DIR/constants.json``.

No torch at import time (``perfedavg --help`` loads this module): the modules that compute are
imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

from perfedavg.errors import UsageError
from perfedavg.outputs import output_file
from perfedavg.runs.names import figure_results
from perfedavg.runs.resolve import check_device

DATA_HELP = (
    "data root [default: $PERFEDAVG_DATA, else the user cache directory]; holds MNIST/raw/ "
    "(IDX files) and cifar-10-batches-py/ or CIFAR-10-jpeg/"
)


def register(sub) -> None:
    parser = sub.add_parser(
        "reproduce",
        help="regenerate the paper's experiments (Table 1, personalization) and estimate its constants on real models",
        description="Regenerate the paper's Table 1 (table1), compare current and new users' accuracy after k = 0, "
        "1, 5 adaptation steps (personalization), or estimate the constants of its analysis on a run's model "
        "(constants). See `perfedavg reproduce WHAT --help`.",
    )
    what = parser.add_subparsers(dest="what", metavar="WHAT", parser_class=type(parser))
    what.required = True
    _register_table1(what)
    from .personalization_cli import register_personalization  # it reads this module's helpers

    register_personalization(what)
    _register_constants(what)


def _register_table1(what) -> None:
    p = what.add_parser(
        "table1",
        help="FedAvg, Per-FedAvg (FO), Per-FedAvg (HF) on MNIST and CIFAR-10 (docs/paper.md §7)",
        description="Run FedAvg, Per-FedAvg (FO) and Per-FedAvg (HF) (and optionally the exact variant, an extra "
        "column) on MNIST and CIFAR-10 with the paper's split, model and hyper-parameters (docs/paper.md §7: rows "
        "(tau, alpha) = (10, 0.001), (4, 0.001), (10, 0.01); K = 1000, r = 0.2, beta = 0.001, batches 40, "
        "delta = 0.001), over several seeds, and write OUT/table1.{md,tex,json}: mean ± sample std of the "
        "personalized test accuracy under both protocols (adaptation step on the user's test data as the paper "
        "did; on its training data, leak-free), the shared model's accuracy, and the wall time of every column. "
        "The users' split is drawn to OUT/partition-<dataset>.png and tabulated in .md. Every cell is a run "
        "directory under OUT/runs/: finished cells are reused, cells run with fewer rounds are continued, cells "
        "with other settings are run again, and an interrupted reproduction resumes. FedAvg does not use alpha "
        "to train, so its cells at (10, 0.01) evaluate the model trained at (10, 0.001) (when only rounds 0 and "
        "K are evaluated; the table says so). Cells run side by side "
        "(--workers processes of --threads torch threads) through the sweep runner, whose record of the "
        "invocation is OUT/sweep_summary.md. "
        "Results on the JPEG copy of CIFAR-10 are labelled 'CIFAR-10 (JPEG copy)'.",
    )
    p.add_argument(
        "--out",
        default=figure_results("table1"),
        metavar="DIR",
        help=f"output folder [default: {figure_results('table1')}, where `perfedavg figures` reads it]",
    )
    p.add_argument("--data-dir", default="", metavar="DIR", help=DATA_HELP)
    p.add_argument(
        "--download",
        action="store_true",
        help="download the official archives (md5-checked) when the data are missing; needs network",
    )
    p.add_argument("--datasets", default="mnist,cifar10", help="comma-separated: mnist, cifar10 [default: both]")
    p.add_argument(
        "--methods",
        default="fedavg,fo,hf",
        help="comma-separated: fedavg, fo, hf, exact [default: fedavg,fo,hf; exact is the extra column]; "
        "fedavg-fo, fedavg-hf, fedavg-exact: FedAvg given that variant's budget per round (--match-rule)",
    )
    p.add_argument(
        "--match-rule",
        choices=("steps", "batch"),
        default="steps",
        help="how the fedavg-<variant> columns spend the variant's budget: steps = tau times its gradient "
        "evaluations per step as local steps (an HVP counted as two gradients; default) | batch = one larger batch "
        "per step holding its per-sample gradients; the cost table shows what each column spent, counted",
    )
    p.add_argument(
        "--with-exact",
        action="store_true",
        help="add Per-FedAvg with exact Hessian-vector products as an extra column (marked [extra], not in "
        "the paper), with its own wall time; the default is the paper's three methods",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=0,
        metavar="N",
        help="also report the adaptation step as one SGD step on a batch of N samples per user (the "
        "paper's wording), drawn from the protocol's data with a generator of its own after training, "
        ">= 0 [default: 0, only the full-batch step on the user's whole test/training data]",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=0,
        metavar="N",
        help="also evaluate every cell's final model after k = 0, 1, ..., N full-batch adaptation steps of size "
        "alpha, with every user's outcome (spread over users, worst 10 %%, share of users harmed, by group): two "
        "more tables, from the same training [default: 0, not]",
    )
    p.add_argument(
        "--new-users",
        type=float,
        default=0.0,
        metavar="V",
        help="hold users out of training and report them as new users (task.holdout_users: a count, or a "
        "fraction in (0, 1); both groups of the paper's split kept); changes the training, so use another --out "
        "[default: 0, every user trains]",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell, >= 1 [default: 5; --quick: 1]")
    p.add_argument(
        "--rounds", type=int, default=None, help="rounds K, >= 1 [default: 1000 as in the paper; --quick: 30]"
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        metavar="N",
        help="also evaluate every N rounds, for curves [default: 0, only rounds 0 and K; an evaluation "
        "costs as much as many training rounds]",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="cells run at once, each in its own process, >= 1 [default: the usable cores / --threads, "
        "e.g. 2 on a 2-core machine; with --backend ray: the cluster's CPUs / --threads]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="torch threads per cell, >= 1 [default: 1, these small matrices gain little from more "
        "threads; the cores are used by running cells side by side]",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of every cell: cpu (default), cuda or cuda:N; on one GPU the --workers cells "
        "share it (a cell's draws stay on the CPU, so its results equal the CPU cell's to round-off, "
        "but its folder is not reused by a run on the other device)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a process pool on this machine (default); ray: Ray tasks on a Ray instance started "
        "here (needs `pip install perfedavg[ray]`); both through the sweep runner (perfedavg sweep), "
        "which retries a cell whose worker died",
    )
    p.add_argument(
        "--normalize",
        choices=("dataset", "none"),
        default="dataset",
        help="input scaling of every cell (task.normalize): dataset = (x/255 - mean)/std with the training "
        "set's per-channel statistics (default); none = plain x/255 (an ablation: use another --out, "
        "the cells' folders do not name it)",
    )
    p.add_argument("--quick", action="store_true", help="reduced version (30 rounds, one seed) for a smoke test")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=table1_main)


def _register_constants(what) -> None:
    p = what.add_parser(
        "constants",
        help="estimate L, B, sigma_G, sigma_H, gamma_G, gamma_H, rho on a run's model (docs/paper.md §3)",
        description="Estimate the constants of the analysis (docs/paper.md §3) at chosen rounds of a finished or "
        "interrupted run: L (top Hessian eigenvalue of each f_i, Lanczos on exact Hessian-vector products, full "
        "local data, max over users), B (max ||grad f_i||; and the per-sample max), sigma_G (per-sample gradient "
        "variance, max over users), sigma_H (per-sample Hessian deviation in operator norm: a Monte-Carlo "
        "estimate), gamma_G (exact), gamma_H (over a random subset of users: an estimate), rho (finite differences "
        "of Hessians along random directions: an estimate). Writes a JSON whose 'constants' table "
        "`perfedavg bounds --constants` and `perfedavg explain --constants` read (max over the rounds; F0_gap is "
        "F(w_0), an upper bound since F* >= 0), "
        "with per-round details and the provenance of every field. Rounds other than 0 and the checkpoint's are "
        "replayed deterministically from the run's config.",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="a run directory (config.toml, checkpoint.pt)")
    p.add_argument(
        "--rounds", default="0,final", help="comma-separated rounds, 'final' = the checkpoint's [default: 0,final]"
    )
    p.add_argument("--out", default="", metavar="FILE", help="output JSON [default: DIR/constants.json]")
    p.add_argument("--data-dir", default="", metavar="DIR", help="data root, overriding the run's task.data_dir")
    p.add_argument("--lanczos-steps", type=int, default=20, help="Lanczos steps per operator norm, >= 1 [default: 20]")
    p.add_argument(
        "--samples",
        type=int,
        default=100,
        help="per-sample gradients per user for sigma_G, >= 0 [default: 100, a Monte-Carlo estimate; "
        "0: all local samples, exact but the costliest part]",
    )
    p.add_argument(
        "--hessian-samples", type=int, default=4, help="drawn samples per user for sigma_H, >= 1 [default: 4]"
    )
    p.add_argument(
        "--gamma-users",
        type=int,
        default=5,
        help="random users for gamma_H, >= 0 [default: 5; 0 = all, each costs LANCZOS_STEPS full-data products]",
    )
    p.add_argument(
        "--rho-directions",
        type=int,
        default=2,
        help="random directions per user for rho, >= 0 (0 skips rho) [default: 2]",
    )
    p.add_argument(
        "--rho-radius", type=float, default=1e-3, help="finite-difference radius for rho, > 0 [default: 1e-3]"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the estimates' random draws, >= 0 [default: 0]")
    p.add_argument("--threads", type=int, default=1, help="torch threads, >= 1 [default: 1]")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=constants_main)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _at_least(name: str, value, low) -> None:
    if value is not None and value < low:
        raise UsageError(f"{name}={value} is out of range: must be >= {low}")


def table1_main(args) -> int:
    from .reproduce import METHOD_NAMES, Plan, markdown, run_plan  # here, not at the top: torch

    datasets, methods = _csv(args.datasets), _csv(args.methods)
    for d in datasets:
        if d not in ("mnist", "cifar10"):
            raise UsageError(f"--datasets: {d!r} is not one of mnist, cifar10")
    for m in methods:
        if m not in METHOD_NAMES:
            raise UsageError(f"--methods: {m!r} is not one of {', '.join(METHOD_NAMES)}")
    if not datasets or not methods:
        raise UsageError("--datasets and --methods must each name at least one item")
    for name, value, low in (
        ("--seeds", args.seeds, 1),
        ("--rounds", args.rounds, 1),
        ("--eval-every", args.eval_every, 0),
        ("--threads", args.threads, 1),
        ("--workers", args.workers, 1),
        ("--eval-batch", args.eval_batch, 0),
        ("--adapt-steps", args.adapt_steps, 0),
        ("--new-users", args.new_users, 0),
    ):
        _at_least(name, value, low)
    if args.with_exact and "exact" not in methods:
        methods = (*methods, "exact")
    base = Plan.quick() if args.quick else Plan()
    kw = {
        "datasets": datasets,
        "methods": methods,
        "data_dir": args.data_dir,
        "download": args.download,
        "eval_every": args.eval_every,
        "threads": args.threads,
        "workers": args.workers,
        "backend": args.backend,
        "eval_batch": args.eval_batch,
        "adapt_steps": args.adapt_steps,
        "match_rule": args.match_rule,
    }
    if args.seeds:
        kw["seeds"] = args.seeds
    if args.rounds:
        kw["K"] = args.rounds
    if args.normalize != "dataset":
        kw["task"] = {**base.task, "normalize": args.normalize}
    if args.new_users:
        kw["task"] = {**kw.get("task", base.task), "holdout_users": args.new_users}
    if args.device != "cpu":
        import torch

        kw["settings"] = {**base.settings, "device": str(check_device(args.device, torch, "--device"))}
    plan = Plan(**{**base.__dict__, **kw})
    table = run_plan(plan, args.out, progress=not args.no_progress)  # fails fast on missing data
    print(markdown(table))
    print(f"written: {args.out}/table1.md, table1.tex, table1.json, partition-*.png, partition-*.md")
    return 0


def constants_main(args) -> int:
    import torch

    from .constants import EstimateOptions, estimate_run, write_constants  # torch

    _at_least("--threads", args.threads, 1)
    out = args.out or Path(args.run) / "constants.json"
    if args.out or Path(args.run).is_dir():  # before minutes of estimation; a missing --run is estimate_run's error
        output_file(out, "--out")
    torch.set_num_threads(args.threads)
    options = EstimateOptions(
        lanczos_steps=args.lanczos_steps,
        samples=args.samples,
        hessian_samples=args.hessian_samples,
        gamma_users=args.gamma_users,
        rho_directions=args.rho_directions,
        rho_radius=args.rho_radius,
        seed=args.seed,
    )
    doc = estimate_run(args.run, args.rounds, options, data_dir=args.data_dir or None, progress=not args.no_progress)
    path = write_constants(doc, out)
    c = doc["constants"]
    print(f"{doc['task']} at rounds {', '.join(map(str, doc['rounds']))} (max over rounds):")
    for name in ("L", "rho", "B", "sigma_G", "sigma_H", "gamma_G", "gamma_H", "F0_gap"):
        value = "not estimated" if c[name] is None else f"{c[name]:.6g}"
        print(f"  {name:8s} = {value}   ({doc['provenance'][name].split(':')[0]})")
    print(f"  alpha*L  = {doc['alpha_times_L']:.3g}; {doc['theory_check']}")
    print(f"written: {path}")
    return 0
