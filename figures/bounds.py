r"""From a run's config to the theory's numbers: the constants and the derived / recalled bounds.

For a synthetic task the constants of PAPER.md §3 are known exactly (``Task.constants``);
:func:`constants_for_config` assembles a :class:`theory.constants.Constants` from them
and the run's α, β, δ, τ, K, r, n, D, D', D'' with :func:`synthetic.measure.global_constants`
(γ_G, γ_H from the TV statements at the task's RMS total variation, Δ₀ = F(w₀) ≥ F(w₀) − F*).
For an empirical task the constants are *estimated* and read from a JSON file
(:func:`constants_from_json`).  The bounds themselves come from :mod:`theory` only
(:func:`theory.checks_api.convergence`); this module writes no formula.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from perfedavg.errors import UsageError

#: problem constants a Constants needs (no default)
PROBLEM_KEYS = ("L", "rho", "B", "sigma_G", "sigma_H", "gamma_G", "gamma_H", "F0_gap")


def variant_of(algorithm: str) -> str:
    """The theory's variant for an algorithm (FedAvg is bounded as α = 0: see :func:`bound_for`)."""
    return algorithm if algorithm in ("exact", "fo", "hf") else "exact"


@functools.lru_cache(maxsize=32)
def _task(task_json: str, dtype: str):
    import torch

    from perfedavg.tasks import build_task

    return build_task(json.loads(task_json)).to(getattr(torch, dtype))


def task_for(task_table: dict):
    """The (cached, float64) task a ``[task]`` table describes."""
    return _task(json.dumps(dict(task_table), sort_keys=True), "float64")


def has_exact_constants(task) -> bool:
    """Whether the task knows L, ρ, B, σ_G, σ_H exactly and its users' RMS total variation."""
    return all(k in task.constants for k in ("L", "rho", "B", "sigma_G", "sigma_H", "tv_rms"))


def algorithm_constants(config: dict, K: float | None = None) -> dict:
    """β, δ, τ, K, r, D, D', D'' of a run-config dict, as the floats Constants expects."""
    return {"beta": config["beta"], "delta": config["delta"], "tau": config["tau"],
            "K": config["K"] if K is None else K, "r": config["r"], "D": config["D"],
            "D1": config["D1"], "D2": config["D2"]}


def constants_for_config(config: dict, K: float | None = None, **changes):
    r"""Exact :class:`theory.constants.Constants` of a synthetic run config (module docstring),
    with ``K`` (default: the run's) and ``changes`` to any field; ``None`` when the task's
    constants are not known exactly."""
    from synthetic.measure import global_constants

    task = task_for(config["task"])
    if not has_exact_constants(task):
        return None
    alpha = config["alpha"]
    c = global_constants(task, alpha, **algorithm_constants(config, K))
    return c.replace(**changes) if changes else c


def bound_for(constants, algorithm: str) -> tuple[float, dict, str]:
    r"""(value, terms, provenance) of the derived explicit bound on
    Φ_K = (1/(τK))ΣΣE‖∇F(w̄)‖² for ``algorithm``; ``inf`` when the step-size condition
    6β²τ²L_F² < 1 fails.  FedAvg has no bound on ∇F: its derived bound is on ∇f
    (:func:`theory.checks_api.fedavg_convergence`), returned with empty terms."""
    from theory.checks_api import convergence, fedavg_convergence

    if algorithm == "fedavg":
        return fedavg_convergence(constants), {}, "derived"
    rep = convergence(constants, variant_of(algorithm))
    return rep.derived, dict(rep.derived_terms), "derived"


def floor_of(constants, algorithm: str) -> float:
    r"""The derived bound without its optimization term 2Δ₀/(βτK)(1+√c): the part that
    does not vanish as K → ∞ (``inf`` when the step-size condition fails)."""
    value, terms, _ = bound_for(constants, algorithm)
    if not math.isfinite(value) or not terms:
        return value
    return sum(v for k, v in terms.items() if k != "optimization")


def constants_from_json(path: str | Path, config: dict | None = None, K: float | None = None):
    r"""A :class:`theory.constants.Constants` from an *estimated* constants file.

    Accepted layouts (``empirical/constants.py`` writes one of them): a flat object
    ``{"L": 3.1, "B": ..., ...}``, or the same under ``"constants"`` or ``"estimates"``;
    each value a number or an object with ``"value"`` (or ``"estimate"``).  Missing ρ,
    σ_H, γ_H are taken as 0 only if absent from the file (and named in the returned notes);
    ``F0_gap`` defaults to ``F0`` when given.  The run's α, β, τ, K, r, n, D... come
    from ``config`` (a run-config dict) when given.  Returns ``(constants, notes)``.
    """
    from theory.constants import Constants

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"constants file {path} cannot be read: {exc}") from None
    for key in ("constants", "estimates"):
        if isinstance(data.get(key), dict):
            data = data[key]
            break

    def number(v):
        if isinstance(v, dict):
            v = v.get("value", v.get("estimate"))
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    values = {k: number(v) for k, v in data.items() if number(v) is not None}
    if "F0_gap" not in values and "F0" in values:
        values["F0_gap"] = values["F0"]
    notes = []
    for k in ("rho", "sigma_H", "gamma_H"):
        if k not in values:
            values[k] = 0.0
            notes.append(f"{k} not estimated (taken as 0)")
    missing = [k for k in PROBLEM_KEYS if k not in values]
    if missing:
        raise UsageError(f"constants file {path} lacks {', '.join(missing)}")
    fields = {k: values[k] for k in PROBLEM_KEYS}
    if config is not None:
        fields.update(alpha=config["alpha"], **algorithm_constants(config, K))
        n = values.get("n")
        if n is not None:
            fields["n"] = n
    if "alpha" in fields and fields["alpha"] * fields["L"] > 1:
        notes.append(f"alpha = {fields['alpha']:g} exceeds 1/L = {1 / fields['L']:.3g}: alpha clipped to 1/L for the lemmas")
        fields["alpha"] = 1.0 / fields["L"]
    return Constants(**{k: float(v) for k, v in fields.items()}), notes
