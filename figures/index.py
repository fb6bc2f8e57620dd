"""The index of a figures build: ``index.md`` and ``index.html`` with a verdict sentence computed from the figures'
reports, the report table (statement, section, bound, measured, ratio, verdict, figure), then every figure with its
caption, or the note saying how to make it. :mod:`figures.build` makes the :class:`Entry` list it reads."""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from perfedavg.runs.rundir import atomic_write_text


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
