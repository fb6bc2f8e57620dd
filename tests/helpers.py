"""Small tasks and helpers shared by the tests."""

from __future__ import annotations

import torch

from perfedavg.config import build_config
from perfedavg.runner import resolve


def softmax_setup(dtype="float64", **overrides):
    """A small resolved (config, task) pair on the synthetic softmax task."""
    sets = {"K": 3, "tau": 3, "r": 0.5, "D": 5, "D1": 6, "D2": 7, "dtype": dtype, "eval_every": 1,
            "task.n_clients": 6, "task.dim": 4, "task.classes": 3, "task.support": 30}
    sets.update(overrides)
    cfg = build_config({}, [f"{k}={v!r}" if isinstance(v, str) else f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sets.items()])
    return resolve(cfg)


def random_params(task, seed=1, scale=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p = task.init_params(g)
    return (torch.randn(p.shape, generator=g, dtype=torch.float64) * scale).to(dtype)
