r"""Run configuration: a frozen dataclass with one documented field each.

Loaded from TOML (top-level keys plus a ``[task]`` table whose ``name`` picks the
task and whose other keys are that task's options), overridable with
``--set key=value`` (``--set task.h=0.5`` for a task option), validated in
``__post_init__`` with messages that name the option and its allowed range, and saved
resolved (every default filled in) with every run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALGORITHMS = ("fedavg", "fo", "hf", "exact")
#: the largest integer an option may hold: it must fit a signed 64-bit integer (torch's seeds and sizes)
INT_MAX = 2**63 - 1
PROTOCOLS = ("train", "test")


def _doc(text: str, **kw):
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class RunConfig:
    """One run of FedAvg or Per-FedAvg (PAPER.md §2); symbols as in the paper."""

    algorithm: str = _doc("fedavg | fo | hf | exact (Per-FedAvg first-order, Hessian-free, exact HVP)", default="hf")
    K: int = _doc("number of communication rounds K (>= 1)", default=100)
    tau: int = _doc("local steps per round tau (>= 1)", default=5)
    r: float = _doc(
        "fraction of users sampled per round r, in (0, 1], with r*n >= 1 for the task's n users; "
        "m = floor(r*n) users are sampled per round (r*n = 2.5 samples 2; r*n < 1 is refused)",
        default=0.2,
    )
    alpha: float = _doc("inner (personalization) step alpha (>= 0; 0 turns Per-FedAvg into SGD)", default=0.05)
    beta: float = _doc("outer (local update) step beta (> 0)", default=0.05)
    delta: float = _doc("finite-difference width delta of Per-FedAvg (HF) (> 0)", default=1e-3)
    D: int = _doc("batch size D of the inner step (FedAvg: its only batch), >= 1 and <= the smallest user's training samples", default=20)
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
        "the task: a table with name = softmax | ... and the task's own options", default_factory=lambda: {"name": "softmax"}
    )

    def __post_init__(self):
        _check_type(self)
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"algorithm={self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"protocol={self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
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

    # -- (de)serialization -------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["task"] = dict(self.task)
        return out

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _check_type(cfg: RunConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        expected = _annotation_type(f)
        if expected is None:
            continue
        object.__setattr__(cfg, f.name, check_value_type(f.name, value, expected, f.metadata.get("doc", "")))


def check_value_type(name: str, value, expected: type, doc: str = ""):
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
        raise UsageError(f"{name}={shown} has the wrong type {type(value).__name__}: expected {expected.__name__}{where}")
    if expected is int and abs(value) > INT_MAX:
        raise UsageError(f"{name}={value} is out of range: must be at most {INT_MAX} in absolute value{where}")
    return value


def _annotation_type(f) -> type | None:
    return {"int": int, "float": float, "str": str, "bool": bool}.get(str(f.type))


def _check_range(name: str, value, low) -> None:
    if isinstance(value, float) and not math.isfinite(value) or value < low:
        kind = "a finite number " if isinstance(value, float) else ""
        raise UsageError(f"{name}={value} is out of range: must be {kind}>= {low}")


def field_docs() -> dict[str, str]:
    """Option name -> documentation, for ``--help``."""
    return {f.name: f.metadata["doc"] for f in fields(RunConfig)}


def field_defaults() -> dict[str, Any]:
    """Option name -> default value, for ``--help``."""
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default for f in fields(RunConfig)}


# -- TOML ---------------------------------------------------------------------------------
def read_toml(path: str | Path, allow_empty: bool = False) -> dict:
    """Parse a TOML file; any problem (missing, a directory, unreadable, not UTF-8, not
    TOML, empty unless ``allow_empty``) is one :class:`UsageError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"not UTF-8 text ({type(exc).__name__})"
        raise UsageError(f"config file {path} cannot be read: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {path} is not valid TOML: nested too deeply") from None
    if not data and not allow_empty:
        raise UsageError(f"config file {path} is empty (sets no option); leave out --config to run the defaults")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with ``value`` read as a TOML literal (a bare word is a string)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set {item!r} must look like key=value (e.g. --set alpha=0.01)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def build_config(base: Mapping[str, Any] | None = None, overrides: list[str] = ()) -> RunConfig:
    """The resolved config: defaults, then ``base`` (a parsed TOML dict), then ``--set`` overrides.

    ``--set task=NAME`` is ``--set task.name=NAME``; ``--set task.KEY=VALUE`` sets a task option.
    """
    data: dict[str, Any] = {k: v for k, v in (base or {}).items()}
    task = data.pop("task", {"name": "softmax"})
    if not isinstance(task, Mapping):
        raise UsageError(f"task must be a table ([task] with name = ...), not a {type(task).__name__}")
    task = dict(task)
    for item in overrides:
        key, value = parse_override(item)
        if key == "task":
            if not isinstance(value, str):
                raise UsageError(f"--set task={value!r}: the task is chosen by name, e.g. --set task.name=softmax")
            task["name"] = value
        elif key.startswith("task."):
            task[key[len("task.") :]] = value
        else:
            data[key] = value
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(known - {'task'}))}")
    bad_keys = [k for k in task if not isinstance(k, str) or not k]
    if bad_keys:
        raise UsageError(f"task option {bad_keys[0]!r} is not a valid option name")
    task.setdefault("name", "softmax")
    return RunConfig(**data, task=task)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for flat scalars plus one level of tables (what configs hold)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
