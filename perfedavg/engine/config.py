r"""Run configuration: a frozen dataclass with one documented field each.

Validated in ``__post_init__`` with messages that name the option and its allowed range.
Reading it from TOML and ``--set`` overrides is :mod:`perfedavg.runs.config`'s job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from perfedavg.algorithms import ALGORITHMS, DEFAULT_DELTA, PER_FEDAVG, Algorithm
from perfedavg.errors import UsageError

#: the largest integer an option may hold: it must fit a signed 64-bit integer (torch's seeds and sizes)
INT_MAX = 2**63 - 1
PROTOCOLS = ("train", "test")
#: the rules of ``match_budget`` (:func:`perfedavg.engine.costs.budget_matched`)
MATCH_RULES = ("steps", "batch")


def _doc(text: str, **kw: Any) -> Any:
    """A dataclass field with its documentation (``--help``) in the metadata."""
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class RunConfig:
    """One run of FedAvg or Per-FedAvg (docs/paper.md §2); symbols as in the paper."""

    algorithm: Algorithm = _doc(  # noqa: RUF009 (_doc returns a dataclasses.field, which ruff cannot see)
        "fedavg | fo | hf | exact (Per-FedAvg first-order, Hessian-free, exact HVP)", default="hf"
    )
    K: int = _doc("number of communication rounds K (>= 1)", default=100)
    tau: int = _doc("local steps per round tau (>= 1)", default=5)
    r: float = _doc(
        "fraction of users sampled per round r, in (0, 1], with r*n >= 1 for the task's n users; "
        "m = floor(r*n) users are sampled per round (r*n = 2.5 samples 2; r*n < 1 is refused)",
        default=0.2,
    )
    alpha: float = _doc("inner (personalization) step alpha (>= 0; 0 turns Per-FedAvg into SGD)", default=0.05)
    beta: float = _doc("outer (local update) step beta (> 0)", default=0.05)
    delta: float = _doc("finite-difference width delta of Per-FedAvg (HF) (> 0)", default=DEFAULT_DELTA)
    D: int = _doc(
        "batch size D of the inner step (FedAvg: its only batch), >= 1 and <= the smallest user's training samples",
        default=20,
    )
    D1: int = _doc("batch size D' of the outer gradient, >= 1 and <= the smallest user's training samples", default=20)
    D2: int = _doc("batch size D'' of the Hessian term, >= 1 and <= the smallest user's training samples", default=20)
    seed: int = _doc("seed of every random draw (>= 0)", default=0)
    eval_every: int = _doc("evaluate every this many rounds (>= 1); round 0 and K are always evaluated", default=10)
    eval_batch: int = _doc(
        "also report the adaptation step as one SGD step on a batch of N samples per user (the paper's "
        "wording; *_batch_step metrics), drawn from a stream of its own so training is unchanged; >= 0 and <= the "
        "largest user's data (0: only the full-batch step on the user's whole training/test data; a user with "
        "fewer samples uses all)",
        default=0,
    )
    adapt_steps: int = _doc(
        "evaluate each user's model after k = 0, 1, ..., N adaptation steps (N >= 1): N = 1 records the one step "
        "only; N > 1 adds the curves personalized_{loss,accuracy}_{train,test}_steps (and *_batch_steps with "
        "eval_batch: a fresh batch per step), which estimate the k-step personalized objective F_k; costs N "
        "evaluations",
        default=1,
    )
    adapt_step: float = _doc(
        "step size of the adaptation steps of the *_steps curves (>= 0; 0: the run's alpha, the paper's)",
        default=0.0,
    )
    match_budget: str = _doc(
        "FedAvg only: spend per round what this Per-FedAvg variant (fo | hf | exact) spends with the same tau and "
        "batch sizes, by match_rule; '' (default): FedAvg as configured",
        default="",
    )
    match_rule: str = _doc(
        "how match_budget matches: steps = as many gradient evaluations (tau times the variant's gradients per "
        "step, an HVP counted as 2: FO 2, HF 4, exact 4) | batch = as many per-sample gradients in tau steps (one "
        "batch of FO D+D', HF and exact D+D'+2D'')",
        default="steps",
    )
    protocol: str = _doc(
        "personalization protocol reported as personalized_accuracy: train (adapt on the user's training "
        "data, leak-free) | test (adapt on its test data, as the paper did); both are always recorded",
        default="train",
    )
    track_inner: bool = _doc(
        "measure ||grad F(w_bar_{k+1,t})||^2 at every local step of every round (the theorem's own quantity; costly)",
        default=False,
    )
    dtype: str = _doc("float32 | float64", default="float32")
    device: str = _doc("torch device: cpu | cuda | cuda:N", default="cpu")
    checkpoint_every: int = _doc("save a resumable checkpoint every this many rounds (0: only at the end)", default=10)
    task: Mapping[str, Any] = _doc(
        "the task: a table with name = softmax | ... and the task's own options",
        default_factory=lambda: {"name": "softmax"},
    )

    def __post_init__(self) -> None:
        _check_type(self)
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"algorithm={self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"protocol={self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.match_budget not in ("", *PER_FEDAVG):
            raise UsageError(f"match_budget={self.match_budget!r} is not one of '', {', '.join(PER_FEDAVG)}")
        if self.match_budget and self.algorithm != "fedavg":
            raise UsageError(f"match_budget={self.match_budget!r} applies to algorithm=fedavg, not {self.algorithm}")
        if self.match_rule not in MATCH_RULES:
            raise UsageError(f"match_rule={self.match_rule!r} is not one of {', '.join(MATCH_RULES)}")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype={self.dtype!r} is not one of float32, float64")
        _check_range("K", self.K, 1)
        _check_range("tau", self.tau, 1)
        _check_range("D", self.D, 1)
        _check_range("D1", self.D1, 1)
        _check_range("D2", self.D2, 1)
        _check_range("seed", self.seed, 0)
        _check_range("eval_every", self.eval_every, 1)
        _check_range("eval_batch", self.eval_batch, 0)
        _check_range("adapt_steps", self.adapt_steps, 1)
        _check_range("adapt_step", self.adapt_step, 0.0)
        _check_range("checkpoint_every", self.checkpoint_every, 0)
        _check_range("alpha", self.alpha, 0.0)
        if not (math.isfinite(self.r) and 0 < self.r <= 1):
            raise UsageError(f"r={self.r} is out of range: the fraction of users per round must be in (0, 1]")
        for name in ("beta", "delta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name}={value} is out of range: must be a finite number > 0")
        if not isinstance(self.task, Mapping) or not isinstance(self.task.get("name"), str):
            raise UsageError("task must be a table with a string 'name' (e.g. [task] name = \"softmax\")")

    @property
    def adaptation_step(self) -> float:
        """The step size of the evaluation's k-step curves: ``adapt_step``, or ``alpha`` when it is 0."""
        return self.adapt_step or self.alpha

    # -- (de)serialization -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["task"] = dict(self.task)
        return out

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def _check_type(cfg: RunConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        expected = _annotation_type(f)
        if expected is None:
            continue
        object.__setattr__(cfg, f.name, check_value_type(f.name, value, expected, f.metadata.get("doc", "")))


def check_value_type(name: str, value: Any, expected: type, doc: str = "") -> Any:
    """``value`` if it has type ``expected`` (an int is accepted for a float and converted;
    a bool is never a number); else a one-line :class:`UsageError` naming ``name``."""
    where = f" ({doc})" if doc else ""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise UsageError(f"{name}={value} is out of range: too large for a float{where}") from None
    if not isinstance(value, expected) or (expected in (int, float) and isinstance(value, bool)):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise UsageError(
            f"{name}={shown} has the wrong type {type(value).__name__}: expected {expected.__name__}{where}"
        )
    if isinstance(value, int) and expected is int and abs(value) > INT_MAX:
        raise UsageError(f"{name}={value} is out of range: must be at most {INT_MAX} in absolute value{where}")
    return value


def _annotation_type(f: Field[Any]) -> type | None:
    return {"int": int, "float": float, "str": str, "Algorithm": str, "bool": bool}.get(str(f.type))


def _check_range(name: str, value: float, low: float) -> None:
    if (isinstance(value, float) and not math.isfinite(value)) or value < low:
        kind = "a finite number " if isinstance(value, float) else ""
        raise UsageError(f"{name}={value} is out of range: must be {kind}>= {low}")


def field_docs() -> dict[str, str]:
    """Option name -> documentation, for ``--help``."""
    return {f.name: f.metadata["doc"] for f in fields(RunConfig)}


def field_defaults() -> dict[str, Any]:
    """Option name -> default value, for ``--help``."""
    return {f.name: _default(f) for f in fields(RunConfig)}


def _default(f: Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    assert f.default_factory is not dataclasses.MISSING, f"{f.name} has no default"  # every option has one
    return f.default_factory()
