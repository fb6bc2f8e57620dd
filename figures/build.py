r"""Regenerate figures and tables from saved runs (running what is missing), then the index.

:data:`FIGURES` lists the figure modules in index order; each exposes ``NAME``, ``TITLE``,
``run(root, level)`` (make sure its results exist under ``root``, through the normal
runners, reusing finished runs) and ``draw(root, out) -> {"files", "caption"}`` (read
saved results only).  ``EMPIRICAL = True`` marks the ones that need MNIST / CIFAR-10:
at ``--quick`` they are drawn only from results already saved, or when named.
"""

from __future__ import annotations

import html
import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from tqdm import tqdm

from perfedavg.errors import UsageError
from perfedavg.runs.rundir import atomic_write_text

from .store import LEVELS, Skip

#: figure name -> module, in index order
FIGURES = {
    "flagship": "figures.fig1_flagship",
    "heterogeneity": "figures.fig2_heterogeneity",
    "floors": "figures.fig3_floors",
    "hf_delta": "figures.fig4_hf_delta",
    "table1": "figures.fig5_table1",
    "mnist_bound": "figures.fig6_mnist_bound",
}


@dataclass
class Entry:
    """One figure's outcome: files and caption, or the note saying why it was skipped."""

    name: str
    title: str
    files: list[Path] = field(default_factory=list)
    caption: str = ""
    note: str = ""
    seconds: float = 0.0
    table_markdown: str = ""


def module(name: str) -> ModuleType:
    """The module that makes figure ``name``."""
    if name not in FIGURES:
        raise UsageError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)}")
    return importlib.import_module(FIGURES[name])


def build(names, out: str | Path, runs: str | Path, level: str = "quick", progress: bool = True) -> list[Entry]:
    """Run what is missing and draw ``names`` (all when empty) into ``out``; write the index."""
    if level not in LEVELS:
        raise UsageError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    names = list(names) or list(FIGURES)
    named = set(names) if names != list(FIGURES) else set()
    mods = [module(n) for n in names]
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("PERFEDAVG_FIGURE_THREADS", "1")))  # tiny tensors: threads only contend
    entries = []
    try:
        for name, mod in tqdm(list(zip(names, mods)), desc="figures", unit="figure", disable=not progress):
            started = time.perf_counter()
            entry = Entry(name, mod.TITLE)
            try:
                empirical = getattr(mod, "EMPIRICAL", False)
                if not (empirical and level == "quick" and name not in named):
                    mod.run(runs, level)
                result = mod.draw(runs, out)
                entry.files = [Path(p) for p in result["files"]]
                entry.caption = result["caption"]
                entry.table_markdown = result.get("table_markdown", "")
            except Skip as exc:
                entry.note = str(exc)
                if getattr(mod, "EMPIRICAL", False) and level == "quick" and name not in named:
                    entry.note += (
                        f" (--quick draws it only from saved results; name it to run it: `perfedavg figures {name}`)"
                    )
            entry.seconds = time.perf_counter() - started
            entries.append(entry)
    finally:
        torch.set_num_threads(threads)
    write_index(entries, out, runs, level)
    return entries


def write_index(entries: list[Entry], out: Path, runs: Path, level: str) -> tuple[Path, Path]:
    """``index.md`` and ``index.html`` in ``out``: every figure with its caption, or the skip note."""
    head = (
        "Per-FedAvg: figures regenerated from saved runs",
        f"Level: {level}. Runs read from `{runs}`. Provenance in legends: [derived] = derived in "
        "theory/DERIVATIONS.md (an explicit upper bound), [recalled] = the paper's statement as recalled "
        "(shape with O(1) = 1; not an upper bound).",
    )
    md = [f"# {head[0]}", "", head[1], ""]
    body = []
    for i, e in enumerate(entries, 1):
        md += [f"## {i}. {e.title}", ""]
        body.append(f"<section><h2>{i}. {html.escape(e.title)}</h2>")
        if e.note:
            md += [f"**Skipped:** {e.note}", ""]
            body.append(f"<p class='skip'><b>Skipped:</b> {html.escape(e.note)}</p></section>")
            continue
        pngs = [f for f in e.files if f.suffix == ".png"]
        for f in pngs:
            rel = os.path.relpath(f, out)
            md += [f"![{e.title}]({rel})", ""]
            body.append(f"<figure><img src='{html.escape(rel)}' alt='{html.escape(e.title)}'>")
        if e.table_markdown:
            md += [e.table_markdown, ""]
        md += [e.caption, ""]
        others = [os.path.relpath(f, out) for f in e.files if f.suffix != ".png"]
        if others:
            md += ["Files: " + ", ".join(f"[{o}]({o})" for o in others), ""]
        body.append(f"<figcaption>{html.escape(e.caption)}</figcaption></figure>")
        if e.table_markdown:
            body.append(_md_tables_to_html(e.table_markdown))
        if others:
            links = ", ".join(f"<a href='{html.escape(o)}'>{html.escape(o)}</a>" for o in others)
            body.append(f"<p>Files: {links}</p>")
        body.append("</section>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(head[0]) + "</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.45}"
        "img{max-width:100%;border:1px solid #ddd}figcaption{margin:.4em 0 1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px}"
        ".skip{color:#a33}</style></head><body>"
        f"<h1>{html.escape(head[0])}</h1><p>{html.escape(head[1])}</p>" + "".join(body) + "</body></html>\n"
    )
    atomic_write_text(out / "index.md", "\n".join(md) + "\n")
    atomic_write_text(out / "index.html", page)
    return out / "index.md", out / "index.html"


def _md_tables_to_html(md: str) -> str:
    """The pipe tables and headings of a Markdown snippet as HTML (what Table 1's Markdown holds)."""
    parts: list[str] = []
    rows: list[str] = []

    def flush() -> None:
        if rows:
            cells = [
                [c.strip() for c in r.strip().strip("|").split("|")] for r in rows if not set(r.strip()) <= set("|-")
            ]
            if cells:
                parts.append(
                    "<table><tr>"
                    + "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
                    + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
                    + "</table>"
                )
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            rows.append(line)
            continue
        flush()
        if line.startswith("#"):
            parts.append(f"<h3>{html.escape(line.lstrip('#').strip())}</h3>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "".join(parts)
