r"""``perfedavg explain``: for a run config, the bound's terms and which one dominates, in plain words.

The constants come from the task when it knows them exactly (synthetic tasks:
:func:`figures.bounds.constants_for_config`) or from ``--constants FILE.json`` (estimated,
e.g. written by ``empirical/constants.py``).  The bound is the derived explicit bound of
:func:`theory.checks_api.convergence` (provenance ``derived``), printed beside the
paper's recalled shape (``recalled``, O(1) set to 1, not a bound).

``perfedavg --help`` loads this module: the theory (sympy) and the tasks (torch) are imported
inside the functions that use them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfedavg.errors import UsageError
from perfedavg.runs.config import load_run_config
from perfedavg.runs.config_file import load_command_config
from perfedavg.runs.resolve import resolve

from .style import algorithm_label

if TYPE_CHECKING:
    from theory.constants import Constants

#: what each term of the derived bound is, and which knob lowers it
PLAIN = {
    "optimization": "How far the start is from a stationary point, spread over the rounds: 2Δ₀/(βτK). "
    "It shrinks like 1/K; more rounds K, a larger step β or more local steps τ lower it.",
    "stochastic gradient": "Noise of the sampled batches, averaged over the n users: ∝ β·s²/n. "
    "Larger batches D' (and D, D'') or a smaller β lower it.",
    "client sampling": "Only r·n users are heard each round, and they differ: ∝ (1−r)/(r(n−1))·(γ² + b²). "
    "More users per round (larger r) or less heterogeneous users lower it; it is 0 at r = 1.",
    "local drift": "Users drift apart during τ local steps: ∝ β²τ²(s² + γ² + b²). "
    "Fewer local steps τ or a smaller β lower it; it is 0 at τ = 1.",
    "bias floor": "The inner step uses a batch of size D, so the local direction is biased: 2b² with b ∝ αLσ_G/√D "
    "(plus αLB for FO, a δ-term for HF). It does NOT vanish with K; a larger D or a smaller α lowers it.",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="print, for a run config, the convergence bound's terms and which one dominates, in plain words",
        description=(
            "Evaluate the derived explicit bound on (1/(tau K)) sum_k sum_t E||grad F(w_bar_{k+1,t})||^2 for a run "
            "config (--config FILE.toml and --set overrides, as `perfedavg run` reads them), with the task's exact "
            "constants (synthetic tasks) or estimated ones (--constants FILE), and explain each term: what it "
            "is, its share, which dominates, and which knob lowers it. The paper's recalled shape is shown beside."
        ),
    )
    p.add_argument(
        "--config", metavar="FILE.toml", default=None, help="run config [default: the first run of `perfedavg run`]"
    )
    p.add_argument(
        "--run",
        metavar="DIR",
        default=None,
        help="a run directory: its config, and first one line comparing the bound with what the run measured "
        "(Phi_K with track_inner = true, else the closest quantity it records), the tightness and the dominant term",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option, e.g. --set beta=0.05 or --set task.h=1.0 (repeatable)",
    )
    p.add_argument(
        "--constants",
        metavar="FILE",
        default=None,
        help="constants file, as `perfedavg bounds --constants` reads it: the JSON that `perfedavg reproduce "
        "constants --run RUN` writes (RUN/constants.json), or TOML with L, rho, B, sigma_G, sigma_H, gamma_G, "
        "gamma_H, F0_gap (examples/constants.example.toml); required when the task's constants are not known "
        "exactly",
    )
    p.set_defaults(func=main)
    return p


#: constants of the theory that are also run options: a --task's run takes them from the flags of ``bounds``
RUN_CONSTANTS = ("alpha", "beta", "delta", "tau", "K", "r", "D", "D1", "D2")


def task_constants(
    name: str, overrides: Sequence[str] = (), flags: dict[str, float] | None = None, notes: list[str] | None = None
) -> Constants:
    r"""The constants of ``perfedavg bounds --task NAME``: the synthetic task's exact ones
    (:func:`figures.bounds.constants_for_config`) for the run ``perfedavg run --set task=NAME`` with
    ``overrides`` (``--set``) and the run options among ``flags`` (α, β, δ, τ, K, r, D, D', D''),
    then the remaining ``flags`` replacing any problem constant.  ``notes`` (when given) receives the
    line saying that r is the fraction the run samples, when that is not the configured r."""
    from perfedavg.runs.registry import TASKS

    from .bounds import config_participation_note, constants_for_config  # torch

    if name in TASKS and not TASKS[name].startswith("synthetic."):
        raise UsageError(
            f"task {name!r} has no exact constants (only synthetic tasks do): estimate them with "
            "`perfedavg reproduce constants` and pass --constants FILE.json"
        )
    flags = dict(flags or {})
    run_values = [f"{k}={flags.pop(k)!r}" for k in RUN_CONSTANTS if k in flags]
    cfg, _task = resolve(load_run_config(None, [f"task={name}", *overrides, *run_values]))
    try:
        constants = constants_for_config(cfg.to_dict())
    except UsageError as exc:
        raise UsageError(f"task {name!r}: its exact constants give no valid constants ({exc})") from None
    if constants is None:
        raise UsageError(
            f"task {name!r} has no exact constants: estimate them with `perfedavg reproduce constants` "
            "and pass --constants FILE.json"
        )
    if notes is not None and config_participation_note(cfg.to_dict()):
        notes.append(config_participation_note(cfg.to_dict()))
    return constants.replace(**flags) if flags else constants


def explain_text(config: dict[str, Any], constants: Constants, notes: Sequence[str] = ()) -> str:
    """The explanation for a resolved run-config dict and a Constants (see the module docstring)."""
    from theory.checks_api import convergence, fedavg_convergence  # sympy

    from .bounds import variant_of  # torch

    alg = config["algorithm"]
    v = variant_of(alg)
    rep = convergence(constants, v)
    lines = [
        f"Run: {algorithm_label(alg)} on task '{config['task']['name']}', K={config['K']}, tau={config['tau']}, "
        f"beta={config['beta']:g}, alpha={config['alpha']:g}, r={config['r']:g}, D={config['D']}, "
        f"D'={config['D1']}, D''={config['D2']}",
        "Constants: "
        + ", ".join(
            f"{k}={constants.as_dict()[k]:.4g}"
            for k in ("L", "rho", "B", "sigma_G", "sigma_H", "gamma_G", "gamma_H", "F0_gap", "n")
        ),
    ]
    lines += [f"  note: {n}" for n in notes]
    if alg == "fedavg":
        lines.append(
            "FedAvg minimizes f, not the personalized F: the terms below are Per-FedAvg (exact)'s on the same "
            f"knobs; FedAvg's own derived bound on ||grad f||^2 is {fedavg_convergence(constants):.4g}."
        )
    lines.append("")
    if not rep.condition["derived"]:
        lines.append(
            f"The derived bound does not apply: the step-size condition 6 beta^2 tau^2 L_F^2 < 1 fails "
            f"(beta = {constants.beta:g} >= {rep.beta_max['derived']:.4g}). Lower beta below that, or tau."
        )
    else:
        total = rep.derived
        dom = rep.dominant(rep.derived_terms)
        lines.append(f"Derived explicit bound [derived] on (1/(tau K)) sum sum E||grad F(w_bar)||^2: {total:.4g}")
        for name, value in sorted(rep.derived_terms.items(), key=lambda kv: -kv[1]):
            share = 100 * value / total if total > 0 else 0.0
            lines.append(f"  {name:20s} {value:11.4g}  {share:5.1f}%{'  <- dominates' if name == dom else ''}")
        lines.append("")
        dom_share = 100 * rep.derived_terms[dom] / total
        lines.append(
            f"In plain words: the '{dom}' term dominates ({dom_share:.0f}% of the bound). " + PLAIN.get(dom, "")
        )
        floor = total - rep.derived_terms.get("optimization", 0.0)
        lines.append(
            f"As K grows the bound falls to {floor:.4g} (everything but the optimization term); "
            + (
                "the optimization term is already below that floor: more rounds barely help."
                if rep.derived_terms.get("optimization", 0.0) < floor
                else "more rounds still help: the optimization term is above that floor."
            )
        )
    if rep.condition["recalled"]:
        lines.append(
            f"Recalled shape of the paper [recalled] (O(1) = 1, not a bound): {rep.recalled_shape:.4g}, "
            f"dominated by '{rep.dominant(rep.recalled_terms)}'."
        )
    else:
        lines.append(
            f"The paper's recalled shape [recalled] does not apply: its own step-size condition "
            f"beta <= {rep.beta_max['recalled']:.4g} fails (beta = {constants.beta:g}); "
            f"(its value with O(1) = 1 would be {rep.recalled_shape:.4g}, meaningless here)."
        )
    lines.append(
        f"Step-size conditions: recalled beta <= {rep.beta_max['recalled']:.4g} "
        f"({'holds' if rep.condition['recalled'] else 'fails'}); derived beta < {rep.beta_max['derived']:.4g} "
        f"({'holds' if rep.condition['derived'] else 'fails'})."
    )
    return "\n".join(lines)


def measured_for_bound(config: dict[str, Any], records: Sequence[dict[str, Any]]) -> tuple[float, str]:
    r"""``(value, what)``: what a run measured of the quantity its derived bound bounds.

    Per-FedAvg's bound is on Φ_K = (1/(τK))Σ_kΣ_t E‖∇F(w̄_{k+1,t})‖² (docs/paper.md §5): recorded as
    ``stationarity_avg`` at round K when the run tracked it (``track_inner = true``). Otherwise the closest
    quantity a run records is the mean of ‖∇F(w_k)‖² over its evaluated rounds k < K (the server models
    w_k = w̄_{k+1,0}, the first iterate of each round; one sample, no expectation). FedAvg's bound is on
    ∇f, the same way with ``grad_norm_sq_f``.
    """
    fedavg = config["algorithm"] == "fedavg"
    last = records[-1] if records else {}
    if not fedavg and "stationarity_avg" in last and last.get("round") == config["K"]:
        return float(last["stationarity_avg"]), "Phi_K, measured at every local step (track_inner)"
    key = "grad_norm_sq_f" if fedavg else "grad_norm_sq_F"
    values = [float(r[key]) for r in records if key in r and r.get("round", config["K"]) < config["K"]]
    if not values:
        raise UsageError(f"the run records no {key} before round K: nothing measured to compare with")
    grad = "||grad f(w_k)||^2" if fedavg else "||grad F(w_k)||^2"
    where = "" if fedavg else "; Phi_K itself needs track_inner = true"
    return sum(values) / len(values), f"mean {grad} over the {len(values)} evaluated rounds k < K{where}"


def run_line(directory: str, config: dict[str, Any], constants: Constants, records: Sequence[dict[str, Any]]) -> str:
    """One line: the run's derived bound beside its measurement (:func:`measured_for_bound`), their ratio
    (the bound's tightness: 1 is exact), whether the bound holds, and the dominant term."""
    from .bounds import bound_for  # torch

    bound, terms, _ = bound_for(constants, config["algorithm"])
    measured, what = measured_for_bound(config, records)
    quantity = "||grad f||^2 (FedAvg)" if config["algorithm"] == "fedavg" else "Phi_K"
    if not math.isfinite(bound):
        return f"{directory}: no derived bound on {quantity} (its step-size condition fails); measured {measured:.4g}"
    ratio = bound / measured if measured > 0 else math.inf
    verdict = "holds" if bound >= measured else "VIOLATED"
    dominant = (
        f"dominant term '{max(terms, key=lambda k: terms[k])}' ({100 * max(terms.values()) / bound:.0f}%)"
        if terms and bound > 0
        else "no term split (FedAvg's bound)"
    )
    return (
        f"{directory}: derived bound {bound:.4g} on {quantity} vs measured {measured:.4g} ({what}): "
        f"bound/measured = {ratio:.3g}x, {verdict}; {dominant}"
    )


def main(args: argparse.Namespace) -> int:
    from .bounds import config_participation_note, constants_for_config, constants_from_json  # torch

    records: list[dict[str, Any]] | None = None
    if args.constants and not Path(args.constants).is_file():  # before the task is built (MNIST loads for seconds)
        raise UsageError(f"--constants {args.constants}: no such file")
    if args.run:
        from perfedavg.runs import rundir
        from perfedavg.runs.config import build_config, read_toml

        run = Path(args.run)
        if not (run / rundir.CONFIG).is_file():
            raise UsageError(f"--run {run} is not a run directory (no {rundir.CONFIG})")
        if args.config:
            raise UsageError("--run and --config both give the config: give one of them")
        cfg, _task = resolve(build_config(read_toml(run / rundir.CONFIG), args.overrides))
        records = rundir.read_metrics(run)
    else:
        cfg, _task = resolve(load_command_config(args.config, args.overrides))
    config = cfg.to_dict()
    notes: list[str] = []
    constants: Constants | None
    if args.constants:
        constants, notes = constants_from_json(args.constants, config)
        notes = [f"estimated constants from {args.constants}", *notes]
    else:
        try:
            constants = constants_for_config(config)
        except UsageError as exc:
            raise UsageError(f"the derived bound does not cover this run's options: {exc}") from None
        if constants is None:
            raise UsageError(
                f"task {config['task']['name']!r} has no exact constants: pass --constants FILE (e.g. the "
                "RUN/constants.json that `perfedavg reproduce constants --run RUN` writes)"
            )
        notes.append("exact constants of the synthetic task (gamma_G, gamma_H from its total variation)")
        if config_participation_note(config):
            notes.append(config_participation_note(config))
    if records is not None:
        print(run_line(args.run, config, constants, records))
        print()
    print(explain_text(config, constants, notes))
    return 0
