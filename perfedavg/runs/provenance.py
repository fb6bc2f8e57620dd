"""Provenance of a result: the code and library versions a run records, and the source digest that decides
whether a checkpoint may be resumed (the code that computes results is unchanged).

No torch at import: the run-directory helpers that import this are loaded by ``--help``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import subprocess
from pathlib import Path

from perfedavg.runs.registry import TASKS

#: modules of the engine whose source decides what a run computes (hashed, with every project module they
#: import, into the code version: :func:`source_digest`)
ENGINE_MODULES = (
    "engine.config",
    "engine.rounds",
    "engine.local",
    "engine.models",
    "engine.objective",
    "engine.oracle",
    "engine.sampling",
    "engine.task",
    "runs.registry",
    "runs.config",
)


@functools.cache
def code_version(task_name: str | None = None) -> str:
    """``"<git describe> src:<digest>"``: ``git describe --always --dirty --tags`` of the source
    tree (or the package version outside a checkout), for information, plus
    :func:`source_digest`, which alone decides whether a checkpoint may be resumed
    (:func:`source_digest_of`): ``--dirty`` cannot tell two dirty trees apart, and a new
    commit or an edit elsewhere (README, the CLI, figures, other tasks) changes the
    describe part without changing what a run computes.  Computed once per process and task."""
    return f"{_described()} src:{source_digest(task_name)}"


@functools.cache
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
    from importlib.metadata import PackageNotFoundError, version  # costly to import: `--help` loads this module

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


def source_digest_of(code: str) -> str | None:
    """The ``src:`` digest of a :func:`code_version` string (``None`` when it has none, which a
    resume treats as different code)."""
    for part in code.split():
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
