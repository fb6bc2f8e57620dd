r"""Table 1 of the paper, regenerated (docs/paper.md §7).

Personalized test accuracy after one adaptation step of size α, for FedAvg,
Per-FedAvg (FO) and Per-FedAvg (HF) (and, as an extra column the paper could not
afford, Per-FedAvg with the exact Hessian-vector product), on MNIST and CIFAR-10 with
the paper's split and MLP, for the rows (τ, α) = (10, 0.001), (4, 0.001), (10, 0.01),
with K = 1000, r = 0.2, β = 0.001, batch sizes 40, δ = 0.001 [recalled], over several
seeds, mean ± sample standard deviation, under both protocols: the adaptation step on
the user's test data (the paper's) and on its training data (leak-free).  The shared
model's accuracy without adaptation is reported beside them, so that the effect of
the adaptation step itself is visible.

Every cell is a run directory (``runs/<dataset>/tau<τ>-alpha<α>/<method>-seed<s>``)
written by the normal runner, so an interrupted reproduction resumes where it stopped
and finished cells are never recomputed.  Next to the table: the users' split as a
picture and a table (``partition-<dataset>.{png,md}``).

Notes
-----
* **The adaptation step** is :func:`perfedavg.engine.rounds.evaluate`'s: one *full-batch*
  gradient step of size α on the user's whole local training (or test) data.  The
  paper says "one step of SGD"; with a user's test set of 80-160 MNIST images (30-60
  on CIFAR-10) and batch 40 that step would be noisier, but its mean is the full-batch
  step's within a few tenths of a point (``benchmarks/README.md``), so the full-batch
  step stands in for "one step of SGD" here.
* ``eval_batch = N`` (``--eval-batch N``) adds the literal protocol: each user's one
  adaptation step is a stochastic gradient step on a batch of N samples drawn (without
  replacement) from the protocol's data -- its test set (paper) or training set -- by
  :func:`perfedavg.engine.rounds.eval_batch_generator` (a stream of its own, seeded by the cell's
  seed and round K), from the cell's final model after training, so the training stream is
  untouched and the numbers equal ``perfedavg run --set eval_batch=N``'s at round K.  The
  result is stored in the cell as ``eval_batch<N>.json`` and shown as two more tables.
  ``0`` (default) keeps the full-batch step only.
* **Input scaling** (``task.normalize``, ``--normalize``): with plain x/255 inputs
  (``none``) the same MNIST cells train much more slowly; the accuracies of both
  scalings are in ``benchmarks/README.md``.
* **Cost**: an evaluation computes the exact F and ∇F of all 50 users by double
  backward on full data, which costs about as much as 20-50 training rounds; the table
  needs only the final model, so cells evaluate rounds 0 and K only (``eval_every = 0``).
* **Parallelism**: the cells run through the sweep runner (:mod:`perfedavg.sweep`),
  ``Plan.workers`` processes with ``Plan.threads`` torch threads each (default one thread
  per core): a cell's per-round matrices are small, so cells side by side use the cores
  better than threads inside one cell.

Over 400 lines on purpose: planning the cells, running them, collecting the table and writing it
(markdown, LaTeX) are one pipeline over one :class:`Plan`, read top to bottom.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from perfedavg.algorithms import ALGORITHM_NAMES
from perfedavg.engine.objective import client_batches, personalized_test_metrics
from perfedavg.engine.rounds import eval_batch_generator, evaluate
from perfedavg.errors import UsageError
from perfedavg.outputs import output_dir
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config, read_toml
from perfedavg.runs.names import table1_cell_path
from perfedavg.runs.outcomes import record_outcomes
from perfedavg.runs.registry import resolved_task_table
from perfedavg.runs.resolve import resolve
from perfedavg.runs.runner import run_from_trained
from perfedavg.runs.status import TASK_NEUTRAL, is_done, is_finished, run_status, same_training
from perfedavg.sweep.scheduler import SweepOptions, run_sweep
from perfedavg.sweep.spec import Unit
from perfedavg.words import plural, seed_summary

from .data import load_dataset
from .partition import make_partition, plot_partition, summary_markdown
from .tasks import ImageTaskOptions, partition_options

ROWS = ((10, 0.001), (4, 0.001), (10, 0.01))
METHODS = ("fedavg", "fo", "hf")
METHOD_NAMES = dict(ALGORITHM_NAMES)
#: budget-matched FedAvg: ``fedavg-<variant>`` is FedAvg spending the variant's budget per round
#: (``match_budget``, :func:`perfedavg.engine.costs.budget_matched`; the rule is ``Plan.match_rule``)
METHOD_NAMES |= {
    f"fedavg-{v}": f"FedAvg ({name}'s budget)" for v, name in (("fo", "FO"), ("hf", "HF"), ("exact", "exact"))
}
PROTOCOLS = {
    "test": "adaptation step on test data (paper's protocol)",
    "train": "adaptation step on training data (leak-free)",
}
#: the paper's hyper-parameters [recalled]
PAPER: dict[str, Any] = {"K": 1000, "r": 0.2, "beta": 0.001, "D": 40, "D1": 40, "D2": 40, "delta": 0.001}
#: rounds of ``--quick``
QUICK_K = 30
#: the extra column the paper could not afford
EXTRA_METHODS = ("exact",)
#: how ``eval_batch<N>.json`` files are drawn (a file that names other draws is redone)
EVAL_BATCH_DRAWS = "perfedavg.engine.rounds.eval_batch_generator(seed, round)"


@dataclass(frozen=True)
class Plan:
    """What to run: data sets, rows, methods, seeds, rounds, and how.

    ``eval_every = 0`` evaluates only round 0 and round K (the table needs only the
    final model; each evaluation costs several rounds' time, see the module notes).
    ``threads``: torch intra-op threads of each cell's process (1 by default: the
    per-round matrices are small, so more threads mostly contend); ``workers``
    cells run at once (the sweep runner's process pool, or Ray tasks with ``backend``
    ``ray``): the cells are independent runs, so the cores are used by running cells side
    by side rather than by threads inside a cell.
    """

    datasets: tuple[str, ...] = ("mnist", "cifar10")
    rows: tuple[tuple[int, float], ...] = ROWS
    methods: tuple[str, ...] = METHODS
    seeds: int = 5
    K: int = PAPER["K"]
    eval_every: int = 0
    data_dir: str = ""
    download: bool = False
    threads: int = 1
    #: cells run at once, each in its own process (``None``: the usable cores / ``threads``)
    workers: int | None = None
    #: the sweep runner's backend: ``local`` (a process pool here) or ``ray``
    backend: str = "local"
    #: task options of every cell beyond the data root (e.g. ``{"n_clients": 10, "a": 4}``; default: the paper's split)
    task: Mapping[str, Any] = field(default_factory=dict)
    #: run options overriding the paper's hyper-parameters (e.g. ``{"D": 4}``; default: none)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: also measure the adaptation step as one SGD step on a batch of this many samples (0: only the full-batch step)
    eval_batch: int = 0
    #: also evaluate each cell's final model after k = 0..N full-batch adaptation steps of size α, with every
    #: user's outcome (``users-k<N>.json`` in the cell, two more tables; 0: not)
    adapt_steps: int = 0
    #: how the budget-matched FedAvg columns (``fedavg-hf`` etc.) match: ``steps`` or ``batch``
    match_rule: str = "steps"

    @staticmethod
    def quick(**kw) -> Plan:
        """A reduced version (30 rounds, one seed) for smoke tests: a few minutes."""
        return Plan(**{"seeds": 1, "K": QUICK_K, **kw})

    def cells(self):
        for dataset in self.datasets:
            for tau, alpha in self.rows:
                for method in self.methods:
                    for seed in range(self.seeds):
                        yield dataset, tau, alpha, method, seed


def cell_dir(out: Path, dataset: str, tau: int, alpha: float, method: str, seed: int) -> Path:
    """The run directory of a cell: ``out/runs/`` and :func:`perfedavg.runs.names.table1_cell_path`."""
    return out / "runs" / table1_cell_path(dataset, tau, alpha, method, seed)


def cell_config(plan: Plan, dataset: str, tau: int, alpha: float, method: str, seed: int):
    sets = {
        **PAPER,
        "K": plan.K,
        "tau": tau,
        "alpha": alpha,
        "algorithm": method.split("-")[0],
        **({"match_budget": method.split("-")[1], "match_rule": plan.match_rule} if "-" in method else {}),
        "seed": seed,
        "eval_every": plan.eval_every or plan.K,
        "checkpoint_every": max(1, plan.K // 10),
        **plan.settings,
    }
    task = {"name": dataset, "data_dir": plan.data_dir, **({"download": True} if plan.download else {}), **plan.task}
    return build_config({**sets, "task": task})


def trained_in(plan: Plan, dataset: str, tau: int, alpha: float, method: str, seed: int) -> tuple | None:
    r"""The cell whose training this FedAvg cell shares, or ``None`` when it trains itself.

    FedAvg's local steps never use α (docs/paper.md §2; α only enters the evaluation's adaptation
    step), so the FedAvg cells of two rows with the same τ train the same model from the same
    seed.  When the plan evaluates only rounds 0 and K (``eval_every = 0``) and tracks no inner
    iterates, only the first such row's cell trains; the others evaluate its final model
    (:func:`perfedavg.runs.runner.run_from_trained`): the same records, and for the paper's rows the
    FedAvg trainings of row (10, 0.01) saved (10 of Table 1's 90 cells)."""
    if method != "fedavg" or plan.eval_every or plan.settings.get("track_inner"):
        return None
    first = next(a for t, a in plan.rows if t == tau)
    return None if first == alpha else (dataset, tau, first, method, seed)


def check_data(plan: Plan) -> None:
    """Fail fast, before any run starts, when a data set is missing: one line listing the
    three ways to provide it (``--data-dir``, ``$PERFEDAVG_DATA``, ``--download``)."""

    for dataset in plan.datasets:
        load_dataset(dataset, plan.data_dir or None, download=plan.download)


def write_partitions(plan: Plan, out: Path) -> dict[str, dict]:
    """For each data set: the users' split the cells use (the paper's, seed 0), as a
    picture ``partition-<dataset>.png`` and a table ``partition-<dataset>.md`` next to Table 1."""

    written = {}
    for dataset in plan.datasets:
        ds = load_dataset(dataset, plan.data_dir or None, download=plan.download)
        o = ImageTaskOptions(**{k: v for k, v in plan.task.items() if k not in ("data_dir", "download")})
        part = make_partition(
            o.partition, ds.y_train, ds.y_test, seed=o.partition_seed, **partition_options(dataset, o)
        )
        title = f"{ds.label}: {part.describe()}"
        png, md = out / f"partition-{dataset}.png", out / f"partition-{dataset}.md"
        plot_partition(part, png, classes=ds.classes, title=title)
        rundir.atomic_write_text(md, summary_markdown(part, classes=ds.classes, title=title))
        written[dataset] = {"label": ds.label, "picture": png.name, "table": md.name, "describe": part.describe()}
    return written


def cell_units(plan: Plan, out: Path) -> tuple[list, dict]:
    r"""The cells of ``plan`` that need work, as :class:`perfedavg.sweep.spec.Unit` s for the sweep
    runner, and what happens to each (``start``, ``continue`` or ``rerun``; finished cells are
    left out).  A unit's name is the cell's path under ``runs/``
    (``<dataset>/tau<τ>-alpha<α>/<method>-seed<s>``), so the sweep runner writes each cell
    where :func:`cell_dir` says.

    The sweep runner's worker (:func:`perfedavg.sweep.worker.execute_unit`) resumes a
    checkpoint only when its config equals the unit's exactly; a Table 1 cell with the same
    training settings but fewer rounds (or another data root, evaluation or checkpoint
    frequency: :func:`perfedavg.runs.status.same_training`) is the same trajectory and is continued: its checkpoint's
    config is set to the cell's new one (:func:`_adopt_checkpoint`), as
    ``run_config(resume=True, force=True)`` would record it at its next checkpoint.  A cell
    with other settings keeps its checkpoint, which the worker then cannot resume: it starts
    the cell over."""

    units: list[Unit] = []
    actions: dict[str, str] = {}
    tasks: dict[str, dict] = {}
    for dataset, tau, alpha, method, seed in plan.cells():
        if trained_in(plan, dataset, tau, alpha, method, seed):
            continue  # evaluated from its twin's model after the sweep (_evaluate_twins)
        cfg = _resolved_cell_config(plan, (dataset, tau, alpha, method, seed), tasks)
        directory = cell_dir(out, dataset, tau, alpha, method, seed)
        done = _done_round(directory, cfg)
        if done == cfg.K and is_finished(run_status(directory)):
            continue
        if done is not None and done <= cfg.K:
            _adopt_checkpoint(directory, cfg)
            action = "continue"
        else:
            action = "rerun" if directory.exists() else "start"
        name = directory.relative_to(out / "runs").as_posix()
        varied = {"dataset": dataset, "tau": tau, "alpha": alpha, "algorithm": method, "seed": seed}
        units.append(Unit(name=name, varied=varied, config=cfg.to_dict()))
        actions[name] = action
    return units, actions


def _resolved_cell_config(plan: Plan, cell: tuple, tasks: dict):
    """:func:`cell_config` with its task table resolved as the runner saves it (so the sweep's worker
    recognizes its own cell); ``tasks`` caches the resolved tables."""
    cfg = cell_config(plan, *cell)
    key = repr(sorted(cfg.task.items()))
    if key not in tasks:
        tasks[key] = resolved_task_table(cfg.task)
    return cfg.replace(task=tasks[key])


def _adopt_checkpoint(directory: Path, cfg) -> None:
    """Record ``cfg`` as the config of ``directory``'s checkpoint (same cell, other
    options that do not change training), atomically; the training state is untouched."""
    path = directory / rundir.CHECKPOINT
    payload = rundir.read_checkpoint(path)
    if payload["config"] != cfg.to_dict():
        payload["config"] = cfg.to_dict()
        rundir.atomic_torch_save(path, payload)


def run_plan(plan: Plan, out: str | Path, progress: bool = True) -> dict:
    r"""Run every missing cell of ``plan`` into ``out`` and write the table; returns it.

    The cells run through the sweep runner (:func:`perfedavg.sweep.scheduler.run_sweep`):
    ``plan.workers`` cells at once, each in its own process with ``plan.threads`` torch
    threads, on ``plan.backend`` (``local`` process pool or ``ray``); a worker that dies
    loses only its cell, which is retried (and resumes from its checkpoint).  The sweep
    runner's own record of this invocation is ``out/sweep_summary.{md,json}``."""

    out = Path(out)
    # force: a cell's saved config.toml may differ from the unit's in neutral options (see cell_units)
    options = SweepOptions(
        backend=plan.backend, workers=plan.workers, threads=plan.threads, force=True, progress=progress
    )  # checks workers, threads, backend before anything runs
    torch.set_num_threads(plan.threads)
    check_data(plan)
    output_dir(out, "--out")
    partitions = write_partitions(plan, out)
    units, actions = cell_units(plan, out)
    timings: dict[str, float] = {}
    invocation: dict[str, Any] = {
        "cells_run": len(units),
        "actions": dict(collections.Counter(actions.values())),
        "backend": plan.backend,
        "workers": None,
        "threads": plan.threads,
        "wall_seconds": 0.0,
    }
    if units:
        report = run_sweep(units, out, options)
        invocation.update(workers=report.bench.get("workers"), wall_seconds=report.wall_seconds)
        if report.interrupted:
            raise KeyboardInterrupt
        failed = [(name, row["error"]) for name, row in report.rows.items() if not is_done(row["status"])]
        if failed:
            name, error = failed[0]
            raise UsageError(
                f"{plural(len(failed), 'Table 1 cell')} failed, first runs/{name}: {error} "
                f"(see {out / 'sweep_summary.md'}; run again to retry)"
            )
        for unit in units:
            key = f"{unit.varied['dataset']}/{unit.varied['algorithm']}"
            timings[key] = timings.get(key, 0.0) + float(report.rows[unit.name]["wall_seconds"] or 0.0)
    twins = _evaluate_twins(plan, out, progress)
    if twins:
        invocation["actions"]["evaluated from a twin"] = twins
    if plan.eval_batch:
        _eval_batch_cells(plan, out)
    if plan.adapt_steps:
        _users_cells(plan, out)
    table = collect(plan, out)
    table["seconds_this_invocation"] = timings
    table["invocation"] = invocation
    table["partitions"] = partitions
    write_table(table, out)
    return table


def _evaluate_twins(plan: Plan, out: Path, progress: bool) -> int:
    """Write every FedAvg cell that :func:`trained_in` a twin and is not finished at K, from
    its twin's final model; returns how many were written."""

    todo: list[tuple] = []
    tasks: dict[str, dict] = {}
    for cell in plan.cells():
        twin = trained_in(plan, *cell)
        if twin is not None:
            directory, cfg = cell_dir(out, *cell), _resolved_cell_config(plan, cell, tasks)
            if not (_done_round(directory, cfg) == cfg.K and is_finished(run_status(directory))):
                todo.append((cfg, directory, cell_dir(out, *twin)))
    for cfg, directory, source in tqdm(
        todo, desc="FedAvg cells from their twin", unit="cell", disable=not progress or not todo
    ):
        run_from_trained(cfg, directory, source)
    return len(todo)


def _done_round(directory: Path, cfg) -> int | None:
    """The round ``directory``'s checkpoint holds when it trains the same model as ``cfg``
    (:func:`perfedavg.runs.status.same_training`: equal options except K, evaluation and
    checkpoint frequency, and where the data live), else ``None``.  A cell run with fewer rounds
    is continued bit for bit by resuming; one with other settings is run again."""
    try:
        saved = build_config(read_toml(directory / rundir.CONFIG))
        state = rundir.read_checkpoint(directory / rundir.CHECKPOINT)["state"]
    except (UsageError, OSError):
        return None
    return int(state["round"]) if same_training(cfg.to_dict(), saved.to_dict()) else None


def collect(plan: Plan, out: Path) -> dict:
    """Mean ± std over seeds of the final personalized accuracy of every cell, both protocols."""
    rows = []
    for dataset in plan.datasets:
        for tau, alpha in plan.rows:
            row: dict[str, Any] = {"dataset": dataset, "tau": tau, "alpha": alpha, "cells": {}}
            for method in plan.methods:
                finals, summaries, label = [], [], dataset
                users: list[dict] = []
                for seed in range(plan.seeds):
                    directory = cell_dir(out, dataset, tau, alpha, method, seed)
                    summary = rundir.read_json(directory / rundir.SUMMARY)
                    summaries.append(summary)
                    if not is_finished(summary["status"]):
                        raise UsageError(f"{directory} did not finish ({summary['status']}: {summary['message']})")
                    if summary.get("rounds_completed") != plan.K:
                        raise UsageError(
                            f"{directory} ran {summary.get('rounds_completed')} rounds, not K={plan.K}: "
                            "run the plan (run_plan) to bring it to K"
                        )
                    final = dict(summary["final"])
                    if plan.eval_batch:
                        extra = rundir.read_json(directory / f"eval_batch{plan.eval_batch}.json")
                        final.update(
                            {
                                f"personalized_accuracy_{p}_batch_step": extra[f"personalized_accuracy_{p}_batch_step"]
                                for p in PROTOCOLS
                            }
                        )
                    finals.append(final)
                    if plan.adapt_steps:
                        users.append(rundir.read_json(directory / users_file(plan.adapt_steps)))
                    label = summary.get("task", dataset)
                row["label"] = label
                row["cells"][method] = (
                    {
                        protocol: _mean_std([100 * f[f"personalized_accuracy_{protocol}_step"] for f in finals])
                        for protocol in PROTOCOLS
                    }
                    | {
                        f"{protocol}_batch": _mean_std(
                            [100 * f[f"personalized_accuracy_{protocol}_batch_step"] for f in finals]
                        )
                        for protocol in (PROTOCOLS if plan.eval_batch else ())
                    }
                    | _new_user_cells(finals)
                    | ({"users": users_statistics(users)} if users else {})
                    | {
                        "global": _mean_std([100 * f["global_accuracy"] for f in finals]),
                        "train_loss_f": _mean_std([f["f"] for f in finals]),
                        "wall_seconds": sum(f["wall_seconds"] for f in summaries),
                        "cost": _cell_cost(summaries[0], cell_dir(out, dataset, tau, alpha, method, 0)),
                        "trained_in": any(f.get("trained_in") for f in summaries),
                    }
                )
            rows.append(row)
    return {
        "plan": {
            "K": plan.K,
            "seeds": plan.seeds,
            "methods": list(plan.methods),
            "eval_batch": plan.eval_batch,
            "adapt_steps": plan.adapt_steps,
            "match_rule": plan.match_rule,
            **{k: v for k, v in PAPER.items() if k != "K"},
        },
        "rows": rows,
    }


def batch_step_accuracy(task, w, alpha: float, batch: int, generator) -> dict[str, float]:
    r"""Personalized test accuracy after one *stochastic* adaptation step per user,
    :math:`w_i = w - \alpha \nabla \tilde f_i(w)` with :math:`\tilde f_i` the mean loss on a batch of
    ``batch`` samples (:func:`perfedavg.engine.objective.client_batches`; all of them when the user has fewer)
    from its training data (key ``train``) or its test data (``test``, the paper's "one step of SGD",
    docs/paper.md §2 [recalled]); the mean over users of the accuracy on its test set.  Drawn in the order of
    :func:`perfedavg.engine.rounds.evaluate`, so with ``eval_batch_generator(seed, K)`` it equals the
    ``*_batch_step`` metrics of ``perfedavg run --set eval_batch=N`` at round K."""

    out = {}
    for split, data in (("train", task.train), ("test", task.test)):
        sub = client_batches(data, batch, generator, task.batch_with_replacement)
        _, accuracy = personalized_test_metrics(task.per_sample_loss, task.scores, w, sub, task.test, alpha)
        out[split] = float(accuracy.mean())
    return out


def _eval_batch_cells(plan: Plan, out: Path) -> None:
    """For ``plan.eval_batch = N``: write ``eval_batch<N>.json`` into every finished cell
    that lacks it for its final round (the task is built once per data set)."""

    tasks = {}
    for dataset, tau, alpha, method, seed in plan.cells():
        directory = cell_dir(out, dataset, tau, alpha, method, seed)
        path = directory / f"eval_batch{plan.eval_batch}.json"
        state = rundir.read_checkpoint(directory / rundir.CHECKPOINT)["state"]
        done = rundir.read_json(path) if path.is_file() else {}
        if done.get("draws") == EVAL_BATCH_DRAWS and done.get("round") == int(state["round"]):
            continue
        table = read_toml(directory / rundir.CONFIG)
        key = repr(sorted((k, v) for k, v in table["task"].items() if k not in TASK_NEUTRAL))
        if key not in tasks:
            tasks[key] = resolve(build_config({**table, "task": {**table["task"], "data_dir": plan.data_dir}}))[1]
        generator = eval_batch_generator(seed, int(state["round"]))
        w = state["w"].to(tasks[key].train.x.device)  # the checkpoint holds it on the CPU; the cell may run on CUDA
        accuracy = batch_step_accuracy(tasks[key], w, alpha, plan.eval_batch, generator)
        rundir.atomic_write_json(
            path,
            {
                "round": int(state["round"]),
                "batch": plan.eval_batch,
                "seed": seed,
                "draws": EVAL_BATCH_DRAWS,
                **{f"personalized_accuracy_{k}_batch_step": v for k, v in accuracy.items()},
            },
        )


def _cell_cost(summary: dict, directory: Path) -> dict:
    """A cell's training cost (its summary's ``cost``, counted by the engine); a cell written before summaries
    recorded it is counted now from its config and its model's size."""
    if "cost" in summary:
        return summary["cost"]
    from perfedavg.runs.extras import run_cost
    from perfedavg.runs.holdout import holdout_count

    cfg = build_config(read_toml(directory / rundir.CONFIG))
    n_params = rundir.read_checkpoint(directory / rundir.CHECKPOINT)["state"]["w"].numel()
    n = int(cfg.task.get("n_clients", cfg.task.get("clients", 50)))  # saved before the rename: clients
    users = n - holdout_count(cfg.task.get("holdout_users", 0), n)

    class Sizes:  # what run_cost reads of a task
        n_clients = users

        @staticmethod
        def init_params(generator):
            return torch.zeros(n_params)

    return run_cost(cfg, Sizes, int(summary.get("rounds_completed", cfg.K)))


def _new_user_cells(finals: list[dict]) -> dict:
    """The new users' accuracies of a cell's seeds (both protocols, the shared model), when its task held users
    out of training (mean ± std over seeds, in %); else nothing."""
    if "global_accuracy_new" not in finals[0]:
        return {}
    keys = {f"{p}_new": f"personalized_accuracy_{p}_step_new" for p in PROTOCOLS}
    keys["global_new"] = "global_accuracy_new"
    return {name: _mean_std([100 * f[key] for f in finals]) for name, key in keys.items()}


def users_file(steps: int) -> str:
    """The file a cell's k-step, per-user evaluation is stored in."""
    return f"users-k{steps}.json"


def _users_cells(plan: Plan, out: Path) -> None:
    """For ``plan.adapt_steps = N``: write ``users-k<N>.json`` into every finished cell that lacks it for its
    final round: the evaluation of the cell's final model with ``adapt_steps = N``
    (:func:`perfedavg.engine.rounds.evaluate`: the means per k, every user's values) and every user's outcome
    (:func:`perfedavg.runs.outcomes.record_outcomes`); one training serves every k."""

    tasks: dict[str, Any] = {}
    for cell in plan.cells():
        directory = cell_dir(out, *cell)
        path = directory / users_file(plan.adapt_steps)
        state = rundir.read_checkpoint(directory / rundir.CHECKPOINT)["state"]
        done = rundir.read_json(path) if path.is_file() else {}
        if done.get("round") == int(state["round"]) and done.get("adapt_steps") == plan.adapt_steps:
            continue
        table = read_toml(directory / rundir.CONFIG)
        key = repr(sorted((k, v) for k, v in table["task"].items() if k not in TASK_NEUTRAL))
        cfg, task = resolve(build_config({**table, "task": {**table["task"], "data_dir": plan.data_dir}}))
        task = tasks.setdefault(key, task)
        cfg = cfg.replace(adapt_steps=plan.adapt_steps, eval_batch=0)
        w = state["w"].to(task.train.x.device)
        record = evaluate(task, cfg, w, int(state["round"]))
        rundir.atomic_write_json(
            path,
            {
                "round": int(state["round"]),
                "adapt_steps": plan.adapt_steps,
                "adapt_step": cfg.adaptation_step,
                "outcomes": record_outcomes(record, task.groups, task.new_groups),
                "groups": list(task.groups),
                "new_groups": list(task.new_groups),
                "record": record,
            },
        )


#: the per-user statistics Table 1's second table shows (keys of :func:`perfedavg.runs.outcomes.user_outcomes`)
OUTCOME_COLUMNS = ("mean_before", "mean_after", "std_after", "worst10_before", "worst10_after", "harmed")


def users_statistics(cells: list[dict]) -> dict:
    """Over a cell's seeds (``users-k<N>.json`` contents): the mean accuracy after each k per adaptation
    (``steps``) and every user's outcome (``outcomes``, also per group), each as mean ± std over seeds, in %."""
    steps = {
        key[len("personalized_accuracy_") :].replace("_steps", ""): [
            _mean_std([100 * c["record"][key][k] for c in cells]) for k in range(len(cells[0]["record"][key]))
        ]
        for key in cells[0]["record"]
        if key.startswith("personalized_accuracy_") and "_steps" in key
    }

    def summarise(parts: list[dict]) -> dict:
        out = {column: _mean_std([100 * p[column] for p in parts]) for column in OUTCOME_COLUMNS}
        groups = parts[0].get("by_group", {})
        if groups:
            out["by_group"] = {g: summarise([p["by_group"][g] for p in parts]) for g in groups}
        return out

    outcomes = {
        name: {k: summarise([c["outcomes"][name][k] for c in cells]) for k in at_k}
        for name, at_k in cells[0]["outcomes"].items()
    }
    return {"steps": steps, "outcomes": outcomes}


def _mean_std(values: list[float]) -> dict:
    r"""Mean and sample standard deviation (:math:`n-1`; 0 for one seed)."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _pm(stat: dict, sign: str) -> str:
    """``mean ± std``, or the mean alone for one seed (a std of one value says nothing)."""
    return f"{stat['mean']:.2f}" + (f"{sign}{stat['std']:.2f}" if stat["n"] > 1 else "")


def _method_header(method: str) -> str:
    return METHOD_NAMES[method] + (" [extra]" if method in EXTRA_METHODS else "")


def markdown(table: dict) -> str:
    """Table 1 under both protocols, the shared model without adaptation, the wall time of
    every column (the exact variant's reported separately), and the users' split."""
    methods = table["plan"]["methods"]
    plan = table["plan"]
    head = "| data set | τ | α | " + " | ".join(_method_header(m) for m in methods) + " |"
    rule = "|---|---|---|" + "---|" * len(methods)
    lines = [
        "# Table 1, regenerated",
        "",
        f"K = {plan['K']} rounds, r = {plan['r']}, β = {plan['beta']}, batches D = D' = D'' = {plan['D']}, "
        f"δ = {plan['delta']}; {seed_summary(plan['seeds'])}. "
        "[extra]: not in the paper (exact Hessian-vector products).",
        "",
    ]
    sections = [(f"Personalized test accuracy (%), {caption}", protocol) for protocol, caption in PROTOCOLS.items()]
    if plan.get("eval_batch"):
        sections += [
            (
                f"Personalized test accuracy (%), {caption}, one SGD step on a batch of {plan['eval_batch']}",
                f"{protocol}_batch",
            )
            for protocol, caption in PROTOCOLS.items()
        ]
    sections.append(("Shared model without adaptation: test accuracy (%)", "global"))
    if table["rows"] and "global_new" in table["rows"][0]["cells"][methods[0]]:
        sections += [
            (f"New users (held out of training): personalized test accuracy (%), {caption}", f"{protocol}_new")
            for protocol, caption in PROTOCOLS.items()
        ]
        sections.append(("New users: shared model without adaptation, test accuracy (%)", "global_new"))
    for caption, key in sections:
        lines += [f"## {caption}", "", head, rule]
        for row in table["rows"]:
            cells = [_pm(row["cells"][m][key], " ± ") for m in methods]
            lines.append(f"| {row['label']} | {row['tau']} | {row['alpha']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    if plan.get("adapt_steps"):
        lines += users_markdown(table)
    lines += cost_markdown(table)
    lines += ["## Wall time (s per seed, this machine)", "", head, rule]
    for row in table["rows"]:
        cells = [f"{row['cells'][m]['wall_seconds'] / plan['seeds']:.1f}" for m in methods]
        lines.append(f"| {row['label']} | {row['tau']} | {row['alpha']:g} | " + " | ".join(cells) + " |")
    totals = {m: sum(row["cells"][m]["wall_seconds"] for row in table["rows"]) for m in methods}
    lines += [
        "",
        "Total per column (all rows, data sets and seeds): "
        + ", ".join(f"{_method_header(m)} {totals[m]:.0f} s" for m in methods)
        + ".",
        "",
    ]
    shared = dict.fromkeys(
        (row["tau"], row["alpha"]) for row in table["rows"] if any(c.get("trained_in") for c in row["cells"].values())
    )
    if shared:
        lines += [
            "FedAvg never uses α to train (only to evaluate), so its cells at "
            + ", ".join(f"(τ, α) = ({tau}, {alpha:g})" for tau, alpha in shared)
            + " evaluate the model trained in the first row with the same τ; their time is the evaluation's.",
            "",
        ]
    for info in table.get("partitions", {}).values():
        lines += [
            f"Users' split of {info['label']}: {info['describe']} "
            f"([picture]({info['picture']}), [table]({info['table']})).",
            "",
        ]
    return "\n".join(lines)


#: the columns of the cost table: (key of a cost record, heading)
COST_COLUMNS = (
    ("gradients", "gradients"),
    ("sample_gradients", "per-sample gradients"),
    ("hvps", "HVPs"),
    ("gradient_equivalents", "gradient equivalents (HVP = 2)"),
    ("samples", "samples read"),
    ("floats_down", "floats down"),
    ("floats_up", "floats up"),
)


def cost_markdown(table: dict) -> list[str]:
    """What each method costs per round (counted by the engine, :mod:`perfedavg.engine.costs`), one row per
    data set, row of Table 1 and method."""
    lines = [
        "## What each method costs per round (counted; all sampled users together)",
        "",
        "| data set | τ | α | method | local steps | batches | " + " | ".join(h for _, h in COST_COLUMNS) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(COST_COLUMNS),
    ]
    for row in table["rows"]:
        for m in table["plan"]["methods"]:
            cost = row["cells"][m]["cost"]
            values = " | ".join(f"{cost['per_round'][k]:,}" for k, _ in COST_COLUMNS)
            batches = "+".join(str(b) for b in cost["batch_sizes"])
            lines.append(
                f"| {row['label']} | {row['tau']} | {row['alpha']:g} | {_method_header(m)} | {cost['local_steps']} | "
                f"{batches} | {values} |"
            )
    return [*lines, ""]


#: how the per-user tables name an adaptation (a key of ``users_statistics``)
ADAPTATION_NAMES = {
    "train": "current users, steps on training data",
    "test": "current users, steps on test data",
    "train_new": "new users, steps on training data",
    "test_new": "new users, steps on test data",
}
#: the paper split's groups (:func:`empirical.tasks.paper_groups`)
GROUP_NAMES = {"0": "five-class users", "1": "two-class users"}


def users_markdown(table: dict) -> list[str]:
    """Table 1's per-user tables: accuracy after k = 0..N adaptation steps, and every user's outcome after one
    step and after N (mean ± std over seeds, in %)."""
    plan, methods = table["plan"], table["plan"]["methods"]
    N = plan["adapt_steps"]
    lines = [
        "## A few steps: personalized test accuracy (%) after k full-batch adaptation steps of size α",
        "",
        "Each value estimates the k-step personalized objective's accuracy (F_k: F_1 is the paper's F, F_0 the "
        "shared model's), from one training per cell.",
        "",
        "| data set | τ | α | method | users | " + " | ".join(f"k={k}" for k in range(N + 1)) + " |",
        "|---|---|---|---|---|" + "---|" * (N + 1),
    ]
    for row in table["rows"]:
        for m in methods:
            for name, curve in row["cells"][m]["users"]["steps"].items():
                cells = " | ".join(_pm(stat, " ± ") for stat in curve)
                lines.append(
                    f"| {row['label']} | {row['tau']} | {row['alpha']:g} | {_method_header(m)} | "
                    f"{ADAPTATION_NAMES.get(name, name)} | {cells} |"
                )
    lines += [
        "",
        "## Every user's outcome (%)",
        "",
        "Before: the shared model; after: k steps. std: over users; worst 10 %: mean of the lowest tenth of users; "
        "harmed: share of users whose accuracy the steps lower.",
        "",
        "| data set | τ | α | method | users | k | before | after | std after | worst 10 % before | "
        "worst 10 % after | harmed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        for m in methods:
            for name, at_k in row["cells"][m]["users"]["outcomes"].items():
                for k, stats in at_k.items():
                    parts = [(ADAPTATION_NAMES.get(name, name), stats)] + [
                        (f"{ADAPTATION_NAMES.get(name, name)}, {GROUP_NAMES.get(g, 'group ' + g)}", s)
                        for g, s in stats.get("by_group", {}).items()
                    ]
                    for who, s in parts:
                        values = " | ".join(_pm(s[c], " ± ") for c in OUTCOME_COLUMNS)
                        lines.append(
                            f"| {row['label']} | {row['tau']} | {row['alpha']:g} | {_method_header(m)} | {who} | "
                            f"{k[2:]} | {values} |"
                        )
    return [*lines, ""]


def latex(table: dict) -> str:
    methods = table["plan"]["methods"]
    out = []
    for protocol, caption in PROTOCOLS.items():
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{Personalized test accuracy (\%), {caption}; K={table['plan']['K']}, "
            rf"{plural(table['plan']['seeds'], 'seed')}, mean $\pm$ std.}}",
            r"\begin{tabular}{ll" + "c" * (1 + len(methods)) + "}",
            r"\toprule",
            r"Data set & $\tau$ & $\alpha$ & " + " & ".join(_method_header(m) for m in methods) + r" \\",
            r"\midrule",
        ]
        for row in table["rows"]:
            cells = ["$" + _pm(row["cells"][m][protocol], r" \pm ") + "$" for m in methods]
            out.append(f"{row['label']} & {row['tau']} & {row['alpha']:g} & " + " & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_table(table: dict, out: Path) -> None:
    rundir.atomic_write_json(out / "table1.json", table)
    rundir.atomic_write_text(out / "table1.md", markdown(table))
    rundir.atomic_write_text(out / "table1.tex", latex(table))
