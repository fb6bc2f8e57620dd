r"""A smooth nonconvex task with closed-form constants (task ``nonconvex``).

The sigmoid ("smoothed 0-1") loss of a linear model,
:math:`l(w;\theta) = \sigma(-(2y-1)w^\top x) \in (0,1)`, on the clustered bounded features of
:mod:`synthetic.logistic`.  It is nonconvex (:math:`\varphi''` changes sign at the
decision boundary) and bounded below by 0.  Exact constants, derived in
:mod:`synthetic.margin`: :math:`B = R/4`, :math:`L = R^2/(6\sqrt3)`, :math:`\rho = R^3/8`;
:math:`L_\theta(w) = c_1 + c_2R\|w\|` and :math:`\rho_\theta(w) = 2c_2R + c_3R^2\|w\|` with
:math:`(c_1,c_2,c_3) = (1/4, 1/(6\sqrt3), 1/8)`.

The initial model is :math:`w_0\sim N(0, 0.1^2 I)` drawn from the run's generator.
"""

from __future__ import annotations

from perfedavg.engine.task import Task
from perfedavg.runs.registry import TaskSpec

from .margin import MarginOptions, build_margin_task, theta_lipschitz, w1_to_mixture  # noqa: F401  (re-exported)

NonconvexOptions = MarginOptions
KIND = "sigmoid"


def build(o: MarginOptions) -> Task:
    """The nonconvex (sigmoid-loss) task."""
    return build_margin_task(KIND, "nonconvex", o, init_scale=0.1)


SPEC = TaskSpec(MarginOptions, build, "sigmoid (smoothed 0-1) loss of a linear model: smooth, nonconvex, bounded")
