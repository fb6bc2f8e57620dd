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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from tqdm import tqdm

from perfedavg.errors import UsageError
from perfedavg.runs.rundir import atomic_write_text

from . import pool
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
    details: str = ""
    headline: str = ""
    report: list[dict] = field(default_factory=list)


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


#: the symbolic checks of the derived statements are a command of their own; the index says it was not run
NOT_RUN_CHECK = "perfedavg check"


def verdict_sentence(entries: list[Entry]) -> str:
    """The index's first sentence, computed from the figures' reports: how many bounds hold and how tight they
    are, how the slope rows came out, who wins, and what was not run."""
    from .style import plural, tightness_span

    rows = [r for e in entries for r in e.report]
    bounds = [r for r in rows if r["kind"] == "bound" and r.get("ratio")]
    rates = [r for r in rows if r["kind"] == "rate"]
    parts = []
    if bounds:
        held = sum(r["verdict"] == "holds" for r in bounds)
        # an a posteriori bound (constants measured on the run it bounds) is reported apart: its near-1 ratio says
        # the proof loses little there, not that the worst-case bounds are that tight
        prior = [r for r in bounds if not r.get("a_posteriori")] or bounds
        low = min(r["ratio"][0] for r in prior)
        high = max(r["ratio"][1] for r in prior)
        text = f"{held} of {len(bounds)} bounds drawn hold, {tightness_span(low, high)} above the measurement"
        after = [r for r in bounds if r.get("a_posteriori")]
        if after and len(after) < len(bounds):
            span = tightness_span(min(r["ratio"][0] for r in after), max(r["ratio"][1] for r in after))
            text += f" (the a posteriori data-dependent bound: {span})"
        parts.append(text)
    if rates:
        verdicts = [r["verdict"] for r in rates]
        passed = sum(v.startswith("PASS") for v in verdicts)
        within = sum(v.startswith("PASS only") for v in verdicts)
        failed = sum(v == "FAIL" for v in verdicts)
        other = len(verdicts) - passed - failed
        text = f"{passed} of {len(rates)} slope rows pass"
        if within:
            text += f" ({within} only within the tolerance)"
        text += f", {failed} fail"
        if other:
            text += f", {other} inconclusive"
        parts.append(text)
    parts += [r["note"] for r in rows if r["kind"] == "comparison" and r.get("note")]
    skipped = [e.name for e in entries if e.note]
    missing = f"the symbolic checks of the derived statements ({NOT_RUN_CHECK})"
    if skipped:
        missing += f" and {len(skipped)} figure{'s' if len(skipped) > 1 else ''} ({', '.join(skipped)}: see below)"
    if not parts:
        drawn = [e.name for e in entries if not e.note]
        if not drawn:
            return f"No figure was drawn; not run here: {missing}."
        return f"{plural(len(drawn), 'figure')} drawn ({', '.join(drawn)}: see below); not run here: {missing}."
    return "; ".join(parts) + f". Not run here: {missing}."


def _cell(value) -> str:
    """A number of the report table (a bound, a measurement): :func:`figures.style.number`, or a dash."""
    from .style import number

    return "—" if value is None else number(float(value))


def report_rows(entries: list[Entry]) -> list[list[str]]:
    """The report table: statement, paper section, bound, measured, bound/measured, verdict, figure name."""
    from .style import tightness_span

    table = []
    for e in entries:
        for r in e.report:
            if r["kind"] == "rate":
                bound, measured, ratio = f"slope {r['bound']:+.2f}", f"slope {r['measured']:+.2f}", "—"
            elif r["kind"] == "comparison":
                bound, measured, ratio = "—", r.get("note", _cell(r["measured"])), "—"
            else:
                bound, measured = _cell(r["bound"]), _cell(r["measured"])
                ratio = tightness_span(*r["ratio"]) if r.get("ratio") else "—"
            table.append([r["statement"], r["section"], bound, measured, ratio, r["verdict"], e.name])
    return table


HEADER = ["Statement", "docs/paper.md", "Bound", "Measured", "Bound / measured", "Verdict", "Figure"]


def html_text(text: str) -> str:
    """Plain caption text as HTML: escaped, `code` as <code>, X_Y and X_{YZ} as subscripts (no raw notation)."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"_\{([^}]*)\}", r"<sub>\1</sub>", out)
    # a subscript follows a one-letter symbol (w_k, Φ_K, σ_G, w*_α), never a word (a figure's name, mnist_bound)
    return re.sub(r"(?<![A-Za-z_])([A-Za-zα-ωΓΦ∇φ]\*?)_([A-Za-z0-9α-ωΓΦ∞]+)", r"\1<sub>\2</sub>", out)


def write_index(entries: list[Entry], out: Path, runs: Path, level: str) -> tuple[Path, Path]:
    """``index.md`` and ``index.html`` in ``out``: a verdict sentence and the report table at the top, then
    every figure with its short caption (details folded), or the note saying how to make it."""
    title = "Per-FedAvg: what the theory predicts, what was measured"
    verdict = verdict_sentence(entries)
    legend = (
        f"Level: {level}; runs read from {runs}. In legends, [derived] marks an explicit upper bound derived in "
        "theory/DERIVATIONS.md and [recalled] the paper's statement as recalled (its shape with O(1) = 1; not an "
        "upper bound)."
    )
    table = report_rows(entries)
    md = [f"# {title}", "", f"**{verdict}**", ""]
    if table:
        md += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        md += ["| " + " | ".join([*r[:-1], f"[{r[-1]}](#{r[-1]})"]) + " |" for r in table]
        md.append("")
    md += [legend, ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='verdict'>{html_text(verdict)}</p>"]
    if table:
        body.append("<table class='report'><tr>" + "".join(f"<th>{h}</th>" for h in HEADER) + "</tr>")
        for r in table:
            cls = "bad" if r[5] in ("VIOLATED", "FAIL", "FAILS") else "good" if r[5] in ("holds", "PASS") else "mid"
            cells = "".join(f"<td>{html_text(c)}</td>" for c in r[:5])
            body.append(
                f"<tr>{cells}<td class='{cls}'>{html.escape(r[5])}</td>"
                f"<td><a href='#{html.escape(r[6])}'>{html.escape(r[6])}</a></td></tr>"
            )
        body.append("</table>")
    body.append(f"<p class='legend'>{html_text(legend)}</p>")
    for i, e in enumerate(entries, 1):
        anchor = html.escape(e.name)
        md += [f"## {i}. {e.title} {{#{e.name}}}", ""]
        body.append(f"<section id='{anchor}'><h2>{i}. {html_text(e.title)}</h2>")
        if e.note:
            md += [f"**Not drawn:** {e.note}", ""]
            body.append(f"<p class='skip'><b>Not drawn:</b> {html_text(e.note)}</p></section>")
            continue
        pngs = [f for f in e.files if f.suffix == ".png" and not f.stem.endswith("-slide")]
        for f in pngs:
            rel = os.path.relpath(f, out)
            md += [f"![{e.title}]({rel})", ""]
            body.append(f"<figure><img src='{html.escape(rel)}' alt='{html.escape(e.title)}'>")
        if e.table_markdown:
            md += [e.table_markdown, ""]
        md += [e.caption, ""]
        if e.details:
            md += ["<details><summary>Details</summary>", "", e.details, "", "</details>", ""]
        others = [os.path.relpath(f, out) for f in e.files if f not in pngs]
        if others:
            md += ["Files: " + ", ".join(f"[{o}]({o})" for o in others), ""]
        body.append(f"<figcaption>{html_text(e.caption)}</figcaption></figure>")
        if e.details:
            body.append(f"<details><summary>Details</summary><p>{html_text(e.details)}</p></details>")
        if e.table_markdown:
            body.append(_md_tables_to_html(e.table_markdown))
        if others:
            links = ", ".join(f"<a href='{html.escape(o)}'>{html.escape(o)}</a>" for o in others)
            body.append(f"<p class='files'>Files: {links}</p>")
        body.append("</section>")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>"
        + html.escape(title)
        + "</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.45;"
        "overflow-wrap:break-word}"
        "img{max-width:100%;height:auto;border:1px solid #ddd}figure{margin:1em 0}"
        "figcaption{margin:.4em 0 .6em;color:#222}"
        ".verdict{font-size:1.15em;font-weight:bold}.legend,.files{color:#555;font-size:.9em}"
        "table{border-collapse:collapse;margin:.5em 0;max-width:100%}td,th{border:1px solid #bbb;padding:3px 6px;"
        "vertical-align:top}th{background:#f3f3f3}.report td:nth-child(n+2){white-space:nowrap}"
        ".report td:nth-child(4){white-space:normal}.good{color:#075}.bad{color:#b00;font-weight:bold}.mid{color:#850}"
        "details{margin:.3em 0 1.5em}summary{cursor:pointer;color:#036}.skip{color:#a33}"
        "code{background:#f4f4f4;padding:0 .2em}</style></head><body>" + "".join(body) + "</body></html>\n"
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
