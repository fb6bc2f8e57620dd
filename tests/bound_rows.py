"""The tightness rows (synthetic.tightness) with their regions, cached for the default test suite: the bound
mutants (synthetic.bound_mutations) are judged on them in seconds, where measuring them takes minutes.

Regenerate after a change to what the rows measure (tests/test_mutations.py's slow test says when)::

    .venv/bin/python -c "from tests.bound_rows import regenerate; regenerate()"
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from synthetic.tightness import TightnessRow
from theory import data_dependent as dd

#: the cached rows of ``perfedavg check --tightness`` (default seeds)
CACHE = Path(__file__).resolve().parent / "golden" / "tightness_rows.json.gz"

_ROUND_FIELDS = ("s2", "gamma_F", "gamma_HF", "contraction", "b_mean", "b_rms")
_ROW_FIELDS = ("name", "K", "worst_case", "data_dependent", "measured", "measured_high", "expected", "expected_high")


def rows_to_json(rows: Sequence[TightnessRow]) -> list[dict[str, Any]]:
    """What :func:`rows_from_json` needs to rebuild ``rows`` (numbers, configuration, region), JSON-ready."""
    out = []
    for row in rows:
        if row.region is None:
            raise ValueError(f"row {row.name!r} keeps no region")
        g = row.region
        region = {k: getattr(g, k) for k in ("L_F", "Delta0", "beta", "tau", "r", "n")}
        region["rounds"] = [[getattr(rc, f) for f in _ROUND_FIELDS] for rc in g.rounds]
        numbers = {f: (v if math.isfinite(v) else str(v)) for f in _ROW_FIELDS[1:] for v in [getattr(row, f)]}
        out.append({"name": row.name, **numbers, "config": row.config, "region": region})
    return out


def rows_from_json(data: Sequence[dict[str, Any]]) -> list[TightnessRow]:
    """The rows :func:`rows_to_json` wrote."""
    rows = []
    for d in data:
        g = dict(d["region"])
        rounds = tuple(dd.RoundConstants(*rc) for rc in g.pop("rounds"))
        region = dd.RegionConstants(**g, rounds=rounds)
        K, worst, bound, measured, high, expected, expected_high = (float(d[f]) for f in _ROW_FIELDS[1:])
        row = TightnessRow(d["name"], K, worst, bound, measured, high, expected, expected_high)
        rows.append(replace(row, region=region, config=d["config"]))
    return rows


def save_rows(rows: Sequence[TightnessRow], path: Path = CACHE) -> None:
    """Write ``rows`` (gzipped JSON) for the default test suite; atomic (a temporary file renamed)."""
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(rows_to_json(rows), f, separators=(",", ":"))
    tmp.replace(path)


def load_rows(path: Path = CACHE) -> list[TightnessRow]:
    """The rows :func:`save_rows` wrote."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return rows_from_json(json.load(f))


def regenerate(path: Path = CACHE) -> None:
    """Measure the tightness table (minutes) and cache it at ``path``."""
    from synthetic.tightness import tightness_table

    save_rows(tightness_table(), path)
