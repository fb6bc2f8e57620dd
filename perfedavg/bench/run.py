r"""``perfedavg bench``: the engine's speed on the paper's workload, against a per-client loop.

Workload (issue 2, "Speed"; PAPER.md §5 MNIST setting): :math:`n = 50` users, :math:`r = 0.2`
(10 users per round), :math:`\tau = 10`, batch sizes :math:`D = D' = D'' = 40`, the MLP
784-80-60-10 with ELU, random data of MNIST's shape (1x28x28 inputs, 10 classes); ``--shape cifar10`` the same on
CIFAR-10's shape (3x32x32, MLP 3072-80-60-10, 340 samples per user by default), where the
engine runs whole rounds in the users' sample space.

For each variant (``fedavg``, ``fo``, ``hf``, ``exact``) it times, in the same run and
interleaved round by round (so both see the same machine load):

* ``engine``: :func:`perfedavg.engine.rounds.local_round` with :class:`perfedavg.engine.mlp.MLPOracle`;
* ``loop``: a straightforward per-client ``nn.Module`` + ``torch.optim.SGD`` loop with a
  ``deepcopy`` of the global model per client, as existing FL libraries do (FO: two
  SGD-like steps; HF: two extra gradient evaluations at :math:`w\pm\delta g`; exact: double
  backward), then a uniform average of the client models;

and reports medians (ms per round), their ratio, the matmul FLOPs per round (counted from
the matmul shapes the engine runs, :func:`engine_matmul_flops`), and the fraction of the
machine's matmul throughput the engine achieves, that throughput measured in the same
run on ``bmm`` calls of the first layer's shapes, before and after each variant.  How far those samples
spread within the run says whether the host was quiet (:data:`QUIET_SPREAD`): on a shared machine the
neighbours' load moves one run's ratio by up to 30 %, so ``--repeat N`` runs the whole bench N times and
reports the distribution over runs (:func:`pool`), and ``--pool FILE...`` pools saved runs.

No torch import at module top (the CLI imports every subcommand module).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from perfedavg.errors import UsageError

VARIANTS = ("fedavg", "fo", "hf", "exact")
SIZES = (784, 80, 60, 10)
#: ``--shape``: input shape of the random data, and the samples per user by default (MNIST: 1000;
#: CIFAR-10: 340, the larger users of the paper's split, PAPER.md §7)
SHAPES = {"mnist": ((1, 28, 28), 1000), "cifar10": ((3, 32, 32), 340)}
#: the largest spread of a run's bmm throughput samples (:func:`throughput_spread`; one sample before and one
#: after each variant) at which the host counts as quiet.  Machine B, 52 runs on 2026-11-30/12-01
#: (benchmarks/machine-b): quiet runs spread 1-11 %; runs under load from the host's other tenants 27-96 %, and
#: those hold most of the low ratios (FedAvg 3.7-4.5x in 9 of 14).  15 % lies between the two groups.  Load that
#: lasts through a whole run moves no sample against another and goes unseen.
QUIET_SPREAD = 0.15
#: a run's fields that :func:`run_bench` measures (the rest of its JSON describes the workload and the machine)
MEASURED = ("variants", "matmul_gflops", "matmul_gflops_samples", "matmul_gflops_spread", "host_quiet")


def mlp_sizes(shape: str) -> tuple[int, ...]:
    """The paper's MLP (hidden 80 and 60, 10 classes) on flattened inputs of ``shape``."""
    c, h, w = SHAPES[shape][0]
    return (c * h * w,) + SIZES[1:]


# -- FLOP counts -----------------------------------------------------------------------
def layer_units(sizes: tuple[int, ...], m: int, B: int) -> list[int]:
    r"""FLOPs of one ``(m, B, d_l) @ (m, d_l, d_{l+1})`` matmul per layer: :math:`2 m B d_l d_{l+1}`."""
    return [2 * m * B * din * dout for din, dout in zip(sizes[:-1], sizes[1:])]


def grad_flops(units: list[int]) -> int:
    r"""One gradient: forward (1 matmul per layer), weight gradient (1 per layer) and input
    gradient (1 per layer but the first): :math:`\sum_l u_l (2 + [l>0])`."""
    return sum(u * (2 + (l > 0)) for l, u in enumerate(units))


def hvp_flops(units: list[int]) -> int:
    r"""One R-operator Hessian-vector product as :class:`perfedavg.engine.mlp.MLPOracle` runs it:
    first layer 3 matmuls (:math:`xW^\top`, :math:`xV^\top`, :math:`\mathcal RG^\top x`), every
    other layer 8 (forward 1, R-forward 2, R weight gradient 2, :math:`GW`, :math:`\mathcal RG W + GV`)."""
    return sum(u * (3 if l == 0 else 8) for l, u in enumerate(units))


def upper_grad_flops(units: list[int]) -> int:
    r"""The part of :func:`grad_flops` above the first layer: :math:`3\sum_{l>0} u_l`."""
    return sum(3 * u for u in units[1:])


def kernel_flops(sizes, m: int, B: int) -> int:
    r"""One first-layer kernel correction :math:`(X_b X_a^\top)\,G_a` of
    :meth:`perfedavg.engine.mlp.MLPOracle.per_fedavg_step` (batches of ``B``):
    :math:`2mB^2d_0 + 2mB^2d_1`."""
    return 2 * m * B * B * sizes[0] + 2 * m * B * B * sizes[1]


def engine_matmul_flops(variant: str, sizes=SIZES, m: int = 10, B: int = 40, tau: int = 10) -> int:
    r"""Matmul FLOPs of one engine round (``m`` clients, ``tau`` steps, batch ``B``), counted from
    the shapes :class:`perfedavg.engine.mlp.MLPOracle` runs.

    FedAvg: one gradient per step.  Per-FedAvg never forms the first layer at
    :math:`\tilde w` or :math:`w\pm\delta g` (first-layer kernel identity): per step the first
    layer costs one forward GEMM per batch (:math:`\mathcal D, \mathcal D'`, and
    :math:`\mathcal D''` for HF/exact), one kernel correction per derived point
    (:func:`kernel_flops`; FO one, HF/exact two) and one weight GEMM per term of the update
    (FO one, HF/exact two); the layers above run as usual: FO two gradients, HF four (the
    pair at :math:`w\pm\delta g` stacked), exact two plus the R-operator's (8 per layer).
    """
    u = layer_units(sizes, m, B)
    upper, kernel = upper_grad_flops(u), kernel_flops(sizes, m, B)
    per_step = {
        "fedavg": grad_flops(u),
        "fo": 3 * u[0] + 2 * upper + kernel,
        "hf": 5 * u[0] + 4 * upper + 2 * kernel,
        "exact": 5 * u[0] + 2 * upper + (hvp_flops(u) - 3 * u[0]) + 2 * kernel,  # R-operator above layer 0
    }[variant]
    return tau * per_step


def engine_flops(oracle, task, variant: str, m: int, B: int = 40, tau: int = 10, sizes=SIZES) -> tuple[int, str]:
    r"""Matmul FLOPs of one engine round as the oracle runs it, and how (``"steps"`` or
    ``"sample_space"``, :meth:`perfedavg.engine.mlp.MLPOracle.prefers_sample_space`): in sample
    space the first layer's part of :func:`engine_matmul_flops` (``2 m`` times
    :func:`perfedavg.engine.mlp.first_layer_macs` ``("steps", ...)``) is replaced by its own."""
    batches = (B,) if variant == "fedavg" else (B, B, B)
    flops = engine_matmul_flops(variant, sizes, m, B, tau)
    if not oracle.prefers_sample_space(task.train, variant, tau, batches):
        return flops, "steps"
    cost = oracle.first_layer_costs(task.train, variant, tau, batches)
    return int(flops + 2 * m * (cost["sample_space"] - cost["steps"])), "sample_space"


# -- the workload ----------------------------------------------------------------------
def make_task(n_clients: int, per_client: int, dtype, seed: int = 0, shape: str = "mnist", device="cpu"):
    """Random data of ``shape`` (:data:`SHAPES`), ``per_client`` samples per user in contiguous blocks, on ``device``."""
    import torch

    from perfedavg.engine.mlp import mlp_oracle_factory
    from perfedavg.engine.models import mlp
    from perfedavg.engine.task import ClientData, Task

    gen = torch.Generator().manual_seed(seed)
    S = n_clients * per_client
    x = torch.rand((S,) + SHAPES[shape][0], generator=gen, dtype=torch.float32).to(dtype)
    sizes = mlp_sizes(shape)
    y = torch.randint(0, 10, (S,), generator=gen)
    blocks = [list(range(i * per_client, (i + 1) * per_client)) for i in range(n_clients)]
    data = ClientData.from_lists(x, y, blocks).to(dtype, device)
    loss, scores, init = mlp(sizes, "elu")
    return Task(
        name="bench", per_sample_loss=loss, scores=scores, init_params=init, train=data, test=data,
        oracle_factory=mlp_oracle_factory(sizes, "elu"),
    )


class LoopBaseline:
    r"""Per-client ``nn.Module`` + ``torch.optim.SGD`` with a ``deepcopy`` per client, as
    existing FL code does (e.g. the Per-FedAvg user of the pFedMe code base): the same
    algorithm and hyper-parameters as the engine, one client at a time."""

    def __init__(self, task, cfg, dtype):
        import torch
        from torch import nn

        self.cfg = cfg
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(task.train.x[0].numel(), 80), nn.ELU(), nn.Linear(80, 60), nn.ELU(), nn.Linear(60, 10)
        ).to(dtype=dtype, device=task.train.x.device)
        per_client = int(task.train.count[0])
        self.client_x = [task.train.x[i * per_client : (i + 1) * per_client] for i in range(task.n_clients)]
        self.client_y = [task.train.y[i * per_client : (i + 1) * per_client] for i in range(task.n_clients)]
        self.gen = torch.Generator().manual_seed(1)

    def _batch(self, i: int, size: int):
        import torch

        idx = torch.randint(0, len(self.client_y[i]), (size,), generator=self.gen).to(self.client_y[i].device)
        return self.client_x[i][idx], self.client_y[i][idx]

    def _backward(self, model, batch):
        import torch.nn.functional as F

        model.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()

    def _local_step(self, model, opt, i: int) -> None:
        import torch
        import torch.nn.functional as F

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
        import copy

        import torch

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


def synchronize(device) -> None:
    """Wait for ``device``'s queued work (CUDA kernels run asynchronously; the CPU's are done)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_throughput(m: int, B: int, dtype, repeats: int = 30, sizes=SIZES, device="cpu") -> float:
    r"""GFLOP/s of ``device`` on the first layer's two GEMM shapes, as ``bmm``:
    ``(m, B, d) @ (m, d, 80)`` and ``(m, 80, B) @ (m, B, d)`` (``d = sizes[0]``, 784 for MNIST);
    median of ``repeats``."""
    import torch

    d, h = sizes[0], sizes[1]
    like = {"dtype": dtype, "device": device}
    X = torch.rand(m, B, d, **like)
    Wt = torch.rand(m, h, d, **like).transpose(1, 2)
    G = torch.rand(m, B, h, **like)
    out_f, out_b = torch.empty(m, B, h, **like), torch.empty(m, h, d, **like)
    times = []
    for r in range(repeats + 5):
        synchronize(device)
        start = time.perf_counter()
        torch.bmm(X, Wt, out=out_f)
        torch.bmm(G.transpose(1, 2), X, out=out_b)
        synchronize(device)
        if r >= 5:
            times.append(time.perf_counter() - start)
    return 2 * (2 * m * B * d * h) / statistics.median(times) / 1e9


def throughput_spread(samples: list[float]) -> float:
    """``max / min - 1`` of a run's bmm throughput samples: how far the machine's speed moved during the
    run (other tenants of a shared host; see :data:`QUIET_SPREAD`)."""
    return max(samples) / min(samples) - 1.0


def pool(runs: list[dict]) -> dict:
    """Per variant, the distribution over bench runs of the same workload: the median, least and greatest
    ``speedup`` (each run's own ratio of medians), every run's speedup and fraction of the bmm throughput
    in run order, the medians of ``engine_ms``, ``loop_ms`` and ``fraction_of_matmul``, and the speedup
    median over the runs on a quiet host only (:data:`QUIET_SPREAD`; None when there is none); and which
    runs were quiet.  ``runs`` are single-run results
    (:func:`run_bench`), for one machine's load is the noise that a single run cannot average out."""
    flags = [_quiet(run) for run in runs]
    quiet = [run for run, flag in zip(runs, flags) if flag]
    pooled = {"runs": len(runs), "quiet_runs": len(quiet), "host_quiet": flags, "variants": {}}
    for variant in runs[0]["variants"]:
        def values(key, among=runs):
            return [run["variants"][variant][key] for run in among]

        speedups = values("speedup")
        pooled["variants"][variant] = {
            "speedup_median": round(statistics.median(speedups), 2),
            "speedup_min": min(speedups),
            "speedup_max": max(speedups),
            "speedups": speedups,
            "speedup_median_quiet": round(statistics.median(values("speedup", quiet)), 2) if quiet else None,
            "engine_ms_median": round(statistics.median(values("engine_ms")), 3),
            "loop_ms_median": round(statistics.median(values("loop_ms")), 3),
            "fraction_of_matmul_median": round(statistics.median(values("fraction_of_matmul")), 3),
            "fractions_of_matmul": values("fraction_of_matmul"),
        }
    return pooled


def _quiet(run: dict) -> bool:
    """Whether a run's host was quiet (results saved before the field existed: from their samples)."""
    return run.get("host_quiet", throughput_spread(run["matmul_gflops_samples"]) <= QUIET_SPREAD)


def run_bench(args, desc: str = "bench") -> dict:
    """The benchmark's JSON-ready result (module docstring); restores torch's thread count.  ``desc``
    labels the progress bar."""
    import torch

    threads = args.threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_bench(args, threads, desc)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(args, threads: int, desc: str) -> dict:
    import torch
    from tqdm import tqdm

    from perfedavg.engine.config import RunConfig
    from perfedavg.engine.rounds import local_round
    from perfedavg.engine.mlp import tune_malloc
    from perfedavg.engine.oracle import make_oracle
    from perfedavg.engine.sampling import num_sampled_clients

    malloc_tuned = tune_malloc() if args.malloc_tuning else False
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    samples = args.samples or SHAPES[args.shape][1]
    sizes = mlp_sizes(args.shape)
    device = args.device
    task = make_task(args.clients, samples, dtype, shape=args.shape, device=device)
    oracle = make_oracle(task)
    gen = torch.Generator().manual_seed(0)
    w0 = task.init_params(gen).to(dtype=dtype, device=device)
    m = num_sampled_clients(0.2, args.clients)  # the engine's rule, floor(r*n)
    result = {
        "workload": {"n": args.clients, "r": 0.2, "clients_per_round": m, "tau": 10, "batch": 40,
                     "shape": args.shape, "mlp": list(sizes), "activation": "elu", "samples_per_client": samples},
        "dtype": args.dtype, "device": _device_name(device), "threads": threads, "torch": torch.__version__,
        "malloc_tuned": malloc_tuned,
        "rounds": args.rounds, "warmup": args.warmup, "variants": {},
    }
    gflops = []
    with tqdm(total=len(args.variants) * (args.rounds + args.warmup), desc=desc, unit="round", file=sys.stderr) as bar:
        for variant in args.variants:
            cfg = RunConfig(algorithm=variant, tau=10, r=0.2, D=40, D1=40, D2=40, alpha=0.01, beta=0.01, delta=1e-3,
                            dtype=args.dtype)
            baseline = LoopBaseline(task, cfg, dtype)
            w = w0.clone()
            engine_t, loop_t, engine_cpu, loop_cpu = [], [], [], []
            gflops.append(matmul_throughput(m, 40, dtype, sizes=sizes, device=device))
            for r in range(args.rounds + args.warmup):
                synchronize(device)
                start, cpu = time.perf_counter(), time.process_time()
                w_next, _, _ = local_round(task, oracle, cfg, w, gen)
                synchronize(device)
                t_engine, c_engine = time.perf_counter() - start, time.process_time() - cpu
                start, cpu = time.perf_counter(), time.process_time()
                baseline.round(args.clients, m)
                synchronize(device)
                t_loop, c_loop = time.perf_counter() - start, time.process_time() - cpu
                w = w_next
                if r >= args.warmup:
                    engine_t.append(t_engine)
                    loop_t.append(t_loop)
                    engine_cpu.append(c_engine)
                    loop_cpu.append(c_loop)
                bar.update()
            gflops.append(matmul_throughput(m, 40, dtype, sizes=sizes, device=device))
            flops, rounds = engine_flops(oracle, task, variant, m, sizes=sizes)
            e_ms, l_ms = 1e3 * statistics.median(engine_t), 1e3 * statistics.median(loop_t)
            result["variants"][variant] = {
                "engine_ms": round(e_ms, 3),
                "loop_ms": round(l_ms, 3),
                "speedup": round(l_ms / e_ms, 2),
                "engine_ms_min": round(1e3 * min(engine_t), 3),
                "loop_ms_min": round(1e3 * min(loop_t), 3),
                "speedup_of_min": round(min(loop_t) / min(engine_t), 2),
                # process CPU time (all threads): less sensitive to other load than wall time,
                # but it counts OpenMP spin-waiting, so compare it at --threads 1
                "engine_cpu_ms": round(1e3 * statistics.median(engine_cpu), 3),
                "loop_cpu_ms": round(1e3 * statistics.median(loop_cpu), 3),
                "engine_rounds": rounds,
                "flops_per_round": flops,
                "engine_gflops": round(flops / e_ms / 1e6, 1),
            }
    peak = statistics.median(gflops)
    result["matmul_gflops"] = round(peak, 1)
    result["matmul_gflops_samples"] = [round(g, 1) for g in gflops]
    result["matmul_gflops_spread"] = round(throughput_spread(result["matmul_gflops_samples"]), 3)  # as a reader recomputes it
    result["host_quiet"] = result["matmul_gflops_spread"] <= QUIET_SPREAD
    for entry in result["variants"].values():
        entry["fraction_of_matmul"] = round(entry["engine_gflops"] / peak, 3)
        entry["flop_floor_ms"] = round(entry["flops_per_round"] / peak / 1e6, 3)
    return result


def _device_name(device) -> str:
    """``device`` as the JSON reports it, with the GPU's name on CUDA (e.g. ``cuda:0 (NVIDIA H200)``)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _positive(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"--{name}={text!r} is not an integer") from None
        if value < (0 if name in ("warmup", "threads") else 1):
            raise UsageError(f"--{name}={value} is out of range: must be >= {0 if name in ('warmup', 'threads') else 1}")
        return value

    return parse


def _variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise UsageError(f"--variants={text!r}: each must be one of {', '.join(VARIANTS)} (comma-separated)")
    return names


def pool_files(paths: list[str]) -> dict:
    """:func:`pool` over saved bench results (each a single run's JSON or a ``--repeat`` one's), which must
    share the workload, dtype, device, thread count and variants: the first run's description, the files,
    the pool."""
    saved = [(path, _saved_runs(path)) for path in paths]
    runs = [run for _, found in saved for run in found]
    like = ("workload", "dtype", "device", "threads")
    for path, found in saved:
        for run in found:
            if any(run.get(k) != runs[0].get(k) for k in like) or set(run["variants"]) != set(runs[0]["variants"]):
                raise UsageError(f"--pool: {path} measured another workload, dtype, device, thread count or set of "
                                 f"variants than {paths[0]}; only like runs pool")
    first = {k: v for k, v in runs[0].items() if k not in MEASURED + ("runs", "pooled", "repeat")}
    return {**first, "files": [str(p) for p in paths], "pooled": pool(runs)}


def _saved_runs(path: str) -> list[dict]:
    """The single-run results in the saved bench JSON at ``path`` (a ``--repeat`` file's runs, each with the
    file's description); a one-line :class:`UsageError` for anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except OSError as e:
        raise UsageError(f"--pool: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"--pool: {path} is not JSON ({e})") from None
    runs = [{**saved, **run} for run in saved.get("runs", [saved])] if isinstance(saved, dict) else []
    fields = ("speedup", "engine_ms", "loop_ms", "fraction_of_matmul")
    if not runs or not all(isinstance(run, dict) and run.get("variants") and run.get("matmul_gflops_samples")
                           and all(isinstance(v, dict) and all(f in v for f in fields) for v in run["variants"].values())
                           for run in runs):
        raise UsageError(f"--pool: {path} is not a perfedavg bench result (single or --repeat run; pooled outputs "
                         f"do not pool again: pool their files)")
    return runs


#: picture formats ``--plot`` writes (matplotlib's, by the file's suffix)
PLOT_FORMATS = (".png", ".pdf", ".svg")


def main(args) -> int:
    from perfedavg.runs.rundir import output_file

    if args.json_out:
        output_file(args.json_out, "--json-out")  # before the minutes of timing, not after
    if args.plot:
        output_file(args.plot, "--plot")
        if Path(args.plot).suffix.lower() not in PLOT_FORMATS:
            raise UsageError(f"--plot {args.plot}: the file must end in {', '.join(PLOT_FORMATS)}")
    if args.pool:
        result = pool_files(args.pool)
    else:
        runs = [run_bench(args, "bench" if args.repeat == 1 else f"bench {i + 1}/{args.repeat}")
                for i in range(args.repeat)]
        busy = sum(not run["host_quiet"] for run in runs)
        if busy:
            print(f"perfedavg bench: warning: the host was busy in {busy} of {len(runs)} run(s) (bmm throughput moved "
                  f"by more than {QUIET_SPREAD:.0%} within the run; JSON: matmul_gflops_spread, host_quiet): their "
                  f"ratios are not representative", file=sys.stderr)
        result = runs[0] if len(runs) == 1 else {
            **{k: v for k, v in runs[0].items() if k not in MEASURED}, "repeat": len(runs),
            "runs": [{k: run[k] for k in MEASURED} for run in runs], "pooled": pool(runs)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        from perfedavg.runs.rundir import atomic_write_text

        atomic_write_text(args.json_out, text + "\n")
    if args.plot:
        from perfedavg.runs.plot import plot_bench

        pooled = result.get("pooled") or pool([result])
        shape = result["workload"]
        plot_bench(pooled, f"perfedavg bench: {pooled['runs']} run(s), {shape['shape']} shape "
                   f"(MLP {'-'.join(map(str, shape['mlp']))}), {result['dtype']}, {result['threads']} thread(s), "
                   f"{result['device']}", args.plot)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the engine against a per-client nn.Module loop on the paper's MNIST workload shape",
        description="Time one round of each variant on the paper's workload shape (n = 50, r = 0.2, tau = 10, "
        "batches of 40, MLP 784-80-60-10 ELU, random MNIST-shaped data; --shape cifar10 for CIFAR-10's): the engine (perfedavg.engine.rounds.local_round "
        "with the hand-written MLP oracle) and a per-client nn.Module + torch.optim.SGD loop with a deepcopy per "
        "client, interleaved round by round in the same run. Prints JSON: median ms per round of both, their "
        "ratio, matmul FLOPs per round, and the fraction of this machine's bmm throughput (measured in the same "
        "run on the first layer's shapes) the engine achieves, and how far that throughput moved within the run "
        "(more than 15%%: the host was busy, and a warning says so). --repeat N runs it all N times and adds the "
        "distribution over the runs; --pool FILE... pools saved results without timing anything; --plot FILE draws "
        "the runs.",
        epilog="On a loaded machine wall times with several threads are dominated by OpenMP threads waiting for "
        "descheduled siblings: compare 'speedup' (same run) rather than absolute times, try --threads 1 "
        "(see engine_cpu_ms / loop_cpu_ms), or set OMP_WAIT_POLICY=PASSIVE in the environment.",
    )
    p.add_argument("--rounds", type=_positive("rounds"), default=20, help="timed rounds per variant, >= 1 (default 20)")
    p.add_argument("--warmup", type=_positive("warmup"), default=3, help="untimed rounds first, >= 0 (default 3)")
    p.add_argument("--threads", type=_positive("threads"), default=0,
                   help="torch threads (torch.set_num_threads), >= 0; 0 = all cores (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="floating-point type (default float32)")
    p.add_argument("--variants", type=_variants, default=",".join(VARIANTS),
                   help="comma-separated subset of fedavg,fo,hf,exact (default: all four)")
    p.add_argument("--clients", type=_positive("clients"), default=50,
                   help="users n, >= 5; floor(0.2 n) of them are sampled per round (default 50)")
    p.add_argument("--samples", type=_positive("samples"), default=0,
                   help="random samples per user, >= 40 (default: 1000 for mnist, 340 for cifar10, the larger users "
                   "of the paper's CIFAR-10 split); with few samples of many features per user the engine runs whole "
                   "rounds in the users' sample space (JSON: engine_rounds)")
    p.add_argument("--shape", choices=tuple(SHAPES), default="mnist",
                   help="input shape of the random data: mnist (1x28x28, the MLP 784-80-60-10; default) or cifar10 "
                   "(3x32x32, 3072-80-60-10)")
    p.add_argument("--no-malloc-tuning", dest="malloc_tuning", action="store_false",
                   help="keep glibc's malloc defaults; by default perfedavg.engine.mlp.tune_malloc() is applied to the "
                   "whole process (engine and loop alike) to avoid page faults on freed parameter-sized buffers")
    p.add_argument("--device", default="cpu",
                   help="torch device of both the engine and the loop: cpu, cuda or cuda:N (default cpu); on CUDA "
                   "every timing waits for the device's queued work first")
    p.add_argument("--repeat", type=_positive("repeat"), default=1,
                   help="whole bench runs one after another, >= 1 (default 1); with more than one the JSON holds "
                   "each run ('runs') and their distribution per variant ('pooled': median, least and greatest "
                   "speedup, and the median over the runs on a quiet host), since on a shared host one run's ratio "
                   "moves with the neighbours' load")
    p.add_argument("--pool", nargs="+", default=None, metavar="FILE",
                   help="time nothing: pool saved bench JSONs (--json-out files of single or --repeat runs of one "
                   "workload, dtype, device and thread count) into that same distribution")
    p.add_argument("--json-out", default=None, metavar="FILE", help="also write the JSON to FILE, atomically")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also draw the runs to FILE (.png, .pdf or .svg), atomically: per variant each run's speedup "
                   "and fraction of the bmm throughput, quiet-host runs filled, busy ones hollow, the medians as bars")
    p.set_defaults(func=_checked_main)


def _checked_main(args) -> int:
    import torch

    from perfedavg.runs.runner import check_device

    args.device = check_device(args.device, torch, "--device")
    if args.samples and args.samples < 40:
        raise UsageError(f"--samples={args.samples} is out of range: each user needs >= 40 samples (the batch size)")
    from perfedavg.engine.sampling import num_sampled_clients

    if num_sampled_clients(0.2, args.clients) < 1:
        raise UsageError(f"--clients={args.clients} is out of range: r*n = 0.2*n must be >= 1 (n >= 5)")
    return main(args)
