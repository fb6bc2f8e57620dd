r"""MNIST and CIFAR-10 as engine tasks (docs/paper.md §7).

The paper's model is an MLP with hidden layers 80 and 60 and ELU activations on
flattened inputs normalized with the data set's per-channel statistics [sure, from
several readers]; the same MLP on flattened CIFAR-10.  ``normalize = "none"`` feeds
plain :math:`x/255` instead, for the ablation that asks whether the paper's lower
numbers come from unnormalized inputs (see ``docs``/Table 1 notes).  Users are the partition's
clients (the paper's split by default: n = 50, a = 196 for MNIST, 68 for CIFAR-10).
Each user's :math:`p_i` is uniform over its own images, and batches are drawn without
replacement, as a data loader would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from perfedavg.engine.mlp import ROUND_STRATEGIES, mlp_oracle_factory
from perfedavg.engine.models import mlp, mlp_num_params
from perfedavg.engine.task import ClientData, Task
from perfedavg.runs.holdout import holdout_field
from perfedavg.runs.registry import TaskSpec, check_option, option_field

from .data import load_dataset
from .partition import DEFAULT_CONCENTRATION, PAPER_A, make_partition

PARTITIONS = ("paper", "dirichlet", "classes")
#: input scalings: ``dataset`` = (x/255 - mean_c)/std_c with the training set's per-channel statistics; ``none`` = x/255
NORMALIZATIONS = ("dataset", "none")


@dataclass(frozen=True)
class ImageTaskOptions:
    """Options of the MNIST / CIFAR-10 tasks."""

    data_dir: str = option_field("data root ('' = $PERFEDAVG_DATA, else the user cache)", "")
    download: bool = option_field("download the official archives when the data are missing (needs network)", False)
    partition: str = option_field("users' split: paper | dirichlet | classes", "paper")
    n_clients: int = option_field("number of users n (>= 2; even for the paper's split)", 50)
    a: int = option_field("paper split: images per class a (0 = the paper's: 196 MNIST, 68 CIFAR-10)", 0)
    concentration: float = option_field("dirichlet split: concentration c (> 0)", DEFAULT_CONCENTRATION)
    classes_per_client: int = option_field("classes split: classes per user k (>= 1)", 2)
    partition_seed: int = option_field("seed of the split (>= 0)", 0)
    holdout_users: float = holdout_field()
    hidden: tuple = option_field("hidden layer widths of the MLP (paper: [80, 60])", (80, 60))
    activation: str = option_field("hidden activation: elu (paper) | relu | tanh", "elu")
    normalize: str = option_field(
        "input scaling: dataset = (x/255 - mean)/std with the training set's per-channel "
        "statistics (default) | none = plain x/255",
        "dataset",
    )
    round_strategy: str = option_field(
        "how the engine's MLP oracle runs a round: auto (per local step, or whole rounds in the users' sample "
        "space when that costs fewer first-layer multiply-adds, e.g. CIFAR-10 at tau = 10) | steps | sample_space; "
        "the same draws and the same arithmetic rearranged, so results differ at round-off only (a speed knob for "
        "where auto picks the slower way)",
        "auto",
    )

    def __post_init__(self) -> None:
        check_option(
            "image", "partition", self.partition, self.partition in PARTITIONS, f"one of {', '.join(PARTITIONS)}"
        )
        check_option(
            "image",
            "n_clients",
            self.n_clients,
            isinstance(self.n_clients, int) and self.n_clients >= 2,
            "an integer >= 2",
        )
        check_option("image", "a", self.a, isinstance(self.a, int) and self.a >= 0, "an integer >= 0")
        check_option("image", "concentration", self.concentration, self.concentration > 0, "> 0")
        check_option("image", "classes_per_client", self.classes_per_client, self.classes_per_client >= 1, ">= 1")
        check_option("image", "partition_seed", self.partition_seed, self.partition_seed >= 0, ">= 0")
        check_option("image", "normalize", self.normalize, self.normalize in NORMALIZATIONS, " | ".join(NORMALIZATIONS))
        check_option(
            "image", "activation", self.activation, self.activation in ("elu", "relu", "tanh"), "elu | relu | tanh"
        )
        check_option(
            "image",
            "round_strategy",
            self.round_strategy,
            self.round_strategy in ROUND_STRATEGIES,
            " | ".join(ROUND_STRATEGIES),
        )
        try:
            hidden = tuple(self.hidden)
        except TypeError:
            hidden = (None,)
        check_option(
            "image", "hidden", self.hidden, all(isinstance(h, int) and h >= 1 for h in hidden), "a list of widths >= 1"
        )
        object.__setattr__(self, "hidden", list(hidden))


def normalized(x: np.ndarray, mean, std) -> torch.Tensor:
    r"""Flattened inputs :math:`(x/255 - \mu_c)/\sigma_c`, one row per image, float32."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32) / 255.0
    mean = torch.tensor(mean, dtype=torch.float32)
    std = torch.tensor(std, dtype=torch.float32)
    return ((t - mean) / std).flatten(1) if t.dim() == 4 else ((t - mean[0]) / std[0]).flatten(1)


def input_statistics(ds, normalize: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) that :func:`normalized` uses for ``task.normalize``:
    the data set's own (``dataset``) or (0, 1), i.e. plain x/255 (``none``)."""
    if normalize == "none":
        return (0.0,) * len(ds.mean), (1.0,) * len(ds.std)
    return tuple(ds.mean), tuple(ds.std)


def _client_data(x: np.ndarray, y: np.ndarray, parts, mean, std) -> ClientData:
    """Keep only the images some user holds (pooled once), with each user's index list into them."""
    used = np.concatenate(parts)
    remap = {int(j): k for k, j in enumerate(used)}
    lists = [[remap[int(j)] for j in part] for part in parts]
    return ClientData.from_lists(normalized(x[used], mean, std), torch.from_numpy(y[used]).long(), lists)


def partition_options(name: str, o: ImageTaskOptions) -> dict[str, Any]:
    """The keyword arguments of :func:`empirical.partition.make_partition` that ``o`` describes."""
    by_scheme: dict[str, dict[str, Any]] = {
        "paper": {"num_clients": o.n_clients, "a": o.a or PAPER_A[name]},
        "dirichlet": {"num_clients": o.n_clients, "concentration": o.concentration},
        "classes": {"num_clients": o.n_clients, "classes_per_client": o.classes_per_client},
    }
    return by_scheme[o.partition]


def build_image_task(name: str, o: ImageTaskOptions) -> Task:
    """The ``name`` task (``mnist`` or ``cifar10``): the data set split among users as ``o`` says, the MLP."""
    ds = load_dataset(name, o.data_dir or None, download=o.download)
    part = make_partition(o.partition, ds.y_train, ds.y_test, seed=o.partition_seed, **partition_options(name, o))
    mean, std = input_statistics(ds, o.normalize)
    train = _client_data(ds.x_train, ds.y_train, part.train, mean, std)
    test = _client_data(ds.x_test, ds.y_test, part.test, mean, std)
    sizes = (int(train.x.shape[1]), *o.hidden, ds.num_classes)
    loss, scores, init = mlp(sizes, o.activation)
    return Task(
        name=name,
        per_sample_loss=loss,
        scores=scores,
        init_params=lambda g: init(g, dtype=torch.float32),
        train=train,
        test=test,
        batch_with_replacement=False,
        oracle_factory=mlp_oracle_factory(sizes, o.activation, o.round_strategy),
        description=f"{ds.label}, {part.describe()}, inputs {_scaling(o.normalize)}, "
        f"MLP {'-'.join(map(str, sizes))} {o.activation} ({mlp_num_params(sizes)} parameters)",
        label=ds.label,
        groups=paper_groups(train.n_clients) if o.partition == "paper" else (),
    )


def paper_groups(n: int) -> tuple[int, ...]:
    """The paper split's groups (:func:`empirical.partition.paper_split`): users ``0..n/2-1`` hold five
    classes (group 0), users ``n/2..n-1`` two (group 1)."""
    return (0,) * (n // 2) + (1,) * (n - n // 2)


def _scaling(normalize: str) -> str:
    return "x/255 (not normalized)" if normalize == "none" else "normalized with the data set's statistics"


MNIST = TaskSpec(ImageTaskOptions, lambda o: build_image_task("mnist", o), "MNIST, the paper's split and MLP")
CIFAR10 = TaskSpec(ImageTaskOptions, lambda o: build_image_task("cifar10", o), "CIFAR-10, the paper's split and MLP")
