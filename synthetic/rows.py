r"""The rows of ``perfedavg check``: a measurement kept with its inputs (:class:`Record`), judged against
theory's statements (:func:`judge`) into :class:`Row` s, and the text table and summary.

The verdict is the project's one rule :func:`theory.checks_api.upper_bound_holds`: HOLDS iff the upper
end ``high`` of the measurement's interval is ≤ bound; the printed ``margin`` is bound / high, so
HOLDS ⇔ margin ≥ 1.  Because a record keeps every value its bounds are evaluated on, a changed
statement (:mod:`synthetic.mutations`) is judged on the same measurements.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from theory.checks_api import CheckRow, lemma_statements, must_hold, upper_bound_holds
from theory.statement import Statement


@dataclass(frozen=True)
class Row:
    """One check: ``statement`` (theory's label), measured (point, low, high) against bound."""

    task: str
    key: str
    statement: str
    provenance: str
    measured: float
    low: float
    high: float
    bound: float
    where: str

    @property
    def ratio(self) -> float:
        """measured / bound."""
        return self.measured / self.bound if self.bound > 0 else (0.0 if self.measured == 0 else math.inf)

    @property
    def holds(self) -> bool:
        """:func:`theory.checks_api.upper_bound_holds` on the upper confidence limit ``high``."""
        return upper_bound_holds(self.measured, self.bound, self.high)

    @property
    def margin(self) -> float:
        """bound / high: how many times the measurement (upper end) fits under the bound."""
        return self.bound / self.high if self.high > 0 else math.inf

    @property
    def verdict(self) -> str:
        return "HOLDS" if self.holds else "FAILS"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ratio=self.ratio, margin=self.margin, verdict=self.verdict)
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in d.items()}


@dataclass(frozen=True)
class Record:
    r"""One measurement kept for judging (:func:`judge`): ``measured`` with its interval [low, high] (floats, or
    arrays of one shape for a trajectory) and ``inputs``, every value the bounds of ``key`` are evaluated on
    (the constants and the extra symbols), so that a changed statement (:mod:`synthetic.mutations`) is judged
    on the same measurements.  ``slot`` groups the records of which a row keeps the worst."""

    task: str
    key: str
    where: str
    slot: str
    measured: Any
    low: Any
    high: Any
    inputs: dict[str, Any]


#: the statements of a key, recalled form first: theory's lemma statements, and the trajectory keys
Statements = dict[str, tuple[Statement, ...]]


def default_statements() -> Statements:
    """Theory's statements for every key a record can have (``..._trajectory``: the TV / W1 ones)."""
    out = dict(lemma_statements())
    for key in ("gamma_G2_tv", "gamma_H2_tv", "gamma_G2_w1", "gamma_H2_w1"):
        out[key + "_trajectory"] = out[key]
    return out


class Recorder:
    """Collects :class:`Record` s; the rows are made by :func:`judge`."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(
        self,
        task: str,
        where: str,
        inputs: dict[str, Any],
        key: str,
        measured: float,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        m = float(measured)
        lo, hi = m if low is None else float(low), m if high is None else float(high)
        self.records.append(Record(task, key, where, where.split(",")[0], m, lo, hi, dict(inputs)))


def _row_of(record: Record, statement: Statement) -> Row:
    """The row of one record against one statement (an array record: its point with the largest ratio)."""
    label = statement.label + (" along run" if record.key.endswith("_trajectory") else "")
    bound = statement(record.inputs)
    if np.ndim(record.measured) == 0:
        return Row(
            record.task,
            record.key,
            label,
            statement.provenance,
            float(record.measured),
            float(record.low),
            float(record.high),
            float(bound),
            record.where,
        )
    measured = np.asarray(record.measured, float)
    bound = np.broadcast_to(np.asarray(bound, float), measured.shape)
    high = np.broadcast_to(np.asarray(record.high, float), measured.shape)
    ratio = np.where(bound > 0, high / np.where(bound > 0, bound, 1.0), np.where(high > 0, np.inf, 0.0))
    at = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    low = np.broadcast_to(np.asarray(record.low, float), measured.shape)
    return Row(
        record.task,
        record.key,
        label,
        statement.provenance,
        float(measured[at]),
        float(low[at]),
        float(high[at]),
        float(bound[at]),
        f"{record.where}, worst at {tuple(int(i) for i in at)}; max measured {float(measured.max()):.4g}",
    )


def judge(records: list[Record], statements: Statements | None = None) -> list[Row]:
    """Rows of ``records`` against ``statements`` (default: theory's, :func:`default_statements`): per
    (task, slot, key, statement) the row with the largest measured / bound, a failing row before a holding one."""
    statements = default_statements() if statements is None else statements
    rows: dict[tuple[str, str, str, str, str], Row] = {}
    for record in records:
        for st in statements.get(record.key, ()):
            if not set(st.arg_names) <= set(record.inputs):
                continue
            row = _row_of(record, st)
            slot = (record.task, record.slot, record.key, st.provenance, st.name)
            old = rows.get(slot)
            if old is None or (row.holds, -row.ratio) < (old.holds, -old.ratio):
                rows[slot] = row
    return list(rows.values())


#: the text table's width: a terminal's; the points where each row was measured are in --json
TABLE_WIDTH = 100
#: the step-size tag of a row's point (``alpha=0.25/L`` in its ``where``); none: the statement holds at any α
_ALPHA = re.compile(r"alpha=((?:[^,\s()]|\([^)]*\))+)")

#: the lines under the table that say what its columns mean
LEGEND = (
    "α: the inner step at the row's point (any: the statement does not depend on it). along a run: the\n"
    "worst averaged model w̄ of short Per-FedAvg runs. high: upper end of the 99.7% Monte Carlo interval\n"
    "of the measured value (the value itself where exact); HOLDS iff high <= bound; margin = bound/high."
)


def _num(x: float, digits: int, width: int) -> str:
    """``x`` to ``digits`` significant digits with a short exponent (``6.252e-6``, ``1.33e5``), in scientific
    notation where the plain one is wider than ``width`` (``9.396e-4`` for 0.0009396)."""

    def short(text: str) -> str:
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}e{int(exponent)}" if e else text

    text = short(f"{x:.{digits}g}")
    return text if len(text) <= width or not math.isfinite(x) else short(f"{x:.{digits - 1}e}")


def alpha_tag(where: str) -> str:
    """The row's step size as the table prints it: ``0.25/L`` for ``alpha=0.25/L``, ``any`` where the point
    names none (an α-independent statement)."""
    match = _ALPHA.search(where)
    return match.group(1) if match else "any"


def format_table(rows: list[Row]) -> str:
    """Text table, at most :data:`TABLE_WIDTH` columns: task, the step size α of the row's point (the same
    statement appears once per α), statement, provenance, measured, the upper end of its interval (``high``;
    the measured value itself where exact), bound, verdict and margin = bound / high (:data:`LEGEND`)."""
    head = (
        f"{'task':9s} {'α':7s} {'statement':26s} {'prov.':8s} {'measured':>8s} {'high':>8s} {'bound':>8s} "
        f"{'verdict':7s} {'margin':>7s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        # the provenance has its own column; a trajectory row's suffix reads as words
        statement = r.statement.replace(f" [{r.provenance}]", "").replace(" along run", " along a run")[:26]
        # a combining mark (the tilde of ∇̃) takes no column: pad by what the terminal shows
        shown = 26 + sum(unicodedata.combining(c) > 0 for c in statement)
        lines.append(
            f"{r.task[:9]:9s} {alpha_tag(r.where)[:7]:7s} {statement:{shown}s} {r.provenance[:8]:8s} "
            f"{_num(r.measured, 4, 8):>8s} {_num(r.high, 4, 8):>8s} {_num(r.bound, 4, 8):>8s} {r.verdict:7s} "
            f"{_num(r.margin, 3, 7):>7s}"
        )
    assert max(map(len, lines)) <= TABLE_WIDTH
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[str, Any]:
    """Counts and the failing rows, split into errors (derived / sure) and findings (recalled)."""
    errors = [r for r in rows if not r.holds and must_hold_row(r)]
    findings = [r for r in rows if not r.holds and not must_hold_row(r)]
    derived = [r for r in rows if r.provenance == "derived"]
    return {
        "rows": len(rows),
        "errors": [r.as_dict() for r in errors],
        "findings": [r.as_dict() for r in findings],
        "smallest_derived_margin": min((r.margin for r in derived), default=math.inf),
    }


def must_hold_row(row: Row) -> bool:
    """theory's rule (:func:`theory.checks_api.must_hold`: a failing sure/derived statement is an
    error, a failing recalled one a finding) applied to a row."""
    return must_hold(CheckRow(row.statement, row.provenance, row.measured, row.bound, row.high))
