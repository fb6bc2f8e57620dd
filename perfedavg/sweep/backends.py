r"""Running a sweep's units: the scheduler, the ``local`` and ``ray`` backends, the worker.

**Unit of work.**  :func:`execute_unit` runs one :class:`perfedavg.sweep.spec.Unit` into its
run directory and decides from the directory alone what to do, so that any attempt,
first or retried, on any backend, does the right thing:

* ``summary.json`` says *finished* or *diverged* and ``config.toml`` equals the unit's
  config: the run is done; return its summary without running anything (a worker
  that died after finishing a run never makes it run twice);
* ``checkpoint.pt`` exists: continue with ``run_config(resume=True)``, which truncates
  ``metrics.jsonl`` to the checkpoint and ends bit-identical to an uninterrupted run;
  if the checkpoint cannot be resumed (another config, changed code), start over;
* otherwise: start from scratch (``force=True`` clears a half-started directory).

Every file of a run directory but the append-only ``metrics.jsonl`` is written
atomically by the runner, and a resume cuts ``metrics.jsonl`` back to the checkpoint,
so a killed worker never leaves a half-written result behind.

**Backends.**  ``local`` keeps ``--workers`` single-process
:class:`concurrent.futures.ProcessPoolExecutor` s (``forkserver`` context with torch
preloaded, so a worker starts in milliseconds after the first).  One executor per
worker, rather than one pool of N, makes a killed worker break only its own executor:
:class:`~concurrent.futures.process.BrokenProcessPool` then names exactly the run that
was lost; that executor is recreated and the run retried; the other runs go on.
``ray`` submits the same function as Ray tasks (``num_cpus = --threads``); a task works
in a scratch directory on whichever node runs it, receives the run's existing files
(to resume) and returns the files it wrote, which the driver writes atomically into
``DIR/runs/<name>`` (``summary.json`` last) -- so no shared file system is needed and
the layout is the same as ``local``'s.  A lost Ray worker surfaces as a failed task and
is retried by the same scheduler (Ray's own ``max_retries`` is 0 so that attempts are
counted in one place).

**Scheduler.**  :func:`run_sweep` keeps at most ``workers`` units in flight, retries a
unit whose worker died or raised (not one that raised :class:`UsageError`: that is the
config's fault and would fail again) up to ``--retries`` times, shows one tqdm bar for
the sweep (runs done, failed, running, remaining, ETA), and rewrites
``DIR/sweep_summary.json`` and ``DIR/sweep_summary.md`` atomically as results arrive.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfedavg.runs import rundir
from perfedavg.errors import UsageError
from perfedavg.sweep.spec import RUNS, SWEEP_COPY, SWEEP_SUMMARY_JSON, SWEEP_SUMMARY_MD, Unit, default_workers

#: a run with one of these statuses in its summary.json is done (diverged is a result, not a failure)
DONE = ("finished", "diverged")

#: test hook: path of a token file; the first worker that claims it (deletes it) kills itself
#: with SIGKILL right after its run's first checkpoint is written
KILL_HOOK = "PERFEDAVG_SWEEP_KILL_ONCE"

#: the run-directory files a Ray task ships back, in the order the driver writes them
#: (summary.json last: a run counts as done only once everything else is in place)
SHIPPED = (rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINT, rundir.SUMMARY)


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (the ``perfedavg sweep`` options)."""

    backend: str = field(default="local", metadata={"doc": "local | ray"})
    workers: int | None = field(default=None, metadata={"doc": "runs at once (None: cores / threads)"})
    threads: int | None = field(default=None, metadata={"doc": "torch threads per run (None: cores / workers)"})
    address: str | None = field(default=None, metadata={"doc": "ray: cluster address (None: start a local Ray)"})
    retries: int = field(default=2, metadata={"doc": "extra attempts of a run whose worker died or raised (>= 0)"})
    force: bool = field(default=False, metadata={"doc": "restart runs whose saved config differs"})
    progress: bool = field(default=True, metadata={"doc": "show the sweep's progress bar"})
    summary_interval: float = field(default=0.5, metadata={"doc": "seconds between summary rewrites (always at the end)"})

    def __post_init__(self):
        if self.backend not in ("local", "ray"):
            raise UsageError(f"--backend={self.backend!r} is not one of local, ray")
        for name, low in (("workers", 1), ("threads", 1), ("retries", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise UsageError(f"--{name}={value} is out of range: must be >= {low}")


@dataclass
class SweepReport:
    """What :func:`run_sweep` returns."""

    rows: dict
    counts: dict
    wall_seconds: float
    interrupted: bool
    bench: dict


# -- the unit of work (runs in the worker) ---------------------------------------------------
def _same_config(run_dir: Path, config: dict) -> bool:
    from perfedavg.runs.config import read_toml

    try:
        return read_toml(run_dir / rundir.CONFIG) == config
    except UsageError:
        return False


def _read_summary(run_dir: Path) -> dict | None:
    try:
        summary = json.loads((run_dir / rundir.SUMMARY).read_text())
        return summary if isinstance(summary, dict) else None
    except (OSError, ValueError):
        return None


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
    result: dict[str, Any] = {"name": unit.name, "pid": os.getpid(), "host": socket.gethostname(), "resumed": False, "note": ""}
    try:  # Ctrl-C reaches the runner, which checkpoints (only the main thread may set handlers)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        previous = None
    try:
        from perfedavg.runs.config import build_config
        from perfedavg.runs.runner import run_config

        _arm_kill_hook()
        summary = _read_summary(run_dir)
        if summary is not None and summary.get("status") in DONE and _same_config(run_dir, dict(unit.config)):
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
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}", usage_error=isinstance(exc, UsageError),
                      traceback=traceback.format_exc(limit=20))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    result["unit_seconds"] = time.perf_counter() - started
    return result


def _small(summary: dict) -> dict:
    keys = ("status", "message", "rounds_completed", "diverged_at_round", "final", "wall_seconds", "task", "code_version")
    return {k: summary.get(k) for k in keys}


# -- local backend -------------------------------------------------------------------------
def _ping() -> int:
    """Warm-up: import torch and the runner (a Ray worker may import lazily) and touch torch."""
    import torch

    import perfedavg.runs.runner  # noqa: F401
    import synthetic  # noqa: F401

    float(torch.ones(2).sum())
    return os.getpid()


def _init_local_worker(threads: int, kill_hook: str | None) -> None:
    import torch

    # a forkserver child inherits the server's environment, not the sweep's: pass the hook on
    if kill_hook:
        os.environ[KILL_HOOK] = kill_hook
    else:
        os.environ.pop(KILL_HOOK, None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle workers ignore Ctrl-C; execute_unit re-enables it
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (a reused forkserver child)
        pass


class LocalBackend:
    """``workers`` single-process executors (module docstring)."""

    name = "local"

    def __init__(self, workers: int, threads: int):
        import multiprocessing

        self.workers, self.threads = workers, threads
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self.context = multiprocessing.get_context(method)
        if method == "forkserver":
            self.context.set_forkserver_preload(["perfedavg.sweep.backends", "perfedavg.runs.runner"])
        self.executors: list = [None] * workers
        self.pings: list = [None] * workers  # slot -> future of the worker's pid
        self.busy: dict = {}  # future -> slot

    def capacity(self) -> int:
        return self.workers - len(self.busy)

    def _executor(self, slot: int):
        from concurrent.futures import ProcessPoolExecutor

        if self.executors[slot] is None:
            self.executors[slot] = ProcessPoolExecutor(
                max_workers=1, mp_context=self.context, initializer=_init_local_worker,
                initargs=(self.threads, os.environ.get(KILL_HOOK)),
            )
            self.pings[slot] = self.executors[slot].submit(_ping)  # its first task: gives the worker's pid
        return self.executors[slot]

    def warm(self, n: int) -> None:
        """Start ``n`` worker processes (torch imported) before the clock of the first run."""
        for slot in range(min(n, self.workers)):
            self._executor(slot)
        for slot in range(min(n, self.workers)):
            self.pings[slot].result()

    def interrupt(self) -> None:
        """Ask the running runs to stop at their next round boundary (SIGINT: the runner
        checkpoints and returns ``interrupted``)."""
        for slot in self.busy.values():
            ping = self.pings[slot]
            if ping is not None and ping.done() and ping.exception() is None:
                try:
                    os.kill(ping.result(), signal.SIGINT)
                except ProcessLookupError:
                    pass

    def submit(self, unit: Unit, run_dir: Path):
        slot = next(i for i in range(self.workers) if i not in self.busy.values())
        future = self._executor(slot).submit(execute_unit, unit, str(run_dir))
        self.busy[future] = slot
        return future

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        """Completed handles with their result dict or the exception that lost them."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as futures_wait
        from concurrent.futures.process import BrokenProcessPool

        done, _ = futures_wait(list(self.busy), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for future in done:
            slot = self.busy.pop(future)
            try:
                out.append((future, future.result()))
            except BrokenProcessPool as exc:  # this slot's worker died: only its run is lost
                self.executors[slot].shutdown(wait=False, cancel_futures=True)
                self.executors[slot] = self.pings[slot] = None
                out.append((future, exc))
            except Exception as exc:  # e.g. the unit could not be pickled
                out.append((future, exc))
        return out

    def shutdown(self) -> None:
        for executor in self.executors:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self.executors = [None] * self.workers
        self.pings = [None] * self.workers


# -- ray backend ------------------------------------------------------------------------------
def _ray_execute(unit: Unit, files: dict, threads: int) -> tuple[dict, dict]:
    """A Ray task: materialize the run's files in a scratch directory, run, ship them back."""
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="perfedavg-sweep-") as scratch:
        run_dir = Path(scratch) / "run"
        run_dir.mkdir()
        for name, data in files.items():
            (run_dir / name).write_bytes(data)
        result = execute_unit(unit, run_dir)
        shipped = {name: (run_dir / name).read_bytes() for name in SHIPPED if (run_dir / name).is_file()}
    return result, shipped


def _existing_files(run_dir: Path) -> dict:
    return {name: (run_dir / name).read_bytes() for name in SHIPPED if (run_dir / name).is_file()}


def _write_shipped(run_dir: Path, files: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if rundir.SUMMARY not in files:
        (run_dir / rundir.SUMMARY).unlink(missing_ok=True)
    for name in SHIPPED:
        if name in files:
            rundir.atomic_write_bytes(run_dir / name, files[name])
        elif name != rundir.SUMMARY:
            (run_dir / name).unlink(missing_ok=True)


class RayBackend:
    """The same units as Ray tasks (module docstring)."""

    name = "ray"

    def __init__(self, workers: int | None, threads: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--backend ray needs Ray, an optional extra: pip install 'perfedavg[ray]' (or pip install 'ray[default]')"
            ) from None
        import logging

        self.ray, self.threads = ray, threads
        self.owns = not ray.is_initialized()
        if self.owns:
            env = {KILL_HOOK: os.environ[KILL_HOOK]} if os.environ.get(KILL_HOOK) else {}
            kwargs = dict(runtime_env={"env_vars": env} if env else None, log_to_driver=False,
                          logging_level=logging.WARNING, configure_logging=True)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=(workers or default_workers() // threads or 1) * threads,
                             include_dashboard=False, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < threads:
            raise UsageError(f"--threads={threads} is out of range: the Ray cluster has {cpus} CPUs")
        self.workers = workers or max(1, cpus // threads)
        self.remote = ray.remote(_ray_execute).options(num_cpus=threads, max_retries=0)
        self.busy: dict = {}  # ObjectRef -> run_dir

    def warm(self, n: int) -> None:
        """Start up to ``n`` Ray workers with torch imported (Ray reuses them for the runs)."""
        ping = self.ray.remote(_ping).options(num_cpus=self.threads)
        self.ray.get([ping.remote() for _ in range(min(n, self.workers))])

    def capacity(self) -> int:
        return self.workers - len(self.busy)

    def interrupt(self) -> None:
        """Cancel the running tasks (their runs start again from the files last shipped back)."""
        for ref in list(self.busy):
            self.ray.cancel(ref)

    def submit(self, unit: Unit, run_dir: Path):
        ref = self.remote.remote(unit, _existing_files(run_dir), self.threads)
        self.busy[ref] = run_dir
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        ray = self.ray
        done, _ = ray.wait(list(self.busy), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            run_dir = self.busy.pop(ref)
            try:
                result, files = ray.get(ref)
            except Exception as exc:  # WorkerCrashedError, NodeDiedError, ...: the run is lost, retry it
                out.append((ref, exc))
                continue
            _write_shipped(run_dir, files)
            out.append((ref, result))
        return out

    def shutdown(self) -> None:
        for ref in list(self.busy):
            self.ray.cancel(ref)
        self.busy.clear()
        if self.owns:
            self.ray.shutdown()


def make_backend(options: SweepOptions):
    cores = default_workers()
    if options.backend == "ray":
        threads = options.threads or 1
        return RayBackend(options.workers, threads, options.address)
    workers = options.workers or max(1, cores // (options.threads or 1))
    threads = options.threads or max(1, cores // workers)
    return LocalBackend(workers, threads)


# -- plan, summary -----------------------------------------------------------------------------
def plan(units: list[Unit], out: Path, force: bool = False) -> dict[str, str]:
    """What a sweep run would do with each unit: ``skip`` (done), ``resume`` (has a
    checkpoint), ``start``, or ``restart`` (saved config differs; only with ``force``)."""
    actions = {}
    for unit in units:
        run_dir = Path(out) / RUNS / unit.name
        config_file = run_dir / rundir.CONFIG
        if config_file.exists() and not _same_config(run_dir, dict(unit.config)):
            if not force:
                raise UsageError(
                    f"{run_dir} holds a run with another config than the sweep's (the sweep file changed?): use "
                    "another --out, or --force to restart such runs"
                )
            actions[unit.name] = "restart"
            continue
        summary = _read_summary(run_dir)
        if summary is not None and summary.get("status") in DONE:
            actions[unit.name] = "skip"
        elif (run_dir / rundir.CHECKPOINT).exists():
            actions[unit.name] = "resume"
        else:
            actions[unit.name] = "start"
    return actions


def print_plan(units: list[Unit], actions: dict[str, str], out: Path) -> None:
    counts = collections.Counter(actions.values())
    width = max((len(u.name) for u in units), default=0)
    for unit in units:
        print(f"{actions[unit.name]:<8} {unit.name:<{width}}  -> {Path(out) / RUNS / unit.name}")
    print(f"{len(units)} runs: " + ", ".join(f"{counts[a]} {a}" for a in ("skip", "resume", "start", "restart") if counts[a]))


#: final metrics shown in the markdown table (all of ``final`` goes to the JSON)
TABLE_METRICS = (("F", "F"), ("grad_norm_sq_F", "‖∇F‖²"), ("personalized_accuracy", "pers. acc"), ("global_accuracy", "global acc"))


def _row(unit: Unit) -> dict:
    return {"name": unit.name, "varied": dict(unit.varied), "status": "pending", "attempts": 0, "rounds_completed": None,
            "wall_seconds": None, "final": {}, "error": None, "lost_attempts": [], "host": None}


def write_summary(out: Path, units: list[Unit], rows: dict, meta: dict) -> None:
    """``sweep_summary.json`` and ``sweep_summary.md``, both atomically."""
    counts = collections.Counter(rows[u.name]["status"] for u in units)
    data = {**meta, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "counts": dict(counts),
            "runs": [rows[u.name] for u in units]}
    rundir.atomic_write_json(out / SWEEP_SUMMARY_JSON, data)
    axes = list(units[0].varied) if units else []
    head = ["run", *axes, "status", "attempts", "rounds", "wall s", *(label for _, label in TABLE_METRICS)]
    lines = [f"# Sweep {meta.get('sweep_file') or meta.get('out', '')}", "",
             ", ".join(f"{counts[s]} {s}" for s in ("finished", "diverged", "failed", "interrupted", "running", "pending") if counts[s]),
             "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for unit in units:
        row = rows[unit.name]
        cells = [row["name"], *(str(unit.varied[a]) for a in axes), row["status"], str(row["attempts"]),
                 _fmt(row["rounds_completed"]), _fmt(row["wall_seconds"], ".1f"),
                 *(_fmt(row["final"].get(key)) for key, _ in TABLE_METRICS)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    errors = [(u.name, rows[u.name]["error"]) for u in units if rows[u.name]["error"]]
    if errors:
        lines += ["", "## Errors", ""] + [f"- `{name}`: {error}" for name, error in errors]
    rundir.atomic_write_text(out / SWEEP_SUMMARY_MD, "\n".join(lines) + "\n")


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:300]


# -- the scheduler -------------------------------------------------------------------------------
def run_sweep(units: list[Unit], out: str | Path, options: SweepOptions = SweepOptions(), *,
              sweep_file: str | Path | None = None, backend=None) -> SweepReport:
    """Run every unit not yet done into ``out/runs/<name>`` (module docstring).

    ``backend`` replaces the one ``options`` names (an object with ``workers``, ``threads``,
    ``warm(n)``, ``capacity()``, ``submit(unit, run_dir)``, ``wait(timeout)`` and ``shutdown()``,
    as :class:`LocalBackend`); tests use it to drive the scheduler without processes."""
    from tqdm import tqdm

    out = Path(out)
    started = time.perf_counter()
    actions = plan(units, out, options.force)
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    if sweep_file is not None:
        rundir.atomic_write_bytes(out / SWEEP_COPY, Path(sweep_file).read_bytes())
    rows = {u.name: _row(u) for u in units}
    for unit in units:
        if actions[unit.name] == "skip":
            summary = _read_summary(out / RUNS / unit.name) or {}
            rows[unit.name].update(status=summary.get("status"), rounds_completed=summary.get("rounds_completed"),
                                   wall_seconds=summary.get("wall_seconds"), final=summary.get("final") or {})
    todo = collections.deque(u for u in units if actions[u.name] != "skip")
    meta = {"sweep_file": str(sweep_file) if sweep_file else None, "backend": options.backend, "out": str(out)}
    bench: dict = {"backend": options.backend, "runs": len(todo)}
    interrupted = False
    if not todo:
        write_summary(out, units, rows, meta)
        return SweepReport(rows, dict(collections.Counter(r["status"] for r in rows.values())), 0.0, False, bench)

    backend_started = time.perf_counter()
    backend = backend if backend is not None else make_backend(options)
    backend.warm(len(todo))
    bench.update(workers=backend.workers, threads=backend.threads, backend_start_seconds=time.perf_counter() - backend_started)
    meta.update(workers=backend.workers, threads=backend.threads)
    attempts: collections.Counter = collections.Counter()
    in_flight: dict = {}  # handle -> (unit, submitted at)
    roundtrips, unit_seconds = [], []
    n_done = len(units) - len(todo)
    n_failed = 0
    bar = tqdm(total=len(units), initial=n_done, desc="sweep", unit="run", disable=not options.progress, dynamic_ncols=True)
    last_write = 0.0

    def postfix():
        bar.set_postfix_str(f"failed={n_failed} running={len(in_flight)} left={len(todo) + len(in_flight)}")

    def record(handle, outcome, stopping: bool) -> None:
        """Book one finished attempt; retry it unless it is done, the config's fault,
        out of retries, or the sweep is stopping."""
        nonlocal n_done, n_failed
        unit, submitted = in_flight.pop(handle)
        row = rows[unit.name]
        if isinstance(outcome, BaseException):
            result = {"status": "failed", "error": f"worker lost: {_describe(outcome)}", "usage_error": False}
        else:
            result = outcome
            roundtrips.append(time.perf_counter() - submitted)
            unit_seconds.append(result["unit_seconds"])
            row["host"] = result.get("host")
        status = result["status"]
        if status in DONE or (status == "interrupted" and stopping):
            summary = result.get("summary") or {}
            row.update(status=status, rounds_completed=summary.get("rounds_completed"),
                       wall_seconds=summary.get("wall_seconds"), final=summary.get("final") or {},
                       error=summary.get("message") if status == "diverged" else None)
            if status in DONE:
                n_done += 1
                bar.update(1)
            return
        if status == "interrupted":  # a signal reached the worker, not the sweep: resume the run
            result["error"] = "the run was interrupted by a signal to its worker"
        if not stopping and not result.get("usage_error") and attempts[unit.name] <= options.retries:
            row["lost_attempts"].append(result["error"])
            row.update(status="pending", error=f"attempt {attempts[unit.name]}: {result['error']}")
            todo.appendleft(unit)  # retry it next; it resumes from its checkpoint
        else:
            row.update(status="interrupted" if stopping else "failed", error=result["error"])
            if not stopping:
                n_failed += 1
                bar.update(1)

    previous_term = _raise_keyboard_interrupt_on_sigterm()
    try:
        while todo or in_flight:
            while todo and backend.capacity() > 0:
                unit = todo.popleft()
                attempts[unit.name] += 1
                rows[unit.name].update(status="running", attempts=attempts[unit.name])
                in_flight[backend.submit(unit, out / RUNS / unit.name)] = (unit, time.perf_counter())
            postfix()
            for handle, outcome in backend.wait(timeout=1.0):
                record(handle, outcome, stopping=False)
                postfix()
            if time.perf_counter() - last_write > options.summary_interval:
                write_summary(out, units, rows, meta)
                last_write = time.perf_counter()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: running runs checkpoint at their next round and stop
        interrupted = True
        bar.write("perfedavg: stopping the sweep: running runs checkpoint at their next round (again: stop now)")
        try:
            backend.interrupt()
            deadline = time.perf_counter() + 120
            while in_flight and time.perf_counter() < deadline:
                for handle, outcome in backend.wait(timeout=1.0):
                    record(handle, outcome, stopping=True)
        except KeyboardInterrupt:
            pass
        for unit, _ in in_flight.values():
            rows[unit.name]["status"] = "interrupted"
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        bar.close()
        try:
            backend.shutdown()
        finally:
            write_summary(out, units, rows, meta)
    wall = time.perf_counter() - started
    bench.update(_bench(roundtrips, unit_seconds, wall, backend.workers))
    return SweepReport(rows, dict(collections.Counter(r["status"] for r in rows.values())), wall, interrupted, bench)


def _raise_keyboard_interrupt_on_sigterm():
    """In the main thread, SIGTERM (a job scheduler's stop) stops the sweep like Ctrl-C;
    returns the previous handler (None when not installed)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _bench(roundtrips: list[float], unit_seconds: list[float], wall: float, workers: int) -> dict:
    r"""Overhead of the runner.  Per run: :math:`o_i = t^{\rm roundtrip}_i - t^{\rm unit}_i`
    (submit to result in the driver, minus the time inside :func:`execute_unit`, which is
    run_config plus the resume decision); ``per_run_overhead_fraction`` is
    :math:`\mathrm{median}_i\, o_i / \mathrm{mean}_i\, t^{\rm unit}_i`.
    ``total_overhead_fraction`` is :math:`(W \cdot \text{workers} - \sum_i t^{\rm unit}_i) /
    \sum_i t^{\rm unit}_i` for the sweep's wall time :math:`W`: it adds the one-time start
    (worker processes, a Ray instance) and idle workers at the tail."""
    if not unit_seconds:
        return {}
    overheads = sorted(r - u for r, u in zip(roundtrips, unit_seconds))
    mean_unit = sum(unit_seconds) / len(unit_seconds)
    median = overheads[len(overheads) // 2]
    total = sum(unit_seconds)
    return {
        "mean_run_seconds": mean_unit,
        "median_per_run_overhead_seconds": median,
        "max_per_run_overhead_seconds": overheads[-1],
        "per_run_overhead_fraction": median / mean_unit if mean_unit > 0 else None,
        "sweep_wall_seconds": wall,
        "total_overhead_fraction": (wall * workers - total) / total if total > 0 else None,
    }
