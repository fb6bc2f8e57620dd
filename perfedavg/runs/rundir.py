"""Run directories: ``config.toml``, ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``.

The one writer and reader of the format, used by the runner and by the seed-batched synthetic runs
alike.  Every file but the append-only ``metrics.jsonl`` is written atomically
(:func:`atomic_write`: temporary file in the same folder, fsync, then ``os.replace``), so a crash
never leaves a half-written result.  ``metrics.jsonl`` is guarded differently: the checkpoint stores
the length and the SHA-256 of the prefix it has seen, so a resume cuts the file back to exactly that
prefix and refuses when the prefix was changed.  Readers say which file is damaged, or recover the
intact prefix of ``metrics.jsonl`` and say so; never a silent wrong figure.

Status and "same training" are :mod:`perfedavg.runs.status`, directory names
:mod:`perfedavg.runs.names`, the code and library versions a summary records
:mod:`perfedavg.runs.provenance` (re-exported here: summaries and checkpoints record them, and
callers, and tests that stand in another code version, reach them as ``rundir.code_version``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from perfedavg.errors import UsageError
from perfedavg.runs.config import dumps_toml
from perfedavg.runs.provenance import code_version as code_version
from perfedavg.runs.provenance import library_versions as library_versions
from perfedavg.runs.provenance import source_digest as source_digest
from perfedavg.runs.provenance import source_digest_of as source_digest_of

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.toml", "metrics.jsonl", "summary.json", "checkpoint.pt"
#: files a run writes (``--force`` deletes only these, and only in a directory made of them)
RUN_FILES = (CONFIG, METRICS, SUMMARY, CHECKPOINT, "curves.png")
#: suffix of the temporary file of an atomic write (a run directory may hold one after a crash)
TEMP_SUFFIX = ".tmp"
#: version of the checkpoint layout written by :func:`perfedavg.runs.runner.run_config`
CHECKPOINT_FORMAT = 2
#: keys a checkpoint must hold, with their types
CHECKPOINT_KEYS = {
    "format": int,
    "config": dict,
    "state": dict,
    "metrics_records": int,
    "metrics_bytes": int,
    "metrics_sha256": str,
    "code_version": str,
}
#: keys of a checkpoint's training state, with their types ("tensor": a torch.Tensor; torch is loaded late)
STATE_KEYS: dict[str, Any] = {
    "round": int,
    "w": "tensor",
    "generator_state": "tensor",
    "inner_sum": (int, float),
    "inner_terms": int,
}


class DamagedFileWarning(UserWarning):
    """A run file was damaged and only its intact prefix was used."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file in the same folder, fsynced and
    renamed over ``path`` on success, removed on any exception (``path`` is then untouched)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file: name ours
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path``, checked key by key; any problem is one
    :class:`UsageError` naming the file.  Loaded with ``weights_only=True``: a
    checkpoint is data (tensors, numbers, strings), never code to run."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's own advice on a file it cannot read is not for our users
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a damaged file
        # torch's first sentence says what failed; the rest is advice
        detail = " ".join(str(exc).split()).split(". ")[0]
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise UsageError(
            f"checkpoint {path} is damaged or truncated and cannot be read ({type(exc).__name__}: {detail})"
        ) from None
    if not isinstance(payload, dict):
        raise UsageError(f"checkpoint {path} is damaged: it holds a {type(payload).__name__}, not a checkpoint")
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(payload.get(key), kind) or isinstance(payload.get(key), bool):
            raise UsageError(
                f"checkpoint {path} is damaged or from another version: {key!r} is missing or not a {kind.__name__}"
            )
    if payload["format"] != CHECKPOINT_FORMAT:
        raise UsageError(
            f"checkpoint {path} has format {payload['format']}, this version reads format {CHECKPOINT_FORMAT}"
        )
    state = payload["state"]
    for key, kind in STATE_KEYS.items():
        value = state.get(key)
        ok = isinstance(value, torch.Tensor) if kind == "tensor" else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            what = "a tensor" if kind == "tensor" else "a number" if isinstance(kind, tuple) else f"an {kind.__name__}"
            raise UsageError(f"checkpoint {path} is damaged: its training state's {key!r} is missing or not {what}")
    if not bool(torch.isfinite(state["w"]).all()):
        raise UsageError(f"checkpoint {path} is damaged: its model holds NaN or infinite values")
    return payload


def metrics_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_metrics(run_dir: str | Path, strict: bool = False) -> list[dict]:
    """Records of ``metrics.jsonl``.

    A damaged *last* line (a writer killed mid-line) is dropped with a
    :class:`DamagedFileWarning` naming the file and the number of intact records kept,
    unless ``strict``, when it is an error.  Damage before the last line, or rounds
    that do not increase (records appended twice), is always an error naming the file
    and the line; so is an intact file of a finished run that holds another number of records
    than its summary says it wrote (``metrics_records``: lines lost or added by a second writer).
    A figure is never drawn from a silently wrong file.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise UsageError(f"{path} does not exist: not a run directory, or the run never evaluated a round")
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise UsageError(f"{path} cannot be read: {exc.strerror or exc}") from None
    records: list[dict] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("round"), int):
                raise ValueError("not a metrics record")
        except (ValueError, UnicodeDecodeError):
            message = f"{path} is damaged at line {number}"
            if any(l.strip() for l in lines[number:]):
                raise UsageError(f"{message} (intact lines follow it: the file was corrupted, not truncated)") from None
            if strict:
                raise UsageError(f"{message} (a truncated last line)") from None
            warnings.warn(
                f"{message} (a truncated last line): recovered the {len(records)} intact records before it",
                DamagedFileWarning,
                stacklevel=2,
            )
            return records
        if records and record["round"] <= records[-1]["round"]:
            raise UsageError(
                f"{path} is damaged at line {number}: round {record['round']} follows round {records[-1]['round']} "
                "(records written twice?)"
            )
        records.append(record)
    written = _finished_records(Path(run_dir))
    if written is not None and written != len(records):
        raise UsageError(
            f"{path} holds {len(records)} records, but {Path(run_dir) / SUMMARY} says the finished run wrote "
            f"{written}: the file was changed after the run (a second writer?); run it again"
        )
    return records


def _finished_records(run_dir: Path) -> int | None:
    """How many records a finished run's summary says it wrote (``None``: not finished, or not recorded)."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") != "finished":
        return None
    written = summary.get("metrics_records")
    return written if isinstance(written, int) and not isinstance(written, bool) else None


def count_records(run_dir: str | Path) -> int:
    """The records ``metrics.jsonl`` holds: one per line (0 when there is no file)."""
    path = Path(run_dir) / METRICS
    return path.read_bytes().count(b"\n") if path.exists() else 0


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path} is damaged or not JSON: {exc}") from None


def is_run_temporary(name: str) -> bool:
    """``name`` is a temporary file :func:`atomic_write` leaves behind when killed while writing a run file."""
    return name.endswith(TEMP_SUFFIX) and any(name.startswith(f".{run_file}.") for run_file in RUN_FILES)


def looks_like_run_dir(path: Path) -> bool:
    """``path`` holds run files and the temporaries of their atomic writes, nothing else, and at least one
    of them (a run killed in its very first write leaves only a temporary): the only kind of folder
    ``--force`` may empty."""
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(n in RUN_FILES or is_run_temporary(n) for n in names)


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporaries of run files that a killed writer left in ``run_dir``.  Only for the
    holder of the run's lock (:mod:`perfedavg.runs.lock`): no live writer can own one then."""
    for path in run_dir.iterdir():
        if is_run_temporary(path.name):
            path.unlink(missing_ok=True)


def only_temporaries(path: Path) -> bool:
    """``path`` holds nothing but temporaries of run files: a run killed before its first file was in place."""
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(is_run_temporary(n) for n in names)


# -- the writer ----------------------------------------------------------------------------
def write_config(run_dir: str | Path, config: Mapping[str, Any]) -> None:
    """``config.toml``: the resolved run config (``RunConfig.to_dict()``), atomically."""
    atomic_write_text(Path(run_dir) / CONFIG, dumps_toml(config))


def metrics_line(record: Mapping[str, Any]) -> bytes:
    """One record of ``metrics.jsonl``: compact JSON and a newline."""
    return json.dumps(record).encode() + b"\n"


def write_metrics(run_dir: str | Path, data: bytes | list[dict]) -> bytes:
    """``metrics.jsonl`` replaced atomically by ``data``: the file's bytes, or its records; returns the bytes."""
    if not isinstance(data, bytes):
        data = b"".join(metrics_line(record) for record in data)
    atomic_write_bytes(Path(run_dir) / METRICS, data)
    return data


def sync_metrics(run_dir: str | Path) -> None:
    """Make every record of ``metrics.jsonl`` durable (fsync). A checkpoint, which counts the records and
    hashes their bytes, is saved only after this: after a power loss it never claims bytes the file lost."""
    path = Path(run_dir) / METRICS
    if path.exists():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())


class MetricsLog:
    """``metrics.jsonl`` open for appending after the ``prefix`` it already holds (``records`` of them),
    counting the records, the bytes and their SHA-256 that a checkpoint stores."""

    def __init__(self, run_dir: str | Path, prefix: bytes = b"", records: int = 0):
        self.path = Path(run_dir) / METRICS
        self.records, self.n_bytes, self._hasher = records, len(prefix), hashlib.sha256(prefix)
        self._file: BinaryIO | None = None

    def __enter__(self) -> MetricsLog:
        self._file = self.path.open("ab")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` and flush it to the operating system (a crash keeps every line written)."""
        assert self._file is not None, "MetricsLog.append outside its with block"
        line = metrics_line(record)
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:  # a full disk: say which file
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc
        self._hasher.update(line)
        self.n_bytes += len(line)
        self.records += 1

    def sha256(self) -> str:
        return self._hasher.hexdigest()


def provenance(task_name: str, label: str) -> dict:
    """What every summary records of where its numbers come from: the task's ``label``, the
    :func:`code_version` of task ``task_name``, and the :func:`library_versions`."""
    return {"task": label, "code_version": code_version(task_name), "versions": library_versions()}


def run_summary(
    status: str,
    *,
    message: str,
    rounds_completed: int,
    checkpoint_round: int | None,
    diverged_at_round: int | None,
    signal: str | None,
    final: Mapping[str, Any] | None,
    metrics_records: int,
    wall_seconds: float,
    cpu_seconds: float | None,
    origin: Mapping[str, Any],
    **extra: Any,
) -> dict:
    """The ``summary.json`` of a run that ended (``status`` finished, diverged or interrupted):
    ``final`` is the last record without its per-client lists; ``metrics_records`` the number of records
    ``metrics.jsonl`` holds as the summary is written (what :func:`read_metrics` checks a finished run's
    file against); ``cpu_seconds`` is this process's
    CPU time over the rounds (on a shared machine wall time also counts waiting for a core), left
    out when ``None``; ``origin`` is :func:`provenance`; ``extra`` keys follow."""
    summary = {
        "status": status,
        "message": message,
        "rounds_completed": rounds_completed,
        "checkpoint_round": checkpoint_round,
        "diverged_at_round": diverged_at_round,
        "signal": signal,
        "final": {k: v for k, v in (final or {}).items() if k != "per_client"},
        "metrics_records": metrics_records,
        "wall_seconds": wall_seconds,
    }
    if cpu_seconds is not None:
        summary["cpu_seconds"] = cpu_seconds
    return {**summary, **origin, **extra}


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """``summary.json``, atomically; written last, so a summary that says finished means the rest is in place."""
    atomic_write_json(Path(run_dir) / SUMMARY, summary)
