"""``perfedavg run``: one configuration into one run directory."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import MISSING, fields
from typing import Any

from perfedavg.engine.config import field_defaults, field_docs
from perfedavg.errors import UsageError
from perfedavg.runs.config import FIRST_RUN, dumps_toml
from perfedavg.runs.config_file import load_command_config
from perfedavg.runs.registry import TASKS, task_spec
from perfedavg.runs.resume import load_resume_config
from perfedavg.runs.runner import run_config
from perfedavg.runs.threads import threads_for, torch_threads
from perfedavg.words import fill_block


def _shown(value) -> str:
    """A value as a TOML file writes it (a table inline)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + "}"
    return dumps_toml({"v": value}).split("=", 1)[1].strip()


def _row(name: str, doc: str, default, width: int, first_run=MISSING) -> str:
    """One option of a help listing: its name, its documentation (which states the range), its default, and
    the value a run without --config uses where the first run sets another (``first_run``)."""
    first = "" if first_run is MISSING or first_run == default else f"; without --config: {_shown(first_run)}"
    # one line, the name padded to its column and two spaces at least: the help formatter (or
    # fill_block, for --list-tasks) wraps it under its text column at the terminal's width
    return f"  {name:<{width}}  {doc} [default: {_shown(default)}{first}]"


def _first_run_text() -> str:
    """:data:`perfedavg.runs.config.FIRST_RUN` in words, for ``--help``."""
    options = ", ".join(f"{k} = {_shown(v)}" for k, v in FIRST_RUN.items() if k != "task")
    task = ", ".join(f"task.{k} = {v}" for k, v in FIRST_RUN["task"].items() if k != "name")
    return (
        f"Per-FedAvg on the synthetic {FIRST_RUN['task']['name']} task where personalization helps, inside both "
        f"step-size conditions of `perfedavg explain` ({options}; {task}; the options not named keep the "
        "defaults below), ending with personalized accuracy beside FedAvg's shared model; choosing another task "
        "(--set task=NAME) starts from the defaults below"
    )


def _options_text() -> str:
    """The config options for ``--help``."""
    defaults = field_defaults()
    return "\n".join(
        _row(name, doc, defaults[name], 16, FIRST_RUN.get(name, MISSING)) for name, doc in field_docs().items()
    )


def task_listing() -> str:
    """Every task of :data:`perfedavg.runs.registry.TASKS` with its options: name, default, and the
    documentation (which states the range), as printed by ``perfedavg run --list-tasks``."""
    blocks = []
    for name in TASKS:
        try:
            spec = task_spec(name)
        except UsageError as exc:
            blocks.append(f"task.name = {name}: not available here ({exc})")
            continue
        rows = [f"task.name = {name}" + (f": {spec.summary}" if spec.summary else "")]
        for f in fields(spec.options):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            rows.append(_row(f"task.{f.name}", f.metadata.get("doc", ""), default, 23))
        blocks.append("\n".join(rows))
    return fill_block(
        "Task options (--set task.KEY=VALUE, or a [task] table in --config; the chosen task's defaults fill "
        "the rest):\n\n" + "\n\n".join(blocks)
    )


def register(sub) -> None:
    parser = sub.add_parser(
        "run",
        help="run FedAvg or Per-FedAvg on a task and write a run directory",
        description=(
            "Run FedAvg / Per-FedAvg (FO, HF, exact) and write DIR/config.toml (resolved config), "
            "DIR/metrics.jsonl (one JSON record per evaluated round), DIR/summary.json (status, wall and CPU "
            "seconds, versions), DIR/checkpoint.pt and DIR/curves.png. Without --config the first run runs: "
            f"{_first_run_text()}. Ctrl-C or SIGTERM stops at the next round boundary with a checkpoint "
            "(twice: at once); continue with --resume DIR. Exit status: 0 finished, 1 diverged (NaN/inf) or out of "
            "memory (status failed; the last good round is kept either way), 2 bad input (one line naming "
            "the option; nothing written), 130/143 interrupted."
        ),
        epilog="config options (TOML top-level keys, or --set key=value), with their ranges and defaults (a config "
        "file's; a run without --config and without --set task=NAME is the first run, whose values follow "
        "'without --config'):\n"
        + _options_text()
        + "\n\n"
        + (
            "Users per round: m = floor(r*n) for the task's n users; r*n < 1 is refused. The batch sizes "
            "D, D' (D1) and D'' (D2) must not exceed the smallest user's number of training samples "
            "(Per-FedAvg draws all three, FedAvg only D)."
        )
        + "\n\n"
        + (
            "Task options: --set task.KEY=VALUE (e.g. --set task.h=0.9). `perfedavg run --list-tasks` "
            "lists every task with its options, defaults and ranges."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML config (top-level options plus a [task] table) [default: none: the first run, above]",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option, value as a TOML literal (repeatable), e.g. --set alpha=0.01",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="run directory to create [default: runs/<algorithm>-<task>-seed<seed>]"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="continue the run in DIR (or in --out DIR) from its last checkpoint, with its saved "
        "config.toml (changed by --config / --set only with --force); bit-identical to an "
        "uninterrupted run. Refused when the source that computes results changed since the "
        "checkpoint (a new commit or a README edit alone does not block it)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing run directory --out (only run files are deleted), or resume despite "
        "a changed config or code version",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--no-plot", action="store_true", help="do not draw DIR/curves.png")
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="do not end with FedAvg after the same rounds, shared and adapted (a second, FedAvg run in memory, "
        "made for Per-FedAvg on a synthetic task)",
    )
    parser.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        help="torch threads for the run (0: one per core) [default: 1 for a synthetic task, whose matrices are too "
        "small to share; one per core for MNIST / CIFAR-10]",
    )
    parser.add_argument(
        "--list-tasks", action="store_true", help="list every task with its options, defaults and ranges, and exit"
    )
    parser.set_defaults(func=main)


def _threads(text: str) -> int:
    """``--threads N``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--threads {text}: must be a whole number >= 0 (0: one per core)")
    return value


def _resume_dir(args) -> str | None:
    """The run directory of ``--resume DIR`` / ``--resume --out DIR`` (``None`` without --resume)."""
    if args.resume is None:
        return None
    given = args.resume if isinstance(args.resume, str) else None
    if given is not None and args.out is not None and given != args.out:
        raise UsageError(f"--resume {given} and --out {args.out} name two run directories: give it once (--resume DIR)")
    directory = given or args.out
    if directory is None:
        raise UsageError("--resume needs the run directory: --resume DIR (or --resume --out DIR)")
    return directory


def main(args) -> int:
    """Exit status: 0 finished, 1 diverged or out of memory, 128 + signal number when interrupted
    (130 for Ctrl-C, 143 for SIGTERM), 2 for bad input (raised as UsageError)."""
    if args.list_tasks:
        print(task_listing())
        return 0
    resume_dir = _resume_dir(args)
    if resume_dir is not None:
        cfg = load_resume_config(resume_dir, args.config, args.overrides)
    else:
        cfg = load_command_config(args.config, args.overrides)
    out = resume_dir or args.out or f"runs/{cfg.algorithm}-{cfg.task['name']}-seed{cfg.seed}"
    finished = _finished_already(resume_dir, cfg) if resume_dir is not None and not args.force else ""
    if finished:
        print(finished)
        return 0
    with torch_threads(threads_for(cfg.task["name"], args.threads)):
        return _run_and_report(args, cfg, out, resume_dir)


def _finished_already(out: str, cfg: Any) -> str:
    """``--resume`` of a run that already finished with this very config: the one line saying so (nothing to
    run, nothing rewritten), else empty.  A changed config (``--set``) goes on to the resume's own checks."""
    from pathlib import Path

    from perfedavg.runs.rundir import SUMMARY
    from perfedavg.runs.status import is_finished, read_summary, same_config

    summary = read_summary(out)
    if summary is None or not is_finished(summary.get("status")) or not same_config(out, cfg.to_dict()):
        return ""
    return (
        f"{out}: already finished ({summary.get('rounds_completed')} of {cfg.K} rounds): nothing to resume; "
        f"its summary is {Path(out) / SUMMARY}"
    )


def _run_and_report(args, cfg, out: str, resume_dir: str | None) -> int:
    """Run ``cfg`` into ``out`` and print how it ended (:func:`main`'s exit statuses)."""
    result = run_config(
        cfg, out, resume=resume_dir is not None, force=args.force, progress=not args.no_progress, plot=not args.no_plot
    )
    summary = result.summary
    final = summary["final"]
    if result.status == "diverged":
        print(f"perfedavg: run diverged: {summary['message']}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print(f"perfedavg: {summary['message']}", file=sys.stderr)
        return 128 + int(getattr(signal, summary["signal"]))
    print(
        f"{out}: {summary['rounds_completed']} rounds ({summary['wall_seconds']:.1f} s wall, "
        f"{summary['cpu_seconds']:.1f} s CPU), ‖∇F‖² = {final.get('grad_norm_sq_F', float('nan')):.4g}"
    )
    print(accuracy_line(cfg, out, final, compare=not args.no_compare, note=not args.no_progress))
    return 0


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "not recorded"


def accuracy_line(cfg: Any, out: str, final: dict[str, Any], compare: bool = True, note: bool = False) -> str:
    """The run's closing lines: personalized accuracy at round 0 and at the end, beside the shared model's
    accuracy without adaptation, and, for Per-FedAvg on a synthetic task, beside FedAvg after the same rounds
    (a FedAvg run of the same config, in memory: seconds on these tasks), both its shared model and the same
    one-step adaptation of it: the fair comparison, since every method's final model is adapted."""
    from perfedavg.runs import rundir

    records = rundir.read_metrics(out)
    first = records[0] if records else {}
    line = (
        f"personalized accuracy (one adaptation step per user): {_percent(first.get('personalized_accuracy'))} at "
        f"round 0 -> {_percent(final.get('personalized_accuracy'))}\n"
        f"  the shared model without adaptation: {_percent(final.get('global_accuracy'))}"
    )
    if cfg.algorithm == "fedavg" or not compare or not TASKS.get(cfg.task["name"], "").startswith("synthetic."):
        return line
    from perfedavg.runs.memory import train_in_memory

    if note:  # the bar has finished: say what the next seconds are for
        print(
            "perfedavg: FedAvg on the same config, in memory, for the comparison (--no-compare skips it)",
            file=sys.stderr,
        )
    _, _, fedavg = train_in_memory(cfg.replace(algorithm="fedavg"))
    return line + (
        f"\n  FedAvg after the same {cfg.K} rounds: its shared model {_percent(fedavg[-1].get('global_accuracy'))}, "
        f"after the same adaptation step {_percent(fedavg[-1].get('personalized_accuracy'))}"
    )
