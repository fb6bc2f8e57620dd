"""The quadratic task's constants hold on a domain ||w|| <= W: the runs check every point the steps evaluate."""

from __future__ import annotations

import pytest
import torch

from perfedavg.runs.config import build_config
from perfedavg.runs.resolve import resolve


@pytest.mark.parametrize("algorithm", ["exact", "hf", "fedavg"])
def test_domain_check_sees_inner_and_hf_points_not_only_the_averages(algorithm):
    """With a tiny outer step the averages w_bar barely leave w_0 = 0, while the inner points w - a grad f(w, D)
    (and HF's w +- delta g, FedAvg's client iterates) are far out: max_w_norm must be theirs. On code that
    recorded only the averages, max_w_norm is ~beta ||g|| (fails)."""
    from synthetic.batched import run_seeds

    sets = [
        'task.name="quadratic"',
        "task.n_clients=4",
        "task.support=40",
        "K=2",
        "tau=2",
        "r=0.5",
        f'algorithm="{algorithm}"',
        'dtype="float64"',
        "alpha=0.2",
        "beta=1e-6",
        "delta=0.5",
        "D=3",
        "D1=3",
        "D2=3",
    ]
    cfg, task = resolve(build_config({}, sets))
    runs = run_seeds(task, cfg, [0, 1], track_inner=True)
    w_bar = float(runs.w.norm(dim=1).max())
    assert runs.max_w_norm.shape == (2,)
    if algorithm == "fedavg":  # the client iterates move by beta only: the domain sees them, no inner point exists
        assert w_bar <= runs.max_w_norm.max() < 1e-3
        return
    # inner points: alpha * ||grad f_i(0, D)|| = 0.2 ||mean y x|| over a batch, of order 0.1-1
    assert (runs.max_w_norm > 1e3 * w_bar).all(), (runs.max_w_norm, w_bar)


def test_the_recorder_attributes_points_to_their_seed():
    """Each seed's largest norm is its own: a seed run alone gives the same max_w_norm as in a batch of seeds."""
    from synthetic.batched import run_seeds

    sets = ['task.name="quadratic"', "task.n_clients=4", "K=2", "tau=2", "r=0.5", 'algorithm="hf"', 'dtype="float64"']
    sets += ["alpha=0.2", "beta=0.05", "delta=0.5", "D=3", "D1=3", "D2=3"]
    cfg, task = resolve(build_config({}, sets))
    seeds = [3, 4, 5]
    batch = run_seeds(task, cfg, seeds, track_inner=True)
    assert len(set(batch.max_w_norm.round(9))) == len(seeds)  # the seeds differ: a mix-up would show
    for i, seed in enumerate(seeds):
        alone = run_seeds(task, cfg, [seed], track_inner=True)
        assert batch.max_w_norm[i] == pytest.approx(alone.max_w_norm[0], rel=1e-12)
        assert torch.allclose(batch.w[i], alone.w[0], atol=1e-12)
