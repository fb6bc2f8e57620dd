"""The rate table's text: a row without a recalled shape prints 'n/a' in that column, never '+nan'."""

from __future__ import annotations

import math

from synthetic.rate_report import format_rates
from synthetic.rate_rows import RateRow
from synthetic.rate_stats import Judgement


def _row(name: str, extra: dict) -> RateRow:
    judgement = Judgement("exact", 0.0, 0.0, 0.0, 0.1, math.inf, None, None, verdict="PASS", reason="exact")
    return RateRow(name, 2.0, [1.0, 2.0], [1.0, 4.0], [0.0, 0.0], judgement, "1", extra=extra)


def test_a_row_without_a_recalled_shape_prints_n_a():
    bound = {"rows": [{"K": 3}], "holds_at_every_K": True}  # K = 3: no power of 2, no bound line to fill
    text = format_rates([_row("with", {"recalled_shape_slope": 1.0}), _row("without", {})], bound)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("with ", "without "))}
    assert rows["with"][1:3] == ["+2.00", "+1.00"]
    assert rows["without"][1:3] == ["+2.00", "n/a"]
    assert "nan" not in text
