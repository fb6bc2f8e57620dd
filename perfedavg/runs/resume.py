"""Where a run starts: a fresh ``--out`` checked and made, or a checkpoint checked for resuming.

Both checks write nothing, so bad input leaves nothing behind; :func:`create_out` and the runner
write only after them.  A resume is refused when the checkpoint's config differs (unless forced),
when the source that computes results changed since it was saved (the ``src:`` part of
:func:`perfedavg.runs.rundir.code_version`; its ``git describe`` part is information only), or
when the prefix of ``metrics.jsonl`` it has seen was changed or lost.

The engine (and with it torch) is imported when a checkpoint is checked, not at import: the
runner imports this module at ``perfedavg run --help`` time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfedavg.engine.config import RunConfig
from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config, first_run_base, read_toml

if TYPE_CHECKING:
    from perfedavg.engine.rounds import TrainState
    from perfedavg.engine.task import Task


def check_fresh_out(out: Path, force: bool) -> None:
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
                raise UsageError(
                    f"--out {out} already exists and is not empty: use --resume to continue it or --force to replace it"
                )
            if not rundir.looks_like_run_dir(out):
                raise UsageError(
                    f"--out {out} is not a run directory (it holds other files): --force replaces only run directories"
                )
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


def create_out(out: Path, force: bool) -> None:
    """Make ``out`` (checked by :func:`check_fresh_out`) an empty directory."""
    if out.exists():
        if force:
            for entry in out.iterdir():
                entry.unlink()  # only run files: checked by rundir.looks_like_run_dir
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


def checkpoint_payload(
    cfg: RunConfig, state: TrainState, n_records: int, n_bytes: int, digest: str, wall: float, cpu: float
) -> dict[str, Any]:
    """What ``checkpoint.pt`` holds (keys checked by :func:`perfedavg.runs.rundir.read_checkpoint`)."""
    return {
        "format": rundir.CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "state": state.to_dict(),
        "metrics_records": n_records,
        "metrics_bytes": n_bytes,
        "metrics_sha256": digest,
        "code_version": rundir.code_version(cfg.task["name"]),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }


@dataclass
class Resume:
    """What a checked resume starts from."""

    state: TrainState
    n_records: int
    metrics_prefix: bytes
    wall: float
    cpu: float
    dropped_records: int
    config_changed: bool
    #: the checkpoint's code version when only its describe part differs (same source digest)
    code_was: str | None = None


def check_resume(cfg: RunConfig, out: Path, task: Task, force: bool) -> Resume | None:
    """Check the checkpoint in ``out`` against ``cfg``, the code and ``metrics.jsonl``;
    ``None`` when the run never saved a checkpoint (it restarts at round 0).  Writes nothing."""
    from perfedavg.engine.rounds import TrainState, initial_state

    if not out.is_dir():
        raise UsageError(f"--resume: {out} is not a run directory (it does not exist or is a file)")
    path = out / rundir.CHECKPOINT
    if not path.exists() and not path.is_symlink():
        if not (out / rundir.CONFIG).exists() and not rundir.only_temporaries(out):
            raise UsageError(f"--resume: {out} is not a run directory (no {rundir.CONFIG}, no {rundir.CHECKPOINT})")
        return None
    payload = rundir.read_checkpoint(path)
    saved, now = payload["config"], cfg.to_dict()
    changed = saved != now
    if changed and not force:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise UsageError(
            f"--resume {out}: the config differs from the checkpoint's in {', '.join(diff)} "
            "(use --force to continue anyway)"
        )
    saved_code, code_now = payload["code_version"], rundir.code_version(cfg.task["name"])
    if rundir.source_digest_of(saved_code) != rundir.source_digest_of(code_now) and not force:
        raise UsageError(
            f"--resume {out}: the code that computes results changed since the checkpoint ({saved_code} -> "
            f"{code_now}); use --force to continue anyway"
        )
    try:
        state = TrainState.from_dict(payload["state"], cfg.device)
    except Exception as exc:  # a damaged generator state, a wrong tensor
        raise UsageError(
            f"checkpoint {path} is damaged: its training state cannot be restored ({type(exc).__name__})"
        ) from None
    expected = initial_state(task, cfg).w
    if state.w.shape != expected.shape or state.w.dtype != expected.dtype:
        raise UsageError(
            f"checkpoint {path} holds a model of shape {tuple(state.w.shape)} {state.w.dtype}, but the config's task "
            f"needs {tuple(expected.shape)} {expected.dtype}"
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
            f"{metrics} does not match {path}: the first {payload['metrics_records']} records the checkpoint saw "
            "were changed or lost, so the run cannot continue bit for bit (start it again with --force, without "
            "--resume)"
        )
    dropped = data[n_bytes:].count(b"\n") + (0 if data.endswith(b"\n") or len(data) == n_bytes else 1)
    return Resume(
        state,
        payload["metrics_records"],
        data[:n_bytes],
        float(payload.get("wall_seconds", 0.0)),
        float(payload.get("cpu_seconds", 0.0)),
        dropped,
        changed,
        saved_code if saved_code != code_now else None,
    )


def truncate(path: Path, n_bytes: int) -> None:
    """Cut ``path`` back to its first ``n_bytes`` (the prefix a checkpoint saw)."""
    if path.exists() and path.stat().st_size > n_bytes:
        os.truncate(path, n_bytes)


def load_resume_config(out: str | Path, config_path: str | None, overrides: list[str]) -> RunConfig:
    """The config of ``--resume``: the run's saved ``config.toml`` (or ``--config``) <- ``--set``."""
    out = Path(out)
    if config_path:
        base = read_toml(config_path)
    else:
        if not out.is_dir():
            raise UsageError(f"--resume: {out} is not a run directory (it does not exist or is a file)")
        if not (out / rundir.CONFIG).is_file() and rundir.only_temporaries(out):
            if overrides:  # the config given again, on the command line (no file: the first run's base)
                return build_config(first_run_base(overrides), overrides)
            raise UsageError(
                f"--resume: {out} holds only a temporary file: the run was stopped while writing its first file, "
                f"before its config was saved; give the config again (--config/--set) or start over with --out {out} "
                "--force"
            )
        if not (out / rundir.CONFIG).is_file():
            raise UsageError(f"--resume: {out} is not a run directory (no {rundir.CONFIG})")
        base = read_toml(out / rundir.CONFIG)
    return build_config(base, overrides)
