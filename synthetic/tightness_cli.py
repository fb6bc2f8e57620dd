"""``perfedavg check --tightness``: the table of :mod:`synthetic.tightness`'s rows as the terminal shows it, or as
JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .tightness import SEEDS, TightnessRow, tightness_table


def format_tightness(rows: Sequence[TightnessRow]) -> str:
    """The table, at most :data:`perfedavg.words.MAX_WIDTH` columns: row (with its K), worst-case bound,
    data-dependent bound, measured, E Φ_K's estimate, both factors, HOLDS; then each noise-free row's step
    costs and what the columns mean, wrapped."""
    import textwrap

    from perfedavg.words import MAX_WIDTH

    def wrap(text: str) -> str:
        return textwrap.fill(text, MAX_WIDTH, subsequent_indent="    ", break_on_hyphens=False)

    def pack(first: str, items: list[str]) -> list[str]:
        """``first`` and ``items`` joined by "; ", a line broken only between items where it would pass
        MAX_WIDTH (an item longer than a line is wrapped on its own)."""
        out = [first]
        for item in items:
            if len(out[-1]) + 2 + len(item) <= MAX_WIDTH:
                out[-1] += ("; " if out[-1] != first else " ") + item
            else:
                out[-1] += ";"
                out += wrap("    " + item).splitlines()
        return out

    head = (
        f"{'row':29s} {'worst-case':>10s} {'data-dep.':>10s} {'measured':>10s} {'E Phi est.':>10s} "
        f"{'wc/meas':>8s} {'dd/meas':>7s}  verdict"
    )
    lines = [head]
    for r in rows:
        name = r.name if math.isinf(r.K) else f"{r.name}, K={int(r.K)}"
        exp = f"{r.expected:10.5g}" if math.isfinite(r.expected) else f"{'-':>10s}"
        lines.append(
            f"{name:29s} {r.worst_case:10.4g} {r.data_dependent:10.5g} {r.measured:10.5g} {exp} "
            f"{r.worst_factor:8.3g} {r.data_factor:7.3g}  {'HOLDS' if r.holds else 'FAILS'}"
        )
    for r in rows:
        if r.steps:
            lines += pack(f"{r.name}:", [f"{k} {v:.3g}" for k, v in r.steps.items()])
    lines.append(
        wrap(
            "worst-case, data-dep.: the bounds on Phi_K; E Phi est.: the quadratic task's estimate of E Phi_K; "
            "wc/meas, dd/meas: each bound / measured mean. HOLDS: the data-dependent bound lies above the upper "
            "end of the 95% interval of E Phi_K's estimate (quadratic) or of the measured Phi_K (logistic)."
        )
    )
    return "\n".join(lines)


def main_tightness(args: Any) -> int:
    """``perfedavg check --tightness [--json] [--seeds S]``: print the table; exit 1 if a row FAILS."""
    rows = tightness_table(tuple(range(args.seeds)) if args.seeds else SEEDS)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_tightness(rows))
    return 0 if all(r.holds for r in rows) else 1
