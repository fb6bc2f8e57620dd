"""What a run's ``summary.json`` says beyond its status: its users (current, new, their groups), every user's
outcome in its final evaluation, and what its training cost, counted (:func:`run_extras`)."""

from __future__ import annotations

from typing import Any

from perfedavg.engine.config import RunConfig


def run_extras(cfg: RunConfig, task: Any, final: dict | None, rounds: int) -> dict[str, Any]:
    """What a run's summary adds about its users: which train and which are new, with their groups, where the
    task holds users out or groups them (``users``); the per-user outcomes of the final evaluation where it has
    k-step curves (``outcomes``, :func:`perfedavg.runs.outcomes.record_outcomes`); what its ``rounds`` rounds
    cost (``cost``, :func:`run_cost`)."""
    from perfedavg.runs.outcomes import record_outcomes

    extra: dict[str, Any] = {}
    if task.groups or task.new_train is not None:
        extra["users"] = {
            "current": list(task.users) or list(range(task.n_clients)),
            "new": list(task.new_users),
            "groups": list(task.groups),
            "new_groups": list(task.new_groups),
        }
    outcomes = record_outcomes(final or {}, task.groups, task.new_groups)
    if outcomes:
        extra["outcomes"] = outcomes
    extra["cost"] = run_cost(cfg, task, rounds)
    return extra


def run_cost(cfg: RunConfig, task: Any, rounds: int) -> dict[str, Any]:
    """What the run's training cost, counted by the engine (:mod:`perfedavg.engine.costs`): per local step of
    one user, per round, and over its ``rounds`` rounds; with the local steps and batch sizes it ran (a
    budget-matched FedAvg's own)."""
    import torch

    from perfedavg.engine.costs import batch_sizes, budget_matched, local_step_cost, round_cost

    ran = budget_matched(cfg)
    n_params = int(task.init_params(torch.Generator().manual_seed(0)).numel())
    per_round = round_cost(ran, task.n_clients, n_params)
    return {
        "local_steps": ran.tau,
        "batch_sizes": list(batch_sizes(ran)),
        "match_budget": cfg.match_budget,
        "match_rule": cfg.match_rule if cfg.match_budget else "",
        "per_user_step": local_step_cost(ran.algorithm, batch_sizes(ran), n_params).to_dict(),
        "per_round": per_round.to_dict(),
        "rounds": rounds,
        "per_run": per_round.times(rounds).to_dict(),
    }
