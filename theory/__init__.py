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

from .constants import Constants
from .statement import PROVENANCES, Statement

__all__ = ["Constants", "PROVENANCES", "Statement"]
