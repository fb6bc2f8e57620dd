r"""Binary logistic regression on bounded features with a heterogeneity dial (task ``logistic``).

:math:`l(w;\theta) = \log(1+e^{-(2y-1)w^\top x})`, :math:`\|x\|\le R`, no bias (a constant
feature can be put into ``x``).  Exact constants, derived in :mod:`synthetic.margin`:
:math:`B = R`, :math:`L = R^2/4`, :math:`\rho = R^3/(6\sqrt3)` (R = largest feature norm
of the training support); :math:`\sigma_G^2\le\max_i\mathbb E_{p_i}\|x\|^2`,
:math:`\sigma_H^2\le\max_i\mathbb E_{p_i}\|x\|^4/16`; :math:`\theta` is the signed feature
:math:`u=(2y-1)x` with the Euclidean ground metric; :math:`L_\theta(w) = 1 + R\|w\|/4`,
:math:`\rho_\theta(w) = R/2 + R^2\|w\|/(6\sqrt3)`.

The support is ``support`` points in ``clusters`` clusters around centres at distance
0.6R from the origin; user i's own distribution :math:`q_i` is uniform on cluster
``i mod clusters`` and :math:`p_i = (1-h)u + hq_i` (:mod:`synthetic.common`).
"""

from __future__ import annotations

from perfedavg.engine.task import Task
from perfedavg.runs.registry import TaskSpec

from .margin import MarginOptions, build_margin_task, theta_lipschitz, w1_to_mixture  # noqa: F401  (re-exported)

LogisticOptions = MarginOptions
KIND = "logistic"


def build(o: MarginOptions) -> Task:
    """The logistic task (initial model w_0 = 0)."""
    return build_margin_task(KIND, "logistic", o, init_scale=0.0)


SPEC = TaskSpec(MarginOptions, build, "binary logistic regression on clustered bounded features, heterogeneity dial h")
