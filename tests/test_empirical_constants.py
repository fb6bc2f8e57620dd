"""empirical.constants: every estimate checked against dense Hessians of a tiny MLP task.

The tiny task (3 users, MLP 4-5-3 with ELU, 43 parameters, float64) is small enough for
``torch.autograd.functional.hessian``; Lanczos with as many steps as parameters then
recovers the extreme eigenvalues to rounding, so the tolerances are float64 rounding
(relative 1e-6, generous for 43-step three-term Lanczos without reorthogonalization).
"""

from __future__ import annotations

import json

import pytest
import torch

from empirical import constants as C
from perfedavg.engine.models import mlp
from perfedavg.engine.task import ClientData, Task
from perfedavg.errors import UsageError

SIZES = (4, 5, 3)
REL = 1e-6  # float64 Lanczos with steps = P on a 43-dimensional operator


def tiny_task(seed=0, n=3, counts=(7, 5, 9)) -> Task:
    g = torch.Generator().manual_seed(seed)
    total = sum(counts)
    x = torch.randn(total, SIZES[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, SIZES[-1], (total,), generator=g)
    lists, start = [], 0
    for c in counts:
        lists.append(list(range(start, start + c)))
        start += c
    data = ClientData.from_lists(x, y, lists)
    loss, scores, init = mlp(SIZES, "elu")
    return Task(
        name="tiny",
        per_sample_loss=loss,
        scores=scores,
        init_params=lambda gen: init(gen, dtype=torch.float64),
        train=data,
        test=data,
        batch_with_replacement=False,
    ).to(torch.float64)


def client_f(task, i):
    X, Y, P = task.train.gather(torch.tensor([i]))
    return lambda w: (P[0] * task.per_sample_loss(w, X[0], Y[0])).sum()


def sample_loss(task, i, j):
    k = task.train.index[i, j]
    return lambda w: task.per_sample_loss(w, task.train.x[k][None], task.train.y[k][None])[0]


def dense_hessian(fn, w):
    return torch.autograd.functional.hessian(fn, w)


def opnorm(A):
    return float(torch.linalg.eigvalsh(A).abs().max())


@pytest.fixture(scope="module")
def setup():
    task = tiny_task()
    w = task.init_params(torch.Generator().manual_seed(3)) * 3  # away from the symmetric init scale
    H = [dense_hessian(client_f(task, i), w) for i in range(task.n_clients)]
    return task, w, H


def test_lanczos_matches_eigvalsh_on_random_symmetric_batches():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 30, 30, generator=g, dtype=torch.float64)
    A = A + A.transpose(1, 2)
    largest, smallest = C.lanczos_extremes(
        lambda V: (A @ V[..., None])[..., 0], torch.randn(4, 30, generator=g, dtype=torch.float64), 30
    )
    ev = torch.linalg.eigvalsh(A)
    torch.testing.assert_close(largest, ev[:, -1], rtol=REL, atol=1e-9)
    torch.testing.assert_close(smallest, ev[:, 0], rtol=REL, atol=1e-9)


def test_lanczos_breakdown_on_low_rank_operator_keeps_exact_eigenvalues():
    # rank-2 operator: the Krylov space closes after 2 steps; the extremes are exact
    u = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]], dtype=torch.float64)
    A = u.T @ torch.diag(torch.tensor([5.0, -3.0], dtype=torch.float64)) @ u
    largest, smallest = C.lanczos_extremes(lambda V: V @ A, torch.ones(1, 4, dtype=torch.float64), 10)
    assert largest.item() == pytest.approx(5.0, rel=REL)
    assert smallest.item() == pytest.approx(-12.0, rel=REL)


def test_smoothness_is_the_top_hessian_eigenvalue_of_each_user(setup):
    task, w, H = setup
    Hs = C._full_hessian(task, w)
    L_users = C.smoothness(task, w, Hs, 43, torch.Generator().manual_seed(0))
    torch.testing.assert_close(L_users, torch.tensor([opnorm(h) for h in H], dtype=torch.float64), rtol=REL, atol=0)


def test_gradient_quantities_are_exact(setup):
    task, w, _ = setup
    Hs = C._full_hessian(task, w)
    grads = torch.stack([torch.func.grad(client_f(task, i))(w) for i in range(task.n_clients)])
    torch.testing.assert_close(Hs.grad, grads)
    expected_gamma = float(((grads - grads.mean(0)) ** 2).sum(1).mean())
    assert C.gradient_dissimilarity_sq(Hs.grad) == pytest.approx(expected_gamma, rel=1e-12)
    var, biggest = C.per_sample_gradient_stats(task, w, Hs.grad, 0, torch.Generator(), chunk_bytes=43 * 8 * 4)
    for i in range(task.n_clients):
        per = torch.stack([torch.func.grad(sample_loss(task, i, j))(w) for j in range(int(task.train.count[i]))])
        assert float(var[i]) == pytest.approx(float(((per - grads[i]) ** 2).sum(1).mean()), rel=1e-10)
        assert float(biggest[i]) == pytest.approx(float(per.norm(dim=1).max()), rel=1e-12)


def test_sampled_gradient_variance_is_unbiased_in_expectation(setup):
    task, w, _ = setup
    grads = C._full_hessian(task, w).grad
    exact, _ = C.per_sample_gradient_stats(task, w, grads, 0, torch.Generator())
    sampled, _ = C.per_sample_gradient_stats(task, w, grads, 4000, torch.Generator().manual_seed(1))
    # 4000 draws: the relative standard error of a variance mean is well under 10 %
    torch.testing.assert_close(sampled, exact, rtol=0.1, atol=0)


def test_hessian_deviation_matches_dense(setup):
    task, w, H = setup
    Hs = C._full_hessian(task, w)
    positions = torch.tensor([[0, 3], [1, 4], [2, 8]])
    got = C.hessian_deviation_sq(task, w, Hs, positions, 43, torch.Generator().manual_seed(0))
    for i in range(task.n_clients):
        for s in range(2):
            Hl = dense_hessian(sample_loss(task, i, int(positions[i, s])), w)
            assert float(got[i, s]) == pytest.approx(opnorm(Hl - H[i]) ** 2, rel=REL)


def test_hessian_dissimilarity_matches_dense(setup):
    task, w, H = setup
    Hs = C._full_hessian(task, w)
    mean = sum(H) / len(H)
    got = C.hessian_dissimilarity_sq(task, w, Hs, torch.arange(3), 43, torch.Generator().manual_seed(0))
    expected = torch.tensor([opnorm(h - mean) ** 2 for h in H], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=REL, atol=0)


def test_rho_finite_difference_matches_dense_difference(setup):
    task, w, H = setup
    Hs = C._full_hessian(task, w)
    radius = 1e-3
    gen = torch.Generator().manual_seed(5)
    got = C.hessian_lipschitz(task, w, Hs, radius, 1, 43, gen)
    # replay the same direction draw to build the dense finite difference
    gen = torch.Generator().manual_seed(5)
    U = C._randn(gen, Hs.W.shape, w)
    U = U / U.norm(dim=1, keepdim=True)
    for i in range(task.n_clients):
        Hu = dense_hessian(client_f(task, i), w + radius * U[i])
        assert float(got[i, 0]) == pytest.approx(opnorm(Hu - H[i]) / radius, rel=REL)
    assert float(got.max()) > 0


def test_estimate_at_and_document_feed_theory_constants(setup, tmp_path):
    from perfedavg.runs.config import build_config
    from theory.constants import Constants

    task, w, H = setup
    options = C.EstimateOptions(lanczos_steps=43, gamma_users=0, hessian_samples=2, rho_directions=1)
    record = C.estimate_at(task, w, options)
    assert record["L"] == pytest.approx(max(opnorm(h) for h in H), rel=REL)
    assert set(record["seconds"]) == {"L", "sigma_G", "sigma_H", "gamma_H", "rho"}
    cfg = build_config({"alpha": 0.001, "r": 1.0, "task": {"name": "softmax"}})
    doc = C.document(cfg, task, [{"round": 0, **record}], F0=2.0, options=options)
    path = C.write_constants(doc, tmp_path / "constants.json")
    loaded = json.loads(path.read_text())
    c = Constants.from_dict(loaded["constants"])
    assert pytest.approx(record["L"]) == c.L and c.F0_gap == 2.0 and c.n == 3
    assert loaded["theory_check"].startswith("accepted")
    assert "theory." not in loaded["theory_check"] and "Constants" not in loaded["theory_check"]  # user words
    assert set(C.PROVENANCE) <= set(loaded["provenance"])
    # the per-sample gradient bound the HF and TV statements need is exported, not left to default to B
    assert record["B_per_sample"] >= record["B"] and c.B_sample == pytest.approx(record["B_per_sample"])
    assert "B_sample" not in c.sample_assumed and set(c.sample_assumed) == {"L_sample", "rho_sample"}


def test_skipped_rho_is_null_not_zero(setup, tmp_path):
    """--rho-directions 0: rho is written as null and named 'not estimated', never as a 0
    that would make theory's L_F = 4L + alpha*rho*B silently too small."""
    from perfedavg.runs.config import build_config

    task, w, _H = setup
    options = C.EstimateOptions(lanczos_steps=8, gamma_users=1, hessian_samples=1, rho_directions=0)
    record = C.estimate_at(task, w, options)
    assert record["rho"] is None
    cfg = build_config({"alpha": 0.001, "r": 1.0, "task": {"name": "softmax"}})
    doc = C.document(cfg, task, [{"round": 0, **record}], F0=2.0, options=options)
    loaded = json.loads(C.write_constants(doc, tmp_path / "constants.json").read_text())
    assert "rho" in loaded["constants"] and loaded["constants"]["rho"] is None
    assert loaded["not_estimated"] == ["rho"] and loaded["provenance"]["rho"] == "not estimated"
    assert loaded["theory_check"].startswith("not checked") and "rho" in loaded["theory_check"]
    assert "theory." not in loaded["theory_check"] and "Constants" not in loaded["theory_check"]  # user words
    assert loaded["constants"]["L"] == pytest.approx(record["L"])


def test_parse_rounds_and_option_errors():
    assert C.parse_rounds("final,0, 5", 10) == [0, 5, 10]
    with pytest.raises(UsageError, match="out of range"):
        C.parse_rounds("11", 10)
    with pytest.raises(UsageError, match="round number"):
        C.parse_rounds("x", 10)
    with pytest.raises(UsageError, match="lanczos_steps"):
        C.EstimateOptions(lanczos_steps=0)


def test_estimate_run_replays_rounds_bit_for_bit_and_writes_json(tmp_path):
    from perfedavg.runs.config import build_config
    from perfedavg.runs.resolve import resolve
    from perfedavg.runs.rundir import read_checkpoint
    from perfedavg.runs.runner import run_config

    table = {
        "algorithm": "fo",
        "K": 3,
        "tau": 2,
        "alpha": 0.01,
        "beta": 0.05,
        "D": 5,
        "D1": 5,
        "D2": 5,
        "checkpoint_every": 0,
        "eval_every": 3,
        "task": {"name": "softmax"},
    }
    short, longer = tmp_path / "k2", tmp_path / "k3"
    run_config(build_config({**table, "K": 2}), short, progress=False)
    run_config(build_config(table), longer, progress=False)
    cfg, task = resolve(build_config(table))
    # replaying round 2 of the K=3 run gives the K=2 run's checkpoint exactly
    state3 = read_checkpoint(longer / "checkpoint.pt")["state"]
    replayed = C.models_at_rounds(task, cfg, state3, [0, 2, 3])
    assert replayed[2].equal(read_checkpoint(short / "checkpoint.pt")["state"]["w"])
    assert replayed[3].equal(state3["w"])
    options = C.EstimateOptions(lanczos_steps=8, hessian_samples=1, gamma_users=2, rho_directions=1)
    doc = C.estimate_run(longer, "0,2,final", options, progress=False)
    assert doc["rounds"] == [0, 2, 3] and len(doc["per_round"]) == 3
    assert doc["constants"]["L"] == max(r["L"] for r in doc["per_round"])
    assert doc["constants"]["n"] == task.n_clients and doc["constants"]["alpha"] == 0.01
    assert doc["theory_check"].startswith("accepted")
