r"""The unit of work: run one :class:`perfedavg.sweep.spec.Unit` into its run directory.

:func:`execute_unit` decides from the directory alone what to do, so that any attempt, first
or retried, on any backend, does the right thing:

* ``summary.json`` says the run is done (:func:`perfedavg.runs.status.is_done`) and ``config.toml`` equals the
  unit's config: the run is done; return its summary without running anything (a worker that
  died after finishing a run never makes it run twice);
* ``checkpoint.pt`` exists: continue with ``run_config(resume=True)``, which truncates
  ``metrics.jsonl`` to the checkpoint and ends bit-identical to an uninterrupted run; if the
  checkpoint cannot be resumed (another config, changed code), start over;
* otherwise: start from scratch (``force=True`` clears a half-started directory).

Every file of a run directory but the append-only ``metrics.jsonl`` is written atomically by
the runner, and a resume cuts ``metrics.jsonl`` back to the checkpoint, so a killed worker
never leaves a half-written result behind.

What "done" and "the same run" mean is :mod:`perfedavg.runs.status`'s to say.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config
from perfedavg.runs.runner import run_config
from perfedavg.runs.status import is_done, read_summary, same_config
from perfedavg.sweep.spec import RUNS, SWEEP_COPY, Unit

#: test hook: path of a token file; the first worker that claims it (deletes it) kills itself
#: with SIGKILL right after its run's first checkpoint is written
KILL_HOOK = "PERFEDAVG_SWEEP_KILL_ONCE"
#: test hook: a folder; a worker that claims (deletes) the file named after its unit kills itself at
#: the file-system point that file numbers (:mod:`perfedavg.runs.faults`)
KILL_POINTS_HOOK = "PERFEDAVG_SWEEP_KILL_POINTS"
#: every test hook: the backends hand them to their workers, which do not inherit the sweep's environment
TEST_HOOKS = (KILL_HOOK, KILL_POINTS_HOOK)


def plan(units: list[Unit], out: Path, force: bool = False, sweep_file: str | Path | None = None) -> dict[str, str]:
    """What a sweep run would do with each unit: ``skip`` (done), ``resume`` (has a
    checkpoint), ``start``, or ``restart`` (saved config differs; only with ``force``; without it,
    a :class:`UsageError` that says what changed, :func:`config_change`, reading nothing else)."""
    actions = {}
    for unit in units:
        run_dir = Path(out) / RUNS / unit.name
        config_file = run_dir / rundir.CONFIG
        if config_file.exists() and not same_config(run_dir, dict(unit.config)):
            if not force:
                raise UsageError(
                    f"{run_dir} holds a run with another config than this sweep's "
                    f"({config_change(out, sweep_file)}): use another --out, or --force to restart such runs"
                )
            actions[unit.name] = "restart"
            continue
        summary = read_summary(run_dir)
        if summary is not None and is_done(summary.get("status")):
            actions[unit.name] = "skip"
        elif (run_dir / rundir.CHECKPOINT).exists():
            actions[unit.name] = "resume"
        else:
            actions[unit.name] = "start"
    return actions


def config_change(out: Path, sweep_file: str | Path | None) -> str:
    """What made a run in ``out`` differ from this sweep's config, as far as ``out`` tells: its copy of the
    sweep file last run there (``sweep.toml``) against ``sweep_file``; the same file means the ``--set``
    overrides differ (this time's or the last time's)."""
    copy = Path(out) / SWEEP_COPY
    if sweep_file is None or not copy.is_file() or not Path(sweep_file).is_file():
        return "the sweep file or its --set overrides changed"
    if copy.read_bytes() == Path(sweep_file).read_bytes():
        return "the sweep file is the one last run there: the --set overrides differ"
    return "the sweep file changed since the last sweep there"


def _arm_kill_points(unit: Unit) -> None:
    """Test hook (:data:`KILL_POINTS_HOOK`): die by SIGKILL at the point numbered for ``unit``, once."""
    folder = os.environ.get(KILL_POINTS_HOOK)
    if not folder:
        return
    token = Path(folder) / unit.name
    try:
        kill_at = int(token.read_text())
        token.unlink()  # claim it: the retry runs unarmed
    except (FileNotFoundError, ValueError):
        return
    from perfedavg.runs import faults

    faults.arm(kill_at)


def _arm_kill_hook() -> None:
    """Test hook (:data:`KILL_HOOK`): die by SIGKILL right after the first checkpoint."""
    token = os.environ.get(KILL_HOOK)
    if not token:
        return
    try:
        os.unlink(token)  # claim it: exactly one worker ever succeeds
    except FileNotFoundError:
        return
    original = rundir.atomic_torch_save

    def save_then_die(path, obj):
        original(path, obj)
        os.kill(os.getpid(), signal.SIGKILL)

    rundir.atomic_torch_save = save_then_die


def execute_unit(unit: Unit, run_dir: str | Path) -> dict:
    """Run ``unit`` into ``run_dir`` (see the module docstring); never raises for a failed
    run: returns ``{"status": "failed", "error": ...}`` instead."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    result: dict[str, Any] = {
        "name": unit.name,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "resumed": False,
        "note": "",
    }
    try:  # Ctrl-C reaches the runner, which checkpoints (only the main thread may set handlers)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        previous = None
    try:
        _arm_kill_hook()
        _arm_kill_points(unit)
        summary = read_summary(run_dir)
        if summary is not None and is_done(summary.get("status")) and same_config(run_dir, dict(unit.config)):
            result.update(status=summary["status"], summary=_small(summary), note="already done")
        else:
            cfg = build_config(unit.config)
            outcome = None
            if (run_dir / rundir.CHECKPOINT).exists():
                try:
                    outcome = run_config(cfg, run_dir, resume=True, progress=False)
                    result["resumed"] = True
                except UsageError as exc:
                    result["note"] = f"could not resume ({exc}); started over"
            if outcome is None:
                outcome = run_config(cfg, run_dir, force=True, progress=False)
            result.update(status=outcome.status, summary=_small(outcome.summary))
    except Exception as exc:  # a failed run is a result; the scheduler decides on a retry
        result.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            usage_error=isinstance(exc, UsageError),
            traceback=traceback.format_exc(limit=20),
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    result["unit_seconds"] = time.perf_counter() - started
    return result


def _small(summary: dict) -> dict:
    """The fields of a run's summary that travel back to the scheduler."""
    keys = (
        "status",
        "message",
        "rounds_completed",
        "diverged_at_round",
        "final",
        "wall_seconds",
        "task",
        "code_version",
    )
    return {k: summary.get(k) for k in keys}
