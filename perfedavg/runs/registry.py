"""Task registry: ``[task] name = ...`` -> the module that builds it.

A task module exposes a :class:`TaskSpec`: a frozen dataclass of options (one
documented field each, validated in ``__post_init__`` with :class:`UsageError`) and a
``build(options) -> Task`` function.  Modules are imported only when asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from perfedavg.errors import UsageError
from perfedavg.words import did_you_mean

#: task name -> "module:TaskSpec attribute"
TASKS = {
    "softmax": "synthetic.softmax:SPEC",
    "logistic": "synthetic.logistic:SPEC",
    "quadratic": "synthetic.quadratic:SPEC",
    "nonconvex": "synthetic.nonconvex:SPEC",
    "mnist": "empirical.tasks:MNIST",
    "cifar10": "empirical.tasks:CIFAR10",
}

#: task options that had another name, refused with the new one: old name -> the one every task uses now
RENAMED_OPTIONS = {"clients": "n_clients"}


@dataclass(frozen=True)
class TaskSpec:
    """How to build a task: its options dataclass and the builder."""

    options: type
    build: Callable[[Any], Any]
    summary: str = ""


#: tasks registered at run time (:func:`register`, :func:`perfedavg.api.register_task`): name -> spec
REGISTERED: dict[str, TaskSpec] = {}


@dataclass(frozen=True)
class NoOptions:
    """The options of a registered task that declares none."""


def register(name: str, build: Callable[[Any], Any], options: type | None = None, summary: str = "") -> None:
    """Make ``build(options) -> Task`` the task ``name`` in this process (the user's own task)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise UsageError(f"task name {name!r} must be a word (letters, digits, underscores)")
    if name in TASKS:
        raise UsageError(f"task name {name!r} is taken by a built-in task: choose another")
    if options is not None and not dataclasses.is_dataclass(options):
        raise UsageError(f"task {name!r}: its options must be a dataclass, not {options!r}")
    REGISTERED[name] = TaskSpec(options or NoOptions, build, summary)


def task_spec(name: str) -> TaskSpec:
    if name in REGISTERED:
        return REGISTERED[name]
    target = TASKS.get(name)
    if target is None:
        known = sorted({*TASKS, *REGISTERED})
        raise UsageError(f"task.name={name!r} is not one of {', '.join(known)}{did_you_mean(name, known)}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"task {name!r} is not available in this installation ({exc})") from None
    return getattr(module, attr)


def task_options(table: Mapping[str, Any]):
    """The validated options dataclass of ``[task]`` (``name`` plus the task's own keys)."""
    table = dict(table)
    name = table.pop("name")
    spec = task_spec(name)
    known = {f.name for f in fields(spec.options)}
    unknown = sorted(set(table) - known)
    if unknown:
        new = RENAMED_OPTIONS.get(unknown[0])
        if new in known:
            raise UsageError(f"task.{unknown[0]} is now called task.{new}: write task.{new} = {table[unknown[0]]!r}")
        raise UsageError(
            f"unknown option task.{unknown[0]} for task {name!r}{did_you_mean(unknown[0], known)}; "
            f"known: {', '.join(sorted(known))}"
        )
    from perfedavg.runs.config import checked_number  # runs.config imports the engine's config: not at import

    for f in fields(spec.options):
        if f.name in table:
            table[f.name] = checked_number(f"task.{f.name}", table[f.name], str(f.type), f.metadata.get("doc", ""))
    try:
        return spec.options(**table)
    except TypeError as exc:
        raise UsageError(f"task {name!r}: {exc}") from None


def resolved_task_table(table: Mapping[str, Any]) -> dict:
    """``[task]`` with every default filled in (saved with the run)."""
    return {"name": table["name"], **dataclasses.asdict(task_options(table))}


def build_task(table: Mapping[str, Any]):
    """The :class:`perfedavg.engine.task.Task` that ``[task]`` describes, its ``holdout_users`` held out
    (:mod:`perfedavg.runs.holdout`)."""
    from perfedavg.runs.holdout import apply_holdout  # it builds on this module's option_field

    options = task_options(table)
    return apply_holdout(task_spec(table["name"]).build(options), options)


def option_field(doc: str, default):
    """A documented options field (shown by ``--help``)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def check_option(task: str, name: str, value, ok: bool, allowed: str) -> None:
    """Raise a one-line :class:`UsageError` unless ``ok``."""
    if not ok:
        raise UsageError(f"task.{name}={value!r} is out of range for task {task!r}: {allowed}")
