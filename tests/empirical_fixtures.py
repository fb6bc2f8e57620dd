"""Builders of tiny data-set files in every format ``empirical.data`` reads (for tests)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    """``$PERFEDAVG_DATA`` or ``../shared/data`` next to the repository, if present."""
    env = os.environ.get("PERFEDAVG_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding ``arr``."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def tiny_mnist_arrays(seed=0, n_train=20, n_test=8, side=4):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_mnist(folder: Path, arrays=None, gz=True) -> dict:
    """Write the four IDX files (``.gz`` or raw) into ``folder``; return the arrays."""
    arrays = arrays or tiny_mnist_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def cifar_batch(n: int, seed: int, offset: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"tiny",
        b"labels": [int((offset + i) % 10) for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def write_cifar_pickles(root: Path, per_batch: int = 4) -> Path:
    """The official ``cifar-10-batches-py`` layout with ``per_batch`` images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(cifar_batch(per_batch, i, offset=i), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(cifar_batch(per_batch, 99), f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f, protocol=2)
    return folder


def write_image_folder(
    folder: Path, classes=("cat", "dog"), per_class=(3, 2), ext="png", mode="RGB", side=5, seed=0
) -> dict:
    """``folder/{train,test}/<class>/NNNN.<ext>``; returns the PNG pixel arrays by split."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {"train": [], "test": []}
    for split, count in (("train", per_class[0]), ("test", per_class[1])):
        for label, cls in enumerate(classes):
            d = folder / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                shape = (side, side, 3) if mode == "RGB" else (side, side)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode=mode).save(d / f"{j:04d}.{ext}")
                out[split].append((pixels, label))
    return out


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
