r"""The options every synthetic task shares, their size limits and their validation.

Each task's options dataclass (:class:`synthetic.margin.MarginOptions`,
:class:`synthetic.quadratic.QuadraticOptions`, :class:`synthetic.softmax.SoftmaxOptions`) extends
:class:`SyntheticOptions` with its own fields, says in ``h``'s help what the dial's end point h = 1
means for it (:func:`dial_field`), and may change a shared default (:func:`shared_field`).
Validation runs once, in :meth:`SyntheticOptions.__post_init__`: the shared fields first, then the
task's own :meth:`SyntheticOptions.own_rules`.  Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from perfedavg.runs.holdout import holdout_count, holdout_field
from perfedavg.runs.registry import check_option, option_field

#: Upper limits on a synthetic task's sizes, checked before anything is allocated.  Every task
#: stores (n, S) index and weight tables (16 bytes per entry), (S, d) features, and ``perfedavg
#: check`` builds per-sample (S, P) gradients and an S x S ground-cost matrix for W1; the limits
#: keep each of these under about 1 GB (a laptop's worth), far above what any experiment here uses.
MAX_CLIENTS = 10_000
MAX_DIM = 10_000
MAX_SUPPORT = 100_000
MAX_CLASSES = 1_000
#: n_clients * support (the (n, S) tables: 16 B per entry -> 320 MB at the limit)
MAX_CLIENT_TABLE = 20_000_000
#: support * dim (the (S, d) float64 features -> 400 MB at the limit)
MAX_FEATURE_TABLE = 50_000_000

#: one validation rule: (option name, whether its value is allowed, the allowed range in words)
Rule = tuple[str, bool, str]


def dial_field(at_one: str) -> Any:
    """The ``h`` field of a task: the heterogeneity dial, with what ``h = 1`` means for that task."""
    return option_field(f"heterogeneity dial h in [0, 1]: 0 identical users, 1 {at_one}", 0.5)


def shared_field(name: str, default: Any) -> Any:
    """The shared field ``name`` of :class:`SyntheticOptions` with a task's own default (same help)."""
    (base,) = (f for f in fields(SyntheticOptions) if f.name == name)
    return option_field(base.metadata["doc"], default)


@dataclass(frozen=True)
class SyntheticOptions:
    """Options of every synthetic task: users, feature dimension, support, dial, feature radius, data seed.

    A task subclass adds its fields after these (``--list-tasks`` shows them in that order), names
    itself in :attr:`TASK` for error messages, and returns its own checks from :meth:`own_rules`.
    """

    #: the task name that error messages give ("task.h=2 is out of range for task 'softmax': ...")
    TASK: ClassVar[str] = "synthetic"

    n_clients: int = option_field(f"number of users n (2..{MAX_CLIENTS})", 20)
    dim: int = option_field(f"feature dimension d (1..{MAX_DIM})", 10)
    support: int = option_field(
        f"support points per split S (clusters or classes..{MAX_SUPPORT}; n_clients*S <= 2e7, dim*S <= 5e7)", 200
    )
    h: float = dial_field("each user on its own distribution")
    radius: float = option_field("feature norm bound R (> 0)", 1.0)
    data_seed: int = option_field("seed of the data (>= 0); the run's seed drives the algorithm", 0)
    holdout_users: float = holdout_field()

    def own_rules(self) -> Sequence[Rule]:
        """The task's checks of its own fields, run after the shared ones (none here)."""
        return ()

    def __post_init__(self) -> None:
        check_task_options(self.TASK, self, self.own_rules())


def check_task_options(task: str, o: SyntheticOptions, extra: Sequence[Rule] = ()) -> None:
    r"""Validate a synthetic task's options: the shared fields, then each ``(name, ok, allowed)`` of ``extra``.

    ``n_clients`` in [2, MAX_CLIENTS], ``dim`` in [1, MAX_DIM], ``clusters`` in [1, MAX_SUPPORT] and
    ``classes`` in [2, MAX_CLASSES] (for a task that has them), ``support`` in [clusters or classes,
    MAX_SUPPORT], ``h`` in [0, 1], ``radius`` > 0, ``data_seed`` >= 0, and the table sizes
    n_clients·support ≤ MAX_CLIENT_TABLE, support·dim ≤ MAX_FEATURE_TABLE.  The first failure raises a
    one-line :class:`perfedavg.errors.UsageError` naming the option and its allowed range.
    """
    rules: list[Rule] = [
        ("n_clients", 2 <= o.n_clients <= MAX_CLIENTS, f"must be in [2, {MAX_CLIENTS}]"),
        ("dim", 1 <= o.dim <= MAX_DIM, f"must be in [1, {MAX_DIM}]"),
    ]
    clusters, classes = getattr(o, "clusters", None), getattr(o, "classes", None)
    if clusters is not None:
        rules.append(("clusters", 1 <= clusters <= MAX_SUPPORT, f"must be in [1, {MAX_SUPPORT}]"))
    if classes is not None:
        rules.append(("classes", 2 <= classes <= MAX_CLASSES, f"must be in [2, {MAX_CLASSES}]"))
    if clusters is not None:  # every cluster (class) needs a support point
        least, floor = "clusters", clusters
    else:
        least, floor = "classes", classes if classes is not None else 1
    rules += [
        ("support", floor <= o.support <= MAX_SUPPORT, f"must be in [{least} = {floor}, {MAX_SUPPORT}]"),
        (
            "support",
            o.n_clients * o.support <= MAX_CLIENT_TABLE,
            f"n_clients * support must be <= {MAX_CLIENT_TABLE} (here {o.n_clients} * {o.support})",
        ),
        (
            "support",
            o.dim * o.support <= MAX_FEATURE_TABLE,
            f"dim * support must be <= {MAX_FEATURE_TABLE} (here {o.dim} * {o.support})",
        ),
        ("h", 0.0 <= o.h <= 1.0, "must be in [0, 1]"),
        ("radius", 0 < o.radius < float("inf"), "must be a finite number > 0"),
        ("data_seed", o.data_seed >= 0, "must be >= 0"),
    ]
    for name, ok, allowed in (*rules, *extra):
        check_option(task, name, getattr(o, name), bool(ok), allowed)
    holdout_count(o.holdout_users, o.n_clients)
