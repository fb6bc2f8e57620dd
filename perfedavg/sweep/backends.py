r"""Where a sweep's units run: ``local`` (a process pool on this machine) and ``ray`` (Ray tasks).

Both run :func:`perfedavg.sweep.worker.execute_unit` and offer the interface the scheduler
drives (:class:`Backend`).

``local`` keeps ``--workers`` single-process :class:`concurrent.futures.ProcessPoolExecutor` s
(``forkserver`` context with torch and the runner preloaded, so a worker starts in milliseconds
after the first).  One executor per worker, rather than one pool of N, makes a killed worker
break only its own executor: :class:`~concurrent.futures.process.BrokenProcessPool` then names
exactly the run that was lost; that executor is recreated and the run retried; the other runs
go on.

``ray`` submits the same function as Ray tasks (``num_cpus = --threads``); a task works in a
scratch directory on whichever node runs it, receives the run's existing files (to resume) and
returns the files it wrote, which the driver writes atomically into ``DIR/runs/<name>``
(``summary.json`` last), so no shared file system is needed and the layout is the same as
``local``'s.  A lost Ray worker surfaces as a failed task and is retried by the scheduler
(Ray's own ``max_retries`` is 0 so that attempts are counted in one place).  Ray is an optional
extra, imported only when this backend is built.

A Ray instance the toolkit starts itself (no ``--address``) listens on loopback only and has no
dashboard (:func:`_loopback_only`): Ray takes a node's address from its route to the outside
world and binds its servers there, even when asked for ``127.0.0.1``; a sweep on one machine
needs no port open to the network.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import torch

from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.sweep.spec import Unit
from perfedavg.sweep.worker import TEST_HOOKS, execute_unit

#: the run-directory files a Ray task ships back, in the order the driver writes them
#: (summary.json last: a run counts as done only once everything else is in place)
SHIPPED = (rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINT, rundir.SUMMARY)

#: modules a ``forkserver`` imports once, so that its children start with them loaded: this
#: module (the worker's initializer and warm-up), the unit of work, and the runner it calls
FORKSERVER_PRELOAD = ["perfedavg.sweep.backends", "perfedavg.sweep.worker", "perfedavg.runs.runner"]


class Backend(Protocol):
    """What :func:`perfedavg.sweep.scheduler.run_sweep` drives: ``workers`` runs at once of
    ``threads`` torch threads each; a handle per submitted unit."""

    workers: int
    threads: int

    def warm(self, n: int) -> None:
        """Start up to ``n`` workers before the first run's clock starts."""

    def capacity(self) -> int:
        """How many more units may be submitted now."""

    def submit(self, unit: Unit, run_dir: Path) -> Hashable:
        """Start ``unit`` into ``run_dir``; returns its handle."""

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        """Completed handles with their result dict or the exception that lost them."""

    def interrupt(self) -> None:
        """Ask the running units to stop soon."""

    def shutdown(self) -> None:
        """Stop every worker."""


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _ping() -> int:
    """Warm-up: touch torch in the worker; returns the worker's pid."""
    float(torch.ones(2).sum())
    return os.getpid()


# -- local backend -------------------------------------------------------------------------
#: seconds between a worker's checks that the sweep's driver is alive
DRIVER_POLL_S = 0.5


def _exit_with_driver(driver: int) -> None:
    """Stop this worker once the sweep's driver process ``driver`` is gone, however it ended (SIGKILL too):
    an orphan would finish its run, then idle for ever. SIGTERM, so that a run in progress stops at its next
    round boundary with a checkpoint (the runner's handler), and an idle worker simply exits."""
    while True:
        time.sleep(DRIVER_POLL_S)
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30 * DRIVER_POLL_S)  # the run's checkpoint has had its chance: now at once
            os._exit(1)
        except PermissionError:  # the pid is alive, but another user's: the driver is gone
            os._exit(1)


def _test_hooks() -> dict[str, str]:
    """The test hooks (:data:`perfedavg.sweep.worker.TEST_HOOKS`) set in the sweep's environment."""
    return {name: os.environ[name] for name in TEST_HOOKS if os.environ.get(name)}


def _init_local_worker(threads: int, hooks: dict[str, str], driver: int) -> None:
    # a forkserver child inherits the server's environment, not the sweep's: pass the hooks on
    for name in TEST_HOOKS:
        if name in hooks:
            os.environ[name] = hooks[name]
        else:
            os.environ.pop(name, None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle workers ignore Ctrl-C; execute_unit re-enables it
    threading.Thread(target=_exit_with_driver, args=(driver,), name="exit-with-driver", daemon=True).start()
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set (a reused forkserver child)
        torch.set_num_interop_threads(1)


class LocalBackend:
    """``workers`` single-process executors (module docstring)."""

    name = "local"

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self.context = multiprocessing.get_context(method)
        if method == "forkserver":
            self.context.set_forkserver_preload(FORKSERVER_PRELOAD)
        self.executors: list[ProcessPoolExecutor | None] = [None] * workers
        self.pings: list[Future | None] = [None] * workers  # slot -> future of the worker's pid
        self.busy: dict[Future, int] = {}  # future -> slot

    def capacity(self) -> int:
        return self.workers - len(self.busy)

    def _executor(self, slot: int) -> ProcessPoolExecutor:
        executor = self.executors[slot]
        if executor is None:
            executor = self.executors[slot] = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self.context,
                initializer=_init_local_worker,
                initargs=(self.threads, _test_hooks(), os.getpid()),
            )
            self.pings[slot] = executor.submit(_ping)  # its first task: gives the worker's pid
        return executor

    def warm(self, n: int) -> None:
        """Start ``n`` worker processes (torch imported) before the clock of the first run."""
        for slot in range(min(n, self.workers)):
            self._executor(slot)
        for slot in range(min(n, self.workers)):
            ping = self.pings[slot]
            if ping is not None:
                ping.result()

    def interrupt(self) -> None:
        """Ask the running runs to stop at their next round boundary (SIGINT: the runner
        checkpoints and returns ``interrupted``)."""
        for slot in self.busy.values():
            ping = self.pings[slot]
            if ping is not None and ping.done() and ping.exception() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ping.result(), signal.SIGINT)

    def submit(self, unit: Unit, run_dir: Path) -> Future:
        slot = next(i for i in range(self.workers) if i not in self.busy.values())
        future = self._executor(slot).submit(execute_unit, unit, str(run_dir))
        self.busy[future] = slot
        return future

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        """Completed handles with their result dict or the exception that lost them."""
        done, _ = futures_wait(list(self.busy), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[tuple[Any, Any]] = []
        for future in done:
            slot = self.busy.pop(future)
            try:
                out.append((future, future.result()))
            except BrokenProcessPool as exc:  # this slot's worker died: only its run is lost
                executor = self.executors[slot]
                if executor is not None:
                    executor.shutdown(wait=False, cancel_futures=True)
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
    """A Ray task: materialize the run's files in a scratch directory, run, ship them back; the
    result names the Ray node that ran it (``node``: its node id)."""
    import ray  # present: Ray runs this function

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="perfedavg-sweep-") as scratch:
        run_dir = Path(scratch) / "run"
        run_dir.mkdir()
        for name, data in files.items():
            (run_dir / name).write_bytes(data)
        result = execute_unit(unit, run_dir)
        result["node"] = ray.get_runtime_context().get_node_id()
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


#: Ray's switch between "a node's address is its outside address" (clusters) and "a node's
#: address is loopback" (its default on macOS and Windows); read by Ray's processes at import
LOCAL_RAY_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Any:
    """While a local Ray starts: its node address is loopback, so every server it starts (GCS,
    raylet, workers, agents) binds 127.0.0.1.  Ray resolves a ``_node_ip_address`` of
    ``127.0.0.1`` back to the outside address, so the switch it reads is set instead: in the
    environment its child processes inherit, and in the driver's already imported constants."""
    constants: Any = importlib.import_module("ray._private.ray_constants")
    saved_env, saved_flag = os.environ.get(LOCAL_RAY_SWITCH), constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_RAY_SWITCH] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOCAL_RAY_SWITCH, None)
        else:
            os.environ[LOCAL_RAY_SWITCH] = saved_env


#: how this project installs Ray: its optional extra, from the checkout (``make setup-test`` installs it too)
RAY_INSTALL = "pip install -e '.[ray]' in the checkout (or make setup-test)"


def require_ray() -> Any:
    """The ``ray`` module, or one :class:`UsageError` saying how to install it (checked before a sweep
    writes anything)."""
    try:
        import ray  # the optional extra: only a Ray sweep needs it
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


class RayBackend:
    """The same units as Ray tasks (module docstring)."""

    name = "ray"

    def __init__(self, workers: int | None, threads: int, address: str | None):
        ray = require_ray()
        self.ray, self.threads = ray, threads
        self.owns = not ray.is_initialized()
        if self.owns:
            env = _test_hooks()
            init = functools.partial(
                ray.init,
                runtime_env={"env_vars": env} if env else None,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=True,
            )
            try:
                if address:
                    init(address=address)
                else:
                    with _loopback_only(ray):
                        init(num_cpus=(workers or default_workers() // threads or 1) * threads, include_dashboard=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < threads:
            raise UsageError(f"--threads={threads} is out of range: the Ray cluster has {cpus} CPUs")
        self.workers = workers or max(1, cpus // threads)
        self.remote = ray.remote(_ray_execute).options(num_cpus=threads, max_retries=0)
        self.busy: dict[Any, Path] = {}  # ObjectRef -> run_dir

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

    def submit(self, unit: Unit, run_dir: Path) -> Any:
        ref = self.remote.remote(unit, _existing_files(run_dir), self.threads)
        self.busy[ref] = run_dir
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, Any]]:
        ray = self.ray
        done, _ = ray.wait(list(self.busy), num_returns=1, timeout=timeout)
        out: list[tuple[Any, Any]] = []
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
