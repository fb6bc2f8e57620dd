r"""A plain loop-over-clients reference of Algorithm 1, for the tests.

Same random draws as the engine (it calls the same sampling functions in the same
order), but every client is handled one at a time with ``torch.autograd`` on a single
parameter vector, and the exact variant uses the full Hessian matrix
(``torch.autograd.functional.hessian``) instead of a Hessian-vector product, so it
checks the engine's vectorization and its HVP independently.  Meant for float64 and
small models.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perfedavg.engine.config import RunConfig
from perfedavg.engine.sampling import draw_batch, num_sampled_clients, sample_clients
from perfedavg.engine.task import Task


def _grad(task: Task, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(task.per_sample_loss(w, x, y).mean(), w)
    return g


def _hessian(task: Task, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    H: Tensor = torch.autograd.functional.hessian(  # type: ignore[no-untyped-call]  # torch does not annotate it
        lambda u: task.per_sample_loss(u, x, y).mean(), w.detach()
    )
    return H


def reference_round(task: Task, cfg: RunConfig, w: Tensor, gen: torch.Generator) -> Tensor:
    """One round of Algorithm 1 for ``cfg.algorithm``, looping over the sampled clients."""
    clients = sample_clients(gen, task.n_clients, num_sampled_clients(cfg.r, task.n_clients))
    models = [w.clone() for _ in clients]
    for _ in range(cfg.tau):
        sizes = (cfg.D,) if cfg.algorithm == "fedavg" else (cfg.D, cfg.D1, cfg.D2)
        batches = [draw_batch(gen, task.train, clients, s, task.batch_with_replacement) for s in sizes]
        for j in range(len(clients)):
            wj = models[j]
            xs = [(b.x[j], b.y[j]) for b in batches]
            if cfg.algorithm == "fedavg":
                direction = _grad(task, wj, *xs[0])
            else:
                g = _grad(task, wj - cfg.alpha * _grad(task, wj, *xs[0]), *xs[1])
                if cfg.algorithm == "fo":
                    direction = g
                elif cfg.algorithm == "hf":
                    diff = _grad(task, wj + cfg.delta * g, *xs[2]) - _grad(task, wj - cfg.delta * g, *xs[2])
                    direction = g - cfg.alpha * diff / (2 * cfg.delta)
                else:
                    direction = g - cfg.alpha * _hessian(task, wj, *xs[2]) @ g
            models[j] = wj - cfg.beta * direction
    return sum(models[1:], models[0]) / len(models)
