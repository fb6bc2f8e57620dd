"""``empirical.data``: every format, the cache, downloads, and every error case."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import time

import numpy as np
import pytest

from empirical import data
from perfedavg.errors import UsageError
from perfedavg.runs import rundir
from tests.empirical_fixtures import (
    idx_bytes,
    real_data_root,
    tar_gz_bytes,
    tiny_mnist_arrays,
    write_cifar_pickles,
    write_image_folder,
    write_mnist,
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the real environment's data root or writes the user's cache."""
    monkeypatch.delenv("PERFEDAVG_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def load(name, root, tmp_path, **kw):
    return data.load_dataset(name, root, cache_dir=tmp_path / "cache", **kw)


def assert_one_line_naming(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, message


# ------------------------------------------------------------------------- formats


@pytest.mark.parametrize("layout", ["MNIST/raw", "MNIST", "mnist", "flat"])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_loads_gz_and_raw_in_both_layouts(tmp_path, layout, gz):
    root = tmp_path / "root"
    folder = root if layout == "flat" else root / layout
    arrays = write_mnist(folder, gz=gz)
    ds = load("mnist", root, tmp_path)
    assert ds.name == "mnist" and ds.label == "MNIST" and ds.format == "idx" and not ds.jpeg_copy
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.x_test, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == tuple("0123456789")
    x = arrays["train-images-idx3-ubyte"] / 255.0
    assert ds.mean == pytest.approx((x.mean(),), abs=1e-12)
    assert ds.std == pytest.approx((x.std(),), abs=1e-12)
    assert not ds.x_train.flags.writeable


def test_cifar_pickles_load_with_official_layout(tmp_path):
    folder = write_cifar_pickles(tmp_path / "root", per_batch=4)
    ds = load("cifar10", tmp_path / "root", tmp_path)
    assert ds.label == "CIFAR-10" and not ds.jpeg_copy and ds.format == "cifar-pickle"
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    with open(folder / "data_batch_2", "rb") as f:
        batch = pickle.load(f)
    # row-major channel planes (R 1024, G 1024, B 1024) become HWC
    np.testing.assert_array_equal(ds.x_train[4:8], batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(ds.y_train[4:8], batch[b"labels"])
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert len(ds.mean) == len(ds.std) == 3


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_class_folder_loads_png_and_jpg(tmp_path, ext):
    written = write_image_folder(tmp_path / "root" / "toy", ext=ext)
    ds = load("folder:toy", tmp_path / "root", tmp_path)
    assert ds.name == "folder:toy" and ds.label == "toy" and ds.classes == ("cat", "dog")
    assert ds.x_train.shape == (6, 5, 5, 3) and ds.x_test.shape == (4, 5, 5, 3)
    np.testing.assert_array_equal(ds.y_train, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.y_test, [0, 0, 1, 1])
    expected = np.stack([p for p, _ in written["train"]])
    if ext == "png":  # lossless
        np.testing.assert_array_equal(ds.x_train, expected)
    else:
        assert np.abs(ds.x_train.astype(int) - expected).mean() < 60


def test_class_folder_greyscale_gives_hw_arrays(tmp_path):
    write_image_folder(tmp_path / "root" / "grey", mode="L")
    ds = load("folder:grey", tmp_path / "root", tmp_path)
    assert ds.x_train.shape == (6, 5, 5) and len(ds.mean) == 1


def test_cifar_jpeg_copy_is_labelled_and_official_pickles_win(tmp_path):
    classes = tuple(data.CIFAR10_CLASSES)
    write_image_folder(tmp_path / "root" / "CIFAR-10-jpeg", classes=classes, per_class=(2, 1), ext="jpg", side=8)
    ds = load("cifar10", tmp_path / "root", tmp_path)
    assert ds.name == "cifar10" and ds.label == "CIFAR-10 (JPEG copy)" and ds.jpeg_copy
    assert ds.classes == classes and ds.x_train.shape == (20, 8, 8, 3)
    write_cifar_pickles(tmp_path / "root")
    ds = load("cifar10", tmp_path / "root", tmp_path)
    assert ds.label == "CIFAR-10" and not ds.jpeg_copy


# ----------------------------------------------------------------- roots and names


def test_root_resolution_order(tmp_path, monkeypatch):
    assert data.resolve_root(tmp_path / "explicit") == (tmp_path / "explicit", "--data-dir")
    assert data.resolve_root(None) == (tmp_path / "xdg-cache" / "perfedavg", "user cache")
    monkeypatch.setenv("PERFEDAVG_DATA", str(tmp_path / "env"))
    assert data.resolve_root(None) == (tmp_path / "env", "PERFEDAVG_DATA")
    assert data.resolve_root(tmp_path / "explicit")[1] == "--data-dir"


def test_env_var_root_is_used(tmp_path, monkeypatch):
    write_mnist(tmp_path / "env" / "MNIST" / "raw")
    monkeypatch.setenv("PERFEDAVG_DATA", str(tmp_path / "env"))
    assert len(load("mnist", None, tmp_path).y_train) == 20


@pytest.mark.parametrize("bad", ["mnistt", "cifar100", "folder:", "folder:../x", ""])
def test_unknown_dataset_name(bad):
    with pytest.raises(UsageError) as e:
        data.parse_dataset_name(bad)
    assert_one_line_naming(e, "--dataset")


# --------------------------------------------------------------------------- cache


def test_cache_hit_then_invalidated_by_source_change(tmp_path):
    root = tmp_path / "root"
    arrays = write_mnist(root, gz=False)
    first = load("mnist", root, tmp_path)
    second = load("mnist", root, tmp_path)
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert first.mean == second.mean and first.classes == second.classes
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # rewrite the labels with the same size: the mtime changes the key
    path = root / "train-labels-idx1-ubyte"
    new = (arrays["train-labels-idx1-ubyte"] + 1) % 10
    path.write_bytes(idx_bytes(new))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    third = load("mnist", root, tmp_path)
    assert not third.from_cache
    np.testing.assert_array_equal(third.y_train, new)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # the stale entry is gone


def _rewrite_keeping_size_and_mtime(path, content: bytes) -> None:
    """Replace a file's bytes by ``content`` of the same size and restore its times."""
    st = path.stat()
    assert len(content) == st.st_size
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_invalidated_by_same_size_edit_with_restored_mtime(tmp_path):
    root = tmp_path / "root"
    arrays = write_mnist(root, gz=False)
    assert not load("mnist", root, tmp_path).from_cache
    assert load("mnist", root, tmp_path).from_cache
    new = (arrays["train-labels-idx1-ubyte"] + 1) % 10
    _rewrite_keeping_size_and_mtime(root / "train-labels-idx1-ubyte", idx_bytes(new))
    ds = load("mnist", root, tmp_path)
    assert not ds.from_cache
    np.testing.assert_array_equal(ds.y_train, new)


def test_folder_cache_fingerprint_samples_files(tmp_path):
    """The first file (always in the hashed sample) changed in place, same size and time: a miss."""
    import io

    from PIL import Image

    def png(pixels) -> bytes:  # uncompressed: two images of one size have one file size
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
        return buffer.getvalue()

    root = tmp_path / "root"
    write_image_folder(root / "toy")
    path = root / "toy" / "train" / "cat" / "0000.png"
    pixels = np.zeros((5, 5, 3), dtype=np.uint8)
    path.write_bytes(png(pixels))
    first = load("folder:toy", root, tmp_path)
    assert load("folder:toy", root, tmp_path).from_cache
    pixels[0, 0] = 255
    _rewrite_keeping_size_and_mtime(path, png(pixels))
    ds = load("folder:toy", root, tmp_path)
    assert not ds.from_cache
    np.testing.assert_array_equal(ds.x_train[0], pixels)
    assert not np.array_equal(first.x_train[0], pixels)


def test_two_roots_of_one_data_set_keep_their_cache_entries(tmp_path):
    write_mnist(tmp_path / "a", tiny_mnist_arrays(seed=1))
    write_mnist(tmp_path / "b", tiny_mnist_arrays(seed=2))
    load("mnist", tmp_path / "a", tmp_path)
    load("mnist", tmp_path / "b", tmp_path)
    assert load("mnist", tmp_path / "a", tmp_path).from_cache
    assert load("mnist", tmp_path / "b", tmp_path).from_cache


def test_cache_invalidated_by_added_image(tmp_path):
    root = tmp_path / "root"
    write_image_folder(root / "toy")
    assert len(load("folder:toy", root, tmp_path).y_train) == 6
    assert load("folder:toy", root, tmp_path).from_cache
    write_image_folder(root / "toy", classes=("emu",), per_class=(1, 0), seed=3)
    ds = load("folder:toy", root, tmp_path)
    assert not ds.from_cache and len(ds.y_train) == 7 and ds.classes == ("cat", "dog", "emu")


def test_corrupt_cache_entry_is_rebuilt_and_no_cache_writes_nothing(tmp_path):
    root = tmp_path / "root"
    write_mnist(root)
    load("mnist", root, tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(b"not a zip")
    ds = load("mnist", root, tmp_path)
    assert not ds.from_cache and len(ds.y_train) == 20
    other = tmp_path / "other-cache"
    data.load_dataset("mnist", root, cache_dir=other, use_cache=False)
    assert not other.exists()


def test_default_cache_dir_is_user_cache(tmp_path):
    write_mnist(tmp_path / "root")
    data.load_dataset("mnist", tmp_path / "root")
    assert list((tmp_path / "xdg-cache" / "perfedavg" / "decoded").glob("mnist-*.npz"))


# --------------------------------------------------------------------- error cases


@pytest.mark.parametrize("name", ["mnist", "cifar10", "folder:toy"])
def test_missing_data_lists_the_three_ways(tmp_path, name):
    with pytest.raises(UsageError) as e:
        load(name, tmp_path / "empty", tmp_path)
    assert_one_line_naming(e, "--data-dir", "PERFEDAVG_DATA", tmp_path / "empty")
    if name != "folder:toy":
        assert_one_line_naming(e, "--download")


def test_missing_data_without_any_root_names_the_cache(tmp_path):
    with pytest.raises(UsageError) as e:
        data.load_dataset("mnist")
    assert_one_line_naming(e, "user cache", "--data-dir", "PERFEDAVG_DATA", "--download")


def test_incomplete_mnist_names_missing_file(tmp_path):
    write_mnist(tmp_path / "root")
    (tmp_path / "root" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, "t10k-labels-idx1-ubyte", "incomplete")


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_file(tmp_path, gz):
    write_mnist(tmp_path / "root", gz=False)
    path = tmp_path / "root" / "train-images-idx3-ubyte"
    raw = path.read_bytes()[:-7]
    if gz:
        path.unlink()
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path, "truncated")


def test_idx_trailing_bytes_names_file(tmp_path):
    write_mnist(tmp_path / "root", gz=False)
    path = tmp_path / "root" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path, "trailing bytes")


@pytest.mark.parametrize("gz", [True, False])
def test_same_size_change_in_official_mnist_file_is_refused(tmp_path, monkeypatch, gz):
    """A file with the official name and dimensions must have the published md5 (here the
    tiny fixture stands in for the official files: its dims and md5 are patched in)."""
    arrays = tiny_mnist_arrays()
    monkeypatch.setattr(data, "MNIST_OFFICIAL_DIMS", {stem: arr.shape for stem, arr in arrays.items()})
    monkeypatch.setattr(
        data, "MNIST_RAW_MD5", {stem: hashlib.md5(idx_bytes(arr)).hexdigest() for stem, arr in arrays.items()}
    )
    write_mnist(tmp_path / "root", arrays, gz=gz)
    assert len(load("mnist", tmp_path / "root", tmp_path).y_train) == 20  # intact files load
    changed = arrays["train-labels-idx1-ubyte"].copy()
    changed[5] = (changed[5] + 1) % 10
    path = tmp_path / "root" / ("train-labels-idx1-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(idx_bytes(changed)) if gz else idx_bytes(changed))
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path, "md5", data.MNIST_RAW_MD5["train-labels-idx1-ubyte"])


def test_truncated_gzip_stream_names_file(tmp_path):
    write_mnist(tmp_path / "root", gz=True)
    path = tmp_path / "root" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path, "gzip")


@pytest.mark.parametrize("magic", [b"\x00\x00\x08\x01", b"\x00\x00\x09\x03", b"PK\x03\x04", b""])
def test_wrong_magic_names_file(tmp_path, magic):
    write_mnist(tmp_path / "root", gz=False)
    path = tmp_path / "root" / "train-images-idx3-ubyte"
    path.write_bytes(magic + path.read_bytes()[4:] if magic else b"")
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path, "magic")


def test_label_count_mismatch_and_bad_label(tmp_path):
    arrays = tiny_mnist_arrays()
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:-1]
    write_mnist(tmp_path / "a", arrays)
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "a", tmp_path)
    assert_one_line_naming(e, "t10k-labels-idx1-ubyte")
    arrays = tiny_mnist_arrays()
    arrays["train-labels-idx1-ubyte"][3] = 200
    write_mnist(tmp_path / "b", arrays)
    with pytest.raises(UsageError) as e:
        load("mnist", tmp_path / "b", tmp_path)
    assert_one_line_naming(e, "train-labels-idx1-ubyte", "out of range")


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not a pickle",
        pickle.dumps([1, 2, 3], protocol=2),
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, protocol=2),
    ],
)
def test_corrupt_cifar_batch_names_file(tmp_path, content):
    folder = write_cifar_pickles(tmp_path / "root")
    (folder / "data_batch_3").write_bytes(content)
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, folder / "data_batch_3")


def test_truncated_cifar_batch_names_file(tmp_path):
    folder = write_cifar_pickles(tmp_path / "root")
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch should-not-exist",))


def test_pickle_with_foreign_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = write_cifar_pickles(tmp_path / "root")
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, folder / "data_batch_1", "refusing")
    assert not (tmp_path / "should-not-exist").exists()


@pytest.mark.parametrize("meta", [b"garbage", "list", "nine"])
def test_corrupt_batches_meta_names_file(tmp_path, meta):
    folder = write_cifar_pickles(tmp_path / "root")
    names = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"]
    content = {
        "list": pickle.dumps(names, protocol=2),
        "nine": pickle.dumps({b"label_names": names[:9]}, protocol=2),
    }.get(meta, meta)
    (folder / "batches.meta").write_bytes(content)
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, folder / "batches.meta")


def test_incomplete_cifar_pickles(tmp_path):
    folder = write_cifar_pickles(tmp_path / "root")
    (folder / "data_batch_5").unlink()
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, "data_batch_5")


@pytest.mark.parametrize("ext,cut", [("png", None), ("jpg", None), ("jpg", 0.5), ("png", 0.6)])
def test_undecodable_or_truncated_image_names_file(tmp_path, ext, cut):
    write_image_folder(tmp_path / "root" / "toy", ext=ext, side=24)
    path = tmp_path / "root" / "toy" / "train" / "dog" / f"0001.{ext}"
    path.write_bytes(b"\x00 not an image" if cut is None else path.read_bytes()[: int(path.stat().st_size * cut)])
    with pytest.raises(UsageError) as e:
        load("folder:toy", tmp_path / "root", tmp_path)
    assert_one_line_naming(e, path)


def test_mixed_image_sizes_and_unknown_test_class(tmp_path):
    from PIL import Image

    root = tmp_path / "root"
    write_image_folder(root / "toy")
    odd = root / "toy" / "test" / "dog" / "0009.png"
    Image.new("RGB", (7, 5)).save(odd)
    with pytest.raises(UsageError) as e:
        load("folder:toy", root, tmp_path)
    assert_one_line_naming(e, odd, "size")
    odd.unlink()
    (root / "toy" / "test" / "emu").mkdir()
    with pytest.raises(UsageError) as e:
        load("folder:toy", root, tmp_path)
    assert_one_line_naming(e, "emu")


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_class_folder_without_test_images_is_an_error(tmp_path, state):
    """Not a silently empty test set: the personalized accuracy is measured on it."""
    root = tmp_path / "root"
    write_image_folder(root / "toy")
    import shutil

    shutil.rmtree(root / "toy" / "test")
    if state == "empty":
        (root / "toy" / "test" / "cat").mkdir(parents=True)
    with pytest.raises(UsageError) as e:
        load("folder:toy", root, tmp_path)
    assert_one_line_naming(e, root / "toy" / "test")


# ------------------------------------------------------------------------ download


def _serve_mnist(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    arrays = tiny_mnist_arrays(seed=7)
    md5 = {}
    for stem, arr in arrays.items():
        blob = gzip.compress(idx_bytes(arr))
        (server / f"{stem}.gz").write_bytes(blob)
        md5[f"{stem}.gz"] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(data, "MNIST_MIRRORS", ((tmp_path / "dead-mirror").as_uri() + "/", server.as_uri() + "/"))
    monkeypatch.setattr(data, "MNIST_GZ_MD5", md5)
    return arrays


def test_download_mnist_falls_back_to_next_mirror_and_checks_md5(tmp_path, monkeypatch):
    arrays = _serve_mnist(tmp_path, monkeypatch)
    root = tmp_path / "root"
    ds = load("mnist", root, tmp_path, download=True)
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(data.MNIST_GZ_MD5)


def test_download_with_wrong_md5_fails_and_leaves_no_file(tmp_path, monkeypatch):
    _serve_mnist(tmp_path, monkeypatch)
    monkeypatch.setitem(data.MNIST_GZ_MD5, "t10k-images-idx3-ubyte.gz", "0" * 32)
    root = tmp_path / "root"
    with pytest.raises(UsageError) as e:
        load("mnist", root, tmp_path, download=True)
    assert_one_line_naming(e, "t10k-images-idx3-ubyte.gz", "md5")
    left = [p.name for p in (root / "MNIST" / "raw").iterdir()]
    assert "t10k-images-idx3-ubyte.gz" not in left and not any(n.endswith(rundir.TEMP_SUFFIX) for n in left)


def _cifar_tarball(tmp_path, extra=None):
    src = write_cifar_pickles(tmp_path / "pickles")
    files = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(src.iterdir())}
    files.update(extra or {})
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(exist_ok=True)
    archive.write_bytes(tar_gz_bytes(files))
    return archive


def test_download_cifar_extracts_checked_archive(tmp_path, monkeypatch):
    archive = _cifar_tarball(tmp_path)
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    ds = load("cifar10", tmp_path / "root", tmp_path, download=True)
    assert ds.label == "CIFAR-10" and ds.x_train.shape == (20, 32, 32, 3)
    assert not [p for p in (tmp_path / "root").iterdir() if p.name.startswith(".")]  # no temp left


def test_download_cifar_refuses_unsafe_archive(tmp_path, monkeypatch):
    archive = _cifar_tarball(tmp_path, extra={"../escape.txt": b"x"})
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path, download=True)
    assert_one_line_naming(e, "unsafe")
    assert not (tmp_path / "escape.txt").exists()


def test_download_unreachable_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_URL", (tmp_path / "nothing.tar.gz").as_uri())
    with pytest.raises(UsageError) as e:
        load("cifar10", tmp_path / "root", tmp_path, download=True)
    assert_one_line_naming(e, "--download", "--data-dir", "PERFEDAVG_DATA")
    with pytest.raises(UsageError) as e:
        load("folder:toy", tmp_path / "root", tmp_path, download=True)
    assert_one_line_naming(e, "--download", "folder")


# --------------------------------------------------------------------------- CLI


def test_cli_info_and_partition(tmp_path, capsys):
    from perfedavg.cli import main

    root = tmp_path / "root"
    write_image_folder(root / "toy", classes=tuple("abcdefghij"), per_class=(12, 4))
    common = ["--dataset", "folder:toy", "--data-dir", str(root), "--cache-dir", str(tmp_path / "c")]
    assert main(["data", "info", *common]) == 0
    out = capsys.readouterr().out
    assert "toy: found in" in out and "120 train / 40 test" in out and "--data-dir" in out
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "partition",
                *common,
                "--scheme",
                "classes",
                "--clients",
                "5",
                "--classes-per-client",
                "2",
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    assert {p.name for p in out_dir.iterdir()} == {"partition.md", "partition.png", "partition.npz"}
    assert (out_dir / "partition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "partition", *common, "--scheme", "paper", "--out", str(out_dir)]) == 2
    assert "--a" in capsys.readouterr().err


def test_cli_dirichlet_default_is_the_tasks(tmp_path):
    """One default concentration: ``data partition`` draws the split ``task.concentration`` names."""
    from empirical.partition import DEFAULT_CONCENTRATION, load_partition
    from empirical.tasks import ImageTaskOptions
    from perfedavg.cli import main

    root = tmp_path / "root"
    write_image_folder(root / "toy", classes=tuple("abcdefghij"), per_class=(12, 4))
    out_dir = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "partition",
                "--dataset",
                "folder:toy",
                "--data-dir",
                str(root),
                "--cache-dir",
                str(tmp_path / "c"),
                "--scheme",
                "dirichlet",
                "--clients",
                "3",
                "--min-size",
                "1",
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    params = dict(load_partition(out_dir / "partition.npz").params)
    assert params["concentration"] == DEFAULT_CONCENTRATION == ImageTaskOptions().concentration


def test_cli_missing_data_is_one_line_exit_2(tmp_path, capsys):
    from perfedavg.cli import main

    assert main(["data", "info", "--dataset", "mnist", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PERFEDAVG_DATA" in err and "--download" in err


def test_cli_help_explains_every_option(capsys):
    from perfedavg.cli import main

    for action in ("info", "partition"):
        with pytest.raises(SystemExit) as e:
            main(["data", action, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for option in ["--dataset", "--data-dir", "--download", "--cache-dir", "--no-cache"] + (
            [
                "--scheme",
                "--clients",
                "--seed",
                "--a",
                "--a-test",
                "--concentration",
                "--min-size",
                "--classes-per-client",
                "--out",
            ]
            if action == "partition"
            else []
        ):
            assert option in text


# ---------------------------------------------------------------- the real copies

REAL = real_data_root()
needs_real = pytest.mark.skipif(REAL is None, reason="real data not found (PERFEDAVG_DATA or ../shared/data)")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


@pytest.mark.full_data
@needs_real
def test_real_mnist_md5_sums():
    src = data.locate("mnist", REAL)
    sums = data.verify_mnist(src)
    assert set(sums) == set(data.MNIST_RAW_MD5)
    for stem, (measured, published) in sums.items():
        assert measured == published, stem


@pytest.mark.full_data
@needs_real
def test_real_mnist_same_size_label_change_is_refused(tmp_path):
    """A copy of the real files with one label byte changed (same size): refused by md5."""
    src = data.locate("mnist", REAL)
    folder = tmp_path / "copy" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name in src.files:
        raw = data._read_raw(src.path / name)
        stem = name[:-3] if name.endswith(".gz") else name
        if stem == "t10k-labels-idx1-ubyte":
            raw = raw[:-1] + bytes([(raw[-1] + 1) % 10])
        (folder / stem).write_bytes(raw)
    with pytest.raises(UsageError) as e:
        data.load_dataset("mnist", tmp_path / "copy", cache_dir=tmp_path / "cache")
    assert_one_line_naming(e, folder / "t10k-labels-idx1-ubyte", "md5")


@pytest.mark.full_data
@needs_real
def test_real_mnist_loads_and_caches(real_cache):
    start = time.perf_counter()
    ds = data.load_dataset("mnist", REAL, cache_dir=real_cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = data.load_dataset("mnist", REAL, cache_dir=real_cache)
    warm = time.perf_counter() - start
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert again.from_cache and np.array_equal(ds.y_test, again.y_test)
    assert ds.mean[0] == pytest.approx(0.1307, abs=5e-5) and ds.std[0] == pytest.approx(0.3081, abs=5e-5)
    print(f"MNIST load: {cold:.2f} s from IDX, {warm:.2f} s from cache")


@pytest.mark.full_data
@needs_real
def test_real_cifar_jpeg_copy_loads(real_cache):
    start = time.perf_counter()
    ds = data.load_dataset("cifar10", REAL, cache_dir=real_cache)
    cold = time.perf_counter() - start
    assert ds.label == "CIFAR-10 (JPEG copy)" and ds.jpeg_copy
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [5000] * 10 and np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.classes == data.CIFAR10_CLASSES
    assert ds.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=5e-4)
    assert ds.std == pytest.approx((0.2452, 0.2428, 0.2606), abs=5e-4)
    start = time.perf_counter()
    assert data.load_dataset("cifar10", REAL, cache_dir=real_cache).from_cache
    print(f"CIFAR-10 JPEG load: {cold:.2f} s decoding, {time.perf_counter() - start:.2f} s from cache")


def test_data_partition_checks_out_before_it_reads_the_data(tmp_path, capsys):
    """An --out that cannot be created is the error, not the data (found or not, decoded or not) behind it."""
    from perfedavg.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (tmp_path / "empty").mkdir()
    argv = ["data", "partition", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--out"]
    assert main([*argv, str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--out {blocker / 'out'} cannot be created" in err, err


def test_an_idx_header_whose_size_overflows_is_one_line_not_a_reshape_traceback(tmp_path):
    """Dimensions 2^31 x 2^31 x 4 multiply to 2^64, which an int64 product wraps to 0: the header alone then
    looked complete. The size is computed in Python integers."""
    import struct

    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**31, 4)
    with pytest.raises(UsageError, match=r"IDX file truncated .* needs 18446744073709551632"):
        data._parse_idx(header, tmp_path / "crafted-idx3-ubyte", 3)
