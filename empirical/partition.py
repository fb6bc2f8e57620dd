r"""Splitting a labelled data set over clients: the paper's split, Dirichlet, k classes.

Every scheme is a pure, seeded function of the label arrays returning a
:class:`Partition`: per-client index arrays into the training and the test set.
Each scheme first fixes a *demand matrix* ``D[i, c]`` (how many images of class ``c``
client ``i`` holds), then :func:`_allocate` shuffles each class's indices with the
seeded generator and hands out consecutive chunks, so no image is ever given twice
and the counts are exactly ``D``.  Train and test use independent streams spawned from
the one seed.

Schemes
-------
``paper`` (docs/paper.md §7, Fallah et al. 2020, [recalled]): ``n`` clients, ``n`` even.
  Users ``0 .. n/2-1`` (group A) hold ``a`` images of each of the first five classes.
  Users ``n/2 .. n-1`` (group B): user ``n/2 + j`` holds ``a/2`` images of class
  ``j mod 5`` and ``2a`` images of class ``5 + (j div 5) mod 5``; with ``n = 50``
  that is 5 users per class in each half and all 25 (first, last) pairs once.
  MNIST: ``a = 196`` (class demand ``25·196 + 5·98 = 5390`` of the first five
  classes; digit 5 has 5421); CIFAR-10: ``a = 68``.
  **Test rule** (the paper says only "same class mix, smaller counts"): the test
  split uses the same structure with ``a_test`` = the largest even integer
  ``≤ a · N_test / N_train`` (MNIST: ``196/6 → 32``; CIFAR-10: ``68/5 → 12``),
  unless ``a_test`` is given.
``dirichlet``: for each class ``c``, proportions ``p_c ~ Dir(concentration · 1_n)``;
  the class's training images are split in proportions ``p_c`` (largest-remainder
  rounding, all images used), and its test images with the *same* ``p_c`` (same
  class mix per client).  Redrawn until every client holds ``≥ min_size`` training
  images.
``classes``: every client holds exactly ``k`` distinct classes, chosen so that the
  number of holders per class is balanced (least-used classes first, ties broken at
  random); each class's images (train and test) are shared equally among its holders.

One module past 400 lines: the three schemes share the demand-and-allocate machinery, and the short
presentation functions (table, picture, ``.npz``) belong with the :class:`Partition` they show.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perfedavg.errors import UsageError
from perfedavg.runs.rundir import atomic_write, atomic_write_bytes

__all__ = [
    "DEFAULT_CONCENTRATION",
    "PAPER_A",
    "SCHEMES",
    "Partition",
    "classes_split",
    "dirichlet_split",
    "load_partition",
    "make_partition",
    "paper_split",
    "paper_test_a",
    "plot_partition",
    "save_partition",
    "summary_markdown",
]

#: the paper's images-per-class parameter ``a`` (docs/paper.md §7)
PAPER_A = {"mnist": 196, "cifar10": 68}
SCHEMES = ("paper", "dirichlet", "classes")
#: the Dirichlet split's default concentration (``task.concentration`` and ``perfedavg data partition``):
#: 0.3 gives most users 2-4 dominant classes out of 10, a strongly but not degenerately skewed split
DEFAULT_CONCENTRATION = 0.3


@dataclasses.dataclass(frozen=True, eq=False)
class Partition:
    """Per-client index arrays into a data set's train and test arrays.

    Attributes:
        scheme: ``"paper"``, ``"dirichlet"`` or ``"classes"``.
        params: the scheme's parameters as ``(name, value)`` pairs.
        seed: the seed that fixed every random choice.
        train: ``train[i]`` is client ``i``'s sorted int64 indices into ``y_train``.
        test: ``test[i]`` is client ``i``'s sorted int64 indices into ``y_test``.
        train_counts: ``(num_clients, num_classes)`` int64 class counts per client.
        test_counts: the same for the test indices.
    """

    scheme: str
    params: tuple[tuple[str, object], ...]
    seed: int
    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    train_counts: np.ndarray
    test_counts: np.ndarray

    @property
    def num_clients(self) -> int:
        """Number of clients ``n``."""
        return len(self.train)

    @property
    def num_classes(self) -> int:
        """Number of classes (columns of the count matrices)."""
        return int(self.train_counts.shape[1])

    def describe(self) -> str:
        """One line: scheme, parameters, seed, totals (the number of clients once, in words)."""
        params = ", ".join(f"{k}={v}" for k, v in self.params if k != "num_clients")
        return (
            f"{self.scheme} split ({params}; seed {self.seed}): {self.num_clients} clients, "
            f"{int(self.train_counts.sum())} train / {int(self.test_counts.sum())} test images"
        )


# ------------------------------------------------------------------------ internals


def _labels(y, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise UsageError(f"{what}: labels must be a 1-d integer array, got shape {y.shape} {y.dtype}")
    if y.size and y.min() < 0:
        raise UsageError(f"{what}: labels must be >= 0")
    return y.astype(np.int64, copy=False)


def _num_classes(y_train, y_test, num_classes):
    inferred = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    if num_classes is None:
        return inferred
    if num_classes < inferred:
        raise UsageError(f"num_classes={num_classes} but labels go up to {inferred - 1}")
    return int(num_classes)


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
    train_ss, test_ss = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(train_ss), np.random.default_rng(test_ss)


def _allocate(y: np.ndarray, demand: np.ndarray, rng: np.random.Generator, split: str, hint: str):
    """Give client ``i`` ``demand[i, c]`` distinct random indices of class ``c``."""
    n, num_classes = demand.shape
    have = np.bincount(y, minlength=num_classes)
    need = demand.sum(axis=0)
    short = np.flatnonzero(need > have[:num_classes])
    if short.size:
        c = int(short[0])
        raise UsageError(
            f"the split needs {int(need[c])} {split} images of class {c} but the data set has {int(have[c])}; {hint}"
        )
    pieces: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c in range(num_classes):
        if need[c] == 0:
            continue
        pool = rng.permutation(np.flatnonzero(y == c))
        ends = np.cumsum(demand[:, c])
        starts = ends - demand[:, c]
        for i in np.flatnonzero(demand[:, c]):
            pieces[i].append(pool[starts[i] : ends[i]])
    return tuple(np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in pieces)


def _apportion(weights: np.ndarray, total: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Integers ``≥ 0`` summing to ``total`` in proportion to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * total
    out = np.floor(exact).astype(np.int64)
    left = int(total - out.sum())
    if left:
        frac = exact - out
        # with an rng: a random tie-break among equal remainders
        order = np.lexsort((rng.random(len(w)), -frac)) if rng is not None else np.argsort(-frac, kind="stable")
        out[order[:left]] += 1
    return out


def _partition(scheme, params, seed, y_train, y_test, d_train, d_test, r_train, r_test, hint):
    train = _allocate(y_train, d_train, r_train, "training", hint)
    test = _allocate(y_test, d_test, r_test, "test", hint)
    d_train = d_train.astype(np.int64)
    d_test = d_test.astype(np.int64)
    d_train.setflags(write=False)
    d_test.setflags(write=False)
    for arr in (*train, *test):
        arr.setflags(write=False)
    return Partition(scheme, tuple(params), int(seed), train, test, d_train, d_test)


# -------------------------------------------------------------------------- schemes


def paper_test_a(a: int, num_train: int, num_test: int) -> int:
    r"""The test-split ``a``: largest even integer ``≤ a · num_test / num_train``."""
    return int(2 * ((a * num_test) // (2 * num_train)))


def paper_split(
    y_train,
    y_test,
    *,
    num_clients: int = 50,
    a: int = 196,
    a_test: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> Partition:
    r"""The paper's split (docs/paper.md §7): two groups of ``num_clients / 2`` users.

    Group A (users ``0 .. n/2-1``): ``a`` images of each class ``0..4``.
    Group B (user ``n/2 + j``): ``a/2`` of class ``j mod 5`` and ``2a`` of class
    ``5 + (j div 5) mod 5``.  The test split repeats it with ``a_test`` (default
    :func:`paper_test_a`).

    Args:
        y_train: training labels (10 classes).
        y_test: test labels.
        num_clients: ``n``, even (paper: 50).
        a: images per class ``a``, even (paper: 196 MNIST, 68 CIFAR-10).
        a_test: ``a`` of the test split; ``None``: largest even ``≤ a·N_test/N_train``.
        seed: fixes which images each user gets.
        num_classes: must be 10 (inferred from the labels when ``None``).

    Raises:
        UsageError: bad parameters or too few images of some class.
    """
    y_train, y_test = _labels(y_train, "y_train"), _labels(y_test, "y_test")
    k = _num_classes(y_train, y_test, num_classes)
    if k != 10:
        raise UsageError(f"--scheme paper needs a 10-class data set (first five / last five), got {k} classes")
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 2 or num_clients % 2:
        raise UsageError(f"--clients must be an even integer >= 2 for --scheme paper, got {num_clients}")
    if a_test is None:
        a_test = paper_test_a(a, len(y_train), len(y_test))
    for opt, val in (("--a", a), ("--a-test", a_test)):
        if not isinstance(val, (int, np.integer)) or val < 2 or val % 2:
            raise UsageError(f"{opt} must be an even integer >= 2 (a/2 must be whole), got {val}")
    r_train, r_test = _streams(seed)
    half = num_clients // 2

    def demand(aa):
        d = np.zeros((num_clients, 10), dtype=np.int64)
        d[:half, :5] = aa
        for j in range(half):
            d[half + j, j % 5] = aa // 2
            d[half + j, 5 + (j // 5) % 5] = 2 * aa
        return d

    hint = "lower --a / --a-test or --clients"
    params = (("num_clients", int(num_clients)), ("a", int(a)), ("a_test", int(a_test)))
    return _partition("paper", params, seed, y_train, y_test, demand(a), demand(a_test), r_train, r_test, hint)


def dirichlet_split(
    y_train,
    y_test,
    *,
    num_clients: int,
    concentration: float,
    seed: int = 0,
    min_size: int = 1,
    num_classes: int | None = None,
    max_tries: int = 1000,
) -> Partition:
    r"""Label-skewed split: class ``c`` is spread as ``p_c ~ Dir(concentration · 1_n)``.

    All images are used; client ``i`` gets ``≈ p_c[i] · N_c`` training and
    ``≈ p_c[i] · N_c^{test}`` test images of class ``c`` (largest-remainder rounding),
    so train and test share each client's class mix.  Small ``concentration`` means
    more skew.  Draws are repeated until each client has ``≥ min_size`` training
    images.

    Raises:
        UsageError: bad parameters, or no draw within ``max_tries`` met ``min_size``.
    """
    y_train, y_test = _labels(y_train, "y_train"), _labels(y_test, "y_test")
    k = _num_classes(y_train, y_test, num_classes)
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise UsageError(f"--clients must be a positive integer, got {num_clients}")
    if not (isinstance(concentration, (int, float, np.floating)) and concentration > 0 and np.isfinite(concentration)):
        raise UsageError(f"--concentration must be a positive number, got {concentration}")
    if min_size * num_clients > len(y_train):
        raise UsageError(f"--clients {num_clients} x min size {min_size} exceeds the {len(y_train)} training images")
    r_train, r_test = _streams(seed)
    n_train = np.bincount(y_train, minlength=k)
    n_test = np.bincount(y_test, minlength=k)
    for _ in range(max_tries):
        p = r_train.dirichlet(np.full(num_clients, float(concentration)), size=k)  # (k, n)
        if not np.isfinite(p).all() or (p.sum(axis=1) <= 0).any():
            continue  # underflow at tiny concentrations: redraw
        d_train = np.stack([_apportion(p[c], int(n_train[c]), r_train) for c in range(k)], axis=1)
        if d_train.sum(axis=1).min() >= min_size:
            break
    else:
        raise UsageError(
            f"--concentration {concentration} leaves some of {num_clients} clients with fewer than "
            f"{min_size} images in {max_tries} draws; raise --concentration or lower --clients"
        )
    d_test = np.stack([_apportion(p[c], int(n_test[c]), r_test) for c in range(k)], axis=1)
    params = (("num_clients", int(num_clients)), ("concentration", float(concentration)), ("min_size", int(min_size)))
    return _partition("dirichlet", params, seed, y_train, y_test, d_train, d_test, r_train, r_test, "")


def classes_split(
    y_train,
    y_test,
    *,
    num_clients: int,
    classes_per_client: int,
    seed: int = 0,
    num_classes: int | None = None,
) -> Partition:
    r"""Each client holds exactly ``classes_per_client`` distinct classes.

    Classes are dealt so that holders per class differ by at most one (least-used
    first, random tie-break); each class's train and test images are shared
    equally among its holders (all images of held classes used).

    Raises:
        UsageError: ``classes_per_client`` outside ``1..num_classes``, or a class
            with fewer images than holders.
    """
    y_train, y_test = _labels(y_train, "y_train"), _labels(y_test, "y_test")
    k = _num_classes(y_train, y_test, num_classes)
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise UsageError(f"--clients must be a positive integer, got {num_clients}")
    if not isinstance(classes_per_client, (int, np.integer)) or not 1 <= classes_per_client <= k:
        raise UsageError(f"--classes-per-client must be an integer in 1..{k}, got {classes_per_client}")
    r_train, r_test = _streams(seed)
    holds = np.zeros((num_clients, k), dtype=bool)
    usage = np.zeros(k, dtype=np.int64)
    for i in range(num_clients):
        chosen = np.argsort(usage + r_train.random(k), kind="stable")[:classes_per_client]
        holds[i, chosen] = True
        usage[chosen] += 1
    n_train = np.bincount(y_train, minlength=k)
    n_test = np.bincount(y_test, minlength=k)
    for c in np.flatnonzero(usage):
        if n_train[c] < usage[c]:
            raise UsageError(
                f"class {c} has {n_train[c]} training images for {usage[c]} clients; "
                "lower --clients or --classes-per-client"
            )

    def demand(counts, rng):
        d = np.zeros((num_clients, k), dtype=np.int64)
        for c in np.flatnonzero(usage):
            d[holds[:, c], c] = _apportion(np.ones(usage[c]), int(counts[c]), rng)
        return d

    params = (("num_clients", int(num_clients)), ("classes_per_client", int(classes_per_client)))
    return _partition(
        "classes",
        params,
        seed,
        y_train,
        y_test,
        demand(n_train, r_train),
        demand(n_test, r_test),
        r_train,
        r_test,
        "",
    )


def make_partition(scheme: str, y_train, y_test, *, seed: int = 0, **options) -> Partition:
    """Dispatch on ``scheme`` (``"paper"``, ``"dirichlet"``, ``"classes"``)."""
    table: dict[str, Callable[..., Partition]] = {
        "paper": paper_split,
        "dirichlet": dirichlet_split,
        "classes": classes_split,
    }
    if scheme not in table:
        raise UsageError(f"--scheme {scheme!r} is not known; allowed: {', '.join(SCHEMES)}")
    return table[scheme](y_train, y_test, seed=seed, **options)


# -------------------------------------------------------------------- presentation


def summary_markdown(partition: Partition, classes=None, title: str | None = None) -> str:
    """Markdown table: one row per client, ``train / test`` image counts per class."""
    k = partition.num_classes
    names = [str(c) for c in (classes if classes is not None else range(k))]
    tr, te = partition.train_counts, partition.test_counts
    lines = [
        f"# {title or 'Partition'}",
        "",
        partition.describe(),
        "",
        "Cells: training / test images of each class held by each client.",
        "",
    ]
    lines.append("| client | " + " | ".join(names) + " | total |")
    lines.append("| ---: | " + " | ".join("---:" for _ in names) + " | ---: |")
    for i in range(partition.num_clients):
        cells = [f"{tr[i, c]} / {te[i, c]}" if tr[i, c] or te[i, c] else "·" for c in range(k)]
        lines.append(f"| {i} | " + " | ".join(cells) + f" | {tr[i].sum()} / {te[i].sum()} |")
    tot = [f"{tr[:, c].sum()} / {te[:, c].sum()}" for c in range(k)]
    lines.append("| **all** | " + " | ".join(tot) + f" | {tr.sum()} / {te.sum()} |")
    return "\n".join(lines) + "\n"


def plot_partition(partition: Partition, path: str | os.PathLike, classes=None, title: str | None = None) -> Path:
    """Heatmaps (clients × classes) of training and test counts, saved as PNG atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    k, n = partition.num_classes, partition.num_clients
    names = [str(c) for c in (classes if classes is not None else range(k))]
    fig = Figure(figsize=(4 + 0.45 * k * 2, 2 + 0.16 * n), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, counts, which in zip(axes, (partition.train_counts, partition.test_counts), ("train", "test")):
        image = ax.imshow(counts, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 2 else 0)
        ax.set_xlabel("class")
        ax.set_title(f"{which} images per client and class")
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[0].set_ylabel("client")
    fig.suptitle(title or partition.describe(), fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def save_partition(partition: Partition, path: str | os.PathLike) -> Path:
    """Write the index arrays and metadata to an ``.npz`` file atomically."""

    def flat(parts):
        sizes = np.asarray([len(p) for p in parts], dtype=np.int64)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64), sizes

    tr, tr_sizes = flat(partition.train)
    te, te_sizes = flat(partition.test)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        np.savez(
            handle,
            scheme=partition.scheme,
            seed=partition.seed,
            param_names=np.asarray([k for k, _ in partition.params], dtype=str),
            param_values=np.asarray([repr(v) for _, v in partition.params], dtype=str),
            train=tr,
            train_sizes=tr_sizes,
            test=te,
            test_sizes=te_sizes,
            train_counts=partition.train_counts,
            test_counts=partition.test_counts,
        )
    return Path(path)


def load_partition(path: str | os.PathLike) -> Partition:
    """Read a partition written by :func:`save_partition`."""
    try:
        with np.load(path, allow_pickle=False) as z:

            def split(flat, sizes):
                return tuple(np.split(flat, np.cumsum(sizes)[:-1])) if len(sizes) else ()

            params = tuple((str(k), ast.literal_eval(str(v))) for k, v in zip(z["param_names"], z["param_values"]))
            return Partition(
                str(z["scheme"]),
                params,
                int(z["seed"]),
                split(z["train"], z["train_sizes"]),
                split(z["test"], z["test_sizes"]),
                z["train_counts"],
                z["test_counts"],
            )
    except (OSError, KeyError, ValueError, SyntaxError) as exc:
        raise UsageError(f"{path}: not a partition file written by perfedavg ({exc})") from exc
