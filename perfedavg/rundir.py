"""Run directories: ``config.toml``, ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``.

Every file but the append-only ``metrics.jsonl`` is written atomically (temporary file
in the same folder, then ``os.replace``), so a crash never leaves a half-written
result.  Readers say which file is damaged, or recover the intact prefix of
``metrics.jsonl`` and say so.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

from .errors import UsageError

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.toml", "metrics.jsonl", "summary.json", "checkpoint.pt"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def read_metrics(run_dir: str | Path, strict: bool = False) -> list[dict]:
    """Records of ``metrics.jsonl``; a damaged tail (a killed writer) is dropped with a
    warning naming the file, unless ``strict``, when it is an error."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise UsageError(f"{path} does not exist: not a run directory, or the run never evaluated a round")
    records = []
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "round" not in record:
                raise ValueError("not a metrics record")
        except (ValueError, UnicodeDecodeError):
            message = f"{path} is damaged at line {number}"
            if strict or any(l.strip() for l in lines[number:]):
                raise UsageError(f"{message}; the file is corrupted beyond its last line") from None
            warnings.warn(f"{message} (a truncated last line); recovered the {len(records)} intact records before it")
            break
        records.append(record)
    return records


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise UsageError(f"{path} is damaged or not JSON: {exc}") from None


def code_version() -> str:
    """``git describe`` of the source tree when it is a checkout, else the package version."""
    here = Path(__file__).resolve().parent.parent
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


def library_versions() -> dict:
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
