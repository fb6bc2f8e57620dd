r"""Numeric values of the constants of the analysis: :class:`Constants`.

A task fills one in (exactly for synthetic tasks, estimated for empirical ones); the
statements of :mod:`theory.lemmas` and :mod:`theory.theorem` are evaluated on it.

Assumptions of docs/paper.md §3 [recalled] that the fields quantify, with ``f_i`` the loss
of user i and ``l(w; θ)`` the per-sample loss:

* ``L``: ‖∇f_i(u) − ∇f_i(v)‖ ≤ L‖u − v‖;  ``B``: ‖∇f_i(w)‖ ≤ B;
* ``rho``: ‖∇²f_i(u) − ∇²f_i(v)‖ ≤ ρ‖u − v‖ (operator norm);
* ``sigma_G``: E‖∇l(w;θ) − ∇f_i(w)‖² ≤ σ_G²;  ``sigma_H``: E‖∇²l(w;θ) − ∇²f_i(w)‖² ≤ σ_H²
  (operator norm; Frobenius is larger, so a Frobenius value is also valid);
* ``gamma_G``, ``gamma_H``: (1/n)Σ‖∇f_i − ∇f‖² ≤ γ_G², (1/n)Σ‖∇²f_i − ∇²f‖² ≤ γ_H²;
* ``B_sample``, ``L_sample``, ``rho_sample``: the same three bounds **per sample** (‖∇l(w;θ)‖ ≤ B_s,
  ‖∇²l(w;θ)‖ ≤ L_s, ∇²l(·;θ) ρ_s-Lipschitz, for every θ).  A per-sample bound also bounds every f_i,
  not conversely.  The HF direction's extra term (its D''-batch loss, DERIVATIONS.md §5) and the TV
  statements (§6) need them; the other lemmas need only the per-user L, ρ, B.  Not given, each is taken
  equal to its per-user twin, and :attr:`Constants.sample_assumed` says so (valid when the per-user
  values are per-sample sups, as the synthetic tasks' are; estimated per-user constants are not).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfedavg.errors import UsageError
from perfedavg.runs.config import read_toml  # the project's one TOML reader (torch-free)
from perfedavg.words import did_you_mean

#: each per-sample bound and the per-user bound it defaults to (module docstring)
SAMPLE_TWINS = {"B_sample": "B", "L_sample": "L", "rho_sample": "rho"}

# (lower, lower_inclusive, must_be_integer, help)
_RULES: dict[str, tuple[float, bool, bool, str]] = {
    "L": (0.0, False, False, "smoothness of each f_i, L > 0"),
    "rho": (0.0, True, False, "Hessian Lipschitz constant, rho >= 0"),
    "B": (0.0, True, False, "gradient-norm bound, B >= 0"),
    "sigma_G": (0.0, True, False, "per-sample gradient std, sigma_G >= 0"),
    "sigma_H": (0.0, True, False, "per-sample Hessian std (operator norm), sigma_H >= 0"),
    "gamma_G": (0.0, True, False, "gradient dissimilarity, gamma_G >= 0"),
    "gamma_H": (0.0, True, False, "Hessian dissimilarity, gamma_H >= 0"),
    "F0_gap": (0.0, True, False, "F(w0) - F*, F0_gap >= 0"),
    "B_sample": (0.0, True, False, "per-sample gradient-norm bound, B_sample >= 0 (not given: B)"),
    "L_sample": (0.0, True, False, "per-sample Hessian bound (operator norm), L_sample >= 0 (not given: L)"),
    "rho_sample": (0.0, True, False, "per-sample Hessian Lipschitz constant, rho_sample >= 0 (not given: rho)"),
    "alpha": (0.0, True, False, "inner step, 0 <= alpha <= 1/L (alpha = 0 is FedAvg)"),
    "beta": (0.0, False, False, "outer step, beta > 0"),
    "delta": (0.0, False, False, "HF finite-difference radius, delta > 0"),
    "tau": (1.0, True, True, "local steps per round, integer >= 1"),
    "K": (1.0, True, True, "rounds, integer >= 1"),
    "r": (0.0, False, False, "fraction of users per round, 0 < r <= 1 with r*n an integer >= 1"),
    "n": (1.0, True, True, "number of users, integer >= 1"),
    "D": (1.0, True, True, "inner-step batch size, integer >= 1"),
    "D1": (1.0, True, True, "outer-gradient batch size D', integer >= 1"),
    "D2": (1.0, True, True, "Hessian / HF batch size D'', integer >= 1"),
}


@dataclass(frozen=True, kw_only=True)
class Constants:
    r"""Numeric constants of Per-FedAvg's analysis (all plain floats).

    Problem constants (no default: a task must say them):

    L: float
        ``L``, smoothness of each f_i.
    rho: float
        ``ρ``, Lipschitz constant of ∇²f_i.
    B: float
        ``B``, bound on ‖∇f_i(w)‖.
    sigma_G, sigma_H: float
        ``σ_G``, ``σ_H``, per-sample standard deviations of the gradient and Hessian.
    gamma_G, gamma_H: float
        ``γ_G``, ``γ_H``, dissimilarity of the users' gradients and Hessians.
    F0_gap: float
        ``Δ₀ = F(w_0) − F*``.

    Algorithm constants (defaults: the paper's experiments, docs/paper.md §7 [recalled]):

    alpha: float = 0.01
        ``α``, inner step, in [0, 1/L].
    beta: float = 0.001
        ``β``, outer step.
    delta: float = 0.001
        ``δ``, HF finite-difference radius.
    tau: float = 10, K: float = 1000
        ``τ`` local steps, ``K`` rounds.
    r: float = 0.2, n: float = 50
        fraction of users sampled (``r·n`` of them, an integer), number of users.
    D, D1, D2: float = 40
        batch sizes ``D``, ``D'``, ``D''``.

    Per-sample bounds (module docstring; default: the per-user value, listed in :attr:`sample_assumed`):

    B_sample, L_sample, rho_sample: float | None = None
        ``B_s``, ``L_s``, ``ρ_s``.
    """

    L: float
    rho: float
    B: float
    sigma_G: float
    sigma_H: float
    gamma_G: float
    gamma_H: float
    F0_gap: float
    alpha: float = 0.01
    beta: float = 0.001
    delta: float = 0.001
    tau: float = 10.0
    K: float = 1000.0
    r: float = 0.2
    n: float = 50.0
    D: float = 40.0
    D1: float = 40.0
    D2: float = 40.0
    B_sample: float | None = None
    L_sample: float | None = None
    rho_sample: float | None = None

    def __post_init__(self) -> None:
        assumed = tuple(s for s, user in SAMPLE_TWINS.items() if getattr(self, s) is None)
        for s in assumed:
            object.__setattr__(self, s, getattr(self, SAMPLE_TWINS[s]))
        object.__setattr__(self, "_assumed", assumed)  # not a field: as_dict and equality see the values only
        for name, (low, inclusive, integer, help_) in _RULES.items():
            raw = getattr(self, name)
            if isinstance(raw, bool):  # TOML `L = true` is a mistake, not the number 1
                raise UsageError(f"constant {name}={str(raw).lower()} is a boolean, not a number ({help_})")
            if not isinstance(raw, (int, float)):
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    raise UsageError(f"constant {name}={raw!r} is not a number ({help_})") from None
            else:
                value = float(raw)
            if not math.isfinite(value):
                raise UsageError(f"constant {name}={raw!r} must be finite ({help_})")
            if value < low or (value == low and not inclusive):
                raise UsageError(f"constant {name}={value:g} is out of range ({help_})")
            if integer and value != round(value):
                raise UsageError(f"constant {name}={value:g} must be an integer ({help_})")
            object.__setattr__(self, name, value)
        if self.alpha * self.L > 1.0 + 1e-12:
            raise UsageError(
                f"constant alpha={self.alpha:g} is out of range: need 0 <= alpha <= 1/L = "
                f"{1.0 / self.L:g} (the lemmas of docs/paper.md §4 assume alpha <= 1/L)"
            )
        if self.r > 1.0:
            raise UsageError(f"constant r={self.r:g} is out of range ({_RULES['r'][3]})")
        m = self.r * self.n
        if m < 1.0 - 1e-9 or abs(m - round(m)) > 1e-6:
            raise UsageError(
                f"constant r={self.r:g} with n={self.n:g} gives r*n={m:g} users per round; r*n must be an integer >= 1"
            )

    # -- construction ---------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Constants:
        """Build from a mapping ``{field: number}``; unknown or missing keys are a UsageError."""
        names = set(cls.field_names())
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(
                f"unknown constant {unknown[0]!r}{did_you_mean(unknown[0], names)}; "
                f"allowed: {', '.join(cls.field_names())}"
            )
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in values]
        if missing:
            raise UsageError(
                f"missing {'constant' if len(missing) == 1 else 'constants'} {', '.join(missing)} (no default: "
                "a task must give them; `perfedavg bounds --task NAME` takes a synthetic task's exact ones)"
            )
        return cls(**dict(values))

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Constants:
        """Load from a TOML file (top-level keys, or a ``[constants]`` table), then apply ``overrides``."""
        try:
            data = read_toml(path, allow_empty=True)
        except UsageError as exc:
            raise UsageError(f"--constants: {exc}") from None
        if "constants" in data and isinstance(data["constants"], dict):
            data = data["constants"]
        data = {k: v for k, v in data.items() if not isinstance(v, dict)}
        data.update(overrides or {})
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Constants:
        r"""Load constants from ``path``: a TOML file (:meth:`from_toml`), or the JSON document that
        ``perfedavg reproduce constants`` writes (:func:`empirical.constants.document`: a ``constants``
        mapping plus ``per_round`` estimates), then apply ``overrides`` (flags win).

        A problem constant that was **not estimated** is *missing*, never a number: a ``null`` in
        ``constants``, or a field whose every ``per_round`` value is ``null`` (e.g. ``rho`` with
        ``rho_directions = 0``; the writer puts 0.0 in ``constants`` then, which would silently remove
        every ρ-term).  Missing fields are NaN in the returned object (:meth:`with_missing`; listed by
        :attr:`missing`), so every value that needs one is NaN and ``perfedavg bounds`` prints it as
        not evaluable.
        """
        path = Path(path)
        if path.suffix.lower() != ".json" and not (path.is_file() and path.read_bytes()[:64].lstrip().startswith(b"{")):
            return cls.from_toml(path, overrides)  # TOML (and its error messages)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--constants: cannot read {path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--constants: {path} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise UsageError(f"--constants: {path}: expected a JSON object with a 'constants' mapping")
        data = doc.get("constants", doc)
        if not isinstance(data, dict):
            raise UsageError(f"--constants: {path}: 'constants' must be a mapping of names to numbers")
        data = {k: v for k, v in data.items() if k in cls.field_names() or not isinstance(v, (dict, list, str))}
        problem = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        per_round = doc.get("per_round")
        rounds = per_round if isinstance(per_round, list) else []
        missing = {k for k in problem if k in data and data[k] is None}
        for k in problem:
            values = [r.get(k) for r in rounds if isinstance(r, dict) and k in r]
            if values and all(v is None for v in values):
                missing.add(k)
        data.update(overrides or {})
        missing -= set(overrides or {})
        # placeholders that pass validation, replaced by NaN right after (L must be > 0)
        for k in missing:
            data[k] = 1e-300 if k == "L" else 0.0
        return cls.from_dict(data).with_missing(missing)

    def with_missing(self, names: Iterable[str]) -> Constants:
        """A copy whose fields ``names`` are NaN: not known (see :meth:`from_file`); NaN propagates through
        every formula that uses them, so no missing constant is ever read as a number."""
        out = self.replace()
        names = set(names)
        names |= {s for s in out.sample_assumed if SAMPLE_TWINS[s] in names}  # a twin copied from a missing value
        for name in names:
            if name not in self.field_names():
                raise UsageError(f"unknown constant {name}; allowed: {', '.join(self.field_names())}")
            object.__setattr__(out, name, math.nan)
        return out

    @property
    def sample_assumed(self) -> tuple[str, ...]:
        """The per-sample fields not given, taken equal to their per-user twins (module docstring)."""
        assumed: tuple[str, ...] = getattr(self, "_assumed", ())
        return assumed

    @property
    def missing(self) -> frozenset[str]:
        """Names of the fields that are not known (NaN, :meth:`with_missing`); a per-sample field taken from a
        missing per-user one (:attr:`sample_assumed`) is NaN too but not listed: its twin is."""
        nan = (k for k, v in self.as_dict().items() if isinstance(v, float) and math.isnan(v))
        return frozenset(k for k in nan if k not in self.sample_assumed)

    def replace(self, **changes: float) -> Constants:
        """A copy with some fields changed (validated again); a per-sample field taken from its per-user twin
        follows the twin."""
        follow: dict[str, Any] = {s: None for s in self.sample_assumed if s not in changes}
        return dataclasses.replace(self, **follow, **changes)

    def as_dict(self) -> dict[str, float]:
        """``{field: value}`` as plain floats."""
        return {name: getattr(self, name) for name in self.field_names()}

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back (a per-sample value only where it was given)."""
        return "".join(f"{k} = {v!r}\n" for k, v in self.as_dict().items() if k not in self.sample_assumed)
