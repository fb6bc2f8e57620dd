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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from perfedavg.runs import rundir
from perfedavg.engine.config import RunConfig, check_value_type
from perfedavg.runs.config import build_config, dumps_toml, read_toml
from perfedavg.errors import Diverged, UsageError


@dataclass(frozen=True)
class RunResult:
    status: str  # finished | diverged | interrupted
    run_dir: Path
    summary: dict


def resolve(cfg: RunConfig) -> tuple[RunConfig, object]:
    """The config with every task default filled in, and the task it describes (validated:
    task option types and ranges, the device, and the ranges that depend on the task)."""
    import torch

    from perfedavg.engine.rounds import DTYPES, check_config_against_task
    from perfedavg.runs.registry import build_task, resolved_task_table, task_spec

    cfg = cfg.replace(task=_typed_task_table(cfg.task, task_spec))
    cfg = cfg.replace(task=resolved_task_table(cfg.task))
    device = check_device(cfg.device, torch)
    with _task_construction(cfg.task):
        task = build_task(cfg.task)
        task = task.to(DTYPES[cfg.dtype], device)
    check_config_against_task(cfg, task)
    return cfg, task


#: what torch and numpy say when a tensor cannot be allocated (RuntimeError / ValueError text)
_ALLOCATION_FAILURES = ("can't allocate memory", "out of memory", "storage size calculation overflowed",
                        "negative dimension", "array is too big", "maximum allowed dimension")


class _task_construction:
    """The engine's safety net around building a task (the tasks also cap their sizes up front):

    * a tensor too large for this machine (``MemoryError``, torch's "can't allocate memory",
      a size that overflows) becomes one :class:`UsageError` naming the task's size options;
    * a data set's "how to provide it" hint names ``run``'s own options
      (``task.data_dir`` / ``task.download``) instead of the ``perfedavg data`` flags.

    Raised before anything is written (called from :func:`resolve`)."""

    def __init__(self, table):
        self.table = table

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, UsageError):
            raise UsageError(_in_run_terms(str(exc))) from None
        text = str(exc)
        too_big = isinstance(exc, (MemoryError, OverflowError)) or (
            isinstance(exc, (RuntimeError, ValueError)) and any(p in text.lower() for p in _ALLOCATION_FAILURES)
        )
        if not too_big:
            return False
        sizes = ", ".join(f"task.{k}={v}" for k, v in self.table.items() if isinstance(v, int) and not isinstance(v, bool))
        detail = " ".join(text.split())
        detail = detail[detail.find("you tried") :] if "you tried" in detail else (detail[:120] or "no detail")
        raise UsageError(
            f"task {self.table['name']!r} is too large for this machine ({sizes}): building it failed with "
            f"{type(exc).__name__} ({detail}); choose smaller task sizes"
        ) from None


def _in_run_terms(message: str) -> str:
    """A data set's error message with the ``perfedavg data`` / ``reproduce`` flags replaced by the
    ``perfedavg run`` options that do the same (``--set task.data_dir=DIR``, ``--set task.download=true``)."""
    message = message.replace("with --data-dir DIR", "with --set task.data_dir=DIR")
    message = message.replace("from --data-dir", "from task.data_dir")
    return message.replace("with --download", "with --set task.download=true")


def _typed_task_table(table, task_spec) -> dict:
    """``[task]`` with each option checked against the type its options dataclass declares."""
    table = dict(table)
    spec = task_spec(table["name"])
    declared = {f.name: f for f in fields(spec.options)}
    for key, value in table.items():
        f = declared.get(key)
        expected = {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type)) if f else None
        if expected is None:  # unknown keys are reported by the task registry; other types are the task's
            continue
        if expected in (int, float) and isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"task.{key}={value} is out of range: must be a finite number ({f.metadata.get('doc', '')})")
        table[key] = check_value_type(f"task.{key}", value, expected, f.metadata.get("doc", ""))
    return table


def check_device(name: str, torch, option: str = "device"):
    """``name`` as a torch device this machine has (cpu, cuda, cuda:N), or a one-line :class:`UsageError`
    naming ``option`` (the config key, or a flag such as ``--device``)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"{option}={name!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"{option}={name!r}: no CUDA device is available here; use {option}=cpu")
        if device.index is not None and device.index >= count:
            raise UsageError(f"{option}={name!r} is out of range: this machine has cuda:0..cuda:{count - 1}")
    elif device.type != "cpu":
        raise UsageError(f"{option}={name!r} is not supported: use cpu, cuda or cuda:N")
    return device


# -- the run directory, checked before anything is written ------------------------------
def _looks_like_run_dir(path: Path) -> bool:
    """Only run files (and their atomic-write temporaries) and at least one of them."""
    names = [p.name for p in path.iterdir()]
    known = [n for n in names if n in rundir.RUN_FILES]
    temporary = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    return bool(known) and len(known) + len(temporary) == len(names)


def _check_fresh_out(out: Path, force: bool) -> None:
    """``out`` can hold a new run: absent (and creatable), empty, or with ``force`` a run
    directory to replace.  Raises :class:`UsageError` naming ``--out``; writes nothing."""
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a dangling symbolic link")
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a directory: choose another --out")
        try:
            entries = list(out.iterdir())
        except OSError as exc:
            raise UsageError(f"--out {out} cannot be read: {exc.strerror or exc}") from None
        if entries:
            if not force:
                raise UsageError(f"--out {out} already exists and is not empty: use --resume to continue it or --force to replace it")
            if not _looks_like_run_dir(out):
                raise UsageError(f"--out {out} is not a run directory (it holds other files): --force replaces only run directories")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"--out {out} is not writable")
        return
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"--out {out} cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} cannot be created: {ancestor} is not writable")


def _create_out(out: Path, force: bool) -> None:
    """Make ``out`` (checked by :func:`_check_fresh_out`) an empty directory."""
    if out.exists():
        if force:
            for entry in out.iterdir():
                entry.unlink()  # only run files: checked by _looks_like_run_dir
        return
    first_new = out.absolute()
    while not first_new.parent.exists():
        first_new = first_new.parent
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        if first_new.exists():
            shutil.rmtree(first_new, ignore_errors=True)
        raise UsageError(f"--out {out} cannot be created: {exc.strerror or exc}") from None


# -- checkpoints ----------------------------------------------------------------------------
def _checkpoint_payload(cfg: RunConfig, state, n_records: int, n_bytes: int, digest: str, wall: float, cpu: float) -> dict:
    return {
        "format": rundir.CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "state": state.to_dict(),
        "metrics_records": n_records,
        "metrics_bytes": n_bytes,
        "metrics_sha256": digest,
        "code_version": rundir.code_version(cfg.task['name']),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }


@dataclass
class _Resume:
    """What a checked resume starts from."""

    state: object
    n_records: int
    metrics_prefix: bytes
    wall: float
    cpu: float
    dropped_records: int
    config_changed: bool
    #: the checkpoint's code version when only its describe part differs (same source digest)
    code_was: str | None = None


def _check_resume(cfg: RunConfig, out: Path, task, force: bool) -> _Resume | None:
    """Check the checkpoint in ``out`` against ``cfg``, the code and ``metrics.jsonl``;
    ``None`` when the run never saved a checkpoint (it restarts at round 0).  Writes nothing."""
    from perfedavg.engine.rounds import TrainState, initial_state

    if not out.is_dir():
        raise UsageError(f"--resume: {out} is not a run directory (it does not exist or is a file)")
    path = out / rundir.CHECKPOINT
    if not path.exists() and not path.is_symlink():
        if not (out / rundir.CONFIG).exists():
            raise UsageError(f"--resume: {out} is not a run directory (no {rundir.CONFIG}, no {rundir.CHECKPOINT})")
        return None
    payload = rundir.read_checkpoint(path)
    saved, now = payload["config"], cfg.to_dict()
    changed = saved != now
    if changed and not force:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise UsageError(f"--resume {out}: the config differs from the checkpoint's in {', '.join(diff)} (use --force to continue anyway)")
    saved_code, code_now = payload["code_version"], rundir.code_version(cfg.task["name"])
    if rundir.source_digest_of(saved_code) != rundir.source_digest_of(code_now) and not force:
        raise UsageError(
            f"--resume {out}: the code that computes results changed since the checkpoint ({saved_code} -> "
            f"{code_now}); use --force to continue anyway"
        )
    try:
        state = TrainState.from_dict(payload["state"], cfg.device)
    except Exception as exc:  # a damaged generator state, a wrong tensor
        raise UsageError(f"checkpoint {path} is damaged: its training state cannot be restored ({type(exc).__name__})") from None
    expected = initial_state(task, cfg).w
    if state.w.shape != expected.shape or state.w.dtype != expected.dtype:
        raise UsageError(
            f"checkpoint {path} holds a model of shape {tuple(state.w.shape)} {state.w.dtype}, but the config's task needs "
            f"{tuple(expected.shape)} {expected.dtype}"
        )
    if not 0 <= state.round <= cfg.K:
        raise UsageError(f"checkpoint {path} is at round {state.round}, outside 0..K={cfg.K}")
    metrics = out / rundir.METRICS
    try:
        data = metrics.read_bytes() if metrics.exists() else b""
    except OSError as exc:
        raise UsageError(f"{metrics} cannot be read: {exc.strerror or exc}") from None
    n_bytes = payload["metrics_bytes"]
    if len(data) < n_bytes or rundir.metrics_digest(data[:n_bytes]) != payload["metrics_sha256"]:
        raise UsageError(
            f"{metrics} does not match {path}: the first {payload['metrics_records']} records the checkpoint saw were changed "
            "or lost, so the run cannot continue bit for bit (start it again with --force, without --resume)"
        )
    dropped = data[n_bytes:].count(b"\n") + (0 if data.endswith(b"\n") or len(data) == n_bytes else 1)
    return _Resume(state, payload["metrics_records"], data[:n_bytes], float(payload.get("wall_seconds", 0.0)),
                   float(payload.get("cpu_seconds", 0.0)), dropped, changed,
                   saved_code if saved_code != code_now else None)


# -- stopping on signals at a round boundary ---------------------------------------------------
class _StopOnSignal:
    """SIGINT and SIGTERM: the first asks the run to stop at the next round boundary, the
    second raises :class:`KeyboardInterrupt` at once.  Installed in the main thread only
    (elsewhere the caller's handling applies)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nperfedavg: {signal.Signals(signum).name} received: stopping after this round "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


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
    from perfedavg.engine.rounds import train

    out = Path(out)
    cfg, task = resolve(cfg)
    from perfedavg.engine.mlp import tune_malloc

    tune_malloc()  # keep parameter-sized buffers in the heap: ~10% of a round on MLP tasks
    start: _Resume | None = None
    if resume:
        start = _check_resume(cfg, out, task, force)
    else:
        _check_fresh_out(out, force)

    # -- validated: from here on, write ----------------------------------------------------
    if not resume:
        _create_out(out, force)
    if not resume or start is None or start.config_changed or not (out / rundir.CONFIG).exists():
        rundir.atomic_write_text(out / rundir.CONFIG, dumps_toml(cfg.to_dict()))
    prefix = start.metrics_prefix if start else b""
    if resume:
        if start is None:
            _note(f"no checkpoint in {out}: starting again from round 0")
        if start is not None and start.code_was is not None:
            _note(f"resuming a run saved by {start.code_was}: the source that computes results is unchanged")
        if start is not None and start.dropped_records:
            _note(f"dropped {start.dropped_records} line(s) of {out / rundir.METRICS} written after the checkpoint")
        rundir.atomic_write_bytes(out / rundir.METRICS, prefix)
    state = start.state if start else None
    n_records, n_bytes, hasher = (start.n_records if start else 0), len(prefix), hashlib.sha256(prefix)
    wall_before = start.wall if start else 0.0
    cpu_before = start.cpu if start else 0.0
    base_summary = _base_summary(cfg, task)
    rundir.atomic_write_json(
        out / rundir.SUMMARY,
        {"status": "running", "message": "", "started_at_round": state.round if state else 0, "pid": os.getpid(), **base_summary},
    )

    bar = _progress(cfg, state, progress)
    started, cpu_started = time.perf_counter(), time.process_time()
    status, message, diverged_round, signum = "finished", "", None, None
    boundary = None  # snapshot of the last round boundary, as saved in a checkpoint
    last_record = None
    stop = _StopOnSignal()
    try:
        with stop, (out / rundir.METRICS).open("ab") as metrics:
            for state, record in train(task, cfg, state):
                if record is not None:
                    line = json.dumps(record).encode() + b"\n"
                    metrics.write(line)
                    metrics.flush()
                    hasher.update(line)
                    n_bytes += len(line)
                    n_records += 1
                    last_record = record
                    bar.set_postfix_str(_postfix(record))
                wall = wall_before + time.perf_counter() - started
                cpu = cpu_before + time.process_time() - cpu_started
                boundary = _checkpoint_payload(cfg, state, n_records, n_bytes, hasher.hexdigest(), wall, cpu)
                due = cfg.checkpoint_every and state.round % cfg.checkpoint_every == 0 or state.round == cfg.K
                if due or stop.signum is not None:
                    rundir.atomic_torch_save(out / rundir.CHECKPOINT, boundary)
                bar.n = state.round
                bar.refresh()
                if stop.signum is not None and state.round < cfg.K:
                    status, signum = "interrupted", stop.signum
                    break
    except Diverged as exc:
        status, message, diverged_round = "diverged", str(exc), exc.round_index
        if boundary is not None:  # the last good round: kept, never overwritten by the bad state
            rundir.atomic_torch_save(out / rundir.CHECKPOINT, boundary)
    except KeyboardInterrupt:  # a second signal: stop now, at the last round boundary seen
        status, signum = "interrupted", stop.signum or signal.SIGINT
        if boundary is not None:
            rundir.atomic_torch_save(out / rundir.CHECKPOINT, boundary)
    finally:
        bar.close()
    if status != "finished":  # metrics.jsonl holds exactly what the checkpoint saw
        _truncate(out / rundir.METRICS, boundary["metrics_bytes"] if boundary is not None else len(prefix))
    checkpoint_round = boundary["state"]["round"] if boundary is not None else (start.state.round if start else None)
    if status == "interrupted":
        name = signal.Signals(signum).name
        where = f"checkpoint at round {checkpoint_round}" if checkpoint_round is not None else "no checkpoint yet"
        message = f"interrupted by {name} ({where}); continue with: perfedavg run --resume {out}"
    elif status == "diverged":
        kept = f"the last good round {checkpoint_round} is kept in {out / rundir.CHECKPOINT}" if checkpoint_round is not None else "no checkpoint kept (it diverged at the start)"
        message = f"{message}; {kept}"
    else:
        checkpoint_round = cfg.K
    if status != "finished" or last_record is None:  # read what the file holds (resumed, or cut back)
        records = rundir.read_metrics(out) if (out / rundir.METRICS).exists() and (out / rundir.METRICS).stat().st_size else []
        last_record = records[-1] if records else None
    summary = {
        "status": status,
        "message": message,
        "rounds_completed": checkpoint_round if checkpoint_round is not None else 0,
        "checkpoint_round": checkpoint_round,
        "diverged_at_round": diverged_round,
        "signal": signal.Signals(signum).name if signum else None,
        **_final_summary(last_record, wall_before + time.perf_counter() - started,
                         cpu_before + time.process_time() - cpu_started, base_summary),
    }
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    if plot and status == "finished" and last_record is not None:
        from perfedavg.runs.plot import plot_run

        try:
            plot_run(out)
        except Exception as exc:  # the run's results are intact; the picture is a convenience
            print(f"perfedavg: warning: could not draw {out / 'curves.png'}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return RunResult(status, out, summary)


def _base_summary(cfg: RunConfig, task) -> dict:
    return {
        "task": task.label or task.name,
        "code_version": rundir.code_version(cfg.task['name']),
        "versions": rundir.library_versions(),
    }


def _final_summary(last_record: dict | None, wall: float, cpu: float, base_summary: dict) -> dict:
    return {
        "final": {k: v for k, v in (last_record or {}).items() if k != "per_client"},
        "wall_seconds": wall,
        # CPU time of this process (all its threads) over the rounds, time.process_time(): on a shared
        # machine wall time also counts waiting for a core, CPU time does not
        "cpu_seconds": cpu,
        **base_summary,
    }


#: options that never enter FedAvg's training (its local steps use beta and D only, PAPER.md §2)
FEDAVG_EVALUATION_ONLY = ("alpha",)


def run_from_trained(cfg: RunConfig, out: str | Path, source: str | Path) -> RunResult:
    r"""Write the run directory of ``cfg`` at ``out`` without training: ``source`` is a finished
    FedAvg run whose training is ``cfg``'s (they differ at most in α, which FedAvg uses only to
    evaluate, :data:`FEDAVG_EVALUATION_ONLY`, and in K-neutral bookkeeping: checkpoint frequency).

    ``cfg`` must evaluate only rounds 0 and K (``eval_every = K``) and not track inner
    iterates, since those need the models in between: then its records are the evaluations,
    under ``cfg``, of the initial model and of ``source``'s final model, which is the model
    ``run_config(cfg, out)`` would train bit for bit (same seed, same draws), and the directory
    is what that would write, a checkpoint at round K included (so it can be continued); its
    summary names ``trained_in``.  Refused (:class:`UsageError`, nothing written) otherwise.
    """
    from perfedavg.engine.rounds import TrainState, evaluate_state, initial_state

    out, source = Path(out), Path(source)
    cfg, task = resolve(cfg)
    try:
        trained = rundir.read_checkpoint(source / rundir.CHECKPOINT)
        finished = json.loads((source / rundir.SUMMARY).read_text())["status"] == "finished"
    except (OSError, ValueError, KeyError, UsageError) as exc:
        raise UsageError(f"{source} is not a finished run: {exc}") from None
    theirs = build_config(trained["config"]).to_dict()
    mine = cfg.to_dict()
    differing = sorted(k for k in mine if mine[k] != theirs[k] and k not in ("checkpoint_every", "eval_every"))
    if not finished or trained["state"]["round"] != cfg.K:
        raise UsageError(f"{source} is not a finished run of K={cfg.K} rounds")
    if cfg.algorithm != "fedavg" or any(k not in FEDAVG_EVALUATION_ONLY for k in differing):
        raise UsageError(f"{source} trains another model than {out} would: "
                         f"{', '.join(differing) or 'algorithm'} differ{'s' if len(differing) == 1 else ''}")
    if cfg.eval_every != cfg.K or cfg.track_inner:
        raise UsageError(f"{out} evaluates rounds between 0 and K (eval_every={cfg.eval_every}, "
                         f"track_inner={cfg.track_inner}): it has to be trained")
    _check_fresh_out(out, force=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    state = TrainState.from_dict(trained["state"], cfg.device)
    records = [evaluate_state(task, cfg, initial_state(task, cfg)), evaluate_state(task, cfg, state)]
    lines = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _create_out(out, force=True)
    rundir.atomic_write_text(out / rundir.CONFIG, dumps_toml(mine))
    rundir.atomic_write_bytes(out / rundir.METRICS, lines)
    rundir.atomic_torch_save(out / rundir.CHECKPOINT, _checkpoint_payload(
        cfg, state, len(records), len(lines), hashlib.sha256(lines).hexdigest(), wall, cpu))
    summary = {"status": "finished", "message": "", "rounds_completed": cfg.K, "checkpoint_round": cfg.K,
               "diverged_at_round": None, "signal": None, "trained_in": str(source),
               **_final_summary(records[-1], wall, cpu, _base_summary(cfg, task))}
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    return RunResult("finished", out, summary)


def _truncate(path: Path, n_bytes: int) -> None:
    """Cut ``path`` back to its first ``n_bytes`` (the prefix a checkpoint saw)."""
    if path.exists() and path.stat().st_size > n_bytes:
        os.truncate(path, n_bytes)


def _postfix(record: dict) -> str:
    return f"|∇F|²={record['grad_norm_sq_F']:.3g} acc={record['personalized_accuracy']:.3f}"


def _progress(cfg: RunConfig, state, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=cfg.K,
        initial=state.round if state else 0,
        desc=f"{cfg.algorithm} {cfg.task['name']}",
        unit="round",
        disable=not enabled,
        dynamic_ncols=True,
    )


def load_run_config(config_path: str | None, overrides: list[str]) -> RunConfig:
    """Defaults <- TOML file <- ``--set`` overrides."""
    base = read_toml(config_path) if config_path else {}
    return build_config(base, overrides)


def load_resume_config(out: str | Path, config_path: str | None, overrides: list[str]) -> RunConfig:
    """The config of ``--resume``: the run's saved ``config.toml`` (or ``--config``) <- ``--set``."""
    out = Path(out)
    if config_path:
        base = read_toml(config_path)
    else:
        if not out.is_dir():
            raise UsageError(f"--resume: {out} is not a run directory (it does not exist or is a file)")
        if not (out / rundir.CONFIG).is_file():
            raise UsageError(f"--resume: {out} is not a run directory (no {rundir.CONFIG})")
        base = read_toml(out / rundir.CONFIG)
    return build_config(base, overrides)
