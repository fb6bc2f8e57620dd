r"""What each method costs, counted: floats sent, gradient evaluations, Hessian-vector products, samples.

A round of Algorithm 1 (docs/paper.md §2) sends :math:`w_k` to each of the :math:`m` sampled users and
receives each user's model back (:math:`mP` floats each way), and runs :math:`\tau` local steps at every
user.  What a local step computes is counted, not assumed: :func:`local_step_cost` runs the step of
:mod:`perfedavg.engine.local` (the specification every fast path is pinned to by the tests) for one user
through a :class:`CountingOracle`, which answers zeros and records every call:

* ``gradients``: stochastic gradients :math:`\tilde\nabla f_i(\cdot,\mathcal D)`, one per user per call
  (FedAvg 1 per step, FO 2, HF 4: the two of its finite difference included, exact 2);
* ``sample_gradients``: per-sample gradients, the batch sizes summed over those calls;
* ``hvps``, ``sample_hvps``: exact Hessian-vector products (the exact variant's one per step) and their
  samples;
* ``gradient_equivalents``: ``gradients + HVP_GRADIENTS * hvps``, the cost in gradients (HF's finite
  difference is already two gradients);
* ``samples``: distinct samples the step reads (each batch position is tagged with its own number, so
  HF's :math:`\mathcal D''`, read by both of its gradients, counts once, and FO's :math:`\mathcal D''`,
  drawn but never read, not at all).

:func:`budget_matched` turns a FedAvg config into the one that spends what a Per-FedAvg variant spends
per round, by the documented rule ``match_rule``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import cast

import torch
from torch import Tensor

from perfedavg.algorithms import Algorithm
from perfedavg.engine import local
from perfedavg.engine.config import RunConfig
from perfedavg.engine.local import StepSizes
from perfedavg.engine.oracle import LocalSteps
from perfedavg.engine.sampling import Batch, num_sampled_clients

#: gradients an exact Hessian-vector product costs: Pearlmutter's R-operator is one forward and one backward
#: pass over the gradient's graph, about twice a gradient's work (the MLP's own R-operator is of that order too)
HVP_GRADIENTS = 2


@dataclass(frozen=True)
class Cost:
    """Counts of one unit of work (a local step, a round, a run); see the module docstring."""

    floats_down: int = 0
    floats_up: int = 0
    gradients: int = 0
    sample_gradients: int = 0
    hvps: int = 0
    sample_hvps: int = 0
    samples: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def times(self, k: int) -> Cost:
        return Cost(*(k * getattr(self, f.name) for f in fields(self)))

    @property
    def gradient_equivalents(self) -> int:
        return self.gradients + HVP_GRADIENTS * self.hvps

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "gradient_equivalents": self.gradient_equivalents}


class CountingOracle(LocalSteps):
    """An oracle that computes nothing (zero gradients) and counts every call it answers; the batches' inputs
    carry each sample's number, so :attr:`seen` is the set of samples read."""

    def __init__(self) -> None:
        self.cost = Cost()
        self.seen: set[int] = set()

    def _read(self, X: Tensor) -> None:
        self.seen.update(int(v) for v in X.reshape(-1).tolist())

    def grad(self, W: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        self._read(X)
        self.cost += Cost(gradients=W.shape[0], sample_gradients=X.shape[0] * X.shape[1])
        return torch.zeros_like(W)

    def hvp(self, W: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
        self._read(X)
        self.cost += Cost(hvps=W.shape[0], sample_hvps=X.shape[0] * X.shape[1])
        return torch.zeros_like(W)


def local_step_cost(algorithm: Algorithm, sizes: tuple[int, ...], n_params: int = 1) -> Cost:
    """The cost of one local step of ``algorithm`` at one user, with batch sizes ``sizes`` (FedAvg: ``(D,)``;
    Per-FedAvg: ``(D, D', D'')``), counted by running the step (module docstring)."""
    oracle = CountingOracle()
    start, batches = 0, []
    for size in sizes:  # every position its own number
        numbers = torch.arange(start, start + size, dtype=torch.float64)
        batches.append(Batch(numbers.view(1, size, 1), torch.zeros(1, size, dtype=torch.long)))
        start += size
    W = torch.zeros(1, n_params, dtype=torch.float64)
    h = StepSizes(alpha=1.0, beta=1.0)
    if algorithm == "fedavg":
        local.fedavg_step(oracle, W, batches[0], h)
    else:
        local.per_fedavg_step(oracle, W, (batches[0], batches[1], batches[2]), h, algorithm)
    return oracle.cost + Cost(samples=len(oracle.seen))


def batch_sizes(cfg: RunConfig) -> tuple[int, ...]:
    """The batches of one local step: FedAvg ``(D,)``, Per-FedAvg ``(D, D', D'')``."""
    return (cfg.D,) if cfg.algorithm == "fedavg" else (cfg.D, cfg.D1, cfg.D2)


def round_cost(cfg: RunConfig, n_clients: int, n_params: int) -> Cost:
    r"""One round of ``cfg`` (after :func:`budget_matched`) on ``n_clients`` training users and a model of
    ``n_params`` parameters: :math:`mP` floats each way, :math:`m\tau` local steps."""
    m = num_sampled_clients(cfg.r, n_clients)
    step = local_step_cost(cfg.algorithm, batch_sizes(cfg), n_params)
    return Cost(floats_down=m * n_params, floats_up=m * n_params) + step.times(m * cfg.tau)


def budget_matched(cfg: RunConfig) -> RunConfig:
    r"""The FedAvg config that spends per round what ``cfg.match_budget``'s Per-FedAvg variant spends (same
    :math:`m`, :math:`\tau`, batch sizes), by ``cfg.match_rule``:

    * ``steps``: as many gradient evaluations: :math:`\tau' = \tau\,G` local steps of batch D, :math:`G` the
      variant's gradient equivalents per local step (FO 2, HF 4, exact 2 + 2 for its HVP);
    * ``batch``: as many per-sample gradient evaluations in the same :math:`\tau` steps: one batch of
      :math:`D' = ` the variant's per-sample gradient equivalents per step (FO D + D', HF and exact
      D + D' + 2D'').

    ``cfg`` itself when ``match_budget`` is empty."""
    if not cfg.match_budget:
        return cfg
    target = local_step_cost(cast(Algorithm, cfg.match_budget), (cfg.D, cfg.D1, cfg.D2))  # checked by RunConfig
    if cfg.match_rule == "steps":
        return cfg.replace(tau=cfg.tau * target.gradient_equivalents, match_budget="")
    per_sample = target.sample_gradients + HVP_GRADIENTS * target.sample_hvps
    return cfg.replace(D=per_sample, match_budget="")
