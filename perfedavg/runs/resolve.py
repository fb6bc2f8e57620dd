"""A run config resolved against its task, checked before anything is written.

:func:`resolve` fills in every task default and builds the task, checking each task option's
type and range, the device, and the options whose range depends on the task; a task too large
for this machine, or a data set that is missing, is one :class:`UsageError` in ``perfedavg
run``'s own terms.  No torch at import (it is imported when a config is resolved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from perfedavg.engine.config import RunConfig, check_value_type
from perfedavg.errors import UsageError
from perfedavg.runs import registry
from perfedavg.runs.config import checked_number

if TYPE_CHECKING:
    from perfedavg.engine.task import Task


def resolve(cfg: RunConfig) -> tuple[RunConfig, Task]:
    """The config with every task default filled in, and the task it describes (validated:
    task option types and ranges, the device, and the ranges that depend on the task)."""
    import torch

    from perfedavg.engine.rounds import DTYPES, check_config_against_task

    cfg = cfg.replace(task=_typed_task_table(cfg.task))
    cfg = cfg.replace(task=registry.resolved_task_table(cfg.task))
    device = check_device(cfg.device, torch)
    with _task_construction(cfg.task):
        task = registry.build_task(cfg.task)  # through the module: tests stand in a failing builder
        task = task.to(DTYPES[cfg.dtype], device)
    check_config_against_task(cfg, task)
    return cfg, task


#: what torch and numpy say when a tensor cannot be allocated (RuntimeError / ValueError text)
_ALLOCATION_FAILURES = (
    "can't allocate memory",
    "out of memory",
    "storage size calculation overflowed",
    "negative dimension",
    "array is too big",
    "maximum allowed dimension",
)


class _task_construction:
    """The engine's safety net around building a task (the tasks also cap their sizes up front):

    * a tensor too large for this machine (``MemoryError``, torch's "can't allocate memory",
      a size that overflows) becomes one :class:`UsageError` naming the task's size options;
    * a data set's "how to provide it" hint names ``run``'s own options
      (``task.data_dir`` / ``task.download``) instead of the ``perfedavg data`` flags.

    Raised before anything is written (called from :func:`resolve`)."""

    def __init__(self, table: Mapping[str, Any]):
        self.table = table

    def __enter__(self) -> _task_construction:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, UsageError):
            raise UsageError(_in_run_terms(str(exc))) from None
        text = str(exc)
        if not is_allocation_failure(exc):
            return False
        sizes = ", ".join(
            f"task.{k}={v}" for k, v in self.table.items() if isinstance(v, int) and not isinstance(v, bool)
        )
        detail = " ".join(text.split())
        detail = detail[detail.find("you tried") :] if "you tried" in detail else (detail[:120] or "no detail")
        raise UsageError(
            f"task {self.table['name']!r} is too large for this machine ({sizes}): building it failed with "
            f"{type(exc).__name__} ({detail}); choose smaller task sizes"
        ) from None


def is_allocation_failure(exc: BaseException) -> bool:
    """``exc`` says a tensor or array could not be allocated (:data:`_ALLOCATION_FAILURES`)."""
    return isinstance(exc, (MemoryError, OverflowError)) or (
        isinstance(exc, (RuntimeError, ValueError)) and any(p in str(exc).lower() for p in _ALLOCATION_FAILURES)
    )


#: the ``perfedavg data partition`` flags a split's errors name, and the ``perfedavg run`` words for them
#: (the run derives the test split's a from task.a, so it has no option of its own)
_PARTITION_TERMS = (
    ("lower --a / --a-test or --clients", "lower task.a or task.n_clients"),
    ("--a-test must be", "the test split's a (derived from task.a and the test set's size) must be"),
    ("--a must be", "task.a must be"),
    ("--clients must be", "task.n_clients must be"),
    ("for --scheme paper", "for task.partition = paper"),
)


def _in_run_terms(message: str) -> str:
    """A data set's error message with the ``perfedavg data`` / ``reproduce`` flags replaced by the
    ``perfedavg run`` options that do the same (``--set task.data_dir=DIR``, ``--set task.download=true``,
    ``task.a``, ...)."""
    for flag, option in _PARTITION_TERMS:
        message = message.replace(flag, option)
    message = message.replace("with --data-dir DIR", "with --set task.data_dir=DIR")
    message = message.replace("from --data-dir", "from task.data_dir")
    return message.replace("with --download", "with --set task.download=true")


def _typed_task_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[task]`` with each option checked against the type its options dataclass declares."""
    typed = dict(table)
    declared = {f.name: f for f in fields(registry.task_spec(typed["name"]).options)}
    for key, value in typed.items():
        f = declared.get(key)
        if f is None:  # unknown keys are reported by the task registry
            continue
        expected = {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type))
        if expected is None:  # other types are the task's to check
            continue
        doc = f.metadata.get("doc", "")
        if expected in (int, float) and isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"task.{key}={value} is out of range: must be a finite number ({doc})")
        if expected in (int, float):  # the run options' rule: 1e3 is an integer, true is not a number
            typed[key] = checked_number(f"task.{key}", value, expected.__name__, doc)
        else:
            typed[key] = check_value_type(f"task.{key}", value, expected, doc)
    return typed


def check_device(name: str, torch: Any, option: str = "device") -> Any:
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
