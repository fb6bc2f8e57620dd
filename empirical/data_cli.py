"""``perfedavg data``: find, check and describe data sets; write partition summaries.

``perfedavg data info --dataset mnist`` says where the data were found (and how that
folder was chosen), decodes them (using the cache) and prints sizes and statistics.
``perfedavg data partition --dataset mnist --scheme paper --out DIR`` writes
``DIR/partition.md`` (counts per client and class), ``DIR/partition.png`` (a heatmap of
who holds what) and ``DIR/partition.npz`` (the index arrays), each atomically.

``perfedavg --help`` loads this module: the data and partition modules (numpy) are imported
inside the commands.
"""

from __future__ import annotations

import argparse
import time

from perfedavg.errors import UsageError
from perfedavg.outputs import output_dir
from perfedavg.runs.rundir import atomic_write_text

_DATA_HELP = (
    "data root [default: $PERFEDAVG_DATA, else the user cache $XDG_CACHE_HOME/perfedavg or "
    "~/.cache/perfedavg]. MNIST: DIR/MNIST/raw/*-ubyte[.gz] or flat; CIFAR-10: "
    "DIR/cifar-10-batches-py/ (official) or DIR/CIFAR-10-jpeg/ (class folders); "
    "folder:NAME: DIR/NAME/{train,test}/<class>/*.png|jpg"
)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help="mnist, cifar10, or folder:NAME (a class-folder image set under the data root)",
    )
    parser.add_argument("--data-dir", metavar="DIR", help=_DATA_HELP)
    parser.add_argument(
        "--download",
        action="store_true",
        help="if missing, fetch the official archives (mnist, cifar10) into the data root, checking their md5 sums",
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="where decoded arrays are cached as .npz [default: <user cache>/decoded]"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="decode the source files, do not read or write the cache"
    )


def register(sub) -> None:
    """Add the ``data`` subcommand (with ``info`` and ``partition``) to ``sub``."""
    parser = sub.add_parser(
        "data",
        help="find and check data sets; write partition tables and pictures",
        description="Find, check and describe the data sets (MNIST, CIFAR-10, class-folder image sets) "
        "and write summaries of client partitions.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    info = actions.add_parser(
        "info",
        help="say where a data set was found and describe it",
        description="Locate a data set, decode it (through the cache) and print its size, classes and "
        "per-channel mean/std. For MNIST also checks the md5 sums of the uncompressed IDX files against "
        "the published ones.",
    )
    _add_data_options(info)
    info.set_defaults(func=info_main)

    part = actions.add_parser(
        "partition",
        help="split a data set over clients; write a table and a picture",
        description="Split a data set over clients with a seeded scheme and write DIR/partition.md "
        "(train / test counts per client and class), DIR/partition.png (heatmap) and DIR/partition.npz "
        "(index arrays), each written atomically. Schemes: 'paper' (docs/paper.md §7: half the clients "
        "hold a images of each of classes 0-4, the others a/2 of one of classes 0-4 and 2a of one of "
        "classes 5-9; test split alike with a_test = largest even number <= a*N_test/N_train); "
        "'dirichlet' (class c spread as Dir(concentration), same mix on test); 'classes' (k classes "
        "per client, shared equally).",
    )
    _add_data_options(part)
    part.add_argument(
        "--scheme", choices=("paper", "dirichlet", "classes"), default="paper", help="how to split [default: paper]"
    )
    part.add_argument("--clients", type=int, default=50, metavar="N", help="number of clients n [default: 50]")
    part.add_argument("--seed", type=int, default=0, help="seed fixing every random choice [default: 0]")
    part.add_argument(
        "--a", type=int, metavar="A", help="paper: images per class a, even [default: 196 for mnist, 68 for cifar10]"
    )
    part.add_argument(
        "--a-test", type=int, metavar="A", help="paper: a of the test split [default: largest even <= a*N_test/N_train]"
    )
    part.add_argument(
        "--concentration",
        type=float,
        default=None,
        metavar="C",
        help="dirichlet: concentration c > 0, smaller is more skewed [default: 0.3, as the task option "
        "task.concentration]",
    )
    part.add_argument(
        "--min-size",
        type=int,
        default=1,
        metavar="M",
        help="dirichlet: redraw until every client holds >= M training images [default: 1]",
    )
    part.add_argument(
        "--classes-per-client",
        type=int,
        default=2,
        metavar="K",
        help="classes: distinct classes per client [default: 2]",
    )
    part.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for partition.md, partition.png and partition.npz (created if needed)",
    )
    part.set_defaults(func=partition_main)


def _load(args):
    from .data import load_dataset

    return load_dataset(
        args.dataset, args.data_dir, download=args.download, cache_dir=args.cache_dir, use_cache=not args.no_cache
    )


def info_main(args) -> int:
    """``perfedavg data info``: print where the data are and what they hold."""
    from .data import locate, verify_mnist

    start = time.perf_counter()
    dataset = _load(args)
    seconds = time.perf_counter() - start
    src = locate(args.dataset, args.data_dir)
    print(
        f"{dataset.label}: found in {src.path} ({src.format}, {len(src.files)} files; "
        f"data root {src.root} from {src.root_from})"
    )
    print(dataset.describe())
    print(f"classes: {', '.join(dataset.classes)}")
    print(f"loaded in {seconds:.2f} s ({'decoded-array cache' if dataset.from_cache else 'decoded from source'})")
    if dataset.jpeg_copy:
        print("note: JPEG re-encoding of CIFAR-10; label every result 'CIFAR-10 (JPEG copy)'")
    status = 0
    if src.format == "idx":
        for stem, (measured, published) in verify_mnist(src).items():
            ok = measured == published
            status |= 0 if ok else 1
            print(f"md5 {stem}: {measured} {'ok' if ok else 'DIFFERS from published ' + published}")
    return status


def partition_main(args) -> int:
    """``perfedavg data partition``: split, then write the table, picture and indices."""
    from .partition import (
        DEFAULT_CONCENTRATION,
        PAPER_A,
        make_partition,
        plot_partition,
        save_partition,
        summary_markdown,
    )

    out = output_dir(args.out, "--out")  # before minutes of decoding
    dataset = _load(args)
    if args.scheme == "paper":
        a = args.a if args.a is not None else PAPER_A.get(dataset.name)
        if a is None:
            raise UsageError(f"--a is required for --scheme paper on {dataset.name} (paper: mnist 196, cifar10 68)")
        options = dict(num_clients=args.clients, a=a, a_test=args.a_test)
    elif args.scheme == "dirichlet":
        concentration = DEFAULT_CONCENTRATION if args.concentration is None else args.concentration
        options = dict(num_clients=args.clients, concentration=concentration, min_size=args.min_size)
    else:
        options = dict(num_clients=args.clients, classes_per_client=args.classes_per_client)
    part = make_partition(args.scheme, dataset.y_train, dataset.y_test, seed=args.seed, **options)
    title = f"{dataset.label}: {part.describe()}"
    atomic_write_text(out / "partition.md", summary_markdown(part, dataset.classes, title=title))
    plot_partition(part, out / "partition.png", dataset.classes, title=title)
    save_partition(part, out / "partition.npz")
    print(title)
    print(f"wrote {out / 'partition.md'}, {out / 'partition.png'}, {out / 'partition.npz'}")
    return 0
