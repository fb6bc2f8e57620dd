r"""The record every statement of :mod:`theory` returns: :class:`Statement`.

A statement is one formula ``expr`` (a sympy expression in the symbols of
:mod:`theory.symbols`) with its name, paper reference, provenance label
(``"sure"``, ``"recalled"`` or ``"derived"``), LaTeX, and a numpy evaluator made
with :func:`sympy.lambdify`.  A bound that is a sum of named terms keeps them in
``terms`` (their sum is ``expr``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import sympy as sp

from perfedavg.errors import UsageError

from .symbols import latex as _latex

PROVENANCES = ("sure", "recalled", "derived")

#: what an evaluator returns: a float for scalar input, an array where the input broadcasts
Value = float | npt.NDArray[np.float64]


class HasAsDict(Protocol):
    """Anything with ``as_dict()`` of numeric values, such as :class:`theory.constants.Constants`."""

    def as_dict(self) -> Mapping[str, float]: ...


#: where an evaluator takes its values from: a ``Constants``, a plain mapping, or nothing (all in ``extra``)
Source = HasAsDict | Mapping[str, Any] | None


@functools.cache
def _lambdify(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable[..., Any]:
    fn: Callable[..., Any] = sp.lambdify(args, expr, modules="numpy")
    return fn


@functools.cache
def _symbols(expr: sp.Expr) -> tuple[sp.Symbol, ...]:
    """Free symbols of ``expr`` sorted by name, once per expression (sympy walks the whole tree to find them)."""
    return tuple(sorted(expr.free_symbols, key=lambda s: s.name))


@dataclass(frozen=True)
class Statement:
    r"""One formula of the analysis with its provenance.

    key: str
        short identifier (``"L_F"``, ``"bias"`` ...), shared by the recalled and the
        derived form of the same quantity.
    name: str
        human-readable name.
    ref: str
        where it comes from (docs/paper.md section, lemma / theorem number).
    provenance: str
        ``"sure"``, ``"recalled"`` (reconstructed from memory of the paper, not
        verified) or ``"derived"`` (derived in ``theory/DERIVATIONS.md``).
    expr: sympy.Expr
        the formula; its free symbols are named like the fields of ``Constants``
        (plus the extras ``tv``, ``w1``, ``L_theta``, ``rho_theta``, ``g_norm``).
    meaning: str
        what the value bounds, e.g. ``"sup ‖∇F_i(u)−∇F_i(v)‖/‖u−v‖ <= value"``.
    terms: tuple of (name, sympy.Expr)
        named summands whose sum is ``expr`` (empty for a single-term formula).
    """

    key: str
    name: str
    ref: str
    provenance: str
    expr: sp.Expr
    meaning: str = ""
    terms: tuple[tuple[str, sp.Expr], ...] = ()
    _fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance must be one of {PROVENANCES}, got {self.provenance!r}")
        if self._fn is None:
            object.__setattr__(self, "_fn", _lambdify(self.expr, self.args))

    # -- symbolic side -------------------------------------------------------------
    @property
    def args(self) -> tuple[sp.Symbol, ...]:
        """Free symbols of ``expr``, sorted by name: the evaluator's keyword arguments."""
        return _symbols(self.expr)

    @property
    def arg_names(self) -> tuple[str, ...]:
        """Names of :attr:`args`."""
        return tuple(s.name for s in self.args)

    @property
    def latex(self) -> str:
        """LaTeX of ``expr`` with the paper's symbol spelling."""
        return _latex(self.expr)

    @property
    def label(self) -> str:
        """``"name [provenance]"``, the way every statement is printed."""
        return f"{self.name} [{self.provenance}]"

    # -- numeric side --------------------------------------------------------------
    def values_from(self, constants: Source = None, **extra: Any) -> dict[str, Any]:
        """The keyword arguments of the evaluator, taken from ``constants`` then ``extra``."""
        src: dict[str, Any] = {}
        if constants is not None:
            src.update(constants.as_dict() if hasattr(constants, "as_dict") else dict(constants))
        src.update(extra)
        missing = [a for a in self.arg_names if a not in src or src[a] is None]
        if missing:
            values = "a value" if len(missing) == 1 else "values"
            raise UsageError(f"{self.key}: needs {values} for {', '.join(missing)}")
        return {a: src[a] for a in self.arg_names}

    def __call__(self, constants: Source = None, **extra: Any) -> Value:
        r"""Evaluate with numpy: values from ``constants`` (a ``Constants`` or a mapping),
        overridden by ``extra``; arrays broadcast.  Returns a float for scalar input."""
        fn = self._fn
        assert fn is not None  # set by __post_init__
        out = fn(**self.values_from(constants, **extra))
        if np.ndim(out) == 0:
            return float(out)
        return np.asarray(out, dtype=float)

    def evaluate_terms(self, constants: Source = None, **extra: Any) -> dict[str, Value]:
        """``{term name: value}`` for each named term (or ``{name: value}`` if none)."""
        if not self.terms:
            return {self.name: self(constants, **extra)}
        out: dict[str, Value] = {}
        vals = self.values_from(constants, **extra)
        for tname, texpr in self.terms:
            args = _symbols(texpr)
            out[tname] = float(_lambdify(texpr, args)(**{a.name: vals[a.name] for a in args}))
        return out

    def subs(self, mapping: Mapping[sp.Basic, Any], **changes: str) -> Statement:
        """The same statement with symbols substituted (e.g. ``{alpha: 0}``)."""
        return Statement(
            key=changes.get("key", self.key),
            name=changes.get("name", self.name),
            ref=changes.get("ref", self.ref),
            provenance=changes.get("provenance", self.provenance),
            expr=self.expr.subs(mapping),
            meaning=changes.get("meaning", self.meaning),
            terms=tuple((t, e.subs(mapping)) for t, e in self.terms),
        )

    def describe(self) -> str:
        """Multi-line text: label, reference, meaning and formula."""
        return f"{self.label}\n  ref: {self.ref}\n  bounds: {self.meaning}\n  formula: {sp.sstr(self.expr)}"
