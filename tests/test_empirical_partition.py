"""``empirical.partition``: the paper's split exactly, Dirichlet and k-class splits."""

from __future__ import annotations

import numpy as np
import pytest

from empirical import partition as P
from perfedavg.errors import UsageError
from tests.empirical_fixtures import real_data_root

#: MNIST's class counts (train, test): the paper's split must fit these exactly
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def labels(counts, seed=0):
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


def expected_paper_counts(n, a):
    d = np.zeros((n, 10), dtype=int)
    d[: n // 2, :5] = a
    for j in range(n // 2):
        d[n // 2 + j, j % 5] = a // 2
        d[n // 2 + j, 5 + (j // 5) % 5] = 2 * a
    return d


def assert_disjoint_and_consistent(part, y_train, y_test):
    for idx, y, counts in ((part.train, y_train, part.train_counts), (part.test, y_test, part.test_counts)):
        flat = np.concatenate(idx)
        assert len(np.unique(flat)) == len(flat), "an image is given twice"
        assert flat.min(initial=0) >= 0 and flat.max(initial=-1) < len(y)
        for i, ix in enumerate(idx):
            assert ix.dtype == np.int64 and np.all(np.diff(ix) > 0)
            np.testing.assert_array_equal(np.bincount(y[ix], minlength=counts.shape[1]), counts[i])


@pytest.fixture(scope="module")
def mnist_like():
    return labels(MNIST_TRAIN, 1), labels(MNIST_TEST, 2)


# ------------------------------------------------------------------------- paper


def test_paper_split_exact_counts_on_mnist_class_sizes(mnist_like):
    y_train, y_test = mnist_like
    part = P.paper_split(y_train, y_test, a=196, seed=0)
    assert part.num_clients == 50 and dict(part.params) == {"num_clients": 50, "a": 196, "a_test": 32}
    np.testing.assert_array_equal(part.train_counts, expected_paper_counts(50, 196))
    np.testing.assert_array_equal(part.test_counts, expected_paper_counts(50, 32))
    # the first five classes each give 25*196 + 5*98 = 5390 images; the last five 5*392
    assert part.train_counts.sum(axis=0).tolist() == [5390] * 5 + [1960] * 5
    # group B: 5 users per last class, each with a different first class
    group_b = part.train_counts[25:]
    assert (group_b[:, 5:] > 0).sum(axis=0).tolist() == [5] * 5
    assert (group_b[:, :5] > 0).sum(axis=0).tolist() == [5] * 5
    pairs = {(int(np.flatnonzero(r[:5])[0]), int(np.flatnonzero(r[5:])[0])) for r in group_b}
    assert len(pairs) == 25
    assert_disjoint_and_consistent(part, y_train, y_test)


def test_paper_split_cifar_sizes():
    y_train, y_test = labels([5000] * 10), labels([1000] * 10)
    part = P.paper_split(y_train, y_test, a=68, seed=3)
    np.testing.assert_array_equal(part.train_counts, expected_paper_counts(50, 68))
    np.testing.assert_array_equal(part.test_counts, expected_paper_counts(50, 12))
    assert_disjoint_and_consistent(part, y_train, y_test)


def test_paper_test_rule():
    assert P.paper_test_a(196, 60000, 10000) == 32
    assert P.paper_test_a(68, 50000, 10000) == 12
    assert P.paper_test_a(20, 6000, 1200) == 4


def test_paper_split_seeding():
    y_train, y_test = labels([600] * 10), labels([120] * 10)
    a = P.paper_split(y_train, y_test, num_clients=10, a=20, seed=5)
    b = P.paper_split(y_train, y_test, num_clients=10, a=20, seed=5)
    c = P.paper_split(y_train, y_test, num_clients=10, a=20, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a.train + a.test, b.train + b.test))
    assert not all(np.array_equal(x, y) for x, y in zip(a.train, c.train))
    np.testing.assert_array_equal(a.train_counts, c.train_counts)


def test_paper_split_largest_a_that_fits(mnist_like):
    y_train, y_test = mnist_like
    # digit 4 (5,842 images) binds: 27.5 a <= 5842  <=>  a <= 212
    P.paper_split(y_train, y_test, a=212, a_test=32)
    with pytest.raises(UsageError) as e:
        P.paper_split(y_train, y_test, a=214, a_test=32)
    assert "class 4" in str(e.value) and "--a" in str(e.value)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(a=195), "--a"),
        (dict(a=0), "--a"),
        (dict(a_test=3), "--a-test"),
        (dict(num_clients=49), "--clients"),
        (dict(num_clients=0), "--clients"),
        (dict(seed=-1), "--seed"),
    ],
)
def test_paper_split_rejects_bad_parameters(mnist_like, kwargs, needle):
    with pytest.raises(UsageError) as e:
        P.paper_split(*mnist_like, **kwargs)
    assert needle in str(e.value)


def test_paper_split_needs_ten_classes():
    with pytest.raises(UsageError) as e:
        P.paper_split(labels([50] * 3), labels([10] * 3), a=4, num_clients=4)
    assert "10-class" in str(e.value)


def test_paper_split_test_set_too_small():
    with pytest.raises(UsageError) as e:
        P.paper_split(labels([600] * 10), labels([20] * 10), num_clients=10, a=20, a_test=4)
    assert "test images" in str(e.value)


# --------------------------------------------------------------------- dirichlet


def test_dirichlet_uses_every_image_once_with_shared_mix():
    y_train, y_test = labels([300] * 10, 3), labels([100] * 10, 4)
    part = P.dirichlet_split(y_train, y_test, num_clients=8, concentration=0.5, seed=1)
    assert_disjoint_and_consistent(part, y_train, y_test)
    assert sum(map(len, part.train)) == 3000 and sum(map(len, part.test)) == 1000
    share_train = part.train_counts / 300
    share_test = part.test_counts / 100
    assert np.abs(share_train - share_test).max() <= 1 / 100 + 1 / 300 + 1e-12  # rounding only


def test_dirichlet_concentration_controls_skew():
    y_train, y_test = labels([500] * 10), labels([100] * 10)

    def top_share(c):
        part = P.dirichlet_split(y_train, y_test, num_clients=20, concentration=c, seed=0)
        counts = part.train_counts
        return float(np.mean(counts.max(axis=1) / counts.sum(axis=1)))

    assert top_share(0.05) > 0.7 > 0.3 > top_share(100.0)


def test_dirichlet_min_size_seeding_and_errors():
    y_train, y_test = labels([200] * 10), labels([50] * 10)
    a = P.dirichlet_split(y_train, y_test, num_clients=30, concentration=0.1, seed=2, min_size=10)
    b = P.dirichlet_split(y_train, y_test, num_clients=30, concentration=0.1, seed=2, min_size=10)
    assert a.train_counts.sum(axis=1).min() >= 10
    assert all(np.array_equal(x, y) for x, y in zip(a.train + a.test, b.train + b.test))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UsageError, match="--concentration"):
            P.dirichlet_split(y_train, y_test, num_clients=5, concentration=bad)
    with pytest.raises(UsageError, match="--concentration"):
        P.dirichlet_split(y_train, y_test, num_clients=30, concentration=0.001, min_size=60, max_tries=5)


# ------------------------------------------------------------------------ classes


@pytest.mark.parametrize("n,k", [(50, 2), (7, 3), (10, 10), (3, 1)])
def test_k_classes_per_client(n, k):
    y_train, y_test = labels([200] * 10, 5), labels([40] * 10, 6)
    part = P.classes_split(y_train, y_test, num_clients=n, classes_per_client=k, seed=0)
    assert_disjoint_and_consistent(part, y_train, y_test)
    held = part.train_counts > 0
    assert held.sum(axis=1).tolist() == [k] * n
    np.testing.assert_array_equal(held, part.test_counts > 0)  # same classes on test
    holders = held.sum(axis=0)
    assert holders.max() - holders.min() <= 1
    # holders share each class equally; every image of a held class is used
    for c in np.flatnonzero(holders):
        shares = part.train_counts[held[:, c], c]
        assert shares.max() - shares.min() <= 1 and shares.sum() == 200


def test_k_classes_errors_and_seeding():
    y_train, y_test = labels([20] * 10), labels([5] * 10)
    with pytest.raises(UsageError, match="--classes-per-client"):
        P.classes_split(y_train, y_test, num_clients=4, classes_per_client=11)
    with pytest.raises(UsageError, match="--clients"):
        P.classes_split(y_train, y_test, num_clients=100, classes_per_client=3)
    a = P.classes_split(y_train, y_test, num_clients=6, classes_per_client=2, seed=9)
    b = P.classes_split(y_train, y_test, num_clients=6, classes_per_client=2, seed=9)
    np.testing.assert_array_equal(a.train_counts, b.train_counts)


def test_make_partition_unknown_scheme():
    with pytest.raises(UsageError) as e:
        P.make_partition("iid", labels([5] * 10), labels([1] * 10))
    assert "--scheme" in str(e.value) and "paper" in str(e.value)


# ------------------------------------------------------------------ presentation


def test_summary_plot_and_roundtrip(tmp_path):
    y_train, y_test = labels([600] * 10), labels([120] * 10)
    part = P.paper_split(y_train, y_test, num_clients=10, a=20, seed=1)
    md = P.summary_markdown(part, classes=[f"c{i}" for i in range(10)], title="toy")
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 10 + 1 and "c9" in rows[0]
    assert "| 0 | 20 / 4 |" in md and "| 5 | 10 / 2 |" in md
    png = P.plot_partition(part, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = P.load_partition(P.save_partition(part, tmp_path / "p.npz"))
    assert back.params == part.params and back.seed == part.seed and back.scheme == "paper"
    assert all(np.array_equal(x, y) for x, y in zip(back.train + back.test, part.train + part.test))
    np.testing.assert_array_equal(back.test_counts, part.test_counts)
    with pytest.raises(UsageError):
        P.load_partition(tmp_path / "p.png")


# ---------------------------------------------------------------- the real MNIST


@pytest.mark.full_data
@pytest.mark.skipif(real_data_root() is None, reason="real data not found (PERFEDAVG_DATA or ../shared/data)")
def test_paper_split_on_real_mnist(tmp_path):
    from empirical.data import load_dataset

    ds = load_dataset("mnist", real_data_root(), cache_dir=tmp_path)
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN and np.bincount(ds.y_test).tolist() == MNIST_TEST
    for seed in (0, 1):
        part = P.paper_split(ds.y_train, ds.y_test, a=P.PAPER_A["mnist"], seed=seed)
        np.testing.assert_array_equal(part.train_counts, expected_paper_counts(50, 196))
        np.testing.assert_array_equal(part.test_counts, expected_paper_counts(50, 32))
        assert_disjoint_and_consistent(part, ds.y_train, ds.y_test)
        flat = np.concatenate(part.train)
        assert len(np.unique(flat)) == 36750


# ------------------------------------------------------------- any label arrays

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 60), min_size=10, max_size=10),
    test_counts=st.lists(st.integers(0, 15), min_size=10, max_size=10),
    scheme=st.sampled_from(["paper", "dirichlet", "classes"]),
    n=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_any_split_is_disjoint_or_refused(counts, test_counts, scheme, n, seed):
    y_train, y_test = labels(counts, 1), labels(test_counts, 2)
    options = {
        "paper": dict(num_clients=2 * n, a=2, a_test=2),
        "dirichlet": dict(num_clients=n, concentration=0.3, max_tries=20),
        "classes": dict(num_clients=n, classes_per_client=2),
    }[scheme]
    try:
        part = P.make_partition(scheme, y_train, y_test, seed=seed, num_classes=10, **options)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert part.num_clients == options["num_clients"]
    assert_disjoint_and_consistent(part, y_train, y_test)
    if scheme == "paper":
        np.testing.assert_array_equal(part.train_counts, expected_paper_counts(2 * n, 2))


def test_describe_says_the_clients_once_in_words():
    """The line printed by Table 1, data partition and a task's description names no code parameter
    (``num_clients=50``): the number of clients is said once, in words."""
    y_train, y_test = labels([600] * 10), labels([100] * 10)
    text = P.paper_split(y_train, y_test, num_clients=10, a=20, seed=5).describe()
    assert "num_clients" not in text and "10 clients" in text and "a=20" in text
