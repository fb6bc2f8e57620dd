"""Names of run directories: every scheme the project uses, in one place.

Each scheme stays as it is because saved results and tests find their runs by these names:

* :func:`sweep_run_name`: a sweep's run, ``key=value,...`` of its varied options (``perfedavg sweep``);
* :func:`figure_run_name`: a figure's run, ``<label>-<hash of its config>`` (:mod:`figures.store`);
* :func:`seed_batch_name`: a seed-batched synthetic configuration, the hash of its config with the
  seed left out, each seed below it as ``seed<s>`` (:mod:`synthetic.rates`);
* :func:`table1_cell_path`: a Table 1 cell, ``<dataset>/tau<τ>-alpha<α>/<method>-seed<s>``
  (:mod:`empirical.reproduce`);
* :data:`FIGURE_RUNS` and :func:`figure_results`: the figures' folder of saved runs, where the commands whose
  results a figure shows write by default.

A name that hashes the config changes whenever the config does, so a changed experiment
never reuses a stale run.  No torch here: the sweep's spec imports it at ``--help`` time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

#: longest sweep run name; a longer one is cut and completed by a hash of the whole name
MAX_NAME = 150
#: the folder of saved runs that ``perfedavg figures`` reads (``--runs``), and ``--quick``'s
FIGURE_RUNS = "runs/figures"
FIGURE_RUNS_QUICK = "runs/figures-quick"


def figure_results(name: str) -> str:
    """Where a command whose results a figure shows (``perfedavg reproduce table1``, ``... personalization``)
    writes by default: the figures' own folder, so ``perfedavg figures`` finds them."""
    return f"{FIGURE_RUNS}/{name}"


def config_hash(config: Mapping[str, Any], digits: int = 10) -> str:
    """The first ``digits`` hex digits of the SHA-1 of ``config``'s canonical JSON (sorted keys)."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:digits]


def format_value(value: Any) -> str:
    """A value as it appears in a sweep run name: ints plainly, floats shortest round-trip
    (``repr``), booleans ``true``/``false``, strings with unsafe characters as ``_``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value)) or "_"


def sweep_run_name(varied: Mapping[str, Any]) -> str:
    r"""``key=value,key=value`` in axis order; over :data:`MAX_NAME` characters it is cut and
    completed by 10 hex digits of the SHA-1 of the full name (still stable and unique)."""
    name = ",".join(f"{k}={format_value(v)}" for k, v in varied.items()) or "base"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 11]}-{digest}"
    return name


def figure_run_name(label: str, config: Mapping[str, Any]) -> str:
    """``<label>-<config hash>``: a figure's run of ``config`` (a run-config dict)."""
    return f"{label}-{config_hash(config)}"


def seed_batch_name(cfg: Any) -> str:
    """12 hex digits of the hash of ``cfg`` (a :class:`perfedavg.engine.config.RunConfig`) with its
    seed set to 0: the folder shared by the seeds of one configuration."""
    return config_hash(cfg.replace(seed=0).to_dict(), digits=12)


def seed_dir_name(seed: int) -> str:
    """The folder of one seed below :func:`seed_batch_name`."""
    return f"seed{seed}"


def table1_cell_path(dataset: str, tau: int, alpha: float, method: str, seed: int) -> str:
    """``<dataset>/tau<τ>-alpha<α>/<method>-seed<s>``: a Table 1 cell, relative to its ``runs/`` folder."""
    return f"{dataset}/tau{tau}-alpha{alpha:g}/{method}-seed{seed}"
