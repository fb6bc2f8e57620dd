r"""New users at a chosen distance from the training users: their personalized gradient gap, measured
exactly, against the derived bound (:mod:`theory.new_users`, DERIVATIONS.md §11).

On a synthetic task every user's distribution lives on one pooled support, so a new user is any
distribution :math:`q` there.  Along the segment :math:`q_t = (1-t)\bar p + t\,r` from the training
mixture :math:`\bar p` to a target :math:`r`, both distances are exactly linear,
:math:`TV(q_t,\bar p) = t\,TV(r,\bar p)` and :math:`W_1(q_t,\bar p) = t\,W_1(r,\bar p)` (the
difference :math:`q_t-\bar p = t(r-\bar p)` is scaled), so ``t`` is the distance dial.  Two targets:
the training user farthest from :math:`\bar p` in TV (a new user like the old ones, t > 1 going past
it) and a single support point (a user with one sample: the farthest a user can be).

At each point w and each t, :math:`\|\nabla F_{q_t}(w)-\nabla F_{\bar p}(w)\|` is computed on the
full distributions (:func:`perfedavg.engine.objective.client_objectives`) and compared with both
bounds; W1's Lipschitz constants in θ are taken at the largest of w and the two inner points
:math:`w-\alpha\nabla f(w)` (where the bound's δ_G is used).  The gap's exponent in the distance is
read at the smallest t (:data:`SLOPE_FRACTIONS`): the bound predicts at most 1, and a smooth gap that vanishes at
:math:`q=\bar p` has exactly 1 there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from perfedavg.engine.objective import client_objectives
from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.registry import build_task
from theory.new_users import new_user_gap_tv, new_user_gap_w1

from .common import mixture, tv_distance
from .measure import task_module
from .rate_stats import Judgement, judge_exact, local_slope, margin

#: the dial t: fraction of the way from the mixture to the target (1: the target itself)
FRACTIONS = (1e-4, 2e-4, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
#: where the gap's exponent is read: close enough to the mixture that the linear term dominates even where
#: (I - alpha H) nearly cancels it (alpha = 1/L on the quadratic task); the gaps are exact (float64), so small
#: t costs no precision
SLOPE_FRACTIONS = FRACTIONS[:2]
#: past the farthest training user (t > 1), as long as q_t stays a distribution
BEYOND = (1.5, 2.0)
TARGETS = ("farthest user", "one sample")
#: the points w: the task's initial model and random points of these norms (seeded)
POINT_NORMS = (0.5, 2.0)
#: tasks and options (the quadratic's constants hold on ||w|| <= w_radius: its points stay inside)
TASKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("logistic", {}),
    ("nonconvex", {}),
    ("softmax", {"support": 200}),
    ("quadratic", {}),
)
ALPHA_FRACTIONS = (0.25, 1.0)


@dataclass(frozen=True)
class GapPoint:
    """One new user: task, target, point w, step α, dial t, distances, measured gap and both bounds."""

    task: str
    target: str
    point: int
    alpha: float
    t: float
    tv: float
    w1: float
    gap: float
    bound_tv: float
    bound_w1: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _targets(P: Tensor) -> dict[str, Tensor]:
    """The two targets of the module docstring, as distributions on the pooled support."""
    pbar = mixture(P)
    tv = torch.tensor([tv_distance(p, pbar) for p in P.numpy()])
    farthest = P[int(tv.argmax())]
    one_sample = torch.zeros_like(pbar)
    one_sample[int(farthest.argmax())] = 1.0
    return {"farthest user": farthest, "one sample": one_sample}


def _on_pool(data: ClientData, rows: Tensor) -> ClientData:
    """Users with distributions ``rows (k, S)`` on ``data``'s pooled support."""
    k, S = rows.shape
    index = torch.arange(S).expand(k, -1).contiguous()
    return ClientData(x=data.x, y=data.y, index=index, weight=rows, count=torch.full((k,), S))


def _distances(task: Task, target: Tensor, pbar: Tensor) -> tuple[float, float]:
    r""":math:`TV(r,\bar p)` and :math:`W_1(r,\bar p)` with the task's own ground metric: its
    ``w1_to_mixture`` on the two users (r, p̄) gives :math:`W_1(r, m)` with :math:`m = (r+\bar p)/2`,
    and :math:`r - m = (r-\bar p)/2`, so both distances are twice those to m."""
    pair = _on_pool(task.train, torch.stack([target, pbar]))
    w1_half = float(task_module(task).w1_to_mixture(pair)[0])
    return tv_distance(target.numpy(), pbar.numpy()), 2.0 * w1_half


def _points(task: Task) -> list[Tensor]:
    w0 = task.init_params(torch.Generator().manual_seed(0)).double()
    gen = torch.Generator().manual_seed(1)
    out = [w0]
    for norm in POINT_NORMS:
        v = torch.randn(w0.shape, generator=gen, dtype=torch.float64)
        out.append(w0 + norm * v / v.norm())
    return out


def task_gaps(name: str, options: dict[str, Any]) -> list[GapPoint]:
    """Every (target, point, α, t) of the module docstring on one task."""
    task = build_task({"name": name, **options})
    c = task.constants
    P = task.train.weight.double()
    pbar = mixture(P)
    module = task_module(task)
    radius = c.get("W")  # a domain the constants hold on, if the task has one
    out = []
    for target_name, target in _targets(P).items():
        tv_r, w1_r = _distances(task, target, pbar)
        ts = FRACTIONS + tuple(t for t in BEYOND if bool(((1 - t) * pbar + t * target).min() >= 0))
        for point, w in enumerate(_points(task)):
            for frac in ALPHA_FRACTIONS:
                alpha = frac / c["L"]
                rows = torch.stack([(1 - t) * pbar + t * target for t in ts] + [pbar])
                obj = client_objectives(task.per_sample_loss, w, _on_pool(task.train, rows), alpha)
                inner = w - alpha * obj.grad_f  # every user's inner point, the mixture's last
                if radius is not None and float(torch.cat([w[None], inner]).norm(dim=1).max()) > radius:
                    raise AssertionError(f"{name}: a point leaves the domain ||w|| <= {radius} of the constants")
                for i, t in enumerate(ts):
                    L_theta, rho_theta = (
                        max(v) for v in zip(*(module.theta_lipschitz(task, u) for u in (w, inner[i], inner[-1])))
                    )
                    common = {"alpha": alpha, "L": c["L"], "B": c["B"]}
                    bound_tv = math.sqrt(new_user_gap_tv()(common, B_sample=c["B"], L_sample=c["L"], tv=t * tv_r))
                    bound_w1 = math.sqrt(new_user_gap_w1()(common, L_theta=L_theta, rho_theta=rho_theta, w1=t * w1_r))
                    gap = float((obj.grad_F[i] - obj.grad_F[-1]).norm())
                    out.append(
                        GapPoint(name, target_name, point, alpha, t, t * tv_r, t * w1_r, gap, bound_tv, bound_w1)
                    )
    return out


def exponent_judgement(points: list[GapPoint]) -> Judgement:
    """The gap's exponent in the distance at :data:`SLOPE_FRACTIONS`, worst over the curves (task, target,
    point, α), against the bound's 1 with the margin that separates it from a quadratic law."""
    curves: dict[tuple, list[GapPoint]] = {}
    for p in points:
        curves.setdefault((p.task, p.target, p.point, p.alpha), []).append(p)
    small = SLOPE_FRACTIONS
    slopes = []
    for curve in curves.values():
        near = [p for p in curve if p.t in small]
        slopes.append(local_slope([p.t for p in near], [p.gap for p in near]))
    worst = max(slopes, key=lambda s: abs(s - 1.0))
    return judge_exact(worst - 1.0, margin(small, list(small), [t**2 for t in small]))


def summary(points: list[GapPoint]) -> dict[str, Any]:
    """Margins (bound / gap, smallest over every new user) per form and task, and the exponent verdict."""
    by_task: dict[str, dict[str, float]] = {}
    for p in points:
        row = by_task.setdefault(p.task, {"tv": math.inf, "w1": math.inf, "users": 0})
        row["tv"] = min(row["tv"], p.bound_tv / p.gap)
        row["w1"] = min(row["w1"], p.bound_w1 / p.gap)
        row["users"] += 1
    judgement = exponent_judgement(points)
    return {"margins": by_task, "exponent": judgement.as_dict(), "witnesses": witnesses()}


def all_gaps() -> list[GapPoint]:
    return [p for name, options in TASKS for p in task_gaps(name, options)]


# ----------------------------------------------------------------------------- witnesses
#: where the bound is attained: a two-point support θ ∈ {-1, +1} (feature x = θ), p̄ = (1/2, 1/2) and
#: q = (1/2 - t, 1/2 + t), so TV(q, p̄) = t and W1(q, p̄) = 2t; each witness isolates one term
WITNESS_T = 0.01
#: the Hessian witness's step: its margin is (1 + (1+αL)²) / 2 / (1 - 2αLt) -> 1 as αL -> 0
WITNESS_ALPHA_L = 0.01
#: a witness's bound equals its gap in exact arithmetic (linear, concave): float64 round-off of autograd
WITNESS_ROUNDOFF = 1e-12
#: a witness whose margin exceeds this no longer attains its bound (the curvature witness is at 1.01)
WITNESS_FACTOR = 1.05


def _two_point_gap(loss, alpha: float, w: float, t: float) -> float:
    """Exact |∇F_q(w) - ∇F_p̄(w)| for ``loss(w, θ)`` on θ ∈ {-1, +1}, q = (1/2 - t, 1/2 + t), p̄ uniform."""
    x = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    data = ClientData(
        x=x,
        y=torch.zeros(2, dtype=torch.long),
        index=torch.tensor([[0, 1], [0, 1]]),
        weight=torch.tensor([[0.5 - t, 0.5 + t], [0.5, 0.5]], dtype=torch.float64),
        count=torch.tensor([2, 2]),
    )

    def per_sample(W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        return loss(W[..., :1], X[..., 0])

    obj = client_objectives(per_sample, torch.tensor([w], dtype=torch.float64), data, alpha)
    return float((obj.grad_F[0] - obj.grad_F[1]).norm())


def witnesses() -> list[dict[str, Any]]:
    r"""Three tiny tasks where one term of the bound is attained (margin bound / gap near 1):

        * ``linear``: :math:`l = B	heta w` (L = 0): the gap is :math:`2B\,TV` = the TV form's
          :math:`2B_s TV` and the W1 form's :math:`L_	heta W_1` (:math:`L_	heta = B`), exactly;
        * ``concave``: :math:`l = -rac L2(w-	heta)^2` at α = 1/L: :math:`
    abla F_q = -(1+lpha L)^2L(w-m_q)`,
          the gap is :math:`(1+lpha L)^2 L\,W_1` = the W1 form (:math:`L_	heta = L`, :math:`
    ho_	heta = 0`);
          the TV form cannot be tight here (:math:`B_s` grows with w);
        * ``curvature``: :math:`l = 	hetarac L2 w^2 + bw` at w = 0: only the Hessians differ at w, the gap is
          :math:`|b|\,|(1-lpha L m_q)^2 - 1| pprox 2lpha L|b|\,W_1` and the W1 form is
          :math:`(lpha|b|
    ho_	heta + (1+lpha L)^2L_	heta)W_1` with :math:`
    ho_	heta = L`,
          :math:`L_	heta = Llpha|b|` (the largest |w| the step evaluates): within 1 % at αL = 0.01.
    """
    t = WITNESS_T
    out: list[dict[str, Any]] = []
    B = 1.0
    gap = _two_point_gap(lambda w, th: B * th * w, alpha=0.5, w=0.3, t=t)
    common = {"alpha": 0.5, "L": 0.0, "B": B}
    out.append(
        {
            "witness": "linear",
            "form": "TV",
            "gap": gap,
            "bound": math.sqrt(new_user_gap_tv()(common, B_sample=B, L_sample=0.0, tv=t)),
        }
    )
    out.append(
        {
            "witness": "linear",
            "form": "W1",
            "gap": gap,
            "bound": math.sqrt(new_user_gap_w1()(common, L_theta=B, rho_theta=0.0, w1=2 * t)),
        }
    )
    L = 1.0
    gap = _two_point_gap(lambda w, th: -0.5 * L * (w - th) ** 2, alpha=1 / L, w=0.2, t=t)
    bound = math.sqrt(new_user_gap_w1()(L_theta=L, rho_theta=0.0, w1=2 * t, alpha=1 / L, L=L, B=1.0))
    out.append({"witness": "concave", "form": "W1", "gap": gap, "bound": bound})
    b, alpha = 1.0, WITNESS_ALPHA_L / L
    gap = _two_point_gap(lambda w, th: th * 0.5 * L * w**2 + b * w, alpha=alpha, w=0.0, t=t)
    bound = math.sqrt(new_user_gap_w1()(L_theta=L * alpha * b, rho_theta=L, w1=2 * t, alpha=alpha, L=L, B=b))
    out.append({"witness": "curvature", "form": "W1", "gap": gap, "bound": bound})
    for row in out:
        row["margin"] = row["bound"] / row["gap"]
    return out


def format_summary(info: dict[str, Any]) -> str:
    lines = [
        "New users at a distance from the training mixture p̄ (theory/DERIVATIONS.md §11): smallest margin",
        "bound / measured ‖∇F_q(w) − ∇F_p̄(w)‖ over every new user tried (targets, points w, α, distances)",
        "",
        f"{'task':<11} {'new users':>9} {'TV margin':>10} {'W1 margin':>10}",
    ]
    for task, row in info["margins"].items():
        lines.append(f"{task:<11} {row['users']:>9} {row['tv']:>10.3g} {row['w1']:>10.3g}")
    lines += ["", "witnesses (one term attained each; margin 1 = tight):"]
    for w in info["witnesses"]:
        lines.append(
            f"  {w['witness']:<10} {w['form']}: gap {w['gap']:.4g}, bound {w['bound']:.4g}, margin {w['margin']:.3f}"
        )
    e = info["exponent"]
    lines += [
        "",
        f"gap vs distance near p̄: exponent {1 + e['q']:.3f} (bound: 1, margin ±{e['margin']:.2g}): {e['verdict']}",
        "(an upper bound's exponent is compared as if the bound were tight up to a constant)",
    ]
    return "\n".join(lines)


def failures(points: list[GapPoint], info: dict[str, Any]) -> list[str]:
    """Every new user whose gap exceeds a bound, and the exponent verdict if it is not PASS."""
    out = [
        f"{p.task} {p.target} point {p.point} alpha {p.alpha:.3g} t {p.t:g}: gap {p.gap:.4g} > {form} bound {bound:.4g}"
        for p in points
        for form, bound in (("TV", p.bound_tv), ("W1", p.bound_w1))
        if p.gap > bound
    ]
    out += [
        f"witness {w['witness']} ({w['form']}): gap {w['gap']:.4g} > bound {w['bound']:.4g}"
        for w in info["witnesses"]
        if w["gap"] > w["bound"] * (1 + WITNESS_ROUNDOFF)
    ]
    out += [
        f"witness {w['witness']} ({w['form']}): margin {w['margin']:.3g} > {WITNESS_FACTOR} (the bound is not attained)"
        for w in info["witnesses"]
        if w["margin"] > WITNESS_FACTOR
    ]
    if info["exponent"]["verdict"] != "PASS":
        out.append(f"gap vs distance: {info['exponent']['reason']}")
    return out


def main_new_users(args: Any) -> int:
    """``perfedavg check --new-users``: the table (or JSON), exit status 1 on a failure."""
    import json
    import sys

    points = all_gaps()
    info = summary(points)
    bad = failures(points, info)
    if args.json:
        print(json.dumps({**info, "failures": bad, "points": [p.as_dict() for p in points]}, indent=2))
    else:
        print(format_summary(info))
    for line in bad:
        print(f"ERROR (derived statement fails): {line}", file=sys.stderr)
    return 1 if bad else 0
