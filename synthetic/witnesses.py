r"""Witnesses measured and judged: each witness task (:mod:`synthetic.witness_tasks`, which says why each
is tight) measured exactly (:mod:`synthetic.exact`), its rows judged against theory's statements
(:func:`synthetic.rows.judge`) and printed beside the default tasks' margins by ``perfedavg check``.

Every point a step evaluates a gradient or a Hessian at (w, the inner points, the HF points) is checked
to lie in the domain on which the witness states its constants (:func:`measure_witness`).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import torch
from torch import Tensor

from perfedavg.algorithms import PerFedAvgAlgorithm
from perfedavg.engine.objective import client_objectives, client_objectives_grad_f

from . import exact, measure
from .common import client_hessians, distances_to_mixture, gradient_dissimilarity, hessian_dissimilarity, rms
from .rows import Record, Row, Statements, judge
from .witness_tasks import FACTOR, TASK, Case, Witness, witnesses

_DIRECTION_KEYS: dict[str, tuple[PerFedAvgAlgorithm, str]] = {
    "bias": ("exact", "bias"),
    "sigma_F2": ("exact", "mse"),
    "bias_fo": ("fo", "bias"),
    "mse_fo": ("fo", "mse"),
    "bias_hf": ("hf", "bias"),
    "mse_hf": ("hf", "mse"),
}


# ----------------------------------------------------------------------------- measuring
def _check_domain(witness: Witness, case: Case, points: Tensor, what: str) -> None:
    domain = case.domain or witness.domain
    if domain is None:
        return
    lo, hi = domain
    pts = points.detach().reshape(-1)
    tol = 1e-12 * (1 + max(abs(lo), abs(hi)))  # the domain's ends are computed, up to round-off
    if bool(((pts < lo - tol) | (pts > hi + tol)).any()):
        raise AssertionError(
            f"witness {witness.name}: {what} leaves the domain [{lo:g}, {hi:g}] of its constants "
            f"(points in [{float(pts.min()):g}, {float(pts.max()):g}])"
        )


def measure_witness(witness: Witness) -> list[Record]:
    """Exact measurements of every case of ``witness`` (:mod:`synthetic.exact`), as records to judge."""
    task = witness.task
    w = torch.tensor([witness.w], dtype=torch.float64)
    records = []
    for case in witness.cases:
        inputs: dict[str, Any] = {
            **witness.constants,
            **case.constants,
            "alpha": case.alpha,
            "D": float(case.D),
            "D1": float(case.D1),
            "D2": float(case.D2),
            "delta": case.delta,
        }
        where = f"{witness.name}: {case.tag}"
        for key in case.keys:
            measured: float
            if key == "L_F":
                measured, _ = exact.smoothness_F(task, case.alpha, *witness.lf_interval)
            elif key in _DIRECTION_KEYS:
                algorithm, moment = _DIRECTION_KEYS[key]
                mom = exact.direction_moments(
                    task,
                    w,
                    0,
                    alpha=case.alpha,
                    D=case.D,
                    D1=case.D1,
                    D2=case.D2,
                    algorithm=algorithm,
                    delta=case.delta,
                )
                _check_domain(witness, case, mom.points, f"the {algorithm} step")
                measured = mom.bias if moment == "bias" else mom.mse
            elif key == "gamma_F2":
                obj = client_objectives(task.per_sample_loss, w, task.train, case.alpha)
                inner = torch.cat([w - case.alpha * obj.grad_f.reshape(-1), w - case.alpha * obj.grad_f.mean(0), w])
                _check_domain(witness, case, inner, "an inner point")
                measured = measure.dissimilarity_F(task, w, case.alpha)
            elif key == "hf_hvp_error":
                g = torch.tensor([inputs["g_norm"]], dtype=torch.float64)
                _check_domain(witness, case, torch.cat([w + case.delta * g, w - case.delta * g]), "an HF point")
                measured = measure.hf_error(task, w, 0, g, case.delta)
            elif key.startswith("gamma_G2"):
                measured = gradient_dissimilarity(client_objectives_grad_f(task.per_sample_loss, w, task.train))
            elif key.startswith("gamma_H2"):
                measured = hessian_dissimilarity(client_hessians(task.per_sample_loss, w, task.train))
            else:  # pragma: no cover - the cases name known keys only
                raise KeyError(key)
            extra: dict[str, float] = {}
            if key.endswith(("_tv", "_w1")):
                tv, w1 = distances_to_mixture(task.train.weight, points=task.train.x.numpy())
                extra = {"tv": rms(tv), "w1": rms(w1)}
            records.append(Record(TASK, key, where, where, measured, measured, measured, {**inputs, **extra}))
    return records


def witness_records() -> list[Record]:
    """The records of every witness (a second or two in all; measured once per process: they are exact)."""
    return list(_witness_records())


@functools.cache
def _witness_records() -> tuple[Record, ...]:
    return tuple(r for w in witnesses() for r in measure_witness(w))


def factor_of(row: Row) -> float:
    """The documented largest margin of a derived witness row (:data:`FACTOR` unless its witness says otherwise)."""
    name = row.where.split(":")[0]
    for w in witnesses():
        if w.name == name:
            return w.factor.get(row.key, FACTOR)
    return FACTOR


def witness_rows(statements: Statements | None = None) -> list[Row]:
    """The witness rows (derived and recalled forms) judged against ``statements`` (theory's by default)."""
    return judge(witness_records(), statements)


def _short(where: str) -> str:
    """``"cos: alpha=1/L"`` -> ``"cos, alpha=1/L"``; a case tag that is not a step size is left out."""
    name, _, tag = where.partition(": ")
    tag = tag.split(",")[0]
    return f"{name}, {tag}" if tag.startswith(("alpha", "FedAvg")) else name


def format_witnesses(default_rows: list[Row], rows: list[Row]) -> str:
    """The witness table, then per derived statement the smallest margin on the default tasks beside each
    witness's margin, one witness a line (a witness looser than its factor is named); at most
    :data:`perfedavg.words.MAX_WIDTH` columns."""
    from .rows import format_table

    lines = ["Witnesses: tiny tasks where each derived bound is attained (margin 1 = tight; the largest allowed 2)"]
    lines += [
        format_table(rows),
        "",
        "Derived statements: the smallest margin on the default tasks beside each witness's margin",
        f"{'statement':30s} {'default tasks':>13s} {'witness':>8s}  witness task, step size",
    ]
    derived = [r for r in rows if r.provenance == "derived"]
    for key in dict.fromkeys(r.key for r in derived):
        mine = [r for r in derived if r.key == key]
        default = [r.margin for r in default_rows if r.key == key and r.provenance == "derived"]
        smallest = f"{min(default):.3g}" if default else "-"
        statement = mine[0].statement.removesuffix(" [derived]")[:30]
        # a combining mark (the tilde of ∇̃) takes no column: pad by what the terminal shows
        shown = 30 + sum(unicodedata.combining(c) > 0 for c in statement)
        for i, r in enumerate(mine):
            first = f"{statement:{shown}s} {smallest:>13s}" if i == 0 else " " * 44
            lines.append(f"{first} {r.margin:8.3g}  {_short(r.where)}")
    for r in derived:
        if r.holds and r.margin > factor_of(r):
            lines.append(
                wrap_line(
                    f"FINDING (witness looser than {factor_of(r):g}x): {r.statement} margin {r.margin:.3g} at {r.where}"
                )
            )
    return "\n".join(lines)


def wrap_line(text: str) -> str:
    """A FINDING or ERROR line of ``perfedavg check`` wrapped to :data:`perfedavg.words.MAX_WIDTH` columns, its
    continuation indented (the point a row was measured at can be long)."""
    import textwrap

    from perfedavg.words import MAX_WIDTH

    return textwrap.fill(text, MAX_WIDTH, subsequent_indent="    ", break_on_hyphens=False)
