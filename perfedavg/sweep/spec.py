r"""A sweep definition: one base run config crossed with axes and seeds, expanded into named units.

A sweep file is a run config (top-level options plus a ``[task]`` table, exactly as
``perfedavg run --config`` reads it: the *base*) plus a ``[sweep]`` table saying what
varies::

    algorithm = "hf"              # the base config: any run option ...
    K = 100
    [task]                        # ... and the task table
    name = "softmax"

    [sweep]
    seeds = 3                     # seeds 0, 1, 2 (or a list: seeds = [0, 7]); innermost axis
    [sweep.grid]                  # axes crossed (Cartesian product), first axis slowest
    alpha = [0.01, 0.05]
    "task.h" = [0.0, 0.5, 1.0]    # a task option: quoted dotted key (or [sweep.grid.task])
    [[sweep.zip]]                 # a group of equally long lists taken together,
    beta = [0.1, 0.2]             # crossed with the grid and with the other groups
    tau = [5, 10]

The units of work are the product grid x zip groups x seeds, in that order; each unit
is one :class:`perfedavg.engine.config.RunConfig` run by :func:`perfedavg.runs.runner.run_config`
into ``DIR/runs/<name>``, where ``<name>`` (:func:`perfedavg.runs.names.sweep_run_name`) is the varied values written
``key=value,key=value`` in axis order (Hydra's multirun ``override_dirname``
convention), e.g. ``alpha=0.01,task.h=0.5,beta=0.1,tau=5,seed=0``: stable (it depends
on the varied values only, never on the order of execution or the backend), so
re-running the sweep finds its runs again.  The run directories have the layout of
``perfedavg run`` (``config.toml``, ``metrics.jsonl``, ``summary.json``,
``checkpoint.pt``), so figures and checks do not care where a run ran.

This module is the definition only (parsing, expansion, naming): no torch, no command line;
:mod:`perfedavg.sweep.scheduler` runs the units.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from perfedavg.engine.config import RunConfig
from perfedavg.errors import UsageError
from perfedavg.runs.config import build_config, parse_override, read_toml, toml_value
from perfedavg.runs.names import sweep_run_name
from perfedavg.runs.registry import resolved_task_table

#: files of a sweep directory (next to ``runs/``)
SWEEP_COPY, SWEEP_SUMMARY_JSON, SWEEP_SUMMARY_MD, RUNS = "sweep.toml", "sweep_summary.json", "sweep_summary.md", "runs"

_SWEEP_KEYS = ("seeds", "grid", "zip")


@dataclass(frozen=True)
class Unit:
    """One unit of work: a run of ``config`` (a :meth:`RunConfig.to_dict`) into ``runs/<name>``."""

    name: str = field(metadata={"doc": "run directory name, derived from the varied values"})
    varied: Mapping[str, Any] = field(metadata={"doc": "the varied values, axis -> value, in axis order"})
    config: Mapping[str, Any] = field(metadata={"doc": "the full run config (RunConfig.to_dict())"})


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file: the base config and the axes (see the module docstring)."""

    base: Mapping[str, Any] = field(metadata={"doc": "the base run config (parsed TOML without [sweep])"})
    grid: tuple = field(metadata={"doc": "crossed axes: ((key, (values...)), ...), first slowest"})
    zips: tuple = field(
        metadata={"doc": "zip groups: (((key, (values...)), ...), ...), lists of one group have one length"}
    )
    seeds: tuple | None = field(metadata={"doc": "the seeds (innermost axis), or None to keep the base seed"})

    @property
    def axes(self) -> list[str]:
        keys = [k for k, _ in self.grid] + [k for group in self.zips for k, _ in group]
        return keys + (["seed"] if self.seeds is not None else [])

    def n_units(self) -> int:
        n = math.prod(len(v) for _, v in self.grid)
        n *= math.prod(len(group[0][1]) for group in self.zips)
        return n * (len(self.seeds) if self.seeds is not None else 1)


# -- parsing --------------------------------------------------------------------------------
def _flatten(table: Mapping[str, Any], where: str) -> list[tuple[str, tuple]]:
    """Axis table -> [(key, values)], with ``task = {h = [...]}`` read as ``task.h``."""
    out: list[tuple[str, Any]] = []
    for key, values in table.items():
        if key == "task" and isinstance(values, Mapping):
            out.extend((f"task.{k}", v) for k, v in values.items())
        else:
            out.append((key, values))
    for key, values in out:
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}.{key} must be a non-empty list of values (e.g. {key} = [0.01, 0.05])")
        if any(isinstance(v, (dict, list)) for v in values):
            raise UsageError(f"{where}.{key} must list plain values (numbers, strings, booleans), not tables or lists")
    return [(k, tuple(v)) for k, v in out]


def parse_sweep(data: Mapping[str, Any]) -> SweepSpec:
    """A parsed TOML dict -> :class:`SweepSpec`; every problem is one :class:`UsageError`."""
    data = dict(data)
    table = data.pop("sweep", None)
    if not isinstance(table, Mapping):
        raise UsageError("the sweep file needs a [sweep] table (with seeds, [sweep.grid] and/or [[sweep.zip]])")
    unknown = sorted(set(table) - set(_SWEEP_KEYS))
    if unknown:
        raise UsageError(f"unknown key sweep.{unknown[0]}; the [sweep] table takes {', '.join(_SWEEP_KEYS)}")

    grid = _flatten(table.get("grid", {}), "sweep.grid") if isinstance(table.get("grid", {}), Mapping) else None
    if grid is None:
        raise UsageError("sweep.grid must be a table of lists ([sweep.grid] alpha = [0.01, 0.05])")
    raw_zips = table.get("zip", [])
    if isinstance(raw_zips, Mapping):
        raw_zips = [raw_zips]
    if not isinstance(raw_zips, list) or not all(isinstance(z, Mapping) for z in raw_zips):
        raise UsageError("sweep.zip must be an array of tables ([[sweep.zip]] beta = [0.1, 0.2] tau = [5, 10])")
    zips = []
    for i, raw in enumerate(raw_zips):
        group = _flatten(raw, f"sweep.zip[{i}]")
        if not group:
            raise UsageError(f"sweep.zip[{i}] is empty: give it at least one list")
        lengths = {k: len(v) for k, v in group}
        if len(set(lengths.values())) > 1:
            raise UsageError(f"sweep.zip[{i}] lists must have one length to be zipped; got {lengths}")
        zips.append(tuple(group))

    seeds = table.get("seeds")
    if seeds is not None:
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise UsageError(f"sweep.seeds={seeds} is out of range: a count must be >= 1 (or give a list)")
            seeds = tuple(range(seeds))
        elif (
            isinstance(seeds, list)
            and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        ):
            if len(set(seeds)) != len(seeds):
                raise UsageError(f"sweep.seeds={seeds} repeats a seed")
            seeds = tuple(seeds)
        else:
            raise UsageError(f"sweep.seeds={seeds!r} must be a count >= 1 or a non-empty list of integers >= 0")

    keys = [k for k, _ in grid] + [k for group in zips for k, _ in group] + (["seed"] if seeds is not None else [])
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        where = "sweep.seeds and an axis" if dup == "seed" and seeds is not None else "two axes"
        raise UsageError(f"{dup} is varied by {where}: vary each option in one place only")
    known = {f.name for f in fields(RunConfig)} - {"task"}
    for key in keys:
        if key == "task.name":
            raise UsageError("task.name cannot be an axis: a sweep runs one task (write one sweep per task)")
        if not key.startswith("task.") and key not in known:
            raise UsageError(f"unknown axis {key!r}; axes are run options ({', '.join(sorted(known))}) or task.OPTION")
    return SweepSpec(base=data, grid=tuple(grid), zips=tuple(zips), seeds=seeds)


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read a sweep file; ``overrides`` (``key=value``, as ``--set``) change the base config."""
    data = read_toml(path)
    base_task = dict(data.get("task", {}) or {})
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("task."):
            base_task[key[len("task.") :]] = value
        else:
            data[key] = value
    if base_task:
        data["task"] = base_task
    return parse_sweep(data)


# -- expansion and names ------------------------------------------------------------------
def expand(spec: SweepSpec, resolve_task: bool = True) -> list[Unit]:
    """The units of ``spec`` in order (grid, then zip groups, then seeds), each config
    validated (and, with ``resolve_task``, with every task default filled in, as the
    run saves it) *before* anything runs."""
    grid_choices = [[(k, v) for v in values] for k, values in spec.grid]
    zip_choices = [
        [tuple((k, values[i]) for k, values in group) for i in range(len(group[0][1]))] for group in spec.zips
    ]
    seed_choices = [[("seed", s) for s in spec.seeds]] if spec.seeds is not None else []
    units: list[Unit] = []
    names: dict[str, dict[str, Any]] = {}
    resolved_tasks: dict = {}
    for combo in itertools.product(*grid_choices, *zip_choices, *seed_choices):
        varied: dict[str, Any] = {}
        for item in combo:
            for k, v in item if isinstance(item[0], tuple) else (item,):
                varied[k] = v
        overrides = [f"{k}={toml_value(v)}" for k, v in varied.items()]
        name = sweep_run_name(varied)
        try:
            cfg = build_config(spec.base, overrides)
        except UsageError as exc:
            raise UsageError(f"sweep run {name}: {exc}") from None
        if resolve_task:
            key = repr(sorted(cfg.task.items()))
            if key not in resolved_tasks:
                try:
                    resolved_tasks[key] = resolved_task_table(cfg.task)
                except UsageError as exc:
                    raise UsageError(f"sweep run {name}: {exc}") from None
            cfg = cfg.replace(task=resolved_tasks[key])
        if name in names:
            raise UsageError(
                f"sweep runs {names[name]} and {varied} get the same directory name {name!r}; make the values distinct"
            )
        names[name] = varied
        units.append(Unit(name=name, varied=varied, config=cfg.to_dict()))
    return units
