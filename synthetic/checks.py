r"""``perfedavg check``: every lemma of docs/paper.md §4 and §6 measured against its bound.

For each default synthetic task (constants known exactly, :mod:`synthetic.measure`) and
each inner step :math:`\alpha\in\{\tfrac14,1\}/L` (the lemmas assume
:math:`\alpha\le1/L`), at several points w:

* ``L_F``: the largest :math:`\|\nabla^2F_i(w)\|` over users at each point (power iteration on the exact
  Hessian, :func:`synthetic.measure.hessian_norm_F`), and :math:`\max\|\nabla F_i(u)-\nabla F_i(v)\|/\|u-v\|`
  over users and sampled pairs;
* ``bias`` / ``sigma_F2``: Monte Carlo bias and mean squared error of the exact local-step
  direction (``bias_fo``, ``mse_fo``, ``bias_hf``, ``mse_hf`` for the FO and HF
  directions) with batches D = D' = D'' = 2 (small batches: where the lemmas bite);
* ``gamma_F2``: :math:`\frac1n\sum_i\|\nabla F_i(w)-\nabla F(w)\|^2`, exact;
* ``hf_hvp_error``: central difference against the exact Hessian-vector product on
  :math:`f_i`, along a direction of norm B, δ ∈ {1e-1, 1e-2, 1e-3};
* ``gamma_G2_tv``, ``gamma_H2_tv``, ``gamma_G2_w1``, ``gamma_H2_w1``: the measured
  :math:`\gamma_G^2(w)`, :math:`\gamma_H^2(w)` against the TV and W1 statements, W1 solved
  exactly by a linear program and the Lipschitz constants in θ taken at w;
* the same four along a run (keys ``..._trajectory``, :func:`trajectory_rows`): Per-FedAvg
  (exact) from w_0 for ``TRAJECTORY`` rounds on several seeds, with the exact
  :math:`\gamma_G^2(\bar w)`, :math:`\gamma_H^2(\bar w)` recorded at every
  :math:`\bar w_{k+1,t}` (:func:`synthetic.batched.run_seeds` with
  ``track_heterogeneity``); the row shows the recorded point with the largest
  measured / bound (the W1 bound moves with w through :math:`L_\theta(w), \rho_\theta(w)`).

Each row keeps the worst case (largest measured/bound) over points and users.  A
Monte Carlo row carries a 99.7 % interval [low, high]; the verdict is the project's one
rule :func:`theory.checks_api.upper_bound_holds`: HOLDS iff the upper end ``high`` is
≤ bound (the data must show the bound holds); the printed ``margin`` is bound / high, so
HOLDS ⇔ margin ≥ 1.  Bounds are theory's statements (:func:`theory.checks_api.lemma_statements`)
evaluated on each measurement's own inputs: the measurements are kept as records
(:class:`synthetic.rows.Record`) and judged by :func:`synthetic.rows.judge`, so a changed statement
(:mod:`synthetic.mutations`) is judged on the same measurements.  The witnesses of
:mod:`synthetic.witnesses` (tiny tasks where each derived bound is attained within a factor 2) are
printed beside these rows.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import torch
from tqdm import tqdm

from perfedavg.algorithms import PerFedAvgAlgorithm
from perfedavg.engine.config import RunConfig
from perfedavg.runs.registry import build_task
from perfedavg.runs.resolve import resolve

from . import measure
from .batched import run_seeds
from .common import rms, sigma_G2_at
from .rows import Record, Recorder, Row, judge

#: tasks checked by default, with their options (defaults of each task unless given)
DEFAULT_TASKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("logistic", {}),
    ("nonconvex", {}),
    ("softmax", {"support": 200}),
)
ALPHA_FRACTIONS = (0.25, 1.0)
BATCH = 2

#: each Per-FedAvg algorithm's direction, with the keys of its bias and mean-squared-error bounds
DIRECTION_BOUNDS: tuple[tuple[PerFedAvgAlgorithm, str, str], ...] = (
    ("exact", "bias", "sigma_F2"),
    ("fo", "bias_fo", "mse_fo"),
    ("hf", "bias_hf", "mse_hf"),
)


class Trajectory(TypedDict):
    """The runs of :func:`trajectory_rows`: rounds, local steps, fraction of users, seeds, steps, batch."""

    K: int
    tau: int
    r: float
    seeds: tuple[int, ...]
    alpha_L: float
    beta_L: float
    batch: int


#: the runs along which gamma_G^2(w_bar), gamma_H^2(w_bar) are recorded: Per-FedAvg (exact), alpha = alpha_L / L,
#: beta = beta_L / L (large enough that w moves far from w_0 within K rounds), batches of ``batch``
TRAJECTORY: Trajectory = {"K": 8, "tau": 2, "r": 0.5, "seeds": (0, 1), "alpha_L": 0.25, "beta_L": 0.5, "batch": 5}


def check_task(name: str, options: dict[str, Any], *, samples: int = 4000, progress: tqdm | None = None) -> list[Row]:
    """All rows for one task (see the module docstring)."""
    return judge(task_records(name, options, samples=samples, progress=progress))


def task_records(
    name: str, options: dict[str, Any], *, samples: int = 4000, progress: tqdm | None = None
) -> list[Record]:
    """The measurements of :func:`check_task`, each with the inputs of its bounds."""
    task = build_task({"name": name, **options}).to(torch.float64)
    c = task.constants
    P = task.init_params(torch.Generator().manual_seed(0)).shape[0]
    gen = torch.Generator().manual_seed(1)
    points = [task.init_params(torch.Generator().manual_seed(0)).double()]
    points += [torch.randn(P, generator=gen, dtype=torch.float64) * s / math.sqrt(P) for s in (1.0, 4.0)]
    w1_users = measure.task_module(task).w1_to_mixture(task.train)
    rec = Recorder()
    for frac in ALPHA_FRACTIONS:
        alpha = frac / c["L"]
        tag = f"alpha={frac:g}/L"
        consts = measure.global_constants(task, alpha, D=BATCH, D1=BATCH, D2=BATCH, delta=1e-2)
        inputs = consts.as_dict()
        pairs = measure.sample_pairs(P, 9, scales=(0.0, 1.0, 4.0), seed=2)
        rec.add(name, f"{tag}, 9 random pairs", inputs, "L_F", measure.smoothness_F(task, alpha, pairs))
        for wi, w in enumerate(points):
            where = f"{tag}, point {wi}"
            rec.add(
                name, f"{where}, top |eigenvalue| of Hess F_i", inputs, "L_F", measure.hessian_norm_F(task, w, alpha)
            )
            rec.add(name, where, inputs, "gamma_F2", measure.dissimilarity_F(task, w, alpha))
            sG2 = sigma_G2_at(task.per_sample_loss, w, task.train)
            for client in (0, 1):
                # the bias lemma needs the inner-batch variance at w only: the exact sigma_G,i(w)
                local = consts.replace(sigma_G=math.sqrt(max(float(sG2[client]), 0.0))).as_dict()
                for algorithm, bias_key, mse_key in DIRECTION_BOUNDS:
                    st = measure.direction_stats(
                        task,
                        w,
                        client,
                        alpha=alpha,
                        D=BATCH,
                        D1=BATCH,
                        D2=BATCH,
                        algorithm=algorithm,
                        delta=1e-2,
                        samples=samples,
                        seed=100 * wi + client,
                    )
                    rec.add(
                        name,
                        f"{where}, user {client}",
                        local,
                        bias_key,
                        st.bias,
                        max(st.bias - st.bias_halfwidth, 0.0),
                        st.bias + st.bias_halfwidth,
                    )
                    rec.add(
                        name,
                        f"{where}, user {client}",
                        inputs,
                        mse_key,
                        st.mse,
                        st.mse - st.mse_halfwidth,
                        st.mse + st.mse_halfwidth,
                    )
            if progress:
                progress.update(1)
    # alpha-independent: HF finite difference, TV / W1 statements
    for wi, w in enumerate(points):
        g = torch.randn(P, generator=gen, dtype=torch.float64)
        g = g / g.norm() * c["B"]
        for delta in (1e-1, 1e-2, 1e-3):
            inputs = {**measure.global_constants(task, 0.0, delta=delta).as_dict(), "g_norm": c["B"]}
            rec.add(
                name,
                f"any alpha, point {wi}, delta={delta:g}",
                inputs,
                "hf_hvp_error",
                measure.hf_error(task, w, 0, g, delta),
            )
        het = measure.heterogeneity_at(task, w, w1_users)
        inputs = {
            **measure.global_constants(task, 0.0).as_dict(),
            "tv": het.tv,
            "w1": het.w1,
            "L_theta": het.L_theta,
            "rho_theta": het.rho_theta,
        }
        where = f"any alpha, point {wi}"
        rec.add(name, where, inputs, "gamma_G2_tv", het.gamma_G2)
        rec.add(name, where, inputs, "gamma_H2_tv", het.gamma_H2)
        rec.add(name, where, inputs, "gamma_G2_w1", het.gamma_G2)
        rec.add(name, where, inputs, "gamma_H2_w1", het.gamma_H2)
    if progress:
        progress.update(1)
    return rec.records


def trajectory_rows(name: str, options: dict[str, Any]) -> list[Row]:
    r"""The TV and W1 statements of docs/paper.md §6 (``theory.distances``) checked at every recorded
    :math:`\bar w` of short Per-FedAvg runs (``TRAJECTORY``): one row per statement, the point with the
    largest measured / bound, the largest measured value over the trajectory in ``where``."""
    return judge(trajectory_records(name, options))


def trajectory_records(name: str, options: dict[str, Any]) -> list[Record]:
    """The measurements of :func:`trajectory_rows`: one array record per statement (seeds x points)."""
    T = TRAJECTORY
    _, task = resolve(RunConfig(K=1, dtype="float64", task={"name": name, **options}))
    L = task.constants["L"]
    cfg = RunConfig(
        algorithm="exact",
        K=T["K"],
        tau=T["tau"],
        r=T["r"],
        alpha=T["alpha_L"] / L,
        beta=T["beta_L"] / L,
        D=T["batch"],
        D1=T["batch"],
        D2=T["batch"],
        dtype="float64",
        eval_every=T["K"],
        task={"name": name, **options},
    )
    cfg, task = resolve(cfg)
    runs = run_seeds(task, cfg, list(T["seeds"]), track_inner=True, track_heterogeneity=True)
    gamma_G2, gamma_H2, lip = runs.gamma_G2, runs.gamma_H2, runs.theta_lipschitz
    assert gamma_G2 is not None and gamma_H2 is not None and lip is not None  # track_heterogeneity=True records them
    c = task.constants
    tv, w1 = c["tv_rms"], rms(measure.task_module(task).w1_to_mixture(task.train))
    inputs = {
        "B_sample": c["B"],
        "L_sample": c["L"],
        "tv": tv,
        "w1": w1,
        "L_theta": lip[..., 0],
        "rho_theta": lip[..., 1],
    }
    S, N = gamma_G2.shape
    where = (
        f"trajectory: {S} seeds {T['seeds']} x {N} points w_bar (K={cfg.K}, tau={cfg.tau}, "
        f"alpha={T['alpha_L']:g}/L, beta={T['beta_L']:g}/L)"
    )
    cases = (("gamma_G2_tv", gamma_G2), ("gamma_H2_tv", gamma_H2), ("gamma_G2_w1", gamma_G2), ("gamma_H2_w1", gamma_H2))
    return [
        Record(name, key + "_trajectory", where, "trajectory", measured, measured, measured, inputs)
        for key, measured in cases
    ]


def run_checks(
    tasks: tuple[tuple[str, dict[str, Any]], ...] = DEFAULT_TASKS, samples: int = 4000, show_progress: bool = True
) -> list[Row]:
    """Rows of every default task."""
    return judge(collect(tasks, samples=samples, show_progress=show_progress))


def collect(
    tasks: tuple[tuple[str, dict[str, Any]], ...] = DEFAULT_TASKS, samples: int = 4000, show_progress: bool = True
) -> list[Record]:
    """Every measurement of the default tasks (:func:`task_records`, :func:`trajectory_records`)."""
    total = len(tasks) * (len(ALPHA_FRACTIONS) * 3 + 2)
    with tqdm(total=total, desc="check", unit="step", disable=not show_progress, leave=False) as bar:
        records = []
        for name, options in tasks:
            bar.set_postfix_str(name)
            records += task_records(name, options, samples=samples, progress=bar)
            records += trajectory_records(name, options)
            bar.update(1)
    return records
