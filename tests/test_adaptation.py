"""A few adaptation steps: the k-step curves of the evaluation against the one-step numbers and a plain loop."""

from __future__ import annotations

import pytest
import torch

from perfedavg.engine.adaptation import adaptation_curve
from perfedavg.engine.objective import adapted_models, client_test_metrics
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.rounds import evaluate, initial_state, local_round
from perfedavg.engine.task import client_rows
from tests.helpers import softmax_setup

#: float64 round-off of a loop that adapts one user at a time against the stacked users' passes (the same
#: arithmetic in other shapes: a few ulps per step, far below any planted error of a step)
LOOP_RTOL = 1e-12


def _trained(steps=4, **overrides):
    cfg, task = softmax_setup(adapt_steps=steps, **overrides)
    state = initial_state(task, cfg)
    w, _, _ = local_round(task, make_oracle(task), cfg, state.w, state.generator)
    return cfg, task, w


@pytest.mark.parametrize("eval_batch", [0, 4])
def test_step_one_is_the_one_step_evaluation_and_step_zero_the_shared_model(eval_batch):
    cfg, task, w = _trained(eval_batch=eval_batch)
    record = evaluate(task, cfg, w, round_index=1)
    splits = ("train", "test") + (("train_batch", "test_batch") if eval_batch else ())
    for split in splits:
        for what in ("loss", "accuracy"):
            curve = record[f"personalized_{what}_{split}_steps"]
            assert len(curve) == cfg.adapt_steps + 1
            assert curve[1] == record[f"personalized_{what}_{split}_step"], (split, what)
            assert curve[0] == record[f"global_{what}"], (split, what)
            per_user = record["per_client"][f"{what}_{split}_steps"]
            assert per_user[1] == record["per_client"][f"{what}_{split}_step"]
    # the one-step keys are those of a run without the curves
    plain = evaluate(task, cfg.replace(adapt_steps=1), w, round_index=1)
    assert {k: v for k, v in record.items() if not k.endswith("_steps") and k != "per_client"} == {
        k: v for k, v in plain.items() if k != "per_client"
    }
    assert not any(k.endswith("_steps") for k in plain)


@pytest.mark.parametrize("step", [0.0, 0.3])
def test_k_steps_equal_k_one_step_adaptations_chained_user_by_user(step):
    cfg, task, w = _trained(steps=5, adapt_step=step)
    size = step or cfg.alpha
    losses, accuracies = adaptation_curve(
        task.per_sample_loss, task.scores, w, lambda j: task.train, task.test, size, cfg.adapt_steps
    )
    for i in range(task.n_clients):
        train_i, test_i = client_rows(task.train, [i]), client_rows(task.test, [i])
        w_i = w
        for k in range(cfg.adapt_steps + 1):
            if k:
                w_i = adapted_models(task.per_sample_loss, w_i, train_i, size)[0]
            loss, acc = client_test_metrics(task.per_sample_loss, task.scores, w_i, test_i)
            assert float(loss) == pytest.approx(float(losses[k, i]), rel=LOOP_RTOL), (i, k)
            assert float(acc) == float(accuracies[k, i]), (i, k)
    assert not torch.equal(losses[2], losses[1])  # the steps move the models


def test_sgd_steps_draw_a_fresh_batch_each_step():
    cfg, task, w = _trained(steps=3, eval_batch=3)
    with_fresh = evaluate(task, cfg, w, round_index=1)["per_client"]["loss_train_batch_steps"]
    # the same first batch reused at every step gives another curve from step 2 on
    from perfedavg.engine.objective import client_batches
    from perfedavg.engine.rounds import eval_batch_generator

    first = client_batches(task.train, 3, eval_batch_generator(cfg.seed, 1), task.batch_with_replacement)
    losses, _ = adaptation_curve(task.per_sample_loss, task.scores, w, lambda j: first, task.test, cfg.alpha, 3)
    assert losses[1].tolist() == with_fresh[1]
    assert losses[2].tolist() != with_fresh[2]
