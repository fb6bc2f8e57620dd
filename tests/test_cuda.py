"""The engine on a CUDA device (``device = "cuda"``), against the same engine on the CPU.

Every random draw comes from the run's CPU generator whatever the device
(:func:`perfedavg.engine.sampling.draw_positions`), so a seed picks the same users and batches on both:
in float64 the models then agree to round-off, and a CUDA run repeated is bit for bit the same.
Skipped where no CUDA device is present (CI); run with ``pytest -m cuda`` on a machine with one.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from perfedavg.engine.config import RunConfig
from perfedavg.engine.local import StepSizes
from perfedavg.engine.memory import memory_budget
from perfedavg.engine.mlp.steps import fedavg_step, per_fedavg_step
from perfedavg.engine.oracle import AutogradOracle, make_oracle
from perfedavg.engine.reference import reference_round
from perfedavg.engine.rounds import local_round, local_rounds
from perfedavg.engine.sampling import draw_batch, sample_clients
from perfedavg.runs import rundir
from perfedavg.runs.config import build_config
from perfedavg.runs.runner import run_config
from tests.empirical_fixtures import real_data_root
from tests.helpers import random_params, softmax_setup, table1_plan, uneven_mlp_task, with_batches

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = "cuda"
#: float64 agreement of the same arithmetic on two devices (other kernels, other summation
#: orders): entries are O(1), round-off ~1e-15 per operation; a wrong term would be >= 1e-3
TIGHT = 1e-10
#: float64 metrics of a short run on the two devices: F, accuracies and gradient norms are sums
#: over every user's data, each O(1); 1e-9 relative leaves room for the summation order
METRIC_RTOL = 1e-9


def _on(task, device):
    return task.to(torch.float64, device)


@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_engine_on_cuda_equals_the_cpu_engine_and_the_loop_reference(algorithm, with_replacement):
    """Generic oracle (torch.func over the task's loss): CPU engine, CUDA engine and the CUDA loop
    reference, three rounds from the same seed, the same sampled users and models to round-off."""
    cfg, task = softmax_setup(algorithm=algorithm, alpha=0.3, beta=0.2)
    task = with_batches(task, with_replacement)
    gpu = _on(task, CUDA)
    w = random_params(task)
    gens = [torch.Generator().manual_seed(5) for _ in range(3)]
    for _ in range(3):
        w_cpu, clients_cpu, _ = local_round(task, AutogradOracle(task.per_sample_loss), cfg, w, gens[0])
        w_gpu, clients_gpu, _ = local_round(gpu, AutogradOracle(gpu.per_sample_loss), cfg, w.to(CUDA), gens[1])
        w_ref = reference_round(gpu, cfg, w.to(CUDA), gens[2])
        assert w_gpu.is_cuda and w_ref.is_cuda
        assert torch.equal(clients_cpu, clients_gpu)
        assert torch.allclose(w_gpu.cpu(), w_cpu, rtol=0, atol=TIGHT), (w_gpu.cpu() - w_cpu).abs().max()
        assert torch.allclose(w_ref.cpu(), w_cpu, rtol=0, atol=TIGHT), (w_ref.cpu() - w_cpu).abs().max()
        w = w_cpu


def test_batches_drawn_for_cuda_data_are_the_cpu_draws_on_the_device():
    _, task = softmax_setup()
    gpu = _on(task, CUDA)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for with_replacement in (True, False):
        clients_a, clients_b = sample_clients(gen_a, task.n_clients, 3), sample_clients(gen_b, task.n_clients, 3)
        a = draw_batch(gen_a, task.train, clients_a, 5, with_replacement)
        b = draw_batch(gen_b, gpu.train, clients_b, 5, with_replacement)
        assert b.x.is_cuda and b.y.is_cuda
        assert torch.equal(a.y, b.y.cpu()) and torch.equal(a.x, b.x.cpu())


@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize("rounds", ["steps", "sample_space"])
@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_mlp_oracle_on_cuda_equals_the_generic_engine_on_the_cpu(algorithm, rounds, with_replacement):
    """The hand-written MLP oracle on CUDA, per step and in sample space, two runs at once, users of
    unequal sizes, two rounds: the generic CPU engine's models to round-off; the round repeated from
    the same state is bit for bit the same (no order-dependent accumulation on the device)."""
    task = uneven_mlp_task((9, 6, 4, 3), "elu", with_replacement, rounds)
    gpu = _on(task, CUDA)
    slow = replace(task, oracle_factory=None)
    cfg = RunConfig(
        algorithm=algorithm, tau=3, r=0.5, D=5, D1=6, D2=7, alpha=0.3, beta=0.2, delta=1e-3, dtype="float64"
    )
    W = torch.stack([task.init_params(torch.Generator().manual_seed(s)) for s in (1, 2)]) * 3
    fast = make_oracle(gpu)
    assert fast.prefers_sample_space(gpu.train, algorithm, cfg.tau, (5, 6, 7)) == (rounds == "sample_space")
    expected = W
    gens_cpu = [torch.Generator().manual_seed(s) for s in (5, 6)]
    gens_gpu = [torch.Generator().manual_seed(s) for s in (5, 6)]
    W = W.to(CUDA)
    for _ in range(2):
        states = [g.get_state() for g in gens_gpu]
        W_next, clients_gpu, _ = local_rounds(gpu, fast, cfg, W, gens_gpu)
        again = [torch.Generator() for _ in states]
        for g, s in zip(again, states):
            g.set_state(s)
        W_again, _, _ = local_rounds(gpu, fast, cfg, W, again)
        assert torch.equal(W_next, W_again)
        expected, clients_cpu, _ = local_rounds(slow, make_oracle(slow), cfg, expected, gens_cpu)
        assert all(torch.equal(a, b) for a, b in zip(clients_cpu, clients_gpu))
        assert torch.allclose(W_next.cpu(), expected, rtol=0, atol=TIGHT), (W_next.cpu() - expected).abs().max()
        W = W_next


@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_mlp_steps_in_place_on_cuda_equal_steps_into_a_new_tensor(algorithm):
    """``out=W`` (the engine's in-place update) reads every layer before writing it on CUDA too."""
    task = _on(uneven_mlp_task((9, 6, 4, 3), "elu", True, "steps"), CUDA)
    oracle = make_oracle(task)
    gen = torch.Generator().manual_seed(0)
    clients = sample_clients(gen, task.n_clients, 4)
    batches = tuple(draw_batch(gen, task.train, clients, size, True) for size in (5, 6, 7))
    W = torch.stack([task.init_params(torch.Generator().manual_seed(s)) for s in range(4)]).to(CUDA) * 3
    h = StepSizes(alpha=0.3, beta=0.2, delta=1e-3)
    if algorithm == "fedavg":
        new = fedavg_step(oracle, W, batches[0], h)
        fedavg_step(oracle, W, batches[0], h, out=W)
    else:
        new = per_fedavg_step(oracle, W, batches, h, algorithm)
        per_fedavg_step(oracle, W, batches, h, algorithm, out=W)
    assert torch.equal(W, new)


def _sets(**options):
    return [f"{k}={json.dumps(v)}" for k, v in options.items()]


SMALL_RUN = {
    "K": 4,
    "tau": 3,
    "r": 0.5,
    "D": 5,
    "D1": 6,
    "D2": 7,
    "eval_every": 1,
    "checkpoint_every": 1,
    "eval_batch": 8,
    "dtype": "float64",
    "task.n_clients": 6,
    "task.dim": 4,
    "task.classes": 3,
    "task.support": 30,
}


#: the other synthetic tasks, as small (their own option names; softmax's are SMALL_RUN's)
OTHER_TASKS = {
    "logistic": {"task.n_clients": 6, "task.dim": 4, "task.support": 30, "task.clusters": 3},
    "nonconvex": {"task.n_clients": 6, "task.dim": 4, "task.support": 30, "task.clusters": 3},
    "quadratic": {
        "task.n_clients": 6,
        "task.dim": 3,
        "task.support": 30,
        "task.init": "minimizer",
        "task.init_alpha": 0.01,
    },
}


def _run(out, base=SMALL_RUN, **options):
    result = run_config(build_config({}, _sets(**{**base, **options})), out, progress=False)
    assert result.status == "finished"
    return rundir.read_metrics(out)


def _close_records(a: dict, b: dict, path="") -> None:
    """Two metrics records with the same keys and numbers equal to :data:`METRIC_RTOL`."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close_records(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close_records(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=METRIC_RTOL, abs=1e-12), path
    else:
        assert a == b, path


@pytest.mark.parametrize("algorithm", ["fedavg", "hf", "exact"])
def test_a_cuda_run_is_bit_reproducible_and_measures_what_the_cpu_run_does(algorithm, tmp_path):
    """``perfedavg run`` with device = cuda: the same seed gives the same metrics.jsonl byte for
    byte, and every metric (F, gradient norms, both personalization protocols, per client) equals
    the CPU run's to float64 round-off."""
    gpu = _run(tmp_path / "gpu", algorithm=algorithm, device=CUDA)
    assert (tmp_path / "gpu" / rundir.METRICS).read_bytes() == _rewritten(
        tmp_path, "gpu2", algorithm=algorithm, device=CUDA
    )
    cpu = _run(tmp_path / "cpu", algorithm=algorithm, device="cpu")
    assert len(gpu) == len(cpu) == SMALL_RUN["K"] + 1
    for a, b in zip(cpu, gpu):
        _close_records(a, b)


@pytest.mark.parametrize("algorithm", ["fo", "exact"])
@pytest.mark.parametrize("task", sorted(OTHER_TASKS))
def test_every_synthetic_task_on_cuda_measures_what_the_cpu_run_does(task, algorithm, tmp_path):
    """Each other synthetic task (the quadratic from its exact minimiser of F), with the inner
    iterates tracked: every metric of a CUDA run equals the CPU run's to float64 round-off."""
    base = {key: value for key, value in SMALL_RUN.items() if not key.startswith("task.")}
    options = {**base, **OTHER_TASKS[task], "task.name": task, "algorithm": algorithm, "track_inner": True}
    gpu = _run(tmp_path / "gpu", base=options, device=CUDA)
    cpu = _run(tmp_path / "cpu", base=options, device="cpu")
    assert len(gpu) == len(cpu) == SMALL_RUN["K"] + 1
    assert "stationarity_avg" in gpu[-1]
    for a, b in zip(cpu, gpu):
        _close_records(a, b)


def _rewritten(tmp_path, name, **options) -> bytes:
    _run(tmp_path / name, **options)
    return (tmp_path / name / rundir.METRICS).read_bytes()


def test_a_cuda_run_resumes_bit_for_bit(tmp_path):
    """Stopped after round 2 (the checkpoint holds the model on the CPU) and resumed on CUDA with
    K = 4: the same metrics.jsonl as an uninterrupted CUDA run."""
    _run(tmp_path / "whole", device=CUDA)
    _run(tmp_path / "part", device=CUDA, K=2)
    cfg = build_config({}, _sets(**{**SMALL_RUN, "device": CUDA}))
    result = run_config(cfg, tmp_path / "part", resume=True, force=True, progress=False)
    assert result.status == "finished"
    assert (tmp_path / "part" / rundir.METRICS).read_bytes() == (tmp_path / "whole" / rundir.METRICS).read_bytes()


def test_sample_space_budget_is_half_the_devices_memory():
    total = torch.cuda.get_device_properties(0).total_memory
    assert memory_budget(CUDA) == int(total * 0.5)


def test_bench_on_cuda_writes_json(capsys):
    from perfedavg.cli import main

    status = main(
        [
            "bench",
            "--device",
            CUDA,
            "--rounds",
            "1",
            "--warmup",
            "1",
            "--variants",
            "fo",
            "--clients",
            "5",
            "--samples",
            "40",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"].startswith("cuda:0 (")
    fo = result["variants"]["fo"]
    assert fo["engine_ms"] > 0 and fo["loop_ms"] > 0 and fo["fraction_of_matmul"] > 0


@pytest.mark.full_data
@pytest.mark.parametrize("algorithm", ["fedavg", "fo", "hf", "exact"])
def test_paper_mnist_rounds_on_cuda_equal_the_cpu_rounds(algorithm):
    """The paper's MNIST task (50 users, MLP 784-80-60-10, tau = 10, batches of 40) in float64: two
    rounds of the fast oracle on CUDA against the CPU, the same users and models to round-off."""
    from empirical.tasks import ImageTaskOptions, build_image_task

    root = real_data_root()
    if root is None:
        pytest.skip("no real data (set PERFEDAVG_DATA or provide ../shared/data)")
    task = _on(build_image_task("mnist", ImageTaskOptions(data_dir=str(root))), "cpu")
    gpu = _on(task, CUDA)
    cfg = RunConfig(
        algorithm=algorithm, tau=10, r=0.2, D=40, D1=40, D2=40, alpha=0.001, beta=0.01, delta=1e-3, dtype="float64"
    )
    w = task.init_params(torch.Generator().manual_seed(0)).to(torch.float64)
    w_gpu = w.to(CUDA)
    gen_cpu, gen_gpu = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(2):
        w, clients_cpu, _ = local_round(task, make_oracle(task), cfg, w, gen_cpu)
        w_gpu, clients_gpu, _ = local_round(gpu, make_oracle(gpu), cfg, w_gpu, gen_gpu)
        assert torch.equal(clients_cpu, clients_gpu)
        assert torch.allclose(w_gpu.cpu(), w, rtol=0, atol=TIGHT), (w_gpu.cpu() - w).abs().max()


@pytest.mark.full_data
def test_paper_mnist_run_on_cuda_is_bit_reproducible(tmp_path):
    """A short Table 1 MNIST cell (HF, float32, the fast oracle) through ``perfedavg run`` on CUDA,
    twice: the same metrics.jsonl byte for byte."""
    root = real_data_root()
    if root is None:
        pytest.skip("no real data (set PERFEDAVG_DATA or provide ../shared/data)")
    options = {
        "algorithm": "hf",
        "K": 5,
        "tau": 10,
        "r": 0.2,
        "alpha": 0.001,
        "beta": 0.001,
        "D": 40,
        "D1": 40,
        "D2": 40,
        "eval_every": 5,
        "dtype": "float32",
        "device": CUDA,
        "task.name": "mnist",
        "task.data_dir": str(root),
    }
    metrics = []
    for name in ("a", "b"):
        result = run_config(build_config({}, _sets(**options)), tmp_path / name, progress=False)
        assert result.status == "finished"
        metrics.append((tmp_path / name / rundir.METRICS).read_bytes())
    assert metrics[0] == metrics[1]


def test_reproduce_table1_device_reaches_every_cell(monkeypatch):
    from empirical.reproduce import cell_config

    plan = table1_plan(monkeypatch, ["--device", "cuda:0"])
    assert cell_config(plan, "mnist", 10, 0.01, "hf", 0).device == "cuda:0"


def test_fedavg_evaluated_from_a_trained_cuda_cell_equals_training_it(tmp_path):
    """Table 1's FedAvg twins on CUDA (:func:`perfedavg.runs.runner.run_from_trained`): the trained cell's
    final model, read from its checkpoint, is evaluated on the device under another alpha, with
    the records of training that cell itself."""
    from perfedavg.runs.runner import run_from_trained

    options = {**SMALL_RUN, "algorithm": "fedavg", "device": CUDA, "eval_every": SMALL_RUN["K"]}
    _run(tmp_path / "trained", **options)
    run_from_trained(build_config({}, _sets(**{**options, "alpha": 0.2})), tmp_path / "twin", tmp_path / "trained")
    assert rundir.read_metrics(tmp_path / "twin") == _run(tmp_path / "direct", **{**options, "alpha": 0.2})


def test_table1_on_cuda_equals_the_cpu_table(tmp_path):
    """``reproduce table1 --device cuda`` end to end on a tiny MNIST, with a FedAvg cell that evaluates
    another row's model and the batch-step evaluation: the CPU table's accuracies to round-off (float64)."""
    from empirical.reproduce import Plan, cell_dir, run_plan
    from tests.empirical_fixtures import tiny_mnist_arrays, write_mnist

    root = tmp_path / "data"
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    common = {
        "datasets": ("mnist",),
        "rows": ((2, 0.001), (2, 0.01)),
        "methods": ("fedavg", "hf"),
        "seeds": 1,
        "K": 2,
        "workers": 2,
        "data_dir": str(root),
        "task": {"n_clients": 10, "a": 4},
        "eval_batch": 4,
    }
    settings = {"D": 4, "D1": 4, "D2": 4, "beta": 0.05, "dtype": "float64"}
    tables = {
        device: run_plan(Plan(**common, settings={**settings, "device": device}), tmp_path / device, progress=False)
        for device in ("cpu", CUDA)
    }
    twin = json.loads((cell_dir(tmp_path / CUDA, "mnist", 2, 0.01, "fedavg", 0) / rundir.SUMMARY).read_text())
    assert twin["trained_in"] and twin["status"] == "finished"
    for row_cpu, row_gpu in zip(tables["cpu"]["rows"], tables[CUDA]["rows"]):
        assert row_cpu["cells"].keys() == row_gpu["cells"].keys() == {"fedavg", "hf"}
        for method, cell in row_cpu["cells"].items():
            for key in ("test", "train", "global", "test_batch", "train_batch"):
                assert row_gpu["cells"][method][key]["mean"] == pytest.approx(cell[key]["mean"], rel=METRIC_RTOL), (
                    method,
                    key,
                )


#: constants estimated on the two devices: the same draws (CPU generator), other round-off, which
#: the Lanczos recurrence and the max over users may amplify a little; a wrong term would be O(1)
CONSTANTS_RTOL = 1e-6


def test_constants_of_a_cuda_run_equal_the_cpu_runs(tmp_path):
    """``reproduce constants`` on a run made on CUDA (its config says device = cuda): every estimate
    equals the one on the same run made on the CPU."""
    import empirical.constants as C

    options = C.EstimateOptions(lanczos_steps=8, hessian_samples=1, gamma_users=2, rho_directions=1)
    docs = []
    for device in ("cpu", CUDA):
        run = tmp_path / f"run{len(docs)}"
        _run(run, algorithm="fo", device=device, K=3, eval_every=3)
        docs.append(C.estimate_run(run, "0,2,final", options, progress=False))
    cpu, gpu = docs
    assert gpu["theory_check"] == cpu["theory_check"]
    for name, value in cpu["constants"].items():
        assert gpu["constants"][name] == pytest.approx(value, rel=CONSTANTS_RTOL), name
