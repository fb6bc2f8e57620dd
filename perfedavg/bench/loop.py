"""The baseline ``perfedavg bench`` times the engine against: a per-client ``nn.Module`` loop."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class LoopBaseline:
    r"""Per-client ``nn.Module`` + ``torch.optim.SGD`` with a ``deepcopy`` per client, as
    existing FL code does (e.g. the Per-FedAvg user of the pFedMe code base): the same
    algorithm and hyper-parameters as the engine, one client at a time."""

    def __init__(self, task, cfg, dtype):
        self.cfg = cfg
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(task.train.x[0].numel(), 80),
            nn.ELU(),
            nn.Linear(80, 60),
            nn.ELU(),
            nn.Linear(60, 10),
        ).to(dtype=dtype, device=task.train.x.device)
        per_client = int(task.train.count[0])
        self.client_x = [task.train.x[i * per_client : (i + 1) * per_client] for i in range(task.n_clients)]
        self.client_y = [task.train.y[i * per_client : (i + 1) * per_client] for i in range(task.n_clients)]
        self.gen = torch.Generator().manual_seed(1)

    def _batch(self, i: int, size: int):
        idx = torch.randint(0, len(self.client_y[i]), (size,), generator=self.gen).to(self.client_y[i].device)
        return self.client_x[i][idx], self.client_y[i][idx]

    def _backward(self, model, batch):
        model.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()

    def _local_step(self, model, opt, i: int) -> None:
        cfg = self.cfg
        params = list(model.parameters())
        if cfg.algorithm == "fedavg":
            self._backward(model, self._batch(i, cfg.D))
            opt.step()
            return
        w0 = [p.detach().clone() for p in params]
        for group in opt.param_groups:  # w~ = w - alpha grad f(w, D)
            group["lr"] = cfg.alpha
        self._backward(model, self._batch(i, cfg.D))
        opt.step()
        self._backward(model, self._batch(i, cfg.D1))  # g = grad f(w~, D')
        g = [p.grad.detach().clone() for p in params]
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)
        if cfg.algorithm == "hf":
            batch = self._batch(i, cfg.D2)
            pm = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, w, gi in zip(params, w0, g):
                        p.copy_(w).add_(gi, alpha=sign * cfg.delta)
                self._backward(model, batch)
                pm.append([p.grad.detach().clone() for p in params])
            with torch.no_grad():
                for p, w, gi, gp, gm in zip(params, w0, g, *pm):
                    p.copy_(w)
                    p.grad = gi - cfg.alpha * (gp - gm) / (2 * cfg.delta)
        elif cfg.algorithm == "exact":
            x, y = self._batch(i, cfg.D2)
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            hv = torch.autograd.grad(grads, params, grad_outputs=g)
            for p, gi, h in zip(params, g, hv):
                p.grad = gi - cfg.alpha * h
        else:
            for p, gi in zip(params, g):
                p.grad = gi
        for group in opt.param_groups:
            group["lr"] = cfg.beta
        opt.step()

    def round(self, n_clients: int, m: int) -> None:
        """One round: ``m`` of ``n_clients`` clients, each on a deep copy of the global model, then their average."""
        clients = torch.randperm(n_clients, generator=self.gen)[:m].tolist()
        states = []
        for i in clients:
            local = copy.deepcopy(self.model)
            opt = torch.optim.SGD(local.parameters(), lr=self.cfg.beta)
            for _ in range(self.cfg.tau):
                self._local_step(local, opt, i)
            states.append([p.detach() for p in local.parameters()])
        with torch.no_grad():
            for k, p in enumerate(self.model.parameters()):
                p.copy_(torch.stack([s[k] for s in states]).mean(0))
