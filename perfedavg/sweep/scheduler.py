r"""The scheduler: run a sweep's units on a backend, retry lost ones, keep the summary up to date.

:func:`run_sweep` keeps at most ``workers`` units in flight, retries a unit whose worker died or
raised (not one that raised :class:`UsageError`: that is the config's fault and would fail
again) up to ``--retries`` times, shows one tqdm bar for the sweep (runs done, failed, running,
remaining, ETA), and rewrites ``DIR/sweep_summary.json`` and ``DIR/sweep_summary.md`` atomically
as results arrive.  :func:`plan` says beforehand what will happen to each unit.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.status import DIVERGED, INTERRUPTED, is_done, read_summary
from perfedavg.sweep.backends import Backend, LocalBackend, RayBackend, default_workers
from perfedavg.sweep.spec import RUNS, SWEEP_COPY, SWEEP_SUMMARY_JSON, SWEEP_SUMMARY_MD, Unit
from perfedavg.sweep.worker import plan


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
    summary_interval: float = field(
        default=0.5, metadata={"doc": "seconds between summary rewrites (always at the end)"}
    )

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


def make_backend(options: SweepOptions) -> Backend:
    """The backend ``options`` names, with its workers and threads per run resolved."""
    cores = default_workers()
    if options.backend == "ray":
        threads = options.threads or 1
        return RayBackend(options.workers, threads, options.address)
    workers = options.workers or max(1, cores // (options.threads or 1))
    threads = options.threads or max(1, cores // workers)
    return LocalBackend(workers, threads)


# -- summary -----------------------------------------------------------------------------------
#: final metrics shown in the markdown table (all of ``final`` goes to the JSON)
TABLE_METRICS = (
    ("F", "F", ".4g"),
    ("grad_norm_sq_F", "‖∇F‖²", ".4g"),
    ("personalized_accuracy", "pers. acc", "%"),
    ("global_accuracy", "global acc", "%"),
)
#: the statuses the markdown table counts, in this order
_COUNTED = ("finished", "diverged", "failed", "interrupted", "running", "pending")


def _row(unit: Unit) -> dict:
    """A unit's row of the summary before its first attempt."""
    return {
        "name": unit.name,
        "varied": dict(unit.varied),
        "status": "pending",
        "attempts": 0,
        "rounds_completed": None,
        "wall_seconds": None,
        "final": {},
        "error": None,
        "lost_attempts": [],
        "host": None,
        "node": None,
    }


def write_summary(out: Path, units: list[Unit], rows: dict, meta: dict) -> None:
    """``sweep_summary.json`` and ``sweep_summary.md``, both atomically."""
    counts = collections.Counter(rows[u.name]["status"] for u in units)
    data = {
        **meta,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": dict(counts),
        "runs": [rows[u.name] for u in units],
    }
    rundir.atomic_write_json(out / SWEEP_SUMMARY_JSON, data)
    axes = list(units[0].varied) if units else []
    head = ["run", *axes, "status", "attempts", "rounds", "wall s", *(label for _, label, _ in TABLE_METRICS)]
    lines = [
        f"# Sweep {meta.get('sweep_file') or meta.get('out', '')}",
        "",
        ", ".join(f"{counts[s]} {s}" for s in _COUNTED if counts[s]),
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for unit in units:
        row = rows[unit.name]
        cells = [
            row["name"],
            *(str(unit.varied[a]) for a in axes),
            row["status"],
            str(row["attempts"]),
            _fmt(row["rounds_completed"]),
            _fmt(row["wall_seconds"], ".1f"),
            *(_fmt(row["final"].get(key), spec) for key, _, spec in TABLE_METRICS),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    errors = [(u.name, rows[u.name]["error"]) for u in units if rows[u.name]["error"]]
    if errors:
        lines += ["", "## Errors", ""] + [f"- `{name}`: {error}" for name, error in errors]
    rundir.atomic_write_text(out / SWEEP_SUMMARY_MD, "\n".join(lines) + "\n")


def _fmt(value, spec: str = ".4g") -> str:
    """A table cell: empty for no value, ``spec`` for a float (``"%"``: a fraction as a percentage with one
    decimal, as ``perfedavg run`` prints accuracies)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if spec == "%" else format(value, spec)
    return str(value)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:300]


# -- the scheduler -------------------------------------------------------------------------------
def run_sweep(
    units: list[Unit],
    out: str | Path,
    options: SweepOptions = SweepOptions(),
    *,
    sweep_file: str | Path | None = None,
    backend: Backend | None = None,
) -> SweepReport:
    """Run every unit not yet done into ``out/runs/<name>`` (module docstring).

    ``backend`` replaces the one ``options`` names (any :class:`perfedavg.sweep.backends.Backend`);
    tests use it to drive the scheduler without processes."""
    out = Path(out)
    started = time.perf_counter()
    actions = plan(units, out, options.force, sweep_file)
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    if sweep_file is not None:
        rundir.atomic_write_bytes(out / SWEEP_COPY, Path(sweep_file).read_bytes())
    rows = {u.name: _row(u) for u in units}
    for unit in units:
        if actions[unit.name] == "skip":
            summary = read_summary(out / RUNS / unit.name) or {}
            rows[unit.name].update(
                status=summary.get("status"),
                rounds_completed=summary.get("rounds_completed"),
                wall_seconds=summary.get("wall_seconds"),
                final=summary.get("final") or {},
            )
    todo = collections.deque(u for u in units if actions[u.name] != "skip")
    meta: dict[str, Any] = {
        "sweep_file": str(sweep_file) if sweep_file else None,
        "backend": options.backend,
        "out": str(out),
    }
    bench: dict = {"backend": options.backend, "runs": len(todo)}
    interrupted = False
    if not todo:
        write_summary(out, units, rows, meta)
        return SweepReport(rows, dict(collections.Counter(r["status"] for r in rows.values())), 0.0, False, bench)

    backend_started = time.perf_counter()
    backend = backend if backend is not None else make_backend(options)
    backend.warm(len(todo))
    bench.update(
        workers=backend.workers, threads=backend.threads, backend_start_seconds=time.perf_counter() - backend_started
    )
    meta.update(workers=backend.workers, threads=backend.threads)
    attempts: collections.Counter = collections.Counter()
    in_flight: dict[Any, tuple[Unit, float]] = {}  # handle -> (unit, submitted at)
    roundtrips: list[float] = []
    unit_seconds: list[float] = []
    n_done = len(units) - len(todo)
    n_failed = 0
    bar = tqdm(
        total=len(units), initial=n_done, desc="sweep", unit="run", disable=not options.progress, dynamic_ncols=True
    )
    last_write = 0.0

    def postfix():
        bar.set_postfix_str(f"failed={n_failed} running={len(in_flight)} left={len(todo) + len(in_flight)}")

    def record(handle, outcome, stopping: bool) -> None:
        """Book one finished attempt; retry it unless it is done, the config's fault,
        out of retries, or the sweep is stopping."""
        nonlocal n_done, n_failed
        unit, submitted = in_flight.pop(handle)
        row = rows[unit.name]
        result: dict[str, Any]
        if isinstance(outcome, BaseException):
            result = {"status": "failed", "error": f"worker lost: {_describe(outcome)}", "usage_error": False}
        else:
            result = outcome
            roundtrips.append(time.perf_counter() - submitted)
            unit_seconds.append(result["unit_seconds"])
            row["host"], row["node"] = result.get("host"), result.get("node")
        status = result["status"]
        if is_done(status) or (status == INTERRUPTED and stopping):
            summary = result.get("summary") or {}
            row.update(
                status=status,
                rounds_completed=summary.get("rounds_completed"),
                wall_seconds=summary.get("wall_seconds"),
                final=summary.get("final") or {},
                error=summary.get("message") if status == DIVERGED else None,
            )
            if is_done(status):
                n_done += 1
                bar.update(1)
            return
        if status == INTERRUPTED:  # a signal reached the worker, not the sweep: resume the run
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
