r"""The algorithms the toolkit runs, named once (torch-free: the command line and ``theory/`` read it).

* ``fedavg``: FedAvg, :math:`\tau` SGD steps with step :math:`\beta` per round;
* ``fo``, ``hf``, ``exact``: Per-FedAvg, whose local step descends the personalized objective
  :math:`F_i(w) = f_i(w - \alpha\nabla f_i(w))`, with the Hessian term of its gradient dropped (first
  order), approximated by a central difference of width :math:`\delta` (Hessian-free), or computed by
  an exact Hessian-vector product.
"""

from __future__ import annotations

from typing import Literal, get_args

Algorithm = Literal["fedavg", "fo", "hf", "exact"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)

#: the Per-FedAvg algorithms: how the meta-gradient's Hessian term is estimated
PerFedAvgAlgorithm = Literal["fo", "hf", "exact"]
PER_FEDAVG: tuple[PerFedAvgAlgorithm, ...] = get_args(PerFedAvgAlgorithm)

#: each algorithm's name in printed text, tables and figures: the paper's "Per-FedAvg (FO)" and "(HF)", the
#: exact variant in words
ALGORITHM_NAMES: dict[str, str] = {
    "fedavg": "FedAvg",
    "fo": "Per-FedAvg (FO)",
    "hf": "Per-FedAvg (HF)",
    "exact": "Per-FedAvg (exact HVP)",
}

#: Per-FedAvg (HF)'s finite-difference width :math:`\delta` unless a run sets another
DEFAULT_DELTA = 1e-3
