r"""The constants of docs/paper.md §3, estimated on a real model at chosen rounds.

At a shared model :math:`w` (a round of a run, or any given vector), with
:math:`f_i(w) = \sum_j p_{ij}\, l(w;\theta_{ij})` computed from user :math:`i`'s *full*
training data and :math:`f = \frac1n\sum_i f_i`:

========== ============================================================== ===================
field      what is computed                                               status
========== ============================================================== ===================
``L``      :math:`\max_i \|\nabla^2 f_i(w)\|_{op}` (Lanczos on exact HVPs)  local value at w;
                                                                            Ritz values are
                                                                            lower bounds
``B``      :math:`\max_i \|\nabla f_i(w)\|`                                  exact at w
``sigma_G`` :math:`\max_i \big(\sum_j p_{ij}\|\nabla l(w;\theta_{ij}) -      exact when
           \nabla f_i(w)\|^2\big)^{1/2}`                                    ``samples = 0``
``sigma_H`` :math:`\max_i \big(\mathbb E_\theta \|\nabla^2 l(w;\theta) -     Monte-Carlo over
           \nabla^2 f_i(w)\|_{op}^2\big)^{1/2}`                             drawn θ: estimate
``gamma_G`` :math:`\big(\frac1n\sum_i\|\nabla f_i(w)-\nabla f(w)\|^2\big)^{1/2}` exact at w
``gamma_H`` :math:`\big(\frac1n\sum_i\|\nabla^2 f_i(w)-\nabla^2 f(w)\|_{op}^2\big)^{1/2}` mean over a
                                                                            random subset of
                                                                            users: estimate
``rho``    :math:`\max \|\nabla^2 f_i(w+\varepsilon u) - \nabla^2 f_i(w)\|_{op}/\varepsilon`  finite difference
           over random unit directions :math:`u` (one per user and draw)    along random
                                                                            directions:
                                                                            estimate
========== ============================================================== ===================

The assumptions of docs/paper.md §3 are suprema over *all* w; a value at a few rounds of a
run is what the model actually visits, not a global constant, and every Lanczos
value is a Ritz value, i.e. at most the true extreme eigenvalue (an inner estimate).
The JSON written by :func:`write_constants` says so field by field (``provenance``).

Operator norms use :func:`lanczos_extremes`, batched over users: every row of a
stacked ``(m, P)`` matrix is its own Krylov sequence, and one Hessian-vector product
of the stacked per-client loss (the engine's broadcasting convention, double
backward through one retained graph, :class:`StackedHessian`) advances all of them.

Over 400 lines on purpose: one estimator per row of the table above, each beside the batched
Lanczos machinery it shares with the others.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from perfedavg.engine.objective import client_objectives
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.rounds import initial_state, local_round
from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config, read_toml
from perfedavg.runs.resolve import resolve
from theory.constants import Constants

#: what ``provenance`` says of each field of the output
PROVENANCE = {
    "L": "estimate: max over users of the Lanczos extreme Ritz value |lambda| of the full-data Hessian at w "
    "(a lower bound of the local value; the assumption is a sup over all w)",
    "B": "exact at w: max over users of ||grad f_i(w)|| from full local data",
    "sigma_G": "exact at w when samples = 0 (all local samples), else a Monte-Carlo estimate; max over users",
    "sigma_H": "estimate: Monte-Carlo mean over drawn samples of the squared Lanczos operator norm of "
    "(Hess l(w;theta) - Hess f_i(w)); max over users",
    "gamma_G": "exact at w from full local data",
    "gamma_H": "estimate: mean over a random subset of users of the squared Lanczos operator norm of "
    "(Hess f_i(w) - Hess f(w))",
    "rho": "estimate: finite difference ||Hess f_i(w + eps u) - Hess f_i(w)||_op / eps along random unit "
    "directions u, max over users and draws (local, along few directions: a lower estimate)",
    "F0_gap": "upper bound: F(w_0) (exact, full data) minus 0, since cross-entropy F* >= 0",
    "B_sample": "max over users of the largest per-sample ||grad l(w;theta)|| (all local samples when samples = 0, "
    "else the drawn ones: a lower estimate of the sup), and at least B",
    "L_sample": "not estimated: bounds takes it equal to L (valid only if L bounds every sample's Hessian)",
    "rho_sample": "not estimated: bounds takes it equal to rho (valid only if rho bounds every sample's)",
}


@dataclass(frozen=True)
class EstimateOptions:
    """How hard to look (every count is per estimate; see the module docstring)."""

    #: Lanczos steps per operator norm (capped at the number of parameters)
    lanczos_steps: int = 20
    #: per-sample gradients per user for sigma_G and the per-sample B (0 = all local samples: exact, but
    #: the costliest part of an estimate, one per-sample backward per image)
    samples: int = 100
    #: drawn samples theta per user for sigma_H
    hessian_samples: int = 4
    #: users in the random subset for gamma_H (0 = all users; each costs lanczos_steps full-data HVPs)
    gamma_users: int = 5
    #: random directions per user for rho (0 = skip rho)
    rho_directions: int = 2
    #: finite-difference radius eps for rho (in parameter space)
    rho_radius: float = 1e-3
    #: seed of every random draw of the estimates
    seed: int = 0

    def __post_init__(self):
        checks = {
            "lanczos_steps": self.lanczos_steps >= 1,
            "samples": self.samples >= 0,
            "hessian_samples": self.hessian_samples >= 1,
            "gamma_users": self.gamma_users >= 0,
            "rho_directions": self.rho_directions >= 0,
            "rho_radius": math.isfinite(self.rho_radius) and self.rho_radius > 0,
            "seed": self.seed >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                allowed = (
                    "a finite number > 0"
                    if name == "rho_radius"
                    else ">= 1"
                    if name in ("lanczos_steps", "hessian_samples")
                    else ">= 0"
                )
                raise UsageError(f"{name}={getattr(self, name)} is out of range: must be {allowed}")


# ------------------------------------------------------------------------ linear algebra


def lanczos_extremes(matvec, V0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    r"""Extreme Ritz values of symmetric operators, one per row, by Lanczos.

    ``matvec`` maps ``(m, P) -> (m, P)``, row ``i`` by its own symmetric operator
    :math:`A_i`; ``V0 (m, P)`` are the starting vectors.  After ``steps`` steps (three-term
    recurrence, no reorthogonalization: extreme Ritz values converge first and, by Paige's
    analysis, stay inside the spectrum up to rounding), returns ``(largest, smallest)``
    Ritz values, each ``(m,)``: :math:`\lambda_{min}(A_i) \le` smallest :math:`\le`
    largest :math:`\le \lambda_{max}(A_i)`.  A row whose Krylov space closes early
    (breakdown) keeps the exact eigenvalues of that space.
    """
    m, P = V0.shape
    steps = min(steps, P)
    q = V0 / V0.norm(dim=1, keepdim=True)
    q_prev = torch.zeros_like(q)
    b_prev = torch.zeros(m, dtype=q.dtype, device=q.device)
    size = torch.full((m,), steps, dtype=torch.long, device=q.device)
    alphas, betas = [], []
    for j in range(steps):
        z = matvec(q)
        a = (q * z).sum(1)
        z = z - a[:, None] * q - b_prev[:, None] * q_prev
        b = z.norm(dim=1)
        alphas.append(a)
        betas.append(b)
        scale = torch.stack(alphas).abs().amax(0).clamp_min(torch.finfo(q.dtype).tiny)
        broken = (b <= 1e-10 * scale) & (size == steps)
        size = torch.where(broken, j + 1, size)
        alive = size == steps
        q_prev, q = (
            q,
            torch.where(alive[:, None], z / b.clamp_min(torch.finfo(q.dtype).tiny)[:, None], torch.zeros_like(z)),
        )
        b_prev = torch.where(alive, b, torch.zeros_like(b))
    A = torch.stack(alphas, 1).cpu()
    Bt = torch.stack(betas, 1).cpu()
    size = size.cpu()
    largest, smallest = torch.empty(m, dtype=A.dtype), torch.empty(m, dtype=A.dtype)
    for i in range(m):
        k = int(size[i])
        T = torch.diag(A[i, :k]) + torch.diag(Bt[i, : k - 1], 1) + torch.diag(Bt[i, : k - 1], -1)
        ev = torch.linalg.eigvalsh(T)
        largest[i], smallest[i] = ev[-1], ev[0]
    return largest, smallest


def operator_norms(matvec, V0: Tensor, steps: int) -> Tensor:
    r""":math:`\|A_i\|_{op} = \max(|\lambda_{max}|, |\lambda_{min}|)` per row (Ritz estimates,
    :func:`lanczos_extremes`)."""
    largest, smallest = lanczos_extremes(matvec, V0, steps)
    return torch.maximum(largest.abs(), smallest.abs())


class StackedHessian:
    r"""Row ``i``: :math:`v_i \mapsto \nabla^2 \big(\sum_j p_{ij}\, l(w_i;\theta_{ij})\big) v_i`, exactly.

    One forward and backward with ``create_graph`` builds :math:`g_i = \nabla f_i(w_i)`;
    every product is then one more backward through that retained graph (Pearlmutter).
    ``W (m, P)``, ``X (m, M, ...)``, ``Y (m, M)``, ``weights (m, M)``.
    ``value`` and ``grad`` hold :math:`f_i(w_i)` and :math:`\nabla f_i(w_i)`.
    """

    def __init__(self, per_sample_loss, W: Tensor, X: Tensor, Y: Tensor, weights: Tensor):
        self.W = W.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            f = (weights * per_sample_loss(self.W, X, Y)).sum(-1)
            (self.g,) = torch.autograd.grad(f.sum(), self.W, create_graph=True)
        self.value = f.detach()
        self.grad = self.g.detach()

    def __call__(self, V: Tensor) -> Tensor:
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(self.g, self.W, grad_outputs=V, retain_graph=True)
        return hv


# ------------------------------------------------------------------------ the estimates


def _stack(w: Tensor, m: int) -> Tensor:
    return w.detach().expand(m, -1).clone()


def _full_hessian(task, w: Tensor) -> StackedHessian:
    X, Y, Pw = task.train.gather()
    return StackedHessian(task.per_sample_loss, _stack(w, task.n_clients), X, Y, Pw)


def _randn(gen: torch.Generator, shape, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=like.dtype, device=like.device)


def smoothness(task, w: Tensor, H: StackedHessian, steps: int, gen: torch.Generator) -> Tensor:
    r"""Per user :math:`\|\nabla^2 f_i(w)\|_{op}` (``(n,)``); ``L`` is its max."""
    return operator_norms(H, _randn(gen, H.W.shape, w), steps)


def gradient_dissimilarity_sq(grads: Tensor) -> float:
    r""":math:`\gamma_G^2 = \frac1n\sum_i \|\nabla f_i - \nabla f\|^2` from the ``(n, P)`` client gradients."""
    return float((grads - grads.mean(0)).square().sum(1).mean())


def per_sample_gradient_stats(
    task, w: Tensor, grads: Tensor, samples: int, gen: torch.Generator, chunk_bytes: float = 64e6
) -> tuple[Tensor, Tensor]:
    r"""Per user: :math:`\sum_j p_{ij}\|\nabla l(w;\theta_{ij}) - \nabla f_i(w)\|^2` (``(n,)``, the
    per-sample gradient variance :math:`\sigma_{G,i}^2`) and :math:`\max_j \|\nabla l(w;\theta_{ij})\|`.

    ``samples = 0``: over all local samples with their weights :math:`p_{ij}` (exact); else
    over ``samples`` draws from :math:`p_i` with replacement (an unbiased estimate of the
    variance).  ``grads (n, P)`` are the exact :math:`\nabla f_i(w)`.
    """
    data = task.train
    n, M = data.index.shape
    if samples == 0:
        positions = torch.arange(M).expand(n, M)
        weights = data.weight
    else:
        positions = torch.multinomial(data.weight.cpu().double(), samples, replacement=True, generator=gen).to(
            data.index.device
        )
        weights = torch.full((n, samples), 1.0 / samples, dtype=data.weight.dtype, device=data.weight.device)
    owner = torch.arange(n, device=data.index.device)[:, None].expand_as(positions).reshape(-1)
    index = data.index.gather(1, positions.to(data.index.device)).reshape(-1)
    wt = weights.reshape(-1)
    keep = wt > 0
    owner, index, wt = owner[keep], index[keep], wt[keep]
    P = w.numel()
    chunk = max(1, int(chunk_bytes // (P * w.element_size())))
    var = torch.zeros(n, dtype=w.dtype, device=w.device)
    biggest = torch.zeros(n, dtype=w.dtype, device=w.device)
    for start in range(0, len(index), chunk):
        sl = slice(start, start + chunk)
        Wc = _stack(w, len(index[sl])).requires_grad_(True)
        with torch.enable_grad():
            loss = task.per_sample_loss(Wc, data.x[index[sl]][:, None], data.y[index[sl]][:, None])
            (g,) = torch.autograd.grad(loss.sum(), Wc)
        dev = (g - grads[owner[sl]]).square().sum(1)
        var.index_add_(0, owner[sl], wt[sl] * dev)
        biggest.scatter_reduce_(0, owner[sl], g.norm(dim=1), reduce="amax")
    return var, biggest


def hessian_deviation_sq(
    task, w: Tensor, H: StackedHessian, positions: Tensor, steps: int, gen: torch.Generator
) -> Tensor:
    r"""Per user and drawn sample: :math:`\|\nabla^2 l(w;\theta_{i,j}) - \nabla^2 f_i(w)\|_{op}^2`.

    ``positions (n, S)``: position ``j`` of each draw in user ``i``'s index row.  Returns
    ``(n, S)``; the mean over draws estimates :math:`\sigma_{H,i}^2`.
    """
    data = task.train
    out = []
    ones = torch.ones(task.n_clients, 1, dtype=w.dtype, device=w.device)
    for s in range(positions.shape[1]):
        index = data.index.gather(1, positions[:, s : s + 1].to(data.index.device))
        Hs = StackedHessian(task.per_sample_loss, _stack(w, task.n_clients), data.x[index], data.y[index], ones)
        norms = operator_norms(lambda V, Hs=Hs: Hs(V) - H(V), _randn(gen, H.W.shape, w), steps)
        out.append(norms.square())
    return torch.stack(out, 1)


def hessian_dissimilarity_sq(
    task, w: Tensor, H: StackedHessian, users: Tensor, steps: int, gen: torch.Generator
) -> Tensor:
    r"""For each user ``i`` in ``users``: :math:`\|\nabla^2 f_i(w) - \nabla^2 f(w)\|_{op}^2` with
    :math:`\nabla^2 f = \frac1n\sum_j\nabla^2 f_j`.

    Each Lanczos step is one stacked product :math:`(\nabla^2 f_j v)_{j=1..n}` on all users'
    full data, with the same :math:`v` in every row; row ``i`` minus the mean of the rows
    is :math:`(\nabla^2 f_i - \nabla^2 f)\,v`.
    """
    n = task.n_clients
    out = []
    for i in users.tolist():

        def matvec(v, i=i):
            rows = H(v.expand(n, -1))
            return (rows[i] - rows.mean(0))[None]

        out.append(operator_norms(matvec, _randn(gen, (1, w.numel()), w), steps)[0] ** 2)
    return torch.stack(out) if out else torch.zeros(0, dtype=w.dtype)


def hessian_lipschitz(
    task, w: Tensor, H: StackedHessian, radius: float, directions: int, steps: int, gen: torch.Generator
) -> Tensor:
    r"""Per user and direction: :math:`\|\nabla^2 f_i(w+\varepsilon u) - \nabla^2 f_i(w)\|_{op}/\varepsilon`
    for random unit :math:`u` (``(n, directions)``), a finite-difference estimate of ``rho``."""
    X, Y, Pw = task.train.gather()
    out = []
    for _ in range(directions):
        U = _randn(gen, H.W.shape, w)
        U = U / U.norm(dim=1, keepdim=True)
        Hu = StackedHessian(task.per_sample_loss, H.W.detach() + radius * U, X, Y, Pw)
        out.append(operator_norms(lambda V, Hu=Hu: (Hu(V) - H(V)) / radius, _randn(gen, H.W.shape, w), steps))
    return torch.stack(out, 1) if out else torch.zeros(task.n_clients, 0, dtype=w.dtype)


def estimate_at(task, w: Tensor, options: EstimateOptions = EstimateOptions()) -> dict:
    r"""Every estimate of the module docstring at one shared model ``w`` (float64 recommended).

    Returns a dict with the constants (``L``, ``B``, ``sigma_G``, ``sigma_H``, ``gamma_G``,
    ``gamma_H``, ``rho``), per-user values, the per-sample gradient-norm maximum
    ``B_per_sample`` and the seconds each part took.
    """
    gen = torch.Generator().manual_seed(options.seed)
    w = w.to(
        dtype=task.train.x.dtype if task.train.x.is_floating_point() else torch.float64, device=task.train.x.device
    )
    seconds = {}
    t = time.perf_counter()
    H = _full_hessian(task, w)
    grads = H.grad
    L_users = smoothness(task, w, H, options.lanczos_steps, gen)
    seconds["L"] = time.perf_counter() - t

    t = time.perf_counter()
    var, biggest = per_sample_gradient_stats(task, w, grads, options.samples, gen)
    seconds["sigma_G"] = time.perf_counter() - t

    t = time.perf_counter()
    draws = torch.multinomial(
        task.train.weight.cpu().double(), options.hessian_samples, replacement=True, generator=gen
    )
    dev_sq = hessian_deviation_sq(task, w, H, draws, options.lanczos_steps, gen)
    seconds["sigma_H"] = time.perf_counter() - t

    t = time.perf_counter()
    n = task.n_clients
    k = n if options.gamma_users in (0,) or options.gamma_users >= n else options.gamma_users
    users = torch.randperm(n, generator=gen)[:k].sort().values
    diss_sq = hessian_dissimilarity_sq(task, w, H, users, options.lanczos_steps, gen)
    seconds["gamma_H"] = time.perf_counter() - t

    t = time.perf_counter()
    rho = hessian_lipschitz(task, w, H, options.rho_radius, options.rho_directions, options.lanczos_steps, gen)
    seconds["rho"] = time.perf_counter() - t

    grad_norms = grads.norm(dim=1)
    sigma_H_sq = dev_sq.mean(1)
    return {
        "L": float(L_users.max()),
        "B": float(grad_norms.max()),
        "B_per_sample": float(biggest.max()),
        "sigma_G": math.sqrt(float(var.max())),
        "sigma_H": math.sqrt(float(sigma_H_sq.max())),
        "gamma_G": math.sqrt(gradient_dissimilarity_sq(grads)),
        "gamma_H": math.sqrt(float(diss_sq.mean())) if len(diss_sq) else None,
        "rho": float(rho.max()) if rho.numel() else None,
        "f": float(H.value.mean()),
        "per_user": {
            "L": L_users.tolist(),
            "grad_norm": grad_norms.tolist(),
            "sigma_G_sq": var.tolist(),
            "sigma_H_sq": sigma_H_sq.tolist(),
            "gamma_H_users": users.tolist(),
            "hessian_dissimilarity_sq": diss_sq.tolist(),
            "rho": rho.amax(1).tolist() if rho.numel() else [],
        },
        "seconds": seconds,
    }


# ------------------------------------------------------------------------ from a run directory


def parse_rounds(text: str, final: int) -> list[int]:
    """``"0,100,final"`` -> sorted distinct rounds; ``final`` is the checkpoint's round."""
    rounds = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        if item == "final":
            rounds.add(final)
            continue
        try:
            k = int(item)
        except ValueError:
            raise UsageError(f"--rounds: {item!r} is not a round number or 'final'") from None
        if not 0 <= k <= final:
            raise UsageError(
                f"--rounds: {k} is out of range: the run's checkpoint is at round {final}, so 0 <= round <= {final}"
            )
        rounds.add(k)
    if not rounds:
        raise UsageError("--rounds: give at least one round (e.g. --rounds 0,final)")
    return sorted(rounds)


def models_at_rounds(task, cfg, checkpoint_state: dict, rounds: list[int]) -> dict[int, Tensor]:
    r""":math:`w_k` for each round ``k``: round 0 is the seeded initial model, the checkpoint's
    round is read from it, and any other round is replayed from round 0 with the run's own
    generator (the engine's draws are deterministic, and evaluation draws nothing; the
    tests check the replay against a checkpoint bit for bit)."""

    final = int(checkpoint_state["round"])
    out = {}
    state = initial_state(task, cfg)
    out[0] = state.w.clone()
    inner = [k for k in rounds if 0 < k < final]
    if inner:
        oracle = make_oracle(task)
        for k in range(1, max(inner) + 1):
            state.w, _, _ = local_round(task, oracle, cfg, state.w, state.generator)
            if k in inner:
                out[k] = state.w.clone()
    if final in rounds:
        out[final] = checkpoint_state["w"].to(task.train.x.device)
    return {k: out[k] for k in rounds}


def estimate_run(
    run_dir: str | Path,
    rounds: str = "0,final",
    options: EstimateOptions = EstimateOptions(),
    data_dir: str | None = None,
    progress: bool = True,
) -> dict:
    """Estimate the constants of the run in ``run_dir`` at ``rounds``; returns the JSON document."""

    run_dir = Path(run_dir)
    if not (run_dir / rundir.CHECKPOINT).exists() or not (run_dir / rundir.CONFIG).exists():
        raise UsageError(f"--run {run_dir}: not a run directory with {rundir.CONFIG} and {rundir.CHECKPOINT}")
    table = read_toml(run_dir / rundir.CONFIG)
    if data_dir:
        table = {**table, "task": {**table.get("task", {}), "data_dir": str(data_dir)}}
    cfg, task = resolve(build_config(table))
    checkpoint = rundir.read_checkpoint(run_dir / rundir.CHECKPOINT)
    state = checkpoint["state"]
    wanted = parse_rounds(rounds, int(state["round"]))
    models = models_at_rounds(task, cfg, state, wanted)
    task64 = task.to(torch.float64, cfg.device)
    per_round = []
    for k in tqdm(wanted, desc="constants", unit="round", disable=not progress):
        started = time.perf_counter()
        record = {"round": k, **estimate_at(task64, models[k].to(torch.float64), options)}
        record["wall_seconds"] = time.perf_counter() - started
        per_round.append(record)
    w0 = models[0] if 0 in models else models_at_rounds(task, cfg, state, [0])[0]
    F0 = float(client_objectives(task64.per_sample_loss, w0.to(torch.float64), task64.train, cfg.alpha).F.mean())
    return document(cfg, task, per_round, F0, options, run_dir)


def document(cfg, task, per_round: list[dict], F0: float, options: EstimateOptions, run_dir=None) -> dict:
    r"""The JSON document: ``constants`` (the max over the estimated rounds of each field,
    plus the run's algorithm constants: a mapping :meth:`theory.constants.Constants.from_dict`
    accepts), ``per_round`` details, ``provenance`` of each field, and whether
    :class:`theory.constants.Constants` accepted it (``theory_check``)."""
    fields = ("L", "rho", "B", "sigma_G", "sigma_H", "gamma_G", "gamma_H")
    constants = {}
    for name in fields:
        values = [r[name] for r in per_round if r[name] is not None]
        constants[name] = max(values) if values else None  # None (JSON null): not estimated, never a made-up 0
    # B_sample: the largest per-sample gradient norm seen, never below B (a user's gradient is an average of its
    # samples', so the exact per-sample sup is at least every user's). L_sample and rho_sample are not estimated:
    # left out, theory takes them equal to L and rho and says so (theory.constants.SAMPLE_TWINS).
    per_sample = [r["B_per_sample"] for r in per_round if r.get("B_per_sample") is not None]
    if per_sample and constants["B"] is not None:
        constants["B_sample"] = max(max(per_sample), constants["B"])
    constants["F0_gap"] = F0
    constants.update(
        alpha=cfg.alpha,
        beta=cfg.beta,
        delta=cfg.delta,
        tau=cfg.tau,
        K=cfg.K,
        r=cfg.r,
        n=task.n_clients,
        D=cfg.D,
        D1=cfg.D1,
        D2=cfg.D2,
    )
    not_estimated = [name for name in fields if constants[name] is None]
    if not_estimated:
        check = (
            f"not checked: {', '.join(not_estimated)} not estimated (null); perfedavg bounds needs every "
            "constant (e.g. --rho-directions >= 1 for rho)"
        )
    else:
        try:
            Constants.from_dict(constants)
            check = "accepted by perfedavg bounds and explain (every constant in its range)"
        except UsageError as exc:
            check = f"rejected by perfedavg bounds: {exc}"
        except ImportError:  # pragma: no cover - theory/ is part of this repository
            check = "not checked: the theory package is not importable"
    return {
        "run": str(run_dir) if run_dir is not None else None,
        "task": task.label or task.name,
        "description": task.description,
        "rounds": [r["round"] for r in per_round],
        "constants": constants,
        "not_estimated": not_estimated,
        "constants_are": "max over the estimated rounds of local values at the visited models "
        "(the paper's assumptions are suprema over all w)",
        "theory_check": check,
        "alpha_times_L": cfg.alpha * constants["L"],
        "provenance": {name: ("not estimated" if name in not_estimated else text) for name, text in PROVENANCE.items()},
        "options": asdict(options),
        "per_round": per_round,
    }


def write_constants(doc: dict, path: str | Path) -> Path:
    """Write the document atomically as JSON."""

    rundir.atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return Path(path)
