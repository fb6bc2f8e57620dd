r"""Regenerate figures and tables from saved runs (running what is missing), then the index.

:data:`FIGURES` lists the figure modules in index order; each exposes ``NAME``, ``TITLE``,
``run(root, level)`` (make sure its results exist under ``root``, through the normal
runners, reusing finished runs) and ``draw(root, out) -> {"files", "caption"}`` (read
saved results only).  ``EMPIRICAL = True`` marks the ones that need MNIST / CIFAR-10:
at ``--quick`` they are drawn only from results already saved, or when named.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from types import ModuleType

import torch
from tqdm import tqdm

from perfedavg.errors import UsageError

from . import pool
from .index import Entry, write_index
from .store import LEVELS, Skip

#: figure name -> module, in index order
FIGURES = {
    "flagship": "figures.fig1_flagship",
    "heterogeneity": "figures.fig2_heterogeneity",
    "floors": "figures.fig3_floors",
    "drift": "figures.fig3_drift",
    "hf_delta": "figures.fig4_hf_delta",
    "table1": "figures.fig5_table1",
    "mnist_bound": "figures.fig6_mnist_bound",
    "new_users": "figures.fig7_new_users",
    "personalization": "figures.fig8_personalization",
}


def known(name: str) -> str:
    """``name`` if it is a figure's name, else a usage error listing them."""
    if name not in FIGURES:
        raise UsageError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)}")
    return name


def module(name: str) -> ModuleType:
    """The module that makes figure ``name``."""
    return importlib.import_module(FIGURES[known(name)])


def build(
    names, out: str | Path, runs: str | Path, level: str = "quick", progress: bool = True, jobs: int = 1
) -> list[Entry]:
    """Run what is missing and draw ``names`` (all when empty) into ``out``; write the index.  ``jobs`` > 1: the
    figures' runs and drawings go to that many worker processes (:mod:`figures.pool`); the files are the same."""
    if level not in LEVELS:
        raise UsageError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    names = [known(n) for n in names] or list(FIGURES)
    named = set(names) if names != list(FIGURES) else set()
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    figure_threads = int(os.environ.get("PERFEDAVG_FIGURE_THREADS", "1"))  # tiny tensors: threads only contend
    torch.set_num_threads(figure_threads)
    try:
        if jobs > 1:
            # the workers start (importing the figure modules) while this process imports them too
            preload = ["figures.build", *(FIGURES[n] for n in names)]
            with pool.Pool(jobs, figure_threads, preload) as workers, pool.activate(workers):
                mods = [module(n) for n in names]
                entries = _build_side_by_side(names, mods, out, runs, level, named, workers, progress)
        else:
            mods = [module(n) for n in names]
            entries = [
                _build_one(name, mod, out, runs, level, named)
                for name, mod in tqdm(list(zip(names, mods)), desc="figures", unit="figure", disable=not progress)
            ]
    finally:
        torch.set_num_threads(threads)
    write_index(entries, out, runs, level)
    return entries


def _runs_here(mod: ModuleType, name: str, level: str, named: set[str]) -> bool:
    """Whether the build runs figure ``name``'s experiments (at ``--quick`` an empirical figure is drawn only from
    saved results, unless named)."""
    return not (getattr(mod, "EMPIRICAL", False) and level == "quick" and name not in named)


def _skip_note(exc: Skip, mod: ModuleType, name: str, level: str, named: set[str]) -> str:
    note = str(exc)
    if not _runs_here(mod, name, level, named):
        note += f" (--quick draws it only from saved results; to make it: `perfedavg figures {name}`)"
    return note


def _take(entry: Entry, result: dict) -> None:
    """Copy what a figure's ``draw`` returned into its entry."""
    entry.files = [Path(p) for p in result["files"]]
    entry.caption = result["caption"]
    entry.table_markdown = result.get("table_markdown", "")
    entry.details = result.get("details", "")
    entry.headline = result.get("headline", "")
    entry.report = list(result.get("report", []))


def _build_one(name: str, mod: ModuleType, out: Path, runs: Path, level: str, named: set[str]) -> Entry:
    """Figure ``name`` in this process: its runs (what is missing), then its drawing."""
    started = time.perf_counter()
    entry = Entry(name, mod.TITLE)
    try:
        if _runs_here(mod, name, level, named):
            mod.run(runs, level)
        _take(entry, mod.draw(runs, out))
    except Skip as exc:
        entry.note = _skip_note(exc, mod, name, level, named)
    entry.seconds = time.perf_counter() - started
    return entry


def _draw(module_name: str, runs: Path, out: Path) -> dict:
    """A figure's ``draw`` in a worker process."""
    return importlib.import_module(module_name).draw(runs, out)


def _run_and_draw(module_name: str, runs: Path, out: Path, level: str) -> dict:
    """A figure's ``run`` (which collects what its pieces saved) and ``draw``, in a worker process."""
    mod = importlib.import_module(module_name)
    mod.run(runs, level)
    return mod.draw(runs, out)


def _build_side_by_side(
    names: list[str],
    mods: list[ModuleType],
    out: Path,
    runs: Path,
    level: str,
    named: set[str],
    workers: pool.Pool,
    progress: bool,
) -> list[Entry]:
    """The figures with ``workers``.  A figure with independent pieces of work (its ``tasks``: runs that save
    their results) has them all start at once, then its ``run`` and drawing follow in a worker; the others'
    ``run`` is called here in index order (the rate table's hands its sweeps to the workers, ahead of every other
    piece), then their drawing goes to a worker.  Entries in index order; ``seconds`` is the time spent on each
    figure, in whichever process."""
    entries = {name: Entry(name, mod.TITLE) for name, mod in zip(names, mods)}
    bar = tqdm(total=len(names), desc="figures", unit="figure", disable=not progress)
    pieces: dict[str, list] = {}
    drawing = {}
    for name, mod in zip(names, mods):
        if hasattr(mod, "tasks") and _runs_here(mod, name, level, named):
            pieces[name] = [workers.submit(fn, *args) for fn, args in mod.tasks(runs, level)]
            drawing[name] = workers.after(pieces[name], _run_and_draw, FIGURES[name], runs, out, level)
            drawing[name].add_done_callback(lambda _: bar.update(1))
    for name, mod in zip(names, mods):
        if name in drawing:
            continue
        started = time.perf_counter()
        try:
            if _runs_here(mod, name, level, named):
                mod.run(runs, level)
        except Skip as exc:
            entries[name].note = _skip_note(exc, mod, name, level, named)
            bar.update(1)
            continue
        finally:
            entries[name].seconds += time.perf_counter() - started
        drawing[name] = workers.submit(_draw, FIGURES[name], runs, out)
        drawing[name].add_done_callback(lambda _: bar.update(1))
    for name, mod in zip(names, mods):
        if name not in drawing:
            continue
        entry = entries[name]
        try:
            _take(entry, drawing[name].result())
        except Skip as exc:
            entry.note = _skip_note(exc, mod, name, level, named)
        entry.seconds += getattr(drawing[name], "seconds", 0.0) + sum(
            getattr(p, "seconds", 0.0) for p in pieces.get(name, [])
        )
    bar.close()
    return [entries[n] for n in names]
