r"""New users: the task option ``holdout_users``, which users it keeps out of training, and how.

The paper's abstract promises a shared model that "current or new users" adapt in a few steps
(docs/paper.md §1); its experiments measure current users only.  ``holdout_users`` (every task) keeps
some of the split's users out of training: the round loop never samples them, never reads their data,
nothing is chosen by them; the evaluation measures them like the others under both protocols
(:func:`perfedavg.engine.rounds.evaluate`'s ``*_new`` keys).  The rule:

* a value ``v >= 1`` is a count (an integer); ``0 < v < 1`` a fraction of the ``n`` users,
  :math:`\lfloor v n \rfloor` of them (at least one); 0 (the default) holds nobody out and leaves the task,
  and every result, as it was;
* the held-out users are drawn uniformly without replacement by a generator seeded with the task's data
  seed (``partition_seed`` of the image tasks, ``data_seed`` of the synthetic ones) and a stream of its own
  (:data:`HOLDOUT_STREAM`), so the split and the training draws are untouched;
* a split with groups of users (the paper's: the first half holds five classes, the second two;
  ``Task.groups``) is held out **stratified**: each group gives its share of the count by largest
  remainder (the paper's 50 users at 20 %: 5 of each group), at least one user per group, and keeps at
  least one user in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from perfedavg.errors import UsageError
from perfedavg.runs.registry import option_field
from perfedavg.words import plural

if TYPE_CHECKING:
    from perfedavg.engine.task import Task

#: the stream of the held-out users' draw, apart from the split's own
HOLDOUT_STREAM = 4099
HOLDOUT_DOC = (
    "users kept out of training and evaluated as new users (*_new metrics): a count (an integer >= 1) or a "
    "fraction in (0, 1) of the users (floor(v*n), at least one); drawn with the data seed, stratified by group "
    "for the paper's split (both groups kept); 0: every user trains"
)


def holdout_field() -> Any:
    """The ``holdout_users`` field of a task's options."""
    return option_field(HOLDOUT_DOC, 0.0)


def holdout_count(value: float, n: int) -> int:
    """How many of ``n`` users ``holdout_users = value`` holds out (module docstring); a bad value is one
    :class:`UsageError`."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0) or (value >= 1 and value != int(value)):
        raise UsageError(
            f"task.holdout_users={value:g} is out of range: a count (an integer >= 1), a fraction in (0, 1), or 0"
        )
    count = int(value) if value >= 1 else max(1, math.floor(Fraction(repr(value)) * n)) if value > 0 else 0
    if count >= n:
        raise UsageError(f"task.holdout_users={value:g} holds out {count} of the {n} users: at least one must train")
    return count


def held_out_users(n: int, value: float, seed: int, groups: Sequence[int] = ()) -> list[int]:
    """The users (numbers in ``0..n-1``, sorted) that ``holdout_users = value`` keeps out of a split of ``n``
    users with data seed ``seed`` and user groups ``groups`` (empty: none); module docstring."""
    count = holdout_count(value, n)
    if count == 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([seed, HOLDOUT_STREAM]))
    if not groups:
        return sorted(int(i) for i in rng.choice(n, size=count, replace=False))
    members = {g: [i for i in range(n) if groups[i] == g] for g in sorted(set(groups))}
    if count < len(members):
        raise UsageError(
            f"task.holdout_users={value:g} holds out {plural(count, 'user')}, fewer than the split's "
            f"{len(members)} groups: hold out at least {len(members)} so that every group has new users"
        )
    shares = _largest_remainder([len(m) for m in members.values()], count)
    chosen: list[int] = []
    for (g, users), share in zip(members.items(), shares):
        if share >= len(users):
            raise UsageError(
                f"task.holdout_users={value:g} would hold out all {len(users)} users of group {g}: lower it"
            )
        chosen += [users[int(j)] for j in rng.choice(len(users), size=share, replace=False)]
    return sorted(chosen)


def _largest_remainder(sizes: list[int], count: int) -> list[int]:
    """``count`` split in proportion to ``sizes`` (largest remainder, ties to the first), at least one each."""
    total = sum(sizes)
    exact = [Fraction(count * s, total) for s in sizes]
    shares = [max(1, math.floor(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda j: (-(exact[j] - math.floor(exact[j])), j))
    for j in order:
        if sum(shares) >= count:
            break
        shares[j] += 1
    while sum(shares) > count:  # the minimum of one each overshot: take back from the largest
        j = max(range(len(sizes)), key=lambda k: (shares[k], -k))
        shares[j] -= 1
    return shares


def apply_holdout(task: Task, options: Any) -> Task:
    """``task`` with the users ``options.holdout_users`` names held out (:func:`perfedavg.engine.task.hold_out`);
    ``task`` itself when it is 0 or the options have no such field."""
    from perfedavg.engine.task import hold_out

    value = getattr(options, "holdout_users", 0)
    if not value:
        return task
    seed = int(getattr(options, "partition_seed", getattr(options, "data_seed", 0)))
    return hold_out(task, held_out_users(task.n_clients, value, seed, task.groups))
