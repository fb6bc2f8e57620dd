"""Run one configuration into a run directory, resumably.

Order of work, so that bad input leaves nothing behind and a crash loses nothing:

1. **Validate everything before writing anything**: the config, the task and its
   options (types and ranges), the options whose range depends on the task, the device,
   ``--out`` (a directory that can be created or replaced; ``--force`` deletes only what
   looks like a run directory), and on ``--resume`` the checkpoint, the config and the
   source digest of the code it was written with (the ``src:`` part of
   :func:`perfedavg.runs.rundir.code_version`; its ``git describe`` part is information only),
   and the prefix of ``metrics.jsonl`` it has seen.
2. Write ``config.toml`` (the resolved config) and ``summary.json`` with status
   ``running``, the code version and the library versions.
3. Run rounds: one JSON line per evaluated round appended to ``metrics.jsonl``;
   ``checkpoint.pt`` (model, round, generator state, accumulated sums, the length and
   SHA-256 of the metrics written so far, elapsed time) saved atomically every
   ``checkpoint_every`` rounds and at the end.  ``summary.json`` records ``wall_seconds``
   and ``cpu_seconds`` (this process's CPU time, ``time.process_time``) of the rounds.
4. The first SIGINT (Ctrl-C) or SIGTERM asks the run to stop at the next round
   boundary, where the checkpoint is saved (a second one stops at once, saving the last
   boundary's snapshot); a NaN or infinite parameter or objective stops the run with
   status ``diverged``, the round, and the last good round's checkpoint.
5. ``summary.json`` with the final status (``finished | interrupted | diverged``).

A resumed run cuts ``metrics.jsonl`` back to the prefix its checkpoint saw and ends
bit-identical to an uninterrupted run with the same seed.

The engine (and with it torch) is imported when a run starts: ``perfedavg run --help`` loads
this module through :mod:`perfedavg.runs.cli`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfedavg.engine.config import RunConfig
from perfedavg.errors import Diverged, RunFailed, UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config
from perfedavg.runs.extras import run_extras
from perfedavg.runs.lock import RunLock
from perfedavg.runs.plot import plot_run
from perfedavg.runs.resolve import is_allocation_failure, resolve
from perfedavg.runs.resume import Resume, check_fresh_out, check_resume, checkpoint_payload, create_out, truncate
from perfedavg.runs.status import (
    DIVERGED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    is_finished,
    training_differences,
)
from perfedavg.runs.stop import StopOnSignal
from perfedavg.words import plural

if TYPE_CHECKING:
    from perfedavg.engine.rounds import TrainState

__all__ = ["RunResult", "run_config", "run_from_trained"]


@dataclass(frozen=True)
class RunResult:
    status: str  # finished | diverged | interrupted
    run_dir: Path
    summary: dict


def _note(message: str) -> None:
    print(f"perfedavg: {message}", file=sys.stderr, flush=True)


def run_config(
    cfg: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    plot: bool = False,
) -> RunResult:
    """Run ``cfg`` into ``out`` (see the module docstring); returns the final status.

    ``resume``: continue the run in ``out`` from its checkpoint (from round 0 when it never
    saved one); ``force``: replace a non-empty run directory, or resume despite a changed
    config or code version.  Raises :class:`UsageError` before writing anything on bad input.
    """
    from perfedavg.engine.mlp import tune_malloc
    from perfedavg.engine.rounds import train

    out = Path(out)
    cfg, task = resolve(cfg)
    tune_malloc()  # keep parameter-sized buffers in the heap rather than mapped and unmapped each round
    lock = RunLock(out)
    try:
        lock.acquire_if_present()  # before reading what the directory holds: another writer may be changing it
        start: Resume | None = None
        if resume:
            start = check_resume(cfg, out, task, force)
        else:
            check_fresh_out(out, force)
        # -- validated: from here on, write ------------------------------------------------
        if not resume:
            create_out(out, force)
        lock.ensure()
        rundir.remove_temporaries(out)  # a killed writer's half-written files: the lock says it is gone
        return _write_run(cfg, task, out, start, resume, progress, plot, train)
    finally:
        lock.release()


def _write_run(
    cfg: RunConfig, task: Any, out: Path, start: Resume | None, resume: bool, progress: bool, plot: bool, train: Any
) -> RunResult:
    """:func:`run_config` once everything is checked and ``out`` is locked: the rounds, written as they come."""
    if not resume or start is None or start.config_changed or not (out / rundir.CONFIG).exists():
        rundir.write_config(out, cfg.to_dict())
    prefix = start.metrics_prefix if start else b""
    if resume:
        if start is None:
            _note(f"no checkpoint in {out}: starting again from round 0")
        if start is not None and start.code_was is not None:
            _note(f"resuming a run saved by {start.code_was}: the source that computes results is unchanged")
        if start is not None and start.dropped_records:
            dropped = plural(start.dropped_records, "line")
            _note(f"dropped {dropped} of {out / rundir.METRICS} written after the checkpoint")
        rundir.write_metrics(out, prefix)
    initial = start.state if start else None
    wall_before = start.wall if start else 0.0
    cpu_before = start.cpu if start else 0.0
    origin = rundir.provenance(cfg.task["name"], task.label or task.name)
    rundir.write_summary(
        out,
        {
            "status": RUNNING,
            "message": "",
            "started_at_round": initial.round if initial else 0,
            "pid": os.getpid(),
            **origin,
        },
    )

    bar = _progress(cfg, initial, progress)
    started, cpu_started = time.perf_counter(), time.process_time()
    status, message, diverged_round, signum, cause = FINISHED, "", None, None, ""
    boundary = None  # snapshot of the last round boundary, as saved in a checkpoint
    saved = None  # the last boundary actually saved

    def save(snapshot: dict[str, Any]) -> None:
        nonlocal saved
        rundir.sync_metrics(out)  # durable before the checkpoint that counts its records
        rundir.atomic_torch_save(out / rundir.CHECKPOINT, snapshot)
        saved = snapshot

    last_record = None
    stop = StopOnSignal()
    try:
        with stop, rundir.MetricsLog(out, prefix, start.n_records if start else 0) as metrics:
            for state, record in train(task, cfg, initial):
                if record is not None:
                    metrics.append(record)
                    last_record = record
                    bar.set_postfix_str(_postfix(record))
                wall = wall_before + time.perf_counter() - started
                cpu = cpu_before + time.process_time() - cpu_started
                boundary = checkpoint_payload(cfg, state, metrics.records, metrics.n_bytes, metrics.sha256(), wall, cpu)
                due = (cfg.checkpoint_every and state.round % cfg.checkpoint_every == 0) or state.round == cfg.K
                if due or stop.signum is not None:
                    save(boundary)
                bar.n = state.round
                bar.refresh()
                if stop.signum is not None and state.round < cfg.K:
                    status, signum = INTERRUPTED, stop.signum
                    break
    except Diverged as exc:
        status, message, diverged_round = DIVERGED, str(exc), exc.round_index
        if boundary is not None:  # the last good round: kept, never overwritten by the bad state
            save(boundary)
    except OSError as exc:  # the file system refused (a full disk): the last saved checkpoint is what is kept
        status, cause = FAILED, "disk"
        message = f"writing {exc.filename or out} failed ({exc.strerror or exc})"
        boundary = saved
    except Exception as exc:  # a buffer the machine cannot give: recorded as failed, never left "running"
        if not is_allocation_failure(exc):
            raise
        status, cause = FAILED, "memory"
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160] or 'no detail'}"
        if boundary is not None:
            save(boundary)
    except KeyboardInterrupt:  # a second signal: stop now, at the last round boundary seen
        status, signum = INTERRUPTED, stop.signum or signal.SIGINT
        if boundary is not None:
            save(boundary)
    finally:
        bar.close()
    if status != FINISHED:  # metrics.jsonl holds exactly what the checkpoint saw
        truncate(out / rundir.METRICS, boundary["metrics_bytes"] if boundary is not None else len(prefix))
    checkpoint_round = boundary["state"]["round"] if boundary is not None else (start.state.round if start else None)
    if status == INTERRUPTED:
        assert signum is not None
        where = f"checkpoint at round {checkpoint_round}" if checkpoint_round is not None else "no checkpoint yet"
        message = f"interrupted by {signal.Signals(signum).name} ({where}); continue with: perfedavg run --resume {out}"
    elif status == FAILED:
        kept = (
            f"round {checkpoint_round} is kept in {out / rundir.CHECKPOINT}"
            if checkpoint_round is not None
            else "nothing kept"
        )
        if cause == "disk":
            message = f"{message}; {kept}: free space, then continue with: perfedavg run --resume {out}"
        else:
            message = (
                f"ran out of memory ({message}); {kept}: lower tau, the batch sizes or the model's size, or "
                "resume on a machine with more memory"
            )
    elif status == DIVERGED:
        kept = (
            f"the last good round {checkpoint_round} is kept in {out / rundir.CHECKPOINT}"
            if checkpoint_round is not None
            else "no checkpoint kept (it diverged at the start)"
        )
        message = f"{message}; {kept}"
    else:
        checkpoint_round = cfg.K
    if status != FINISHED or last_record is None:  # read what the file holds (resumed, or cut back)
        metrics_file = out / rundir.METRICS
        records = rundir.read_metrics(out) if metrics_file.exists() and metrics_file.stat().st_size else []
        last_record = records[-1] if records else None
    summary = rundir.run_summary(
        status,
        message=message,
        rounds_completed=checkpoint_round if checkpoint_round is not None else 0,
        checkpoint_round=checkpoint_round,
        diverged_at_round=diverged_round,
        signal=signal.Signals(signum).name if signum else None,
        final=last_record,
        metrics_records=rundir.count_records(out),
        wall_seconds=wall_before + time.perf_counter() - started,
        cpu_seconds=cpu_before + time.process_time() - cpu_started,
        origin=origin,
        **run_extras(cfg, task, last_record, checkpoint_round if checkpoint_round is not None else 0),
    )
    try:
        rundir.write_summary(out, summary)
    except OSError:
        if status != FAILED:
            raise
        message += f" ({rundir.SUMMARY} could not be updated either)"
    if status == FAILED:
        raise RunFailed(f"{out}: {message}")
    if plot and status == FINISHED and last_record is not None:
        try:
            plot_run(out)
        except Exception as exc:  # the run's results are intact; the picture is a convenience
            print(
                f"perfedavg: warning: could not draw {out / 'curves.png'}: {type(exc).__name__}: {exc}", file=sys.stderr
            )
    return RunResult(status, out, summary)


#: options that never enter FedAvg's training (its local steps use beta and D only, docs/paper.md §2)
FEDAVG_EVALUATION_ONLY = ("alpha",)


def run_from_trained(cfg: RunConfig, out: str | Path, source: str | Path) -> RunResult:
    r"""Write the run directory of ``cfg`` at ``out`` without training: ``source`` is a finished
    FedAvg run whose training is ``cfg``'s (:func:`perfedavg.runs.status.same_training`, except
    for α, which FedAvg uses only to evaluate: :data:`FEDAVG_EVALUATION_ONLY`).

    ``cfg`` must evaluate only rounds 0 and K (``eval_every = K``) and not track inner
    iterates, since those need the models in between: then its records are the evaluations,
    under ``cfg``, of the initial model and of ``source``'s final model, which is the model
    ``run_config(cfg, out)`` would train bit for bit (same seed, same draws), and the directory
    is what that would write, a checkpoint at round K included (so it can be continued); its
    summary names ``trained_in``.  Refused (:class:`UsageError`, nothing written) otherwise.
    """
    out, source = Path(out), Path(source)
    cfg, task = resolve(cfg)
    try:
        trained = rundir.read_checkpoint(source / rundir.CHECKPOINT)
        finished = is_finished(rundir.read_json(source / rundir.SUMMARY)["status"])
    except (OSError, ValueError, KeyError, UsageError) as exc:
        raise UsageError(f"{source} is not a finished run: {exc}") from None
    mine = cfg.to_dict()
    differing = training_differences(mine, build_config(trained["config"]).to_dict())
    if not finished or trained["state"]["round"] != cfg.K:
        raise UsageError(f"{source} is not a finished run of K={cfg.K} rounds")
    if cfg.algorithm != "fedavg" or any(k not in FEDAVG_EVALUATION_ONLY for k in differing):
        raise UsageError(
            f"{source} trains another model than {out} would: "
            f"{', '.join(differing) or 'algorithm'} differ{'s' if len(differing) == 1 else ''}"
        )
    if cfg.eval_every != cfg.K or cfg.track_inner:
        raise UsageError(
            f"{out} evaluates rounds between 0 and K (eval_every={cfg.eval_every}, "
            f"track_inner={cfg.track_inner}): it has to be trained"
        )
    lock = RunLock(out)
    try:
        lock.acquire_if_present()
        check_fresh_out(out, force=True)
        return _write_trained(cfg, task, out, source, trained, mine, lock)
    finally:
        lock.release()


def _write_trained(
    cfg: RunConfig, task: Any, out: Path, source: Path, trained: dict[str, Any], mine: dict[str, Any], lock: RunLock
) -> RunResult:
    """:func:`run_from_trained` once ``out`` is checked and locked."""
    from perfedavg.engine.rounds import TrainState, evaluate_state, initial_state

    started, cpu_started = time.perf_counter(), time.process_time()
    state = TrainState.from_dict(trained["state"], cfg.device)
    records = [evaluate_state(task, cfg, initial_state(task, cfg)), evaluate_state(task, cfg, state)]
    lines = b"".join(rundir.metrics_line(record) for record in records)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    create_out(out, force=True)
    lock.ensure()
    rundir.write_config(out, mine)
    rundir.write_metrics(out, lines)
    rundir.atomic_torch_save(
        out / rundir.CHECKPOINT,
        checkpoint_payload(cfg, state, len(records), len(lines), rundir.metrics_digest(lines), wall, cpu),
    )
    summary = rundir.run_summary(
        FINISHED,
        message="",
        rounds_completed=cfg.K,
        checkpoint_round=cfg.K,
        diverged_at_round=None,
        signal=None,
        final=records[-1],
        metrics_records=len(records),
        wall_seconds=wall,
        cpu_seconds=cpu,
        origin=rundir.provenance(cfg.task["name"], task.label or task.name),
        trained_in=str(source),
        **run_extras(cfg, task, records[-1], cfg.K),
    )
    rundir.write_summary(out, summary)
    return RunResult(FINISHED, out, summary)


def _postfix(record: dict) -> str:
    # in the unit of the run's last line: personalized accuracy in percent
    return f"‖∇F‖²={record['grad_norm_sq_F']:.3g} acc={100 * record['personalized_accuracy']:.1f}%"


def _progress(cfg: RunConfig, state: TrainState | None, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=cfg.K,
        initial=state.round if state else 0,
        desc=f"{cfg.algorithm} {cfg.task['name']}",
        unit="round",
        disable=not enabled,
        dynamic_ncols=True,
    )
