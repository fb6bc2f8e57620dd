r"""From a run's config to the theory's numbers: the constants and the derived / recalled bounds.

For a synthetic task the constants of docs/paper.md §3 are known exactly (``Task.constants``);
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
from typing import Any

import torch

from perfedavg.engine.sampling import num_sampled_clients
from perfedavg.engine.task import Task
from perfedavg.runs.registry import build_task
from synthetic.measure import global_constants
from theory.checks_api import convergence, fedavg_convergence
from theory.constants import Constants


def variant_of(algorithm: str) -> str:
    """The theory's variant for an algorithm (FedAvg is bounded as α = 0: see :func:`bound_for`)."""
    return algorithm if algorithm in ("exact", "fo", "hf") else "exact"


@functools.lru_cache(maxsize=32)
def _task(task_json: str, dtype: str) -> Task:
    return build_task(json.loads(task_json)).to(getattr(torch, dtype))


def task_for(task_table: dict[str, Any]) -> Task:
    """The (cached, float64) task a ``[task]`` table describes."""
    return _task(json.dumps(dict(task_table), sort_keys=True), "float64")


def has_exact_constants(task: Task) -> bool:
    """Whether the task knows L, ρ, B, σ_G, σ_H exactly and its users' RMS total variation."""
    return all(k in task.constants for k in ("L", "rho", "B", "sigma_G", "sigma_H", "tv_rms"))


def sampled_fraction(r: float, n: float) -> float:
    r"""The fraction of users a run actually samples per round, :math:`r_{\rm eff} = m/n` with
    :math:`m = \lfloor r n\rfloor` the engine's count (:func:`perfedavg.engine.sampling.num_sampled_clients`,
    the one home of that rule).  The analysis (docs/paper.md §2, §5) samples :math:`rn` users, an integer:
    a run's bound is evaluated for the participation it has, :math:`r_{\rm eff}`, which equals ``r``
    whenever :math:`rn` is whole."""
    return num_sampled_clients(r, int(n)) / int(n)


def participation_note(r: float, n: float) -> str:
    """One line saying that the bound uses :func:`sampled_fraction` rather than the configured ``r``;
    empty when the two are equal (``r*n`` whole)."""
    effective = sampled_fraction(r, n)
    if effective == r:
        return ""
    m, users = num_sampled_clients(r, int(n)), int(n)
    return (
        f"r = {r:g} with n = {users}: a round samples floor({r * users:g}) = {m} users, "
        f"so the bound uses r = {effective:g} ({m} of {users})"
    )


def algorithm_constants(config: dict[str, Any], K: float | None = None, n: float | None = None) -> dict[str, float]:
    """β, δ, τ, K, r, D, D', D'' of a run-config dict, as the floats Constants expects; with the
    number of users ``n``, ``r`` is the fraction the run samples (:func:`sampled_fraction`)."""
    return {
        "beta": config["beta"],
        "delta": config["delta"],
        "tau": config["tau"],
        "K": config["K"] if K is None else K,
        "r": config["r"] if n is None else sampled_fraction(config["r"], n),
        "D": config["D"],
        "D1": config["D1"],
        "D2": config["D2"],
    }


def constants_for_config(config: dict[str, Any], K: float | None = None, **changes: float) -> Constants | None:
    r"""Exact :class:`theory.constants.Constants` of a synthetic run config (module docstring),
    with ``K`` (default: the run's) and ``changes`` to any field; ``None`` when the task's
    constants are not known exactly.  ``r`` is the fraction of users the run samples
    (:func:`sampled_fraction`; :func:`participation_note` says when it is not the configured one)."""
    task = task_for(config["task"])
    if not has_exact_constants(task):
        return None
    alpha = config["alpha"]
    c = global_constants(task, alpha, **algorithm_constants(config, K, n=task.n_clients))
    return c.replace(**changes) if changes else c


def config_participation_note(config: dict[str, Any]) -> str:
    """:func:`participation_note` for a synthetic run config (its task's number of users)."""
    return participation_note(config["r"], task_for(config["task"]).n_clients)


def bound_for(constants: Constants, algorithm: str) -> tuple[float, dict[str, float], str]:
    r"""(value, terms, provenance) of the derived explicit bound on
    Φ_K = (1/(τK))ΣΣE‖∇F(w̄)‖² for ``algorithm``; ``inf`` when the step-size condition
    6β²τ²L_F² < 1 fails.  FedAvg has no bound on ∇F: its derived bound is on ∇f
    (:func:`theory.checks_api.fedavg_convergence`), returned with empty terms."""
    if algorithm == "fedavg":
        return fedavg_convergence(constants), {}, "derived"
    rep = convergence(constants, variant_of(algorithm))
    return rep.derived, dict(rep.derived_terms), "derived"


def floor_of(constants: Constants, algorithm: str) -> float:
    r"""The derived bound without its optimization term 2Δ₀/(βτK)(1+√c): the part that
    does not vanish as K → ∞ (``inf`` when the step-size condition fails)."""
    value, terms, _ = bound_for(constants, algorithm)
    if not math.isfinite(value) or not terms:
        return value
    return sum(v for k, v in terms.items() if k != "optimization")


def constants_from_json(
    path: str | Path, config: dict[str, Any], K: float | None = None
) -> tuple[Constants, list[str]]:
    r"""A :class:`theory.constants.Constants` from an *estimated* constants file, for a run.

    The file is read by theory's one reader, :meth:`theory.constants.Constants.from_file` (the
    JSON of ``perfedavg reproduce constants``, or TOML): a constant that was not estimated
    (``null``) is *missing* (NaN), named in the returned notes, and every bound term that needs
    it is NaN, never a number computed with a made-up 0.  The run's α, β, δ, τ, K, r, D, D', D''
    come from ``config`` (a run-config dict), K replaced by ``K`` when given, r by the fraction of
    the file's n users that the run samples (:func:`sampled_fraction`; a note says when it differs).  The lemmas assume
    α ≤ 1/L; when the run's α exceeds 1/L of the estimated L (the paper's α = 0.01 does on a
    trained MNIST model) the bound is evaluated with α clipped to 1/L and a note says so.
    Returns ``(constants, notes)``.
    """
    n = Constants.from_file(path, {"alpha": 0.0, "r": 1.0}).n  # the file's users, for the run's r
    run = algorithm_constants(config, K, n=n)
    probe = Constants.from_file(path, {**run, "alpha": 0.0})  # the estimated L, to check alpha against
    notes = [f"{k} not estimated: terms that need it are not evaluable" for k in sorted(probe.missing)]
    if participation_note(config["r"], n):
        notes.append(participation_note(config["r"], n))
    if not math.isfinite(probe.L):
        return probe, notes
    alpha = config["alpha"]
    if alpha * probe.L > 1:
        notes.append(
            f"alpha = {alpha:g} exceeds 1/L = {1 / probe.L:.3g} of the estimated L: the lemmas assume "
            "alpha <= 1/L, so the bound is evaluated with alpha clipped to 1/L"
        )
        alpha = 1.0 / probe.L
    return Constants.from_file(path, {**run, "alpha": alpha}), notes
