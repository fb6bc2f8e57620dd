r"""``perfedavg bench``'s measurement: the engine against the per-client loop, in the same run.

For each variant (``fedavg``, ``fo``, ``hf``, ``exact``) :func:`run_bench` times, interleaved
round by round (so both see the same machine load):

* ``engine``: :func:`perfedavg.engine.rounds.local_round` with :class:`perfedavg.engine.mlp.MLPOracle`;
* ``loop``: :class:`perfedavg.bench.loop.LoopBaseline`, a straightforward per-client ``nn.Module``
  + ``torch.optim.SGD`` loop with a ``deepcopy`` of the global model per client, as existing FL
  libraries do (FO: two SGD-like steps; HF: two extra gradient evaluations at :math:`w\pm\delta g`;
  exact: double backward), then a uniform average of the client models;

and reports medians (ms per round), their ratio, the matmul FLOPs per round
(:func:`perfedavg.bench.workload.engine_flops`), and the fraction of the machine's matmul
throughput the engine achieves, that throughput measured in the same run on ``bmm`` calls of the
first layer's shapes, before and after each variant.  How far those samples spread within the run
says whether the host was quiet (:data:`perfedavg.bench.pool.QUIET_SPREAD`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch
from tqdm import tqdm

from perfedavg.algorithms import DEFAULT_DELTA
from perfedavg.bench.loop import LoopBaseline
from perfedavg.bench.pool import QUIET_SPREAD, throughput_spread
from perfedavg.bench.workload import SHAPES, SIZES, engine_flops, mlp_sizes
from perfedavg.engine.config import RunConfig
from perfedavg.engine.mlp import mlp_oracle_factory, tune_malloc
from perfedavg.engine.models import mlp
from perfedavg.engine.oracle import make_oracle
from perfedavg.engine.rounds import local_round
from perfedavg.engine.sampling import num_sampled_clients
from perfedavg.engine.task import ClientData, Task
from perfedavg.errors import UsageError
from perfedavg.runs.resolve import check_device


def check_options(args: argparse.Namespace) -> None:
    """The options only torch and the engine can check (``--device``, and the workload's size)."""
    args.device = check_device(args.device, torch, "--device")
    if args.samples and args.samples < 40:
        raise UsageError(f"--samples={args.samples} is out of range: each user needs >= 40 samples (the batch size)")
    if num_sampled_clients(0.2, args.clients) < 1:
        raise UsageError(f"--clients={args.clients} is out of range: r*n = 0.2*n must be >= 1 (n >= 5)")


def make_task(n_clients: int, per_client: int, dtype, seed: int = 0, shape: str = "mnist", device="cpu"):
    """Random data of ``shape`` (:data:`perfedavg.bench.workload.SHAPES`), ``per_client`` samples per user in
    contiguous blocks, on ``device``: the bench's task, with the paper's MLP and its hand-written oracle."""
    gen = torch.Generator().manual_seed(seed)
    S = n_clients * per_client
    x = torch.rand((S,) + SHAPES[shape][0], generator=gen, dtype=torch.float32).to(dtype)
    sizes = mlp_sizes(shape)
    y = torch.randint(0, 10, (S,), generator=gen)
    blocks = [list(range(i * per_client, (i + 1) * per_client)) for i in range(n_clients)]
    data = ClientData.from_lists(x, y, blocks).to(dtype, device)
    loss, scores, init = mlp(sizes, "elu")
    return Task(
        name="bench",
        per_sample_loss=loss,
        scores=scores,
        init_params=init,
        train=data,
        test=data,
        oracle_factory=mlp_oracle_factory(sizes, "elu"),
    )


def synchronize(device) -> None:
    """Wait for ``device``'s queued work (CUDA kernels run asynchronously; the CPU's are done)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_throughput(m: int, B: int, dtype, repeats: int = 30, sizes=SIZES, device="cpu") -> float:
    r"""GFLOP/s of ``device`` on the first layer's two GEMM shapes, as ``bmm``:
    ``(m, B, d) @ (m, d, 80)`` and ``(m, 80, B) @ (m, B, d)`` (``d = sizes[0]``, 784 for MNIST);
    median of ``repeats``."""
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


def run_bench(args: argparse.Namespace, desc: str = "bench") -> dict:
    """The benchmark's JSON-ready result (module docstring); restores torch's thread count.  ``desc``
    labels the progress bar."""
    threads = args.threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_bench(args, threads, desc)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(args: argparse.Namespace, threads: int, desc: str) -> dict:
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
    variants: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {
        "workload": {
            "n": args.clients,
            "r": 0.2,
            "clients_per_round": m,
            "tau": 10,
            "batch": 40,
            "shape": args.shape,
            "mlp": list(sizes),
            "activation": "elu",
            "samples_per_client": samples,
        },
        "dtype": args.dtype,
        "device": _device_name(device),
        "threads": threads,
        "torch": torch.__version__,
        "malloc_tuned": malloc_tuned,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "variants": variants,
    }
    gflops = []
    with tqdm(total=len(args.variants) * (args.rounds + args.warmup), desc=desc, unit="round", file=sys.stderr) as bar:
        for variant in args.variants:
            cfg = RunConfig(
                algorithm=variant,
                tau=10,
                r=0.2,
                D=40,
                D1=40,
                D2=40,
                alpha=0.01,
                beta=0.01,
                delta=DEFAULT_DELTA,
                dtype=args.dtype,
            )
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
            variants[variant] = {
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
    # from the rounded samples, as a reader of the JSON recomputes it
    result["matmul_gflops_spread"] = round(throughput_spread(result["matmul_gflops_samples"]), 3)
    result["host_quiet"] = result["matmul_gflops_spread"] <= QUIET_SPREAD
    for entry in variants.values():
        entry["fraction_of_matmul"] = round(entry["engine_gflops"] / peak, 3)
        entry["flop_floor_ms"] = round(entry["flops_per_round"] / peak / 1e6, 3)
    return result


def _device_name(device) -> str:
    """``device`` as the JSON reports it, with the GPU's name on CUDA (``cuda:0 (<the GPU's name>)``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
