r"""Current and new users after a few adaptation steps: the index entry of ``perfedavg reproduce personalization``
(:mod:`empirical.personalization`, docs/paper.md §1, §7).

That command trains on MNIST / CIFAR-10 for a long time, so the figures pipeline never runs it: the entry shows
its saved output, found in ``<runs>/personalization`` (``personalization.json``, the focused table
``personalization.md`` and the per-user ECDF pictures ``personalization-<dataset>.png``, copied beside the
index), or is skipped with a note naming the command that makes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfedavg.runs.rundir import atomic_write_bytes, read_json

from . import store

NAME = "personalization"
TITLE = "Current and new users after a few adaptation steps: every user's accuracy (MNIST, CIFAR-10)"
EMPIRICAL = True


def _missing(root: Path) -> store.Skip:
    src = Path(root) / NAME
    return store.Skip(
        f"no saved results in {src}: run `perfedavg reproduce personalization --out {src}` (needs the data; "
        "`--quick` for a reduced version)"
    )


def run(root: Path, level: str) -> None:
    """Nothing is run here (the command's training takes hours): skipped with a note when its output is missing."""
    if not (Path(root) / NAME / "personalization.json").is_file():
        raise _missing(root)


def draw(root: Path, out: Path) -> dict[str, Any]:
    """Copy the saved ECDF pictures beside the index and show the focused table; returns ``{"files", "caption",
    "details", "table_markdown"}``."""
    src = Path(root) / NAME
    if not (src / "personalization.json").is_file():
        raise _missing(root)
    result = read_json(src / "personalization.json")
    files = []
    for name in result.get("pictures", []):
        if (src / name).is_file():
            atomic_write_bytes(Path(out) / name, (src / name).read_bytes())
            files.append(Path(out) / name)
    plan, ks = result["plan"], result["steps"]
    caption = (
        f"Every user's test accuracy (ECDF, seeds pooled) for current users and new users held out of training, "
        f"before adaptation (k = 0) and after 1 and {ks[-1]} full-batch steps of size α = {result['alpha']:g} "
        f"(τ = {result['tau']}, K = {plan['K']}, {plan['seeds']} seed{'s' if plan['seeds'] != 1 else ''}). "
        "The table gives the means over seeds; read from `perfedavg reproduce personalization`'s output."
    )
    details = (
        "What it shows: how current users and new users (held out of training) fare after k = 0, 1, ..., N "
        "adaptation steps from each method's shared model (empirical/personalization.py). What the theory and the "
        "paper predict: Per-FedAvg's model is one that current or new users adapt to in one or a few steps "
        "(docs/paper.md §1) and new users' personalized gradient stays close to the training users' (figure "
        "new_users); no bound is drawn here."
    )
    md = (src / "personalization.md").read_text() if (src / "personalization.md").is_file() else ""
    md = "\n".join(line for line in md.splitlines() if not line.startswith("# "))  # the entry has its own title
    return {"files": files, "caption": caption, "details": details, "table_markdown": md}
