r"""The toolkit from Python: run a configuration in memory, read its metrics as arrays, evaluate the bounds.

Eight names, re-exported at the package's top (``import perfedavg; perfedavg.run(...)``):

* :func:`run`: one run, in memory unless ``out`` names a run directory, returned as a :class:`Result`;
* :class:`Result`: the resolved config, the metrics as numpy arrays (one entry per evaluated round), the
  task's exact constants and the derived bound evaluated for them (docs/paper.md §5), beside what the
  run measured of the bounded quantity;
* :func:`bounds`: the derived bound and the paper's recalled shape for given constants (no torch);
* :func:`task_constants`: a synthetic task's exact constants (what ``perfedavg bounds --task`` uses);
* :func:`register_task`: a task of your own, usable by name in this process;
* :func:`build_task`, :func:`objectives`, :func:`directions`: a task's data, its users' exact f_i and F_i,
  and the local directions of FedAvg and the three Per-FedAvg variants at a model (the tutorial's
  first sections).

>>> import perfedavg
>>> result = perfedavg.run(K=20, eval_every=10)  # the first run of `perfedavg run`, shortened
>>> result.metrics["round"].tolist()
[0, 10, 20]
>>> result.metrics["personalized_accuracy"].shape
(3,)
>>> bool(result.bound >= result.measured)  # the derived bound lies above what the run measured
True
>>> report = perfedavg.bounds(result.constants)
>>> report.dominant(report.derived_terms)
'client sampling'

Command-line equivalents: ``perfedavg run`` (:func:`run` with ``out``), ``perfedavg explain --run DIR``
(:attr:`Result.bound` beside :attr:`Result.measured`), ``perfedavg bounds --task NAME``
(:func:`task_constants` and :func:`bounds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from perfedavg.engine.objective import ClientObjectives
    from perfedavg.engine.task import Task
    from theory.checks_api import ConvergenceReport
    from theory.constants import Constants

__all__ = ["Result", "bounds", "build_task", "directions", "objectives", "register_task", "run", "task_constants"]


@dataclass(frozen=True)
class Result:
    """What :func:`run` returns.

    ``config``: the resolved config (every default filled in, as ``config.toml`` would hold it);
    ``metrics``: each scalar metric of the records as a float array over the evaluated rounds (``round``
    as integers; NaN where a round did not record it, e.g. ``stationarity_avg`` at round 0);
    ``records``: the records themselves (``metrics.jsonl``'s lines, per-user values under ``per_client``);
    ``constants``: the task's exact :class:`theory.constants.Constants` for this run, or ``None`` for a
    task that does not know them (MNIST, CIFAR-10: estimate them with ``perfedavg reproduce constants``);
    ``bound``, ``bound_terms``: the derived explicit bound for the run's algorithm and its terms (``inf``
    when its step-size condition fails; FedAvg's has no terms); ``measured`` and ``measured_what``: what
    the run measured of the quantity the bound bounds (Φ_K with ``track_inner = True``, else the closest
    quantity it records, :func:`figures.explain.measured_for_bound`); ``run_dir``: the run directory when
    ``out`` was given; ``no_bound``: why a task with exact constants has none for this run (e.g. α above
    the lemmas' 1/L), else empty.
    """

    config: dict[str, Any]
    metrics: dict[str, np.ndarray]
    records: list[dict[str, Any]] = field(repr=False)
    constants: Constants | None = field(repr=False)
    bound: float | None
    bound_terms: dict[str, float] = field(repr=False)
    measured: float
    measured_what: str = field(repr=False)
    run_dir: Path | None = None
    no_bound: str = ""

    @property
    def final(self) -> dict[str, Any]:
        """The last evaluated round's record."""
        return self.records[-1]

    @property
    def tightness(self) -> float:
        """``bound / measured``: how loose the bound is for this run (1 would be exact; NaN without a bound)."""
        if self.bound is None or not self.measured > 0:
            return math.nan
        return self.bound / self.measured

    def explain(self) -> str:
        """What ``perfedavg explain`` prints for this run: its constants, the derived bound term by term beside
        the measured value, the tightness and the dominant term (or why there is no bound)."""
        if self.constants is None:
            return self.no_bound or (
                f"task {self.config['task']['name']!r} does not know its constants exactly: estimate them with "
                "`perfedavg reproduce constants`, then `perfedavg explain --run DIR --constants FILE`"
            )
        from figures.explain import explain_text

        return explain_text(self.config, self.constants)


def run(
    config: str | Path | Mapping[str, Any] | None = None, *, out: str | Path | None = None, **options: Any
) -> Result:
    """Run a configuration and return its :class:`Result`.

    ``config``: ``None`` for the first run of ``perfedavg run`` (:data:`perfedavg.runs.config.FIRST_RUN`),
    a mapping shaped like a config file (top-level options and a ``task`` table), or the path of a TOML
    config file. ``options`` override it: any run option (``K=50``, ``alpha=0.1``), and ``task`` as a task
    name (``task="logistic"``: that task with its defaults) or a table of task options merged into the
    config's (``task={"h": 0.9}``; with another ``name``, that task's defaults instead). Bad values raise
    :class:`perfedavg.errors.UsageError` with the one-line message the command line prints.

    Without ``out`` nothing is written; with it, the run is ``perfedavg run --out OUT``'s (the run
    directory, its checkpoint and plot; an existing directory is refused) and is read back from there.
    """
    from figures.bounds import bound_for, constants_for_config
    from figures.explain import measured_for_bound
    from perfedavg.errors import UsageError
    from perfedavg.runs.config import build_config, first_run_base, read_toml
    from perfedavg.runs.memory import train_in_memory

    if config is None:
        base = first_run_base([f"task={options['task']}"] if isinstance(options.get("task"), str) else [])
        if isinstance(options.get("task"), Mapping) and options["task"].get("name", "softmax") != "softmax":
            base = {}
    elif isinstance(config, Mapping):
        base = dict(config)
    else:
        base = read_toml(config)
    data = {**base, **{k: v for k, v in options.items() if k != "task"}}
    if "task" in options:
        task = options["task"]
        old = dict(base.get("task", {}))
        if isinstance(task, str):
            data["task"] = {"name": task} if task != old.get("name") else old
        elif isinstance(task, Mapping):
            same = task.get("name", old.get("name")) == old.get("name")
            data["task"] = {**old, **task} if same else dict(task)
        else:
            data["task"] = task  # the config's own check names the problem
    cfg = build_config(data)
    if out is None:
        cfg, _task, records = train_in_memory(cfg)
        run_dir = None
    else:
        from perfedavg.runs import rundir
        from perfedavg.runs.runner import run_config

        result = run_config(cfg, out, progress=False, plot=True)
        if result.status != "finished":
            from perfedavg.errors import RunFailed

            raise RunFailed(f"{out}: the run {result.status}: {result.summary.get('message', '')}")
        cfg, run_dir = build_config(read_toml(Path(out) / rundir.CONFIG)), Path(out)
        records = rundir.read_metrics(out)
    resolved = cfg.to_dict()
    try:
        constants, no_bound = constants_for_config(resolved), ""
    except UsageError as outside:  # the run is legal, its constants are outside the lemmas' assumptions
        constants, no_bound = None, f"no derived bound for this run: {outside}"
    bound, terms = (None, {}) if constants is None else bound_for(constants, cfg.algorithm)[:2]
    measured, what = measured_for_bound(resolved, records)
    return Result(
        config=resolved,
        metrics=_arrays(records),
        records=records,
        constants=constants,
        bound=bound,
        bound_terms=dict(terms),
        measured=measured,
        measured_what=what,
        run_dir=run_dir,
        no_bound=no_bound,
    )


def _arrays(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every scalar metric of ``records`` as an array over them (NaN where one is missing)."""
    import numpy as np

    keys: dict[str, None] = {}
    for record in records:
        keys.update({k: None for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    out = {k: np.array([float(r.get(k, math.nan)) for r in records]) for k in keys}
    if "round" in out:
        out["round"] = out["round"].astype(int)
    return out


def bounds(constants: Constants | Mapping[str, float] | str | Path, algorithm: str = "hf") -> ConvergenceReport:
    """The derived explicit bound on Φ_K (docs/paper.md §5; theory/DERIVATIONS.md) and the paper's recalled
    shape for ``constants`` (a :class:`theory.constants.Constants`, a mapping of its fields, or a TOML or
    JSON constants file, as ``perfedavg bounds --constants`` reads) and ``algorithm`` (``fo``, ``hf``,
    ``exact``): a :class:`theory.checks_api.ConvergenceReport` (``derived``, ``derived_terms``,
    ``condition``, ``beta_max``, ``recalled_shape``). Torch-free.

    >>> import perfedavg
    >>> c = {"L": 1, "rho": 1, "B": 1, "sigma_G": 1, "sigma_H": 1, "gamma_G": 1, "gamma_H": 1, "F0_gap": 1}
    >>> report = perfedavg.bounds(c, "exact")
    >>> report.condition["derived"], round(report.derived, 3) == round(sum(report.derived_terms.values()), 3)
    (True, True)
    """
    from theory.checks_api import convergence
    from theory.constants import Constants

    if algorithm not in ("fo", "hf", "exact"):
        from perfedavg.errors import UsageError

        raise UsageError(f"algorithm={algorithm!r}: the bound on Phi_K is Per-FedAvg's: fo, hf or exact")
    if isinstance(constants, (str, Path)):
        constants = Constants.from_file(constants)
    elif isinstance(constants, Mapping):
        constants = Constants.from_dict(constants)
    return convergence(constants, algorithm)


def task_constants(name: str, **task_options: Any) -> Constants:
    """The exact constants of the synthetic task ``name`` with ``task_options`` for ``perfedavg run``'s
    settings of the rest (α, β, τ, K, ...: the first run's for the softmax task), as
    ``perfedavg bounds --task NAME --set task.KEY=VALUE`` prints them.

    >>> import perfedavg
    >>> c = perfedavg.task_constants("softmax", h=0.0)  # identical users: no dissimilarity
    >>> round(c.gamma_G, 9), c.n
    (0.0, 20.0)
    """
    from figures.explain import task_constants as exact
    from perfedavg.runs.config import toml_value

    return exact(name, [f"task.{k}={toml_value(v)}" for k, v in task_options.items()])


def register_task(name: str, build: Callable[[Any], Any], options: type | None = None, summary: str = "") -> None:
    """Make a task of your own usable by name (``run(task=name)``, ``--set task=name`` in this process).

    ``build(options)`` returns a :class:`perfedavg.engine.task.Task`; ``options`` is a frozen dataclass
    of its options (``task.KEY`` values, checked against its field types; default: no options), whose
    ``__post_init__`` may raise :class:`perfedavg.errors.UsageError` for a bad value. A task that puts
    ``L``, ``rho``, ``B``, ``sigma_G``, ``sigma_H`` and ``tv_rms`` in its ``constants`` gets the bound too.
    Registration lives in this process (a sweep's worker processes do not see it).

    >>> import dataclasses, perfedavg
    >>> from synthetic.softmax import SPEC as softmax
    >>> @dataclasses.dataclass(frozen=True)
    ... class Tiny:
    ...     h: float = 0.5
    >>> def build_tiny(o):
    ...     return softmax.build(softmax.options(n_clients=4, dim=3, support=20, classes=2, h=o.h))
    >>> perfedavg.register_task("tiny", build_tiny, Tiny)
    >>> result = perfedavg.run(task={"name": "tiny", "h": 0.9}, K=2, r=0.5, D=4, D1=4, D2=4)
    >>> result.config["task"], len(result.records)
    ({'name': 'tiny', 'h': 0.9}, 2)
    """
    from perfedavg.runs.registry import register

    register(name, build, options, summary)


def build_task(name: str = "quadratic", *, dtype: str = "float64", **options: Any) -> Task:
    """The task ``name`` with ``options`` (the keys of a run's ``[task]`` table, ``perfedavg run --list-tasks``;
    the task's defaults fill the rest), its data in ``dtype``: users' data as ``task.train`` / ``task.test``,
    the model's start as ``task.init_params(generator)``, the exact constants (synthetic tasks) as
    ``task.constants``.

    >>> import perfedavg
    >>> task = perfedavg.build_task("quadratic", n_clients=4, h=1.0)
    >>> task.train.n_clients, task.init_params(None).shape
    (4, torch.Size([2]))
    """
    import torch

    from perfedavg.errors import UsageError
    from perfedavg.runs.registry import build_task as build

    if dtype not in ("float32", "float64"):
        raise UsageError(f"dtype={dtype!r}: must be 'float32' or 'float64'")
    return build({**options, "name": name}).to(getattr(torch, dtype))


def objectives(task: Task, w: Tensor, alpha: float) -> ClientObjectives:
    r"""Every user's objectives at the shared model ``w`` (shape ``(P,)``), exactly from its full training data
    (docs/paper.md §1, eq. (3)): ``f`` = :math:`f_i(w)`, ``F`` = :math:`F_i(w) = f_i(w - \alpha\nabla f_i(w))`
    (shape ``(n,)``), ``grad_f`` and ``grad_F`` (shape ``(n, P)``; :math:`\nabla F_i` differentiated through the
    inner step, no approximation). FedAvg minimizes the mean of ``f``, Per-FedAvg the mean of ``F``.

    >>> import perfedavg
    >>> task = perfedavg.build_task("quadratic", n_clients=4)
    >>> o = perfedavg.objectives(task, task.init_params(None), alpha=0.5)
    >>> bool((o.F <= o.f).all())  # one step of size alpha <= 1/L lowers every user's loss
    True
    """
    from perfedavg.engine.objective import client_objectives

    return client_objectives(task.per_sample_loss, w, task.train, alpha)


def directions(
    task: Task, w: Tensor, alpha: float, *, user: int = 0, batch: int = 100, delta: float | None = None, seed: int = 0
) -> dict[str, Tensor]:
    r"""The local directions of user ``user`` at ``w`` (shape ``(P,)``) from the same three batches
    :math:`\mathcal D, \mathcal D', \mathcal D''` of ``batch`` samples each (drawn with replacement from its
    data, with ``seed``), one per algorithm (docs/paper.md §2): ``"fedavg"`` (:math:`\tilde\nabla f_i(w,
    \mathcal D)`), ``"fo"``, ``"hf"`` (finite-difference width ``delta``, default HF's) and ``"exact"``
    (Per-FedAvg's three estimates of :math:`\nabla F_i(w)`), and ``"grad_F"``: the exact :math:`\nabla F_i(w)`
    they estimate (:func:`objectives`).

    >>> import perfedavg
    >>> task = perfedavg.build_task("quadratic", n_clients=4, h=1.0)
    >>> d = perfedavg.directions(task, task.init_params(None) + 1.0, alpha=0.5, batch=200)
    >>> sorted(d), bool((d["fo"] - d["grad_F"]).norm() > (d["exact"] - d["grad_F"]).norm())
    (['exact', 'fedavg', 'fo', 'grad_F', 'hf'], True)
    """
    import torch

    from perfedavg.algorithms import DEFAULT_DELTA
    from perfedavg.engine.local import StepSizes, meta_gradient
    from perfedavg.engine.oracle import make_oracle
    from perfedavg.engine.sampling import draw_batch
    from perfedavg.errors import UsageError

    if not 0 <= user < task.train.n_clients:
        raise UsageError(f"user={user}: the task has users 0..{task.train.n_clients - 1}")
    if batch < 1:
        raise UsageError(f"batch={batch}: must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    clients = torch.tensor([user])
    inner, outer, hessian = (draw_batch(generator, task.train, clients, batch, True) for _ in range(3))
    oracle = make_oracle(task)
    W = w.unsqueeze(0)
    sizes = StepSizes(alpha, 1.0, DEFAULT_DELTA if delta is None else delta)
    out = {"fedavg": oracle.grad(W, inner.x, inner.y)[0]}
    for algorithm in ("fo", "hf", "exact"):
        out[algorithm] = meta_gradient(oracle, W, (inner, outer, hessian), sizes, algorithm)[0]
    out["grad_F"] = objectives(task, w, alpha).grad_F[user]
    return out
