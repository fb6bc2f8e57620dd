r"""theory/: the Per-FedAvg bounds in sympy, evaluated with numpy, rendered in LaTeX.

Torch-free by design.  Modules:

* :mod:`theory.symbols`    sympy symbols (positive, real) named like ``Constants`` fields;
* :mod:`theory.constants`  :class:`Constants`, numeric values, from TOML / dict, validated;
* :mod:`theory.statement`  :class:`Statement`: name, reference, provenance, expr, evaluator, LaTeX;
* :mod:`theory.lemmas`     L_F, bias, σ_F², γ_F² (recalled and derived), FO / HF extras;
* :mod:`theory.distances`  TV and W1 bounds on γ_G², γ_H²;
* :mod:`theory.theorem`    convergence bound (recalled shape, derived explicit), FedAvg,
  step-size conditions, corollary;
* :mod:`theory.checks_api` numbers for a check harness: ``lemma_bounds``, ``convergence``,
  ``compare`` → rows "statement, provenance, measured, bound, ratio, HOLDS/FAILS";
* :mod:`theory.cli`        ``perfedavg bounds``.

Derivations: ``theory/DERIVATIONS.md``.  Provenance labels: "sure", "recalled", "derived".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .constants import Constants
    from .statement import PROVENANCES, Statement

__all__ = ["PROVENANCES", "Constants", "Statement"]

#: the package's names and the module of each, imported on first use: ``theory.statement`` imports sympy,
#: which ``perfedavg --help`` (it loads ``theory.cli``, hence this package) should not pay for
_LAZY = {"Constants": "constants", "PROVENANCES": "statement", "Statement": "statement"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
