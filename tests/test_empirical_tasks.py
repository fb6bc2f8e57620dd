"""empirical.tasks: MNIST / CIFAR-10 as engine tasks (docs/paper.md §7).

On a tiny MNIST written in the official IDX format (600 training and 400 test images,
labels cycling 0..9, 4x4 pixels) with a scaled paper split (n = 10, a = 4): every user
holds exactly the class counts the split demands, no image is held twice, and the
pooled inputs are exactly the normalized source images.  The same on the real MNIST
copy (full_data).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from empirical.data import load_dataset
from empirical.partition import make_partition, paper_test_a
from empirical.tasks import ImageTaskOptions, build_image_task, normalized, partition_options
from perfedavg.engine.mlp import MLPOracle
from perfedavg.engine.oracle import AutogradOracle, make_oracle
from perfedavg.errors import UsageError
from tests.empirical_fixtures import real_data_root, tiny_mnist_arrays, write_mnist


def paper_demand(n: int, a: int) -> np.ndarray:
    """docs/paper.md §7: users 0..n/2-1 hold a of each class 0..4; user n/2+j holds a/2 of class
    j mod 5 and 2a of class 5 + (j div 5) mod 5."""
    d = np.zeros((n, 10), dtype=np.int64)
    d[: n // 2, :5] = a
    for j in range(n // 2):
        d[n // 2 + j, j % 5] = a // 2
        d[n // 2 + j, 5 + (j // 5) % 5] = 2 * a
    return d


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "MNIST" / "raw", tiny_mnist_arrays(seed=0, n_train=600, n_test=400, side=4))
    return root


def check_paper_task(task, ds, options: ImageTaskOptions, name: str) -> None:
    """Exact class counts per user, no image twice, pooled rows = the normalized source images."""
    part = make_partition(
        "paper", ds.y_train, ds.y_test, seed=options.partition_seed, **partition_options(name, options)
    )
    n, a = options.n_clients, partition_options(name, options)["a"]
    a_test = paper_test_a(a, len(ds.y_train), len(ds.y_test))
    for data, parts, source_x, demand in (
        (task.train, part.train, ds.x_train, paper_demand(n, a)),
        (task.test, part.test, ds.x_test, paper_demand(n, a_test)),
    ):
        held = []
        for i in range(n):
            rows = data.index[i, : int(data.count[i])]
            assert int(data.count[i]) == demand[i].sum()
            counts = np.bincount(data.y[rows].numpy(), minlength=10)
            np.testing.assert_array_equal(counts, demand[i], err_msg=f"user {i}")
            held.append(rows)
            # the pooled rows are exactly the user's source images, normalized
            torch.testing.assert_close(data.x[rows], normalized(source_x[parts[i]], ds.mean, ds.std), rtol=0, atol=0)
            assert torch.allclose(data.weight[i, : len(rows)].sum(), torch.tensor(1.0, dtype=data.weight.dtype))
        held = torch.cat(held)
        assert len(torch.unique(held)) == len(held), "a pooled row is held twice"
        source = np.concatenate(parts)
        assert len(np.unique(source)) == len(source), "a source image is held twice"
        assert data.x.shape[0] == len(held)


def test_paper_split_task_exact_counts_and_no_image_twice(tiny_root):
    options = ImageTaskOptions(data_dir=str(tiny_root), n_clients=10, a=4)
    task = build_image_task("mnist", options)
    ds = load_dataset("mnist", str(tiny_root))
    check_paper_task(task, ds, options, "mnist")
    assert task.label == "MNIST" and not task.batch_with_replacement
    assert "MLP 16-80-60-10 elu" in task.description


def test_fast_oracle_agrees_with_autograd_on_the_task(tiny_root):
    task = build_image_task("mnist", ImageTaskOptions(data_dir=str(tiny_root), n_clients=10, a=4)).to(torch.float64)
    oracle = make_oracle(task)
    W = task.init_params(torch.Generator().manual_seed(0)).to(torch.float64).expand(3, -1).clone()
    X, Y, _ = task.train.gather(torch.arange(3))
    X, Y = X[:, :5], Y[:, :5]
    # float64: the two computations differ by rounding only
    torch.testing.assert_close(
        oracle.grad(W, X, Y), AutogradOracle(task.per_sample_loss).grad(W, X, Y), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("strategy", ["steps", "sample_space"])
def test_round_strategy_option_reaches_the_oracle_and_changes_round_off_only(tiny_root, strategy):
    """``task.round_strategy`` forces the fast oracle's way of running a round; the run's
    arithmetic is rearranged, not changed (float64: agreement to round-off)."""
    from perfedavg.engine.config import RunConfig
    from perfedavg.engine.rounds import local_round

    base = ImageTaskOptions(data_dir=str(tiny_root), n_clients=10, a=4)
    forced = build_image_task("mnist", replace(base, round_strategy=strategy)).to(torch.float64)
    auto = build_image_task("mnist", base).to(torch.float64)
    oracle = make_oracle(forced)
    assert oracle.rounds == strategy and make_oracle(auto).rounds == "auto"
    cfg = RunConfig(algorithm="hf", tau=3, r=0.3, D=4, D1=4, D2=4, alpha=0.05, beta=0.05, dtype="float64")
    w = auto.init_params(torch.Generator().manual_seed(0)).to(torch.float64)
    got = local_round(forced, oracle, cfg, w, torch.Generator().manual_seed(1))[0]
    steps = local_round(auto, MLPOracle(oracle.sizes, rounds="steps"), cfg, w, torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(got, steps, rtol=1e-10, atol=1e-12)  # float64 round-off, as the fast-oracle test above


def test_a_forced_sample_space_that_does_not_fit_is_refused_before_anything_is_written(
    tiny_root, tmp_path, capsys, monkeypatch
):
    import perfedavg.engine.mlp.sample_space as fast_mlp
    from perfedavg.cli import main

    monkeypatch.setattr(fast_mlp, "memory_budget", lambda device: 1000)
    out = tmp_path / "run"
    argv = [
        "run",
        "--no-progress",
        "--no-plot",
        "--out",
        str(out),
        "--set=task.name=mnist",
        f"--set=task.data_dir={tiny_root}",
        "--set=task.n_clients=10",
        "--set=task.a=4",
        "--set=K=1",
        "--set=D=4",
        "--set=D1=4",
        "--set=D2=4",
    ]
    assert main([*argv, "--set=task.round_strategy=sample_space"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample_space" in err and "use steps or auto" in err
    assert not out.exists()
    assert main(argv) == 0  # auto: the same budget makes it run per step


def test_bad_round_strategy_names_the_option():
    with pytest.raises(UsageError) as info:
        ImageTaskOptions(round_strategy="fastest")
    assert "task.round_strategy" in str(info.value) and "auto | steps | sample_space" in str(info.value)


def test_normalized_is_per_channel():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)
    z = normalized(x, mean, std)
    assert z.shape == (3, 12) and z.dtype == torch.float32
    expected = ((x / 255.0 - np.array(mean)) / np.array(std)).reshape(3, -1)
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-5, atol=1e-5)  # float32 rounding
    grey = normalized(x[..., 0], (0.5,), (0.25,))
    np.testing.assert_allclose(grey.numpy(), ((x[..., 0] / 255.0 - 0.5) / 0.25).reshape(3, -1), rtol=1e-5, atol=1e-5)


def test_normalize_none_feeds_plain_x_over_255(tiny_root):
    ds = load_dataset("mnist", str(tiny_root))
    plain = build_image_task("mnist", ImageTaskOptions(data_dir=str(tiny_root), n_clients=10, a=4, normalize="none"))
    standard = build_image_task("mnist", ImageTaskOptions(data_dir=str(tiny_root), n_clients=10, a=4))
    part = make_partition("paper", ds.y_train, ds.y_test, seed=0, num_clients=10, a=4)
    used = np.concatenate(part.train)
    expected = torch.from_numpy(ds.x_train[used].reshape(len(used), -1)).float() / 255.0
    torch.testing.assert_close(plain.train.x, expected, rtol=0, atol=0)
    torch.testing.assert_close(standard.train.x, (expected - ds.mean[0]) / ds.std[0], rtol=1e-6, atol=1e-6)
    assert "x/255" in plain.description and "x/255" not in standard.description


def test_bad_normalize_names_the_option():
    with pytest.raises(UsageError) as info:
        ImageTaskOptions(normalize="minmax")
    assert "task.normalize" in str(info.value) and "dataset | none" in str(info.value)


def test_missing_data_is_one_line_naming_the_three_ways(tmp_path):
    with pytest.raises(UsageError) as info:
        build_image_task("mnist", ImageTaskOptions(data_dir=str(tmp_path / "nothing")))
    message = str(info.value)
    assert "\n" not in message
    for way in ("--data-dir", "PERFEDAVG_DATA", "--download"):
        assert way in message


@pytest.mark.full_data
def test_real_mnist_paper_split_exact_counts_and_no_image_twice():
    root = real_data_root()
    if root is None:
        pytest.skip("no real data (set PERFEDAVG_DATA or provide ../shared/data)")
    options = ImageTaskOptions(data_dir=str(root))
    task = build_image_task("mnist", options)
    ds = load_dataset("mnist", str(root))
    check_paper_task(task, ds, options, "mnist")
    assert task.n_clients == 50 and task.train.x.shape == (25 * 5 * 196 + 25 * 490, 784)


def test_a_split_error_under_perfedavg_run_names_run_options_not_data_partition_flags(tmp_path, capsys):
    """Two test images per class cannot give every user one: the message names task.a, which perfedavg run
    has, not --a-test, which only `perfedavg data partition` has."""
    from perfedavg.cli import main

    write_mnist(tmp_path / "MNIST" / "raw", tiny_mnist_arrays(n_train=200, n_test=2))
    argv = ["run", "--set", "task.name=mnist", "--set", f"task.data_dir={tmp_path}", "--set", "task.normalize=none"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "derived from task.a" in err and "--a" not in err, err
