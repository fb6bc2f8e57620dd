"""Run directories: ``config.toml``, ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``.

Every file but the append-only ``metrics.jsonl`` is written atomically (temporary file
in the same folder, fsync, then ``os.replace``), so a crash never leaves a half-written
result.  ``metrics.jsonl`` is guarded differently: the checkpoint stores the length and
the SHA-256 of the prefix it has seen, so a resume cuts the file back to exactly that
prefix and refuses when the prefix was changed.  Readers say which file is damaged, or
recover the intact prefix of ``metrics.jsonl`` and say so; never a silent wrong figure.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

from perfedavg.errors import UsageError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.toml", "metrics.jsonl", "summary.json", "checkpoint.pt"
#: files a run writes (``--force`` deletes only these, and only in a directory made of them)
RUN_FILES = (CONFIG, METRICS, SUMMARY, CHECKPOINT, "curves.png")
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
STATE_KEYS = ("round", "w", "generator_state", "inner_sum", "inner_terms")


class DamagedFileWarning(UserWarning):
    """A run file was damaged and only its intact prefix was used."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def output_dir(path: str | Path, option: str) -> Path:
    """``path`` made a folder (parents too, an existing one kept) for a command's output option
    ``option`` (e.g. ``"--out"``), checked before any work: when it cannot be, one
    :class:`UsageError` naming the option and the reason (a file in the way, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: choose another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not writable")
    return path


def output_file(path: str | Path, option: str) -> Path:
    """``path`` checked as a file a command will write atomically (:func:`atomic_write_bytes`) for its
    option ``option``, before any work: its folder exists and is writable and ``path`` is not a
    folder; else one :class:`UsageError` naming the option."""
    path = Path(path)
    folder = path.absolute().parent
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder, not a file")
    if not folder.is_dir():
        reason = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"{option} {path} cannot be written: {folder} {reason}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} cannot be written: {folder} is not writable")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj) -> None:
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
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a damaged file
        detail = " ".join(str(exc).split()).split(". ")[0]  # torch's first sentence says what failed; the rest is advice
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise UsageError(f"checkpoint {path} is damaged or truncated and cannot be read ({type(exc).__name__}: {detail})") from None
    if not isinstance(payload, dict):
        raise UsageError(f"checkpoint {path} is damaged: it holds a {type(payload).__name__}, not a checkpoint")
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(payload.get(key), kind) or isinstance(payload.get(key), bool):
            raise UsageError(f"checkpoint {path} is damaged or from another version: {key!r} is missing or not a {kind.__name__}")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise UsageError(f"checkpoint {path} has format {payload['format']}, this version reads format {CHECKPOINT_FORMAT}")
    state = payload["state"]
    missing = [k for k in STATE_KEYS if k not in state]
    if missing or not isinstance(state.get("w"), torch.Tensor) or not isinstance(state.get("round"), int):
        raise UsageError(f"checkpoint {path} is damaged: its training state lacks {', '.join(missing) or 'a valid w / round'}")
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
    and the line: a figure is never drawn from a silently wrong file.
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
            break
        if records and record["round"] <= records[-1]["round"]:
            raise UsageError(
                f"{path} is damaged at line {number}: round {record['round']} follows round {records[-1]['round']} "
                "(records written twice?)"
            )
        records.append(record)
    return records


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path} is damaged or not JSON: {exc}") from None


#: modules of the engine whose source decides what a run computes (hashed, with every project module they
#: import, into the code version: :func:`source_digest`)
ENGINE_MODULES = ("engine.config", "engine.rounds", "engine.local", "engine.models", "engine.objective", "engine.oracle",
                  "engine.sampling", "engine.task", "runs.registry", "runs.config")


@functools.lru_cache(maxsize=None)
def code_version(task_name: str | None = None) -> str:
    """``"<git describe> src:<digest>"``: ``git describe --always --dirty --tags`` of the source
    tree (or the package version outside a checkout), for information, plus
    :func:`source_digest`, which alone decides whether a checkpoint may be resumed
    (:func:`source_digest_of`): ``--dirty`` cannot tell two dirty trees apart, and a new
    commit or an edit elsewhere (README, the CLI, figures, other tasks) changes the
    describe part without changing what a run computes.  Computed once per process and task."""
    return f"{_described()} src:{source_digest(task_name)}"


@functools.lru_cache(maxsize=None)
def _described() -> str:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"perfedavg {version('perfedavg')}"
    except PackageNotFoundError:
        return "unknown"


def source_digest(task_name: str | None = None, root: Path | None = None) -> str:
    """First 12 hex digits of a SHA-256 of the source that decides what a run computes: the
    engine's modules (:data:`ENGINE_MODULES`), the module that builds the task ``task_name``
    (from :data:`perfedavg.runs.registry.TASKS`), and every project module they import, directly or
    not (:func:`source_files`), read under ``root`` (default: this checkout)."""
    here = root if root is not None else Path(__file__).resolve().parents[2]
    roots = [f"perfedavg.{name}" for name in ENGINE_MODULES]
    if task_name is not None:
        from perfedavg.runs.registry import TASKS

        target = TASKS.get(task_name)
        if target:
            roots.append(target.split(":")[0])
    digest = hashlib.sha256()
    for file in source_files(roots, here):
        try:
            digest.update(file.relative_to(here).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
        except OSError:
            digest.update(file.name.encode() + b"\0missing\0")
    return digest.hexdigest()[:12]


#: top-level packages of this project (imports of anything else are libraries, not hashed)
PROJECT_PACKAGES = ("perfedavg", "synthetic", "empirical", "theory", "figures")


def source_files(modules: list[str], root: Path) -> list[Path]:
    """The files of ``modules`` (dotted names) and of every project module they import,
    transitively, found by reading their ``import`` statements (also those inside functions,
    so a lazily imported oracle counts); sorted.  A module that is not there counts as its
    would-be path (hashed as missing) when it is one of ``modules``; a name imported from a
    module (``from .task import Task``) is tried as a submodule and dropped when no file has it."""
    import ast

    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in PROJECT_PACKAGES:
            continue
        base = root.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        seen[name] = path
        try:
            tree = ast.parse(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(parent + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                todo.append(origin)
                todo.extend(f"{origin}.{alias.name}" for alias in node.names)  # "from . import x": x may be a module
    return sorted({p for name, p in seen.items() if p.exists() or name in modules}, key=lambda p: p.as_posix())


def source_digest_of(version: str) -> str | None:
    """The ``src:`` digest of a :func:`code_version` string (``None`` when it has none: an old
    checkpoint, which a resume then treats as different code)."""
    for part in version.split():
        if part.startswith("src:") and len(part) > 4:
            return part[4:]
    return None


def library_versions() -> dict:
    """Versions of Python, the libraries a run depends on, and the platform."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }
    for name in ("perfedavg", "scipy", "tqdm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
