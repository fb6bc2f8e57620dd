r"""Exact per-user quantities of the synthetic tasks whose per-sample loss is a function of one margin,
:math:`l(w;\theta) = \psi(w^\top x, y)` (``quadratic``, ``logistic``, ``nonconvex``), at any set of points.

:class:`GLM` gives ∇f_i, ∇²f_i, σ_G,i², σ_H,i² (Frobenius, which bounds the operator norm), the largest per-sample
gradient norm, and :math:`\nabla F_i`, :math:`\nabla^2F_i = A H_i(\tilde w^*) A - \alpha\nabla^3 f_i(w)[\nabla
f_i(\tilde w^*)]` in closed form from ψ′, ψ″, ψ‴ (:func:`psi_closed_form`, pinned to autograd by
:func:`psi_autograd`); :func:`objective_F` the means over users; :func:`minimum_F` F* (DERIVATIONS.md §10.2).
Used by :mod:`synthetic.region` to measure the data-dependent bound's constants.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perfedavg.engine.task import Task
from perfedavg.errors import UsageError

from .quadratic import minimizer_F

#: tasks whose per-sample loss is ψ(wᵀx, y) (module docstring)
GLM_TASKS = ("quadratic", "logistic", "nonconvex")
#: points evaluated per vectorized call (memory: CHUNK × n × support doubles per array)
CHUNK = 128
#: Newton's stopping rule for F* on the logistic task: ‖∇F‖ below this (float64 round-off of a 10-d
#: gradient of O(1) terms is ~1e-15; 1e-12 leaves F(ŵ) − F* ≤ ‖∇F‖²/(2μ) ~ 1e-22 for μ ≥ 1e-3)
NEWTON_GTOL = 1e-12


def psi_autograd(loss, Z: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""ψ, ψ′, ψ″, ψ‴ at margins ``Z (..., S)`` with labels ``Y (S,)``: autograd of ``loss`` (a per-sample loss
    of :mod:`synthetic`) on the one-feature model w = z, x = 1, whose loss is ψ(z, y)."""
    shape = Z.shape
    y = Y.expand(shape).reshape(-1, 1)
    one = torch.ones(y.shape[0], 1, 1, dtype=torch.float64)
    with torch.enable_grad():
        z = Z.detach().reshape(-1, 1).clone().requires_grad_(True)
        value = loss(z, one, y).reshape(-1)
        (d1,) = torch.autograd.grad(value.sum(), z, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), z, create_graph=True)
        d3 = torch.autograd.grad(d2.sum(), z)[0] if d2.requires_grad else torch.zeros_like(d2)
    return tuple(v.detach().reshape(shape) for v in (value, d1, d2, d3))  # type: ignore[return-value]


def psi_closed_form(name: str, Z: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    r"""ψ and its derivatives in closed form (None for a task without one).  Quadratic: ψ = ½(z − y)²,
    (z − y, 1, 0).  Margin losses with s = 2y − 1 and p = σ(−sz): logistic ψ = log(1 + e^{−sz}),
    ψ′ = −sp, ψ″ = p(1−p), ψ‴ = −s(1−2p)p(1−p); sigmoid ψ = p, ψ′ = −sp(1−p), ψ″ = (1−2p)p(1−p),
    ψ‴ = −s(1−6p+6p²)p(1−p) (s² = 1)."""
    Yd = Y.to(torch.float64).expand(Z.shape)
    if name == "quadratic":
        r = Z - Yd
        return 0.5 * r.square(), r, torch.ones_like(Z), torch.zeros_like(Z)
    if name not in ("logistic", "nonconvex"):
        return None
    s = 2 * Yd - 1
    p = torch.sigmoid(-s * Z)
    q = p * (1 - p)
    if name == "logistic":
        return torch.nn.functional.softplus(-s * Z), -s * p, q, -s * (1 - 2 * p) * q
    return p, -s * q, (1 - 2 * p) * q, -s * (1 - 6 * p + 6 * p.square()) * q


class GLM:
    r"""A GLM task's training data: support ``X (S, d)``, labels ``Y (S,)``, user weights ``P (n, S)`` (module
    docstring).  Every method takes points ``W (N, n, d)`` (user i's point in ``W[:, i]``)."""

    def __init__(self, task: Task):
        if task.name not in GLM_TASKS:
            raise UsageError(
                f"region constants need a task with a margin loss ({', '.join(GLM_TASKS)}), not {task.name}"
            )
        data = task.train
        S = data.x.shape[0]
        if not bool((data.index == torch.arange(S)).all()):  # pragma: no cover - the synthetic tasks share one support
            raise UsageError("region constants need users that share one support")
        self.X = data.x.double()
        self.Y = data.y
        self.P = data.weight.double()
        self.loss = task.per_sample_loss
        self.name = task.name
        self.n, self.d = self.P.shape[0], self.X.shape[1]
        self.xx = torch.einsum("sa,sb->sab", self.X, self.X).reshape(S, -1)
        self.x2 = self.X.square().sum(1)
        self.on_support = self.P > 0

    def psi(self, Z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""ψ, ψ′, ψ″, ψ‴ at margins ``Z (..., S)``: closed forms (:func:`psi_closed_form`) where the task has
        one, else autograd of the task's loss on a one-feature model (:func:`psi_autograd`, the reference)."""
        closed = psi_closed_form(self.name, Z, self.Y)
        return closed if closed is not None else psi_autograd(self.loss, Z, self.Y)

    def at(self, W: Tensor) -> dict[str, Tensor]:
        r"""At ``W (N, n, d)``: ``f`` (N, n), ``grad`` ∇f_i (N, n, d), ``hess`` ∇²f_i (N, n, d, d),
        ``sigma_G2`` σ_G,i², ``sigma_H2`` (Frobenius) σ_H,i², ``B_s2`` max over the user's support of
        ‖∇l‖², and ``psi3P`` (P ψ‴, for :meth:`third`)."""
        N = W.shape[0]
        Z = torch.einsum("Nid,sd->Nis", W, self.X)
        value, d1, d2, d3 = self.psi(Z)
        P = self.P
        grad = (P * d1) @ self.X
        hess = ((P * d2) @ self.xx).reshape(N, self.n, self.d, self.d)
        sigma_G2 = (P * d1.square()) @ self.x2 - grad.square().sum(-1)
        sigma_H2 = (P * d2.square()) @ self.x2.square() - hess.square().sum((-1, -2))
        B_s2 = torch.where(self.on_support, d1.square() * self.x2, torch.zeros_like(d1)).amax(-1)
        return {
            "f": (P * value).sum(-1),
            "grad": grad,
            "hess": hess,
            "sigma_G2": sigma_G2.clamp_min(0.0),
            "sigma_H2": sigma_H2.clamp_min(0.0),
            "B_s2": B_s2,
            "psi3P": P * d3,
        }

    def third(self, psi3P: Tensor, V: Tensor) -> Tensor:
        r""":math:`\nabla^3 f_i(w)[v] = \sum_s p_{is}\psi'''(x_s^\top v)\,x_sx_s^\top`, ``(N, n, d, d)``, for
        ``psi3P`` of :meth:`at` and ``V (N, n, d)``."""
        xv = torch.einsum("Nid,sd->Nis", V, self.X)
        return ((psi3P * xv) @ self.xx).reshape(*V.shape[:2], self.d, self.d)

    def personalized(self, W: Tensor, alpha: float) -> dict[str, Tensor]:
        r"""At ``W (N, n, d)``: :meth:`at`'s fields, and ``F`` F_i (N, n), ``gradF`` ∇F_i = A∇f_i(w̃*),
        ``hessF`` ∇²F_i = A∇²f_i(w̃*)A − α∇³f_i(w)[∇f_i(w̃*)], ``v`` ∇f_i(w̃*), ``inner`` w̃* = w − α∇f_i(w),
        ``hess_inner`` ∇²f_i(w̃*) (A = I − α∇²f_i(w))."""
        out = self.at(W)
        inner = W - alpha * out["grad"]
        at_inner = self.at(inner)
        A = torch.eye(self.d, dtype=torch.float64) - alpha * out["hess"]
        v = at_inner["grad"]
        out.update(
            F=at_inner["f"],
            gradF=(A @ v.unsqueeze(-1)).squeeze(-1),
            hessF=A @ at_inner["hess"] @ A - alpha * self.third(out["psi3P"], v),
            v=v,
            inner=inner,
            hess_inner=at_inner["hess"],
        )
        return out

    def shared(self, W: Tensor) -> Tensor:
        """Points ``W (N, d)`` shared by every user, as ``(N, n, d)``."""
        return W.unsqueeze(1).expand(-1, self.n, -1)


def op_norm(M: Tensor) -> Tensor:
    """Operator norm of symmetric matrices (largest |eigenvalue|)."""
    return torch.linalg.eigvalsh(0.5 * (M + M.transpose(-1, -2))).abs().amax(-1)


def objective_F(glm: GLM, W: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """F, ∇F, ∇²F at shared points ``W (N, d)`` (means over users of :meth:`GLM.personalized`)."""
    out = glm.personalized(glm.shared(W), alpha)
    return out["F"].mean(1), out["gradF"].mean(1), out["hessF"].mean(1)


def minimum_F(task: Task, alpha: float, start: Tensor) -> float:
    r"""F* = min F: closed form on the quadratic task (:func:`synthetic.quadratic.minimizer_F`); damped Newton
    from ``start`` with the exact ∇²F (:meth:`GLM.personalized`) to ‖∇F‖ ≤ :data:`NEWTON_GTOL` on the logistic
    task; 0 on the nonconvex task (its loss is ≥ 0: a lower bound, as F* may be a local minimum's level)."""
    glm = GLM(task)
    if task.name == "nonconvex":
        return 0.0
    if task.name == "quadratic":
        w = minimizer_F(task.train, alpha).double()
        return float(objective_F(glm, w[None], alpha)[0][0])
    w = start.double().clone()
    for _ in range(200):
        F, g, H = (t[0] for t in objective_F(glm, w[None], alpha))
        if float(g.norm()) <= NEWTON_GTOL:
            break
        lam = torch.linalg.eigvalsh(H).min()
        shift = max(0.0, 1e-8 - float(lam))
        step = torch.linalg.solve(H + shift * torch.eye(glm.d, dtype=torch.float64), g)
        t = 1.0
        while float(objective_F(glm, (w - t * step)[None], alpha)[0][0]) > float(F) - 1e-4 * t * float(g @ step):
            t /= 2
            if t < 1e-12:
                break
        w = w - t * step
    return float(objective_F(glm, w[None], alpha)[0][0])


__all__ = ["CHUNK", "GLM", "GLM_TASKS", "minimum_F", "objective_F", "op_norm", "psi_autograd", "psi_closed_form"]
