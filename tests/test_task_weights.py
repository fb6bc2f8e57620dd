"""Uniform user weights stay uniform in float32: a task moved to float32 is not refused as non-uniform."""

from __future__ import annotations

import torch

from perfedavg.engine.task import ClientData, Task


def test_uniform_weights_survive_float32_and_a_real_skew_does_not():
    x = torch.randn(30, 2, dtype=torch.float64)
    y = torch.zeros(30, dtype=torch.long)
    data = ClientData.from_lists(x, y, [list(range(0, 7)), list(range(7, 30))])  # 1/7 and 1/23: inexact in float32
    loss = lambda W, X, Y: (W[..., None, :2] * X).sum(-1)  # noqa: E731
    task = Task("t", loss, loss, lambda g: torch.zeros(2), data, data, batch_with_replacement=False)
    assert task.to(torch.float32).train.has_uniform_weights()
    skewed = data.weight.clone()
    skewed[0, :2] = torch.tensor([1 / 7 * (1 + 1e-4), 1 / 7 * (1 - 1e-4)])
    assert not ClientData(x, y, data.index, skewed.to(torch.float32), data.count).has_uniform_weights()
