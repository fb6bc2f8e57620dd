"""Run one configuration into a run directory, resumably.

``run_config`` validates everything (config, task, ranges that depend on the task)
*before* it creates the directory, so bad input leaves nothing behind.  During the
run it appends one JSON line per evaluated round to ``metrics.jsonl``, saves
``checkpoint.pt`` atomically every ``checkpoint_every`` rounds and on Ctrl-C, and
finally writes ``summary.json``.  A resumed run continues from the checkpoint
and ends bit-identical to an uninterrupted one (the generator state is saved).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import rundir
from .config import RunConfig, build_config, dumps_toml, read_toml
from .engine import TrainState, check_config_against_task, train
from .errors import Diverged, UsageError
from .tasks import build_task, resolved_task_table


@dataclass(frozen=True)
class RunResult:
    status: str  # finished | diverged | interrupted
    run_dir: Path
    summary: dict


def resolve(cfg: RunConfig) -> tuple[RunConfig, object]:
    """The config with every task default filled in, and the task it describes (validated)."""
    cfg = cfg.replace(task=resolved_task_table(cfg.task))
    task = build_task(cfg.task)
    from .engine import DTYPES

    task = task.to(DTYPES[cfg.dtype], cfg.device)
    check_config_against_task(cfg, task)
    return cfg, task


def _checkpoint_payload(cfg: RunConfig, state: TrainState, n_records: int) -> dict:
    return {"config": cfg.to_dict(), "state": state.to_dict(), "metrics_records": n_records, "code_version": rundir.code_version()}


def _load_checkpoint(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(payload, dict) or "state" not in payload:
            raise ValueError("missing state")
        return payload
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: nothing to resume (start the run without --resume)") from None
    except Exception as exc:  # torch raises many kinds on a damaged file
        raise UsageError(f"checkpoint {path} is damaged and cannot be read ({type(exc).__name__})") from None


def _truncate_metrics(path: Path, n_records: int) -> None:
    """Keep the first ``n_records`` lines (the records the checkpoint has seen)."""
    if not path.exists():
        return
    lines = [l for l in path.read_bytes().split(b"\n") if l.strip()][:n_records]
    rundir.atomic_write_bytes(path, b"".join(l + b"\n" for l in lines))


def run_config(
    cfg: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    plot: bool = False,
) -> RunResult:
    """Run ``cfg`` into ``out`` (see the module docstring); returns the final status."""
    out = Path(out)
    cfg, task = resolve(cfg)
    state, n_records = None, 0
    if resume:
        payload = _load_checkpoint(out / rundir.CHECKPOINT)
        saved = payload["config"]
        if saved != cfg.to_dict() and not force:
            diff = sorted(k for k in set(saved) | set(cfg.to_dict()) if saved.get(k) != cfg.to_dict().get(k))
            raise UsageError(f"--resume {out}: the config differs from the saved one in {', '.join(diff)} (use --force to continue anyway)")
        if payload.get("code_version") != rundir.code_version() and not force:
            raise UsageError(
                f"--resume {out}: the code changed since the checkpoint ({payload.get('code_version')} -> "
                f"{rundir.code_version()}); use --force to continue anyway"
            )
        state = TrainState.from_dict(payload["state"], cfg.device)
        n_records = payload["metrics_records"]
        _truncate_metrics(out / rundir.METRICS, n_records)
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not force:
                raise UsageError(f"--out {out} already exists and is not empty: use --resume to continue it or --force to replace it")
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        out.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_text(out / rundir.CONFIG, dumps_toml(cfg.to_dict()))

    bar = _progress(cfg, state, progress)
    started = time.perf_counter()
    status, message, diverged_round = "finished", "", None
    boundary = None  # last consistent (round-boundary) checkpoint payload
    try:
        with (out / rundir.METRICS).open("a") as metrics:
            for state, record in train(task, cfg, state):
                if record is not None:
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    n_records += 1
                    bar.set_postfix_str(_postfix(record))
                boundary = _checkpoint_payload(cfg, state, n_records)
                if cfg.checkpoint_every and state.round % cfg.checkpoint_every == 0 or state.round == cfg.K:
                    rundir.atomic_torch_save(out / rundir.CHECKPOINT, boundary)
                bar.n = state.round
                bar.refresh()
    except Diverged as exc:
        status, message, diverged_round = "diverged", str(exc), exc.round_index
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted by the user; continue with --resume"
        if boundary is not None:
            rundir.atomic_torch_save(out / rundir.CHECKPOINT, boundary)
    finally:
        bar.close()
    records = rundir.read_metrics(out) if (out / rundir.METRICS).exists() else []
    summary = {
        "status": status,
        "message": message,
        "rounds_completed": state.round if state is not None else 0,
        "diverged_at_round": diverged_round,
        "final": {k: v for k, v in (records[-1] if records else {}).items() if k != "per_client"},
        "wall_seconds": time.perf_counter() - started,
        "task": task.label or task.name,
        "code_version": rundir.code_version(),
        "versions": rundir.library_versions(),
    }
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    if plot and records:
        from .plot import plot_run

        plot_run(out)
    return RunResult(status, out, summary)


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
