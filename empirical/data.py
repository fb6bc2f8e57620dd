r"""Loading the paper's data sets (MNIST, CIFAR-10) and any class-folder image set.

Formats read
------------
* **MNIST**: the four official IDX files (``train-images-idx3-ubyte`` ...), gzipped or
  not, in torchvision's ``<root>/MNIST/raw/`` layout, in ``<root>/MNIST/`` or flat in
  ``<root>``.  Magic numbers, dimensions and file sizes are checked.
* **CIFAR-10**: the official python pickle batches in ``<root>/cifar-10-batches-py/``
  (read with an unpickler that only admits numpy arrays), or, when those are absent,
  a class-folder copy in ``<root>/CIFAR-10-jpeg/`` -- then the data set is labelled
  ``"CIFAR-10 (JPEG copy)"`` and :attr:`Dataset.jpeg_copy` is true, so that results
  computed on it say so.
* **Class folders** (``folder:NAME``): ``<root>/NAME/train/<class>/*.png|jpg|jpeg``
  and ``<root>/NAME/test/<class>/...``, decoded with Pillow; label = index of the
  class in sorted order.

Where the data are looked for (:func:`resolve_root`): the explicit ``data_dir``
argument (CLI ``--data-dir``), else the environment variable ``PERFEDAVG_DATA``, else
the user cache directory (``$XDG_CACHE_HOME/perfedavg`` or ``~/.cache/perfedavg``),
which is also where ``download=True`` puts the official archives (md5-checked,
written atomically).

Decoded arrays are cached as ``.npz`` under ``<cache>/decoded/`` (atomic write), keyed
on the source files' paths, sizes and modification times *and their contents*
(:func:`_content_fingerprint`): the bytes of every IDX / pickle file are hashed (cheap
next to decoding), so even a same-size edit with its modification time restored
invalidates the cache; for a class-folder set (60,000 JPEG files for the CIFAR-10 copy)
the bytes of every :data:`FOLDER_HASH_EVERY`-th file are hashed, plus every file's size
and time -- hashing all of them would cost several times the whole cached load, and an
edit of the same size with a restored time in an unsampled image goes unnoticed (as it
would while decoding: JPEG has no checksum).  Any corrupt or truncated source file raises
:class:`perfedavg.errors.UsageError` naming the file -- never a silent wrong array; the
four official MNIST files are also checked against their published md5 sums
(:data:`MNIST_RAW_MD5`) whenever they are decoded.

One module past 400 lines: locating, decoding, caching and downloading read the same module
constants (file names, md5 sums, mirrors, URLs), which a test or a user patches in this one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from perfedavg.errors import UsageError
from perfedavg.runs.rundir import atomic_write

from ._io import md5_bytes, md5_file

__all__ = [
    "DATASET_CHOICES",
    "MNIST_RAW_MD5",
    "DataSource",
    "Dataset",
    "cache_root",
    "download_dataset",
    "load_dataset",
    "locate",
    "parse_dataset_name",
    "resolve_root",
    "verify_mnist",
]

#: what ``--dataset`` accepts (NAME is a sub-folder of the data root)
DATASET_CHOICES = "mnist, cifar10, folder:NAME"
ENV_DATA = "PERFEDAVG_DATA"
#: bump when the cached array layout or its key changes
CACHE_VERSION = 2
#: class-folder sets: hash the bytes of every N-th file for the cache key (see the module notes)
FOLDER_HASH_EVERY = 64

MNIST_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: published md5 sums of the *uncompressed* official MNIST files
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: the official files' IDX dimensions: a file with these is checked against :data:`MNIST_RAW_MD5`
#: (other IDX data under MNIST's names, e.g. a test fixture, are only checked structurally)
MNIST_OFFICIAL_DIMS = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
#: md5 sums of the official ``.gz`` archives (what the mirrors serve)
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
#: class-folder copies of CIFAR-10 accepted when the pickles are absent
CIFAR10_JPEG_DIRS = ("CIFAR-10-jpeg", "cifar-10-jpeg", "cifar10-jpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_TIMEOUT_S = 60


# --------------------------------------------------------------------------- types


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a data set was found, before decoding.

    Attributes:
        name: canonical name (``"mnist"``, ``"cifar10"``, ``"folder:NAME"``).
        label: how results must be labelled (e.g. ``"CIFAR-10 (JPEG copy)"``).
        format: ``"idx"``, ``"cifar-pickle"`` or ``"folder"``.
        path: the folder holding the files.
        files: the source files, relative to ``path``, sorted.
        root: the data root searched.
        root_from: how the root was chosen (``"--data-dir"``, ``"PERFEDAVG_DATA"``,
            ``"user cache"``).
    """

    name: str
    label: str
    format: str
    path: Path
    files: tuple[str, ...]
    root: Path
    root_from: str

    @property
    def jpeg_copy(self) -> bool:
        """True for the JPEG re-encoding of CIFAR-10 (pixels differ from the official)."""
        return self.name == "cifar10" and self.format == "folder"


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A decoded image classification data set (arrays are read-only).

    Attributes:
        name: canonical name (``"mnist"``, ``"cifar10"``, ``"folder:NAME"``).
        label: label to print next to any result (``"MNIST"``, ``"CIFAR-10"``,
            ``"CIFAR-10 (JPEG copy)"``, ``NAME``).
        x_train: uint8 images, shape ``(N, H, W)`` (grey) or ``(N, H, W, C)``.
        y_train: int64 labels in ``[0, len(classes))``, shape ``(N,)``.
        x_test: uint8 test images, same layout as ``x_train``.
        y_test: int64 test labels.
        classes: class names; label ``k`` is ``classes[k]``.
        mean: per-channel pixel mean of the training set, pixels scaled to [0, 1].
        std: per-channel pixel standard deviation (population) on the same scale.
        source: folder the arrays were decoded from.
        format: ``"idx"``, ``"cifar-pickle"`` or ``"folder"``.
        jpeg_copy: true for the JPEG copy of CIFAR-10.
        from_cache: true when the arrays came from the decoded-array cache.
    """

    name: str
    label: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    format: str
    jpeg_copy: bool = False
    from_cache: bool = False

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, ``(H, W)`` or ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        """One line: label, sizes, image shape, normalization statistics."""
        fmt = lambda v: "/".join(f"{x:.4f}" for x in v)  # noqa: E731
        return (
            f"{self.label}: {len(self.y_train)} train / {len(self.y_test)} test images "
            f"{'x'.join(map(str, self.image_shape))} uint8, {self.num_classes} classes, "
            f"mean {fmt(self.mean)}, std {fmt(self.std)}"
        )


# --------------------------------------------------------------------- roots & names


def cache_root() -> Path:
    """The user cache directory: ``$XDG_CACHE_HOME/perfedavg`` or ``~/.cache/perfedavg``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "perfedavg"


def resolve_root(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Data root and how it was chosen: ``data_dir``, else ``$PERFEDAVG_DATA``, else cache.

    Returns:
        ``(root, origin)`` with origin ``"--data-dir"``, ``"PERFEDAVG_DATA"`` or
        ``"user cache"``.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser(), ENV_DATA
    return cache_root(), "user cache"


def parse_dataset_name(name: str) -> tuple[str, str | None]:
    """Split a ``--dataset`` value into ``(kind, folder_name)``.

    ``"mnist"`` -> ``("mnist", None)``; ``"cifar10"`` (also ``"cifar-10"``) ->
    ``("cifar10", None)``; ``"folder:NAME"`` -> ``("folder", "NAME")``.
    """
    text = str(name).strip()
    low = text.lower()
    if low == "mnist":
        return "mnist", None
    if low in ("cifar10", "cifar-10"):
        return "cifar10", None
    if low.startswith("folder:"):
        folder = text.split(":", 1)[1].strip()
        if folder and Path(folder).name == folder and folder not in (".", ".."):
            return "folder", folder
        raise UsageError(f"--dataset {text!r}: folder:NAME needs NAME to be one folder name under the data root")
    raise UsageError(f"--dataset {text!r} is not known; allowed: {DATASET_CHOICES}")


def _canonical(kind: str, folder: str | None) -> str:
    return f"folder:{folder}" if kind == "folder" else kind


def _how_to_provide(what: str, root: Path, downloadable: bool) -> str:
    third = f"or fetch the official archives with --download (into {root})" if downloadable else f"or copy it to {root}"
    return f"provide {what} with --data-dir DIR, or the environment variable {ENV_DATA}=DIR, {third}"


# ------------------------------------------------------------------------- locating


def _mnist_files(folder: Path) -> dict[str, Path]:
    found = {}
    for key, stem in MNIST_STEMS.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
    return found


def _list_images(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        names = sorted(
            e.name
            for e in entries
            if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()
        )
    return [folder / n for n in names]


def _class_dirs(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _folder_files(folder: Path) -> tuple[str, ...]:
    files: list[str] = []
    for split in ("train", "test"):
        split_dir = folder / split
        if not split_dir.is_dir():
            continue
        for cls in _class_dirs(split_dir):
            files.extend(p.relative_to(folder).as_posix() for p in _list_images(split_dir / cls))
    return tuple(files)


def locate(name: str, data_dir: str | os.PathLike | None = None) -> DataSource:
    """Find a data set's files under the data root, without decoding them.

    Raises:
        UsageError: the data set is not there (one line listing the three ways to
            provide it) or only partly there (naming the missing files).
    """
    kind, folder = parse_dataset_name(name)
    root, origin = resolve_root(data_dir)
    canonical = _canonical(kind, folder)

    def source(label, fmt, path, files):
        return DataSource(canonical, label, fmt, path, tuple(files), root, origin)

    if kind == "mnist":
        for cand in (root / "MNIST" / "raw", root / "MNIST", root / "mnist", root):
            if not cand.is_dir():
                continue
            found = _mnist_files(cand)
            if len(found) == 4:
                return source("MNIST", "idx", cand, sorted(p.name for p in found.values()))
            if found:
                missing = [s for k, s in MNIST_STEMS.items() if k not in found]
                raise UsageError(
                    f"MNIST in {cand} is incomplete: missing {', '.join(missing)} (or .gz); "
                    + _how_to_provide("all four IDX files", root, True)
                )
        raise UsageError(
            f"MNIST not found under {root} (from {origin}; looked for "
            f"MNIST/raw/{MNIST_STEMS['train_images']}[.gz] and the flat layout); " + _how_to_provide("it", root, True)
        )

    if kind == "cifar10":
        pickles = root / CIFAR10_DIR
        if pickles.is_dir():
            names = [*CIFAR10_TRAIN, CIFAR10_TEST]
            missing = [n for n in names if not (pickles / n).is_file()]
            if missing:
                raise UsageError(
                    f"CIFAR-10 in {pickles} is incomplete: missing {', '.join(missing)}; "
                    + _how_to_provide("the official python batches", root, True)
                )
            files = names + (["batches.meta"] if (pickles / "batches.meta").is_file() else [])
            return source("CIFAR-10", "cifar-pickle", pickles, sorted(files))
        for sub in CIFAR10_JPEG_DIRS:
            cand = root / sub
            if (cand / "train").is_dir():
                return source("CIFAR-10 (JPEG copy)", "folder", cand, _folder_files(cand))
        raise UsageError(
            f"CIFAR-10 not found under {root} (from {origin}; looked for {CIFAR10_DIR}/ "
            f"and {CIFAR10_JPEG_DIRS[0]}/); " + _how_to_provide("it", root, True)
        )

    assert folder is not None  # parse_dataset_name names a folder for every kind but mnist and cifar10
    cand = root / folder
    if not (cand / "train").is_dir():
        raise UsageError(
            f"data set {folder!r} not found: no {cand / 'train'} folder (from {origin}; "
            f"layout {folder}/train/<class>/*.png|jpg and {folder}/test/<class>/...); "
            + _how_to_provide("it", root, False)
        )
    return source(folder, "folder", cand, _folder_files(cand))


# ------------------------------------------------------------------------- decoders


def _read_raw(path: Path) -> bytes:
    """Bytes of a file, transparently gunzipped (detected by the gzip magic bytes)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
    return data


def _parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions, checking everything."""
    expected_magic = bytes([0, 0, 0x08, ndim])
    if len(data) < 4 or data[:4] != expected_magic:
        raise UsageError(
            f"{path}: not an IDX file of {ndim}-d unsigned bytes "
            f"(magic {data[:4].hex() or 'missing'}, expected {expected_magic.hex()})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UsageError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)  # Python integers: a crafted header cannot wrap around
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise UsageError(f"{path}: IDX file {state} ({len(data)} bytes, header {dims} needs {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    if labels.size and int(labels.max()) >= num_classes:
        raise UsageError(f"{path}: label {int(labels.max())} out of range 0..{num_classes - 1} (corrupt file?)")
    return labels.astype(np.int64)


def _check_official_md5(data: bytes, path: Path, stem: str, dims: tuple[int, ...]) -> None:
    """Refuse an official MNIST file (its name and the official dimensions) whose
    uncompressed bytes do not have the published md5: a same-size corruption the IDX
    checks cannot see.  IDX data of other dimensions are not MNIST's files: skipped."""
    if tuple(dims) != MNIST_OFFICIAL_DIMS[stem]:
        return
    measured = md5_bytes(data)
    if measured != MNIST_RAW_MD5[stem]:
        raise UsageError(
            f"{path}: not the official MNIST {stem} (md5 of its uncompressed bytes {measured}, published "
            f"{MNIST_RAW_MD5[stem]}): the file is corrupt or altered; replace it (e.g. --download into an empty folder)"
        )


def _decode_mnist(src: DataSource) -> dict[str, Any]:
    found = _mnist_files(src.path)
    arrays = {}
    for key, path in found.items():
        ndim = 3 if key.endswith("images") else 1
        data = _read_raw(path)
        parsed = _parse_idx(data, path, ndim)  # structural damage first: its message is more specific
        _check_official_md5(data, path, MNIST_STEMS[key], parsed.shape)
        arrays[key] = (parsed, path)
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        (x, xpath), (y, ypath) = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(x) != len(y):
            raise UsageError(f"{ypath}: {len(y)} labels but {xpath.name} holds {len(x)} images")
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = _check_labels(y, ypath, 10)
    out["classes"] = tuple(str(k) for k in range(10))
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that admits only what CIFAR-10's batches contain (numpy arrays)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module, name):  # pickle API
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def _unpickle(path: Path):
    try:
        with open(path, "rb") as handle:
            return _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # any unpickling failure is a corrupt file
        raise UsageError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc


def _get(d: dict, key: str):
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if not isinstance(d, dict):
        raise UsageError(f"{path}: CIFAR-10 batch is a {type(d).__name__}, expected a dict")
    data, labels = _get(d, "data"), _get(d, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise UsageError(f"{path}: CIFAR-10 batch 'data' must be uint8 (N, 3072), got {shape}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: CIFAR-10 batch 'labels' is not a list of integers") from exc
    if y.shape != (len(data),):
        raise UsageError(f"{path}: {y.size} labels for {len(data)} images")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise UsageError(f"{path}: label out of range 0..9 (corrupt file?)")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _decode_cifar_pickle(src: DataSource) -> dict[str, Any]:
    parts = [_cifar_batch(src.path / n) for n in CIFAR10_TRAIN]
    x_test, y_test = _cifar_batch(src.path / CIFAR10_TEST)
    classes: tuple[str, ...] = CIFAR10_CLASSES
    meta = src.path / "batches.meta"
    if meta.is_file():
        meta_d = _unpickle(meta)
        names = _get(meta_d, "label_names") if isinstance(meta_d, dict) else None
        if not isinstance(names, (list, tuple)) or len(names) != 10:
            raise UsageError(f"{meta}: 'label_names' must list 10 class names")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
        "classes": classes,
    }


def _decode_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode != mode:
                image = image.convert(mode)
            return np.asarray(image, dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types on bad files
        raise UsageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc


def _image_mode(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
    except Exception as exc:
        raise UsageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc
    return "L" if mode in ("1", "L", "I", "I;16", "F") else "RGB"


def _decode_folder(src: DataSource) -> dict[str, Any]:
    train_dir, test_dir = src.path / "train", src.path / "test"
    classes = _class_dirs(train_dir)
    if not classes:
        raise UsageError(f"{train_dir}: no class folders (expected train/<class>/*.png|jpg)")
    if not test_dir.is_dir():
        raise UsageError(
            f"{test_dir}: no test folder; a class-folder data set needs test/<class>/*.png|jpg "
            f"beside train/ (the personalized accuracy is measured on it)"
        )
    test_classes = _class_dirs(test_dir)
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise UsageError(f"{test_dir}: classes {', '.join(extra)} have no training folder in {train_dir}")
    lists: dict[str, tuple[list[Path], np.ndarray]] = {}
    for split, split_dir, names in (("train", train_dir, classes), ("test", test_dir, test_classes)):
        paths: list[Path] = []
        labels: list[int] = []
        for cls in names:
            files = _list_images(split_dir / cls)
            if split == "train" and not files:
                raise UsageError(f"{split_dir / cls}: no .png/.jpg images")
            paths.extend(files)
            labels.extend([classes.index(cls)] * len(files))
        lists[split] = (paths, np.asarray(labels, dtype=np.int64))
    mode = _image_mode(lists["train"][0][0])
    out: dict[str, Any] = {"classes": tuple(classes)}
    shape = None
    for split in ("train", "test"):
        paths, y = lists[split]
        # one thread: Pillow's JPEG decode holds the GIL here, so threads would not decode faster
        images = [_decode_image(p, mode) for p in paths]
        for path, image in zip(paths, images):
            if shape is None:
                shape = image.shape
            elif image.shape != shape:
                raise UsageError(f"{path}: image size {image.shape[:2]} differs from the others' {shape[:2]}")
        if not images:
            raise UsageError(f"{src.path / split}: no .png/.jpg images in its class folders")
        x = np.stack(images)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 pixels scaled to [0, 1] (via histograms)."""
    channels = [x] if x.ndim == 3 else [x[..., c] for c in range(x.shape[-1])]
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for ch in channels:
        hist = np.bincount(np.ravel(ch), minlength=256).astype(np.float64)
        n = hist.sum()
        mean = float(hist @ values / n) if n else 0.0
        var = float(hist @ (values - mean) ** 2 / n) if n else 0.0
        means.append(mean)
        stds.append(var**0.5)
    return tuple(means), tuple(stds)


# ---------------------------------------------------------------------------- cache


def _content_fingerprint(src: DataSource) -> str:
    """blake2b of the source files' bytes: all of them for IDX and pickle files, every
    :data:`FOLDER_HASH_EVERY`-th one (in sorted order, so the sample is fixed) for a
    class-folder set -- the trade-off is in the module notes."""
    step = FOLDER_HASH_EVERY if src.format == "folder" else 1
    digest = hashlib.blake2b(digest_size=16)
    for rel in src.files[::step]:
        try:
            with open(src.path / rel, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise UsageError(f"cannot read {src.path / rel}: {exc.strerror or exc}") from exc
        digest.update(b"\0" + rel.encode())
    return digest.hexdigest()


def _cache_key(src: DataSource) -> str:
    """Key of the decoded arrays: the files' paths, sizes, times and content fingerprint."""
    entries = []
    for rel in src.files:
        st = (src.path / rel).stat()
        entries.append((rel, st.st_size, st.st_mtime_ns))
    blob = json.dumps(
        [CACHE_VERSION, src.name, src.format, str(src.path.resolve()), entries, _content_fingerprint(src)]
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _cache_prefix(src: DataSource) -> str:
    """Name prefix of one source folder's cache entries (older entries with it are removed
    when a new one is written; the folder's hash keeps two copies of a data set from
    evicting each other)."""
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.name)
    where = hashlib.sha256(str(src.path.resolve()).encode()).hexdigest()[:8]
    return f"{slug}-{src.format}-{where}-"


def _read_cache(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            out["classes"] = tuple(str(c) for c in z["classes"])
            out["mean"] = tuple(float(v) for v in z["mean"])
            out["std"] = tuple(float(v) for v in z["std"])
        return out
    except Exception:  # an unreadable cache entry is simply rebuilt
        return None


def _write_cache(folder: Path, prefix: str, path: Path, arrays: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            np.savez(
                handle,
                **{k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")},
                classes=np.asarray(arrays["classes"], dtype=str),
                mean=np.asarray(arrays["mean"]),
                std=np.asarray(arrays["std"]),
            )
    except OSError:
        return  # a read-only or full cache folder only costs speed
    for stale in folder.glob(f"{prefix}*.npz"):
        if stale != path:
            with contextlib.suppress(OSError):
                stale.unlink()


# -------------------------------------------------------------------------- loading


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load a data set by name: ``"mnist"``, ``"cifar10"`` or ``"folder:NAME"``.

    Args:
        name: data set name (see :data:`DATASET_CHOICES`).
        data_dir: data root (CLI ``--data-dir``); ``None``: ``$PERFEDAVG_DATA``, else
            the user cache directory.
        download: fetch the official archives into the data root when missing
            (MNIST, CIFAR-10 only).
        cache_dir: where decoded arrays are cached (default ``<user cache>/decoded``).
        use_cache: read and write the decoded-array cache.

    Returns:
        A :class:`Dataset` with read-only uint8 images and int64 labels.

    Raises:
        UsageError: data missing (listing the three ways to provide them), a corrupt
            or truncated file (naming it), or a failed download.
    """
    try:
        src = locate(name, data_dir)
    except UsageError:
        if not download:
            raise
        kind, _ = parse_dataset_name(name)
        if kind == "folder":
            raise UsageError("--download: folder data sets cannot be downloaded; only mnist and cifar10") from None
        download_dataset(name, data_dir)
        src = locate(name, data_dir)
    return _load_source(src, cache_dir=cache_dir, use_cache=use_cache)


def _load_source(src: DataSource, *, cache_dir=None, use_cache=True) -> Dataset:
    arrays, from_cache = None, False
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "decoded"
        prefix = _cache_prefix(src)
        cache_path = folder / f"{prefix}{_cache_key(src)}.npz"
        if cache_path.is_file():
            arrays = _read_cache(cache_path)
            from_cache = arrays is not None
    if arrays is None:
        decoder = {"idx": _decode_mnist, "cifar-pickle": _decode_cifar_pickle, "folder": _decode_folder}
        arrays = decoder[src.format](src)
        arrays["mean"], arrays["std"] = _channel_stats(arrays["x_train"])
        if use_cache:
            _write_cache(folder, prefix, cache_path, arrays)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        arrays[key].setflags(write=False)
    return Dataset(
        name=src.name,
        label=src.label,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        classes=arrays["classes"],
        mean=arrays["mean"],
        std=arrays["std"],
        source=str(src.path),
        format=src.format,
        jpeg_copy=src.jpeg_copy,
        from_cache=from_cache,
    )


def verify_mnist(src: DataSource) -> dict[str, tuple[str, str]]:
    """md5 of each uncompressed MNIST file next to the published one.

    Returns:
        ``{file stem: (measured md5, published md5)}``.
    """
    found = _mnist_files(src.path)
    return {MNIST_STEMS[k]: (md5_bytes(_read_raw(p)), MNIST_RAW_MD5[MNIST_STEMS[k]]) for k, p in found.items()}


# ------------------------------------------------------------------------- download


def _fetch(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` atomically, checking its md5; raise OSError/ValueError."""
    digest = hashlib.md5(usedforsecurity=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_write(dest) as handle:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            handle.write(block)
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 {digest.hexdigest()} != expected {md5}")


def _download_errors():
    return (urllib.error.URLError, OSError, ValueError, TimeoutError)


def _safe_members(tar: tarfile.TarFile, archive: Path):
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts or not (member.isfile() or member.isdir()):
            raise UsageError(f"{archive}: unsafe or unexpected entry {member.name!r} in the archive")
        yield member


def download_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Fetch the official archive(s) of ``name`` into the data root; return the root.

    MNIST: the four ``.gz`` IDX files into ``<root>/MNIST/raw/`` from
    :data:`MNIST_MIRRORS` (first that works).  CIFAR-10: ``cifar-10-python.tar.gz``
    into ``<root>``, extracted to ``<root>/cifar-10-batches-py/``.  Every file is
    md5-checked and written atomically; files already present are kept.

    Raises:
        UsageError: no mirror delivered a file with the right checksum.
    """
    kind, _ = parse_dataset_name(name)
    root, _origin = resolve_root(data_dir)
    if kind == "mnist":
        raw = root / "MNIST" / "raw"
        for fname, md5 in MNIST_GZ_MD5.items():
            dest = raw / fname
            if dest.is_file() or (raw / fname[:-3]).is_file():
                continue
            errors = []
            for mirror in MNIST_MIRRORS:
                try:
                    _fetch(mirror + fname, dest, md5)
                    break
                except _download_errors() as exc:
                    errors.append(f"{mirror}: {exc}")
            else:
                raise UsageError(
                    f"--download: could not fetch {fname} ({'; '.join(errors)}); "
                    + _how_to_provide("MNIST", root, False)
                )
        return root
    if kind == "cifar10":
        if (root / CIFAR10_DIR).is_dir():
            return root
        archive = root / CIFAR10_URL.rsplit("/", 1)[-1]
        if not archive.is_file() or md5_file(archive) != CIFAR10_MD5:
            try:
                _fetch(CIFAR10_URL, archive, CIFAR10_MD5)
            except _download_errors() as exc:
                raise UsageError(
                    f"--download: could not fetch {CIFAR10_URL} ({exc}); " + _how_to_provide("CIFAR-10", root, False)
                ) from exc
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-extract-"))
        try:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    members = list(_safe_members(tar, archive))
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.10.12
                        tar.extractall(tmp, members=members)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise UsageError(f"{archive}: corrupt archive ({exc})") from exc
            extracted = tmp / CIFAR10_DIR
            if not extracted.is_dir():
                raise UsageError(f"{archive}: no {CIFAR10_DIR}/ folder inside")
            os.replace(extracted, root / CIFAR10_DIR)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return root
    raise UsageError("--download: folder data sets cannot be downloaded; only mnist and cifar10")
