"""Small tasks and helpers shared by the tests."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from perfedavg.engine.mlp import mlp_oracle_factory
from perfedavg.engine.models import mlp
from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.config import build_config
from perfedavg.runs.resolve import resolve


def softmax_setup(dtype="float64", **overrides):
    """A small resolved (config, task) pair on the synthetic softmax task."""
    sets = {
        "K": 3,
        "tau": 3,
        "r": 0.5,
        "D": 5,
        "D1": 6,
        "D2": 7,
        "dtype": dtype,
        "eval_every": 1,
        "task.n_clients": 6,
        "task.dim": 4,
        "task.classes": 3,
        "task.support": 30,
    }
    sets.update(overrides)
    cfg = build_config(
        {},
        [
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in sets.items()
        ],
    )
    return resolve(cfg)


def uniform_users(data: ClientData) -> ClientData:
    """The same users and samples, each sample of a user weighted ``1 / count``."""
    return ClientData.from_lists(data.x, data.y, [row[:c] for row, c in zip(data.index, data.count.tolist())])


def with_batches(task: Task, with_replacement: bool) -> Task:
    """``task`` drawing batches with or without replacement; without, its users' weights made uniform
    (the only weights batches without replacement honour; a task with others is refused)."""
    if with_replacement:
        return replace(task, batch_with_replacement=True)
    return replace(task, train=uniform_users(task.train), test=uniform_users(task.test), batch_with_replacement=False)


def uneven_mlp_task(sizes, activation, with_replacement, rounds):
    """Users of 12, 7, 15, 9, 11 and 8 samples (padded index rows), one sample held by two users."""
    g = torch.Generator().manual_seed(0)
    counts = [12, 7, 15, 9, 11, 8]
    x = torch.randn(sum(counts), sizes[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (sum(counts),), generator=g)
    starts = [sum(counts[:i]) for i in range(len(counts))]
    index = [list(range(a, a + c)) for a, c in zip(starts, counts)]
    index[2][3] = 0
    data = ClientData.from_lists(x, y, index)
    loss, scores, init = mlp(sizes, activation)
    return Task(
        name="uneven",
        per_sample_loss=loss,
        scores=scores,
        init_params=init,
        train=data,
        test=data,
        batch_with_replacement=with_replacement,
        oracle_factory=mlp_oracle_factory(sizes, activation, rounds),
    )


def table1_plan(monkeypatch, argv: list[str]):
    """The :class:`empirical.reproduce.Plan` that ``perfedavg reproduce table1 ARGV`` hands to
    ``run_plan`` (replaced for the call: nothing runs)."""
    import empirical.reproduce as R
    from perfedavg.cli import main

    seen = {}

    def capture(plan, out, progress=True):
        seen["plan"] = plan
        raise SystemExit(0)

    with monkeypatch.context() as patch:
        patch.setattr(R, "run_plan", capture)
        with contextlib.suppress(SystemExit):
            main(["reproduce", "table1", *argv])
    return seen["plan"]


def random_params(task, seed=1, scale=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p = task.init_params(g)
    return (torch.randn(p.shape, generator=g, dtype=torch.float64) * scale).to(dtype)


#: address space a test may add on top of what the process already maps, while it feeds
#: "huge but valid" task sizes (1e9..2^62) to the CLI: a bad-input example needs well under
#: 1 GiB, while a tensor of such a task is >= 8 GB, so it fails at allocation (the engine's
#: safety net then turns it into a one-line error) instead of being touched page by page
#: on a shared machine (no swap here: the kernel's OOM killer would pick any process)
ADDRESS_SPACE_HEADROOM = 4 * 2**30


def _mapped_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded_address_space(headroom: int = ADDRESS_SPACE_HEADROOM):
    """Cap this process's address space at what it maps now plus ``headroom`` (Linux), restored after."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def limit_child_address_space(total: int = 6 * 2**30):
    """``preexec_fn`` for a subprocess: at most ``total`` bytes of address space (a Python with
    torch maps < 1 GiB; see :data:`ADDRESS_SPACE_HEADROOM`)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (total, resource.getrlimit(resource.RLIMIT_AS)[1]))
