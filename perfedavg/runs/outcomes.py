r"""Every user's outcome: the distribution over users of the accuracy before and after adaptation.

The paper reports means over users (docs/paper.md §7); a mean hides users whom the adaptation step
harms and, in the paper's split, the two groups of users (five classes or two).  For per-user
accuracies ``before`` (the shared model's) and ``after`` (after :math:`k` adaptation steps),
:func:`user_outcomes` gives

* ``mean_before``, ``mean_after``: the means over users (the table's numbers);
* ``std_after``: the standard deviation over users of the accuracy after adaptation (population form,
  :math:`\sqrt{\frac1n\sum_i (a_i-\bar a)^2}`: the users are the whole population measured, not a sample);
* ``worst10_before``, ``worst10_after``: the mean accuracy of the worst 10 % of users
  (:data:`WORST_SHARE`; the :math:`\lceil 0.1\,n\rceil` lowest, each column ranked on its own);
* ``harmed``: the share of users whose accuracy after adaptation is strictly below their accuracy
  before, ``helped`` the share strictly above;
* ``by_group``: the same for each group of users where the split has groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: the share of users the "worst users" columns average over
WORST_SHARE = 0.10


def _worst(values: Sequence[float]) -> float:
    """Mean of the lowest ``ceil(WORST_SHARE * n)`` of ``values``."""
    count = max(1, math.ceil(WORST_SHARE * len(values) - 1e-9))
    lowest = sorted(values)[:count]
    return sum(lowest) / count


def user_outcomes(before: Sequence[float], after: Sequence[float], groups: Sequence[int] = ()) -> dict[str, Any]:
    """The summary of per-user accuracies ``before`` and ``after`` adaptation (module docstring); ``groups``:
    each user's group (empty: none)."""
    if len(before) != len(after) or not before or (groups and len(groups) != len(before)):
        raise ValueError(f"per-user values disagree: {len(before)} before, {len(after)} after, {len(groups)} groups")
    n = len(after)
    mean_after = sum(after) / n
    out: dict[str, Any] = {
        "users": n,
        "mean_before": sum(before) / n,
        "mean_after": mean_after,
        "std_after": math.sqrt(sum((a - mean_after) ** 2 for a in after) / n),
        "worst10_before": _worst(before),
        "worst10_after": _worst(after),
        "harmed": sum(a < b for a, b in zip(after, before)) / n,
        "helped": sum(a > b for a, b in zip(after, before)) / n,
    }
    if groups:
        out["by_group"] = {
            str(g): user_outcomes(
                [b for b, h in zip(before, groups) if h == g], [a for a, h in zip(after, groups) if h == g]
            )
            for g in sorted(set(groups))
        }
    return out


def record_outcomes(
    record: Mapping[str, Any], groups: Sequence[int] = (), new_groups: Sequence[int] = ()
) -> dict[str, Any]:
    """The outcomes in an evaluation record that has per-user curves (``adapt_steps > 1``): for each
    adaptation (``train``, ``test``, their ``_batch`` forms, and each again for new users, ``*_new``), after
    one step (``k=1``) and after the last (``k=N``), against the shared model (``k = 0``); empty without curves."""
    per_client = record.get("per_client", {})
    out: dict[str, Any] = {}
    for key, rows in per_client.items():
        if not (key.startswith("accuracy_") and ("_steps" in key)):
            continue
        name = key[len("accuracy_") :].replace("_steps", "")
        users = new_groups if key.endswith("_new") else groups
        last = len(rows) - 1
        out[name] = {f"k={k}": user_outcomes(rows[0], rows[k], users) for k in sorted({1, last})}
    return out
