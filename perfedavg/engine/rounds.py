r"""The round loop of FedAvg and Per-FedAvg (docs/paper.md §2, Algorithm 1), vectorized over clients.

Round :math:`k`: sample :math:`rn` users uniformly without replacement, stack their
copies of :math:`w_k` into ``W (m, P)``, run :math:`\tau` local steps on all of them at
once (:mod:`perfedavg.engine.local`), and set :math:`w_{k+1}` to the uniform mean of the
returned models.  Every random draw comes from one explicit ``torch.Generator``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from perfedavg.engine.adaptation import adaptation_curve
from perfedavg.engine.config import RunConfig
from perfedavg.engine.costs import budget_matched
from perfedavg.engine.local import StepSizes
from perfedavg.engine.memory import MEMORY_SHARE, in_units, memory_budget
from perfedavg.engine.objective import client_batches, client_objectives, client_test_metrics, personalized_test_metrics
from perfedavg.engine.oracle import FastPath, make_oracle
from perfedavg.engine.sampling import draw_position_blocks, gather_batches, num_sampled_clients, sample_clients
from perfedavg.engine.task import ClientData, Task
from perfedavg.errors import Diverged, UsageError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainState:
    """Everything a run needs to continue bit for bit: the model, the round, the generator."""

    round: int
    w: Tensor
    generator: torch.Generator
    #: sum over finished rounds k and local steps t of ||grad F(w_bar_{k+1,t})||^2 (track_inner)
    inner_sum: float = 0.0
    inner_terms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "w": self.w.detach().cpu().clone(),
            "generator_state": self.generator.get_state(),
            "inner_sum": self.inner_sum,
            "inner_terms": self.inner_terms,
        }

    @staticmethod
    def from_dict(d: dict[str, Any], device: torch.device | str = "cpu") -> TrainState:
        gen = torch.Generator()
        gen.set_state(d["generator_state"])
        return TrainState(d["round"], d["w"].to(device), gen, d["inner_sum"], d["inner_terms"])


def step_sizes(cfg: RunConfig) -> StepSizes:
    return StepSizes(alpha=cfg.alpha, beta=cfg.beta, delta=cfg.delta)


#: bytes a round holds per drawn batch position: the position and its label, both int64
DRAW_BYTES = 16
#: bytes a round holds per local step besides its positions (the step's tuple of position blocks)
STEP_BYTES = 512


def round_draw_bytes(cfg: RunConfig, n_clients: int) -> int:
    r"""Memory a round's batch draws take: every local step's positions (and their labels) are drawn before
    the first step, so that a run draws in a lone run's order: :math:`\tau\,(m\,\sum D \cdot 16 + 512)` bytes,
    :math:`m` the sampled users, :math:`\sum D` the step's batch sizes (FedAvg: D; Per-FedAvg: D + D' + D'')."""
    m = num_sampled_clients(cfg.r, n_clients)
    per_user = cfg.D if cfg.algorithm == "fedavg" else cfg.D + cfg.D1 + cfg.D2
    return cfg.tau * (m * per_user * DRAW_BYTES + STEP_BYTES)


def check_config_against_task(cfg: RunConfig, task: Task) -> None:
    """Options whose range depends on the task: r*n >= 1 (m = floor(r*n) users per round,
    :func:`perfedavg.engine.sampling.num_sampled_clients`), batches no larger than any client's data, a
    round's draws that fit this machine (:func:`round_draw_bytes`), a forced round strategy that fits
    (:meth:`perfedavg.engine.oracle.FastPath.prefers_sample_space`), and an evaluation batch no larger than
    the largest user's data."""
    cfg = budget_matched(cfg)  # a budget-matched FedAvg is checked as the FedAvg it runs
    n = task.n_clients
    if num_sampled_clients(cfg.r, n) < 1:
        raise UsageError(
            f"r={cfg.r} is out of range for n = {n} users: r*n = {cfg.r * n:g} samples no user; r*n must be >= 1 "
            f"(r >= 1/n = {1 / n:.6g}); floor(r*n) users are sampled per round"
        )
    smallest = task.train.min_count
    sizes = {"D": cfg.D} if cfg.algorithm == "fedavg" else {"D": cfg.D, "D1": cfg.D1, "D2": cfg.D2}
    for name, size in sizes.items():
        if size > smallest:
            raise UsageError(
                f"{name}={size} is larger than the smallest user's data ({smallest} samples): must be <= {smallest}"
            )
    need, budget = round_draw_bytes(cfg, n), memory_budget(cfg.device)
    if need > budget:
        raise UsageError(
            f"tau={cfg.tau} is too large for this machine: a round draws every local step's batches first, "
            f"about {in_units(need)} for {num_sampled_clients(cfg.r, n)} users and batches "
            f"{'+'.join(str(v) for v in sizes.values())}, more than {MEMORY_SHARE:.0%} of its memory "
            f"({in_units(budget)}); lower tau or the batch sizes"
        )
    # a round strategy that cannot run here says so now
    make_oracle(task).prefers_sample_space(task.train, cfg.algorithm, cfg.tau, tuple(sizes.values()))
    largest = max(int(task.train.count.max()), int(task.test.count.max()))
    if cfg.eval_batch > largest:
        raise UsageError(
            f"eval_batch={cfg.eval_batch} is larger than any user's data ({largest} samples at most): "
            f"must be <= {largest} (a user with fewer samples adapts on all of them)"
        )


def initial_state(task: Task, cfg: RunConfig) -> TrainState:
    """Round 0: the task's initial model, the generator seeded with ``cfg.seed``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    w0 = task.init_params(gen).to(dtype=DTYPES[cfg.dtype], device=cfg.device)
    return TrainState(round=0, w=w0, generator=gen)


def local_round(
    task: Task, fast: FastPath, cfg: RunConfig, w: Tensor, gen: torch.Generator, track: bool = False
) -> tuple[Tensor, Tensor, list[Tensor]]:
    r"""One round of one run: :math:`w_{k+1}`, the sampled clients, and (if ``track``) the
    averages :math:`\bar w_{k+1,t}` of the sampled users' iterates for :math:`t = 0..\tau-1`."""
    W, clients, trajectory = local_rounds(task, fast, cfg, w[None], [gen], track)
    return W[0], clients[0], [w_bar[0] for w_bar in trajectory]


def local_rounds(
    task: Task, fast: FastPath, cfg: RunConfig, W: Tensor, gens: list[torch.Generator], track: bool = False
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    r"""One round of ``S`` independent runs at once (vectorized over seeds and clients).

    ``W (S, P)`` holds each run's :math:`w_k`, ``gens`` its generator; each run draws in
    its own stream in the same order as a lone run (clients, then per local step the
    batches :math:`\mathcal D, \mathcal D', \mathcal D''`), and the ``S m`` local models
    are stacked into one block for the local steps (``fast.stack``: ``(S m, P)`` rows or the fast
    path's own layout).  Returns
    :math:`w_{k+1}` ``(S, P)`` (the uniform mean over each run's sampled users), the
    sampled clients per run, and (if ``track``) :math:`\bar w_{k+1,t}` ``(S, P)`` for
    :math:`t = 0..\tau-1` (:math:`\bar w_{k+1,0} = w_k` exactly).

    A fast path runs the whole round in the users' sample space when it says that is cheaper
    (``prefers_sample_space``; not with ``track``): the same draws and arithmetic, rearranged
    (:func:`perfedavg.engine.mlp.sample_space.round_in_sample_space`).
    """
    S = W.shape[0]
    m = num_sampled_clients(cfg.r, task.n_clients)
    clients = [sample_clients(gen, task.n_clients, m) for gen in gens]
    h = step_sizes(cfg)
    sizes = (cfg.D,) if cfg.algorithm == "fedavg" else (cfg.D, cfg.D1, cfg.D2)
    stacked = torch.cat(clients)
    # batches do not depend on the model: draw every step's positions first, in a lone run's order
    J = len(sizes)  # per run, per step t: D, (D', D''); one call per run draws them all in that order
    drawn = [
        draw_position_blocks(gen, task.train, run_clients, sizes * cfg.tau, task.batch_with_replacement)
        for gen, run_clients in zip(gens, clients)
    ]
    steps = [tuple(_join([run[t * J + j] for run in drawn]) for j in range(J)) for t in range(cfg.tau)]
    if not track and fast.prefers_sample_space(task.train, cfg.algorithm, cfg.tau, sizes):
        return fast.round_in_sample_space(W, task.train, stacked, steps, h, cfg.algorithm), clients, []
    used = 2 if cfg.algorithm == "fo" else len(sizes)  # FO draws D'' (same stream as HF) but never reads it
    # the sampled users' batches, step after step (labels looked up once per round, inputs as each step comes)
    batches = gather_batches(task.train, stacked, [p for positions in steps for p in positions[:used]])
    # a lone run's first step reads w_k itself for every user (no copies) and writes the round's iterates
    broadcast = S == 1
    local = fast.stack(W, m, fill=not broadcast)
    trajectory = []
    for t in range(cfg.tau):
        if track:
            trajectory.append(W if t == 0 else fast.average(local, S))
        current = W[0].expand(m, -1) if t == 0 and broadcast else local  # then in place: local is the round's own
        if cfg.algorithm == "fedavg":
            fast.fedavg_step(current, next(batches), h, out=local)
        else:  # D, D' and, but for FO, D''
            inner, outer = next(batches), next(batches)
            hessian = next(batches) if used == 3 else None
            fast.per_fedavg_step(current, (inner, outer, hessian), h, cfg.algorithm, out=local)
    return fast.average(local, S), clients, trajectory


def _join(blocks: list[Tensor]) -> Tensor:
    """The runs' positions of one batch, stacked along the users (a lone run's as they are)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def evaluate(task: Task, cfg: RunConfig, w: Tensor, round_index: int = 0) -> dict[str, Any]:
    r"""Measurements at the shared model ``w`` (after round ``round_index``):

    * ``F``, ``grad_norm_sq_F``: :math:`F(w)` and :math:`\|\nabla F(w)\|^2`, exact from full local training data;
    * ``f``, ``grad_norm_sq_f``: the FedAvg objective and its gradient norm;
    * personalized test loss and accuracy after one adaptation step :math:`w_i = w - \alpha\nabla f_i(w)`
      taken on the user's training data (``*_train_step``, leak-free) or on its test data
      (``*_test_step``, the paper's protocol); ``personalized_*`` repeats the one ``cfg.protocol`` names;
    * with ``cfg.eval_batch = N``, also the step as one SGD step on a batch of ``N`` of those samples
      (``*_train_batch_step``, ``*_test_batch_step``; the paper's literal wording), drawn by
      :func:`eval_batch_generator`, never by the training generator;
    * ``global_*``: the shared model tested without adaptation;
    * with ``cfg.adapt_steps = N > 1``, the curves over :math:`k = 0..N` adaptation steps of size
      ``cfg.adaptation_step`` (:func:`perfedavg.engine.adaptation.adaptation_curve`):
      ``personalized_{loss,accuracy}_{split}_steps`` (lists of N + 1 means; per user under ``per_client``
      as ``{loss,accuracy}_{split}_steps``, one list of users per k); the SGD variant draws a fresh batch
      per step (step 1's is the ``*_batch_step`` batch);
    * when the task holds users out of training (``task.new_train``), every one of these again for them,
      keys suffixed ``_new`` (their batches from a stream of their own, :data:`NEW_USERS_STREAM`).

    Per-client values are kept under ``per_client``.
    """
    record, per_client = _users_record(task, cfg, w, task.train, task.test, round_index, EVAL_BATCH_STREAM)
    if task.new_train is not None and task.new_test is not None:
        new, new_per_client = _users_record(task, cfg, w, task.new_train, task.new_test, round_index, NEW_USERS_STREAM)
        record.update({f"{key}_new": value for key, value in new.items()})
        per_client.update({f"{key}_new": value for key, value in new_per_client.items()})
    record["per_client"] = per_client
    return record


def _users_record(
    task: Task, cfg: RunConfig, w: Tensor, train: ClientData, test: ClientData, round_index: int, stream: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`evaluate`'s means and per-user values for the users of ``train`` / ``test`` (their batches
    drawn from ``stream``)."""
    loss, scores = task.per_sample_loss, task.scores
    obj = client_objectives(loss, w, train, cfg.alpha)
    record: dict[str, Any] = {
        "F": float(obj.F.mean()),
        "grad_norm_sq_F": float(obj.grad_F.mean(0).square().sum()),
        "f": float(obj.f.mean()),
        "grad_norm_sq_f": float(obj.grad_f.mean(0).square().sum()),
    }
    per_client: dict[str, Any] = {"F": obj.F.tolist(), "f": obj.f.tolist()}
    adaptations = [("train", train), ("test", test)]
    batches: dict[int, dict[str, ClientData]] = {}

    def batches_of_step(j: int) -> dict[str, ClientData]:
        """The SGD variant's batches of adaptation step ``j`` (train, then test: the order they are drawn)."""
        if j not in batches:
            generator = eval_batch_generator(cfg.seed, round_index, j, stream)
            batches[j] = {
                f"{split}_batch": client_batches(data, cfg.eval_batch, generator, task.batch_with_replacement)
                for split, data in (("train", train), ("test", test))
            }
        return batches[j]

    if cfg.eval_batch:
        adaptations += list(batches_of_step(1).items())
    for split, data in adaptations:
        test_loss, test_acc = personalized_test_metrics(loss, scores, w, data, test, cfg.alpha)
        record[f"personalized_loss_{split}_step"] = float(test_loss.mean())
        record[f"personalized_accuracy_{split}_step"] = float(test_acc.mean())
        per_client[f"loss_{split}_step"] = test_loss.tolist()
        per_client[f"accuracy_{split}_step"] = test_acc.tolist()
    g_loss, g_acc = client_test_metrics(loss, scores, w, test)
    record["global_loss"] = float(g_loss.mean())
    record["global_accuracy"] = float(g_acc.mean())
    record["personalized_loss"] = record[f"personalized_loss_{cfg.protocol}_step"]
    record["personalized_accuracy"] = record[f"personalized_accuracy_{cfg.protocol}_step"]
    if cfg.adapt_steps > 1:
        for split, data in adaptations:
            full = split in ("train", "test")  # the full-batch step reads the same data every step

            def step_data(j: int, split: str = split, data: ClientData = data, full: bool = full) -> ClientData:
                return data if full else batches_of_step(j)[split]

            losses, accuracies = adaptation_curve(
                loss, scores, w, step_data, test, cfg.adaptation_step, cfg.adapt_steps
            )
            record[f"personalized_loss_{split}_steps"] = losses.mean(1).tolist()
            record[f"personalized_accuracy_{split}_steps"] = accuracies.mean(1).tolist()
            per_client[f"loss_{split}_steps"] = losses.tolist()
            per_client[f"accuracy_{split}_steps"] = accuracies.tolist()
    return record, per_client


#: the stream of the ``eval_batch`` draws, apart from the training generator's
EVAL_BATCH_STREAM = 7919
#: the stream of the held-out (new) users' ``eval_batch`` draws, apart from the training users'
NEW_USERS_STREAM = 7927


def eval_batch_generator(
    seed: int, round_index: int, step: int = 1, stream: int = EVAL_BATCH_STREAM
) -> torch.Generator:
    """The generator of the evaluation batches of adaptation step ``step`` at ``round_index`` of the run with
    ``seed`` (``stream``: the training users' or the new users'): a function of these alone, so evaluating
    (or not, or resuming, or taking more steps) never changes the training draws or another round's."""
    entropy = [seed, stream, round_index] + ([step] if step > 1 else [])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def is_eval_round(cfg: RunConfig, k: int) -> bool:
    return k == 0 or k == cfg.K or k % cfg.eval_every == 0


def train(
    task: Task, cfg: RunConfig, state: TrainState | None = None
) -> Iterator[tuple[TrainState, dict[str, Any] | None]]:
    """Run rounds ``state.round .. K-1``; yields ``(state, record)`` after each round (and
    once for round 0 when starting fresh), ``record`` being the evaluation or ``None``.

    A FedAvg run with ``match_budget`` runs the FedAvg that spends the named variant's budget
    (:func:`perfedavg.engine.costs.budget_matched`).

    Raises :class:`perfedavg.errors.Diverged` on a non-finite parameter or objective.
    """
    cfg = budget_matched(cfg)
    check_config_against_task(cfg, task)
    oracle = make_oracle(task)
    if state is None:
        state = initial_state(task, cfg)
        yield state, evaluate_state(task, cfg, state)
    while state.round < cfg.K:
        start = time.perf_counter()
        w_next, _, trajectory = local_round(task, oracle, cfg, state.w, state.generator, cfg.track_inner)
        if not bool(torch.isfinite(w_next).all()):
            raise Diverged(state.round + 1, "a model parameter became NaN or infinite")
        state.w = w_next
        state.round += 1
        for w_bar in trajectory:
            grad_F = client_objectives(task.per_sample_loss, w_bar, task.train, cfg.alpha).grad_F
            state.inner_sum += float(grad_F.mean(0).square().sum())
            state.inner_terms += 1
        state.extra["round_seconds"] = time.perf_counter() - start
        yield state, (evaluate_state(task, cfg, state) if is_eval_round(cfg, state.round) else None)


def evaluate_state(task: Task, cfg: RunConfig, state: TrainState) -> dict[str, Any]:
    """The record of ``state``'s round (:func:`evaluate` of its model, its round, the inner-iterate
    average when tracked); raises :class:`perfedavg.errors.Diverged` on a non-finite objective."""
    record = {"round": state.round, **evaluate(task, cfg, state.w, state.round)}
    if state.inner_terms:
        record["stationarity_avg"] = state.inner_sum / state.inner_terms
    for key in ("F", "grad_norm_sq_F", "f"):
        if not torch.isfinite(torch.tensor(record[key])):
            raise Diverged(state.round, f"{key} is {record[key]}")
    return record
