"""The architecture as rules a change cannot silently break (docs/architecture.md draws it).

Imports point one way: ``theory`` and ``perfedavg.engine`` at the bottom, the tasks (``synthetic``,
``empirical``) above the engine, the machinery around runs (``perfedavg.runs``, ``sweep``, ``bench``)
above them, ``figures`` and the command line on top. The engine does no disk I/O; no module imports
itself through a cycle; a module longer than :data:`MAX_LINES` says why in its docstring.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("perfedavg", "theory", "synthetic", "empirical", "figures")
#: a module past this many lines must state why in its docstring (a sentence containing "lines")
MAX_LINES = 400

#: module prefix -> project modules it must never import, at any depth of the file (function-local too)
FORBIDDEN = {
    "perfedavg.engine": (
        "perfedavg.runs",
        "perfedavg.sweep",
        "perfedavg.bench",
        "perfedavg.cli",
        "theory",
        "synthetic",
        "empirical",
        "figures",
    ),
    # theory may use the package's torch-free helpers (perfedavg.errors, perfedavg.runs.config's TOML reader)
    "theory": ("perfedavg.engine", "perfedavg.sweep", "perfedavg.bench", "synthetic", "empirical", "figures", "torch"),
    "perfedavg.runs": ("perfedavg.sweep", "perfedavg.bench", "figures"),
    "perfedavg.sweep": ("perfedavg.bench", "figures"),
    "synthetic": ("figures",),
    "empirical": ("figures",),
}
#: calls that touch the disk; the engine computes, the runs layer writes
DISK_CALLS = ("open", "write_text", "write_bytes", "read_text", "read_bytes", "save", "load", "mkdir", "unlink")


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Dotted names ``module`` imports (relative imports resolved), at module level only if asked."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also what `if TYPE_CHECKING:`-free blocks at the top (try/if) import
        nodes = [
            n
            for stmt in tree.body
            for n in ast.walk(stmt)
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ] + [
            n
            for stmt in tree.body
            if isinstance(stmt, ast.ClassDef)
            for n in stmt.body
            if isinstance(n, (ast.Import, ast.ImportFrom))
        ]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(files: dict[str, Path]) -> list[str]:
    out = []
    for module, path in files.items():
        for prefix, banned in FORBIDDEN.items():
            if not _within(module, prefix):
                continue
            for name in imports(path, module):
                hit = next((b for b in banned if _within(name, b)), None)
                if hit:
                    out.append(f"{module} imports {name} ({prefix} must not import {hit})")
    return sorted(set(out))


def import_cycles(files: dict[str, Path]) -> list[list[str]]:
    """Cycles among project modules through module-level imports (what Python executes on import)."""
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imports(path, module, top_level_only=True):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and not _within(module, name):  # a package's own __init__ is no cycle
                targets.add(name)
        graph[module] = targets
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def engine_disk_calls(files: dict[str, Path]) -> list[str]:
    out = []
    for module, path in files.items():
        if not _within(module, "perfedavg.engine"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
                if name in DISK_CALLS and not (name == "load" and owner == "json"):
                    out.append(f"{module}:{node.lineno} calls {name}")
    return out


def long_modules_without_reason(files: dict[str, Path]) -> list[str]:
    out = []
    for module, path in files.items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "lines" not in doc:
            out.append(f"{module}: {lines} lines, and its docstring does not say why")
    return out


def test_imports_point_one_way():
    assert layer_violations(module_files()) == []


def test_no_import_cycle():
    assert import_cycles(module_files()) == []


def test_the_engine_does_no_disk_io():
    assert engine_disk_calls(module_files()) == []


def test_long_modules_say_why():
    assert long_modules_without_reason(module_files()) == []


def test_help_imports_no_torch():
    """``perfedavg --help`` (every subcommand's parser) starts without torch."""
    code = "import sys; from perfedavg.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("planted", ["layer", "cycle", "disk", "long"])
def test_each_rule_catches_a_planted_violation(tmp_path, planted):
    """Each rule above fails on a tree with one planted fault (a rule that cannot fail checks nothing)."""
    engine = tmp_path / "perfedavg" / "engine"
    engine.mkdir(parents=True)
    (tmp_path / "perfedavg" / "__init__.py").write_text("")
    (engine / "__init__.py").write_text("")
    body = {
        "layer": "from perfedavg.runs import rundir\n",
        "cycle": "from perfedavg.engine import b\n",
        "disk": "def f(p):\n    return open(p).read()\n",
        "long": '"""A module."""\n' + "x = 1\n" * (MAX_LINES + 1),
    }[planted]
    (engine / "a.py").write_text(body)
    (engine / "b.py").write_text("from perfedavg.engine import a\n" if planted == "cycle" else "")
    files = {
        "perfedavg": tmp_path / "perfedavg" / "__init__.py",
        "perfedavg.engine": engine / "__init__.py",
        "perfedavg.engine.a": engine / "a.py",
        "perfedavg.engine.b": engine / "b.py",
    }
    found = {
        "layer": layer_violations,
        "cycle": import_cycles,
        "disk": engine_disk_calls,
        "long": long_modules_without_reason,
    }[planted](files)
    assert found, planted


# --- references: the repository names only files a reader of the repository can open -------------------

#: names that point outside the repository or at files it does not hold (written in two parts so that this
#: file does not mention them itself)
OUTSIDE = ("../" + "shared", "PAPER" + ".md", "DESIGN" + ".md")
#: the one allowed outside name, MACHINE_DATA: a fallback folder of offline MNIST / CIFAR-10 copies
#: that a machine may provide next to the checkout.  Only these files may name it (the Makefile's and the
#: test fixtures' default for PERFEDAVG_DATA, the skip reasons and marker text that name that default);
#: never the README, docs, or the package's code and help
MACHINE_DATA = "../" + "shared/data"
MACHINE_DATA_FILES = frozenset(
    {
        "Makefile",
        "pyproject.toml",
        "tests/empirical_fixtures.py",
        "tests/test_cuda.py",
        "tests/test_golden.py",
        "tests/test_empirical_data.py",
        "tests/test_empirical_partition.py",
        "tests/test_empirical_tasks.py",
    }
)
#: a Markdown link's target, and a backticked word without spaces (a path candidate)
LINK = re.compile(r"\]\(([^)\s]+)\)")
BACKTICKED = re.compile(r"`([^`\s]+)`")


def tracked_text_files(root: Path = REPO) -> dict[str, str]:
    """``{path: text}`` of every file git tracks under ``root`` that is UTF-8 text."""
    names = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=root, check=True).stdout.split()
    out = {}
    for name in names:
        path = root / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def outside_mentions(files: dict[str, str]) -> list[str]:
    """``path:line: text`` of every mention of a file outside the repository or absent from it."""
    found = []
    for name, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            for word in OUTSIDE:
                start = line.find(word)
                while start >= 0:
                    allowed = line.startswith(MACHINE_DATA, start) and name in MACHINE_DATA_FILES
                    if not allowed:
                        found.append(f"{name}:{number}: {line.strip()}")
                    start = line.find(word, start + 1)
    return found


def missing_paths(root: Path, files: dict[str, str]) -> list[str]:
    """``path:line: target`` of every link (relative to the page) or backticked repository path (relative to
    the root: its first part is a tracked top-level file or folder) in README.md and docs/*.md that does not
    exist; a path with ``*`` must match something, one with ``<`` is a pattern and is skipped."""
    top = {name.split("/")[0] for name in files}
    found = []
    pages = [name for name in files if name == "README.md" or (name.startswith("docs/") and name.endswith(".md"))]
    for page in pages:
        for number, line in enumerate(files[page].splitlines(), 1):
            targets = [
                Path(os.path.normpath((root / page).parent / t.split("#")[0]))
                for t in LINK.findall(line)
                if not re.match(r"[a-z]+:", t) and not t.startswith("#")
            ]
            targets += [
                root / t
                for t in BACKTICKED.findall(line)
                if t.split("/")[0] in top and ("/" in t or t in files) and "<" not in t
            ]
            for target in targets:
                exists = any(target.parent.glob(target.name)) if "*" in target.name else target.exists()
                if not exists:
                    found.append(f"{page}:{number}: {os.path.relpath(target, root)}")
    return found


def test_no_reference_leaves_the_repository():
    assert outside_mentions(tracked_text_files()) == []


def test_every_named_path_exists():
    assert missing_paths(REPO, tracked_text_files()) == []


@pytest.mark.parametrize("planted", ["outside", "allowed-elsewhere", "link", "backticked"])
def test_reference_rules_catch_a_planted_fault(tmp_path, planted):
    """Each reference rule fails on one planted fault (and a clean tree passes both)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "theory").mkdir()
    (tmp_path / "theory" / "DERIVATIONS.md").write_text("x\n")
    files = {
        "README.md": "See [the paper](docs/paper.md) and `theory/DERIVATIONS.md`.\n",
        "docs/paper.md": "Back to [README](../README.md).\n",
        "theory/DERIVATIONS.md": "x\n",
        "Makefile": f"PERFEDAVG_DATA ?= {MACHINE_DATA}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert outside_mentions(files) == [] and missing_paths(tmp_path, files) == []  # before the plant
    if planted == "outside":
        files["theory/DERIVATIONS.md"] = "see `" + OUTSIDE[0] + "/docs/paper.md`\n"
    elif planted == "allowed-elsewhere":
        files["README.md"] += f"The data lives in `{MACHINE_DATA}`.\n"
    elif planted == "link":
        files["README.md"] += "[gone](docs/gone.md)\n"
    else:
        files["docs/paper.md"] += "Code: `theory/nosuch.py`.\n"
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = outside_mentions(files) + missing_paths(tmp_path, files)
    assert len(found) == 1, found
