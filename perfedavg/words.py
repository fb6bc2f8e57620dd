r"""The words the toolkit prints: help text wrapped to the terminal, "did you mean", plurals.

One home for how text meets a person (torch-free; every layer may import it):

* :class:`HelpFormatter`: every ``perfedavg`` parser's formatter (:mod:`perfedavg.cli` sets it on
  each parser, nested ones included): text is wrapped to :func:`help_width`, line breaks written on
  purpose are kept, and an indented listing row (``  name   what it is``) wraps under its text column;
* :func:`fill_block`: the same wrapping for text printed outside argparse (``--list-tasks``);
* :func:`did_you_mean`: the closest known name to a misspelt one (difflib), as a hint;
* :func:`plural`: ``1 seed``, ``3 seeds``.

An option's help writes its default as ``[default: X]``, as ``run --help``'s option table does, in the
help string itself (tests/test_words.py checks every parser), so the source reads as the help prints.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import textwrap
from collections.abc import Iterable

#: help text is wrapped to the terminal's width, but never wider than this (long lines are hard to read)
MAX_WIDTH = 100
#: nor narrower than this (a tiny or unknown terminal still gets readable text)
MIN_WIDTH = 40

#: an indented listing row: indentation, a name, then two or more spaces before its text
_ROW = re.compile(r"^(\s+\S+\s{2,})\S")


def help_width() -> int:
    """Columns to wrap help text to: the terminal's (``$COLUMNS`` first), in [MIN_WIDTH, MAX_WIDTH]."""
    columns = shutil.get_terminal_size((MAX_WIDTH + 2, 24)).columns - 2
    return max(MIN_WIDTH, min(MAX_WIDTH, columns))


def fill_block(text: str, width: int | None = None) -> str:
    """``text`` with every line longer than ``width`` wrapped; shorter lines and blank lines kept.

    A wrapped line continues under its own indentation, or, for a listing row (indentation, a name,
    two or more spaces, its text), under the row's text column.
    """
    width = width or help_width()
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        row = _ROW.match(line)
        indent = len(row.group(1)) if row else len(line) - len(line.lstrip())
        if indent > width // 2:  # a name too long for a hanging column: continue under the line's start
            indent = len(line) - len(line.lstrip())
        out.append(
            textwrap.fill(
                line.strip(),
                width=width,
                initial_indent=line[: len(line) - len(line.lstrip())],
                subsequent_indent=" " * indent,
                break_on_hyphens=False,
            )
        )
    return "\n".join(out)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter at :func:`help_width`, keeping the line breaks a description or epilog
    writes on purpose and wrapping every longer line (:func:`fill_block`)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 28, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, width or help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        block = fill_block(text, max(MIN_WIDTH, width - len(indent)))
        return "\n".join(indent + line if line else line for line in block.splitlines())


def closest(word: object, known: Iterable[str]) -> str | None:
    """The known name closest to a misspelt ``word`` (difflib; a case slip counts), or ``None``."""
    if not isinstance(word, str):
        return None
    names = list(known)
    folded = {name.lower(): name for name in names}  # a case slip (sigma_g for sigma_G) first
    if word.lower() in folded:
        return folded[word.lower()]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """`` (did you mean 'alpha'?)`` for the known name closest to ``word`` (:func:`closest`), or ``""``."""
    match = closest(word, known)
    return f" (did you mean {match!r}?)" if match else ""


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 seed"``, ``"3 seeds"``; ``plural_form`` for an irregular word (``plural(2, "entry", "entries")``)."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def seed_summary(seeds: int) -> str:
    """How a table's cells summarise its seeds: ``"5 seeds, mean ± sample std over seeds"``, or for one seed
    ``"1 seed (no spread over seeds)"`` (one value has no sample standard deviation)."""
    if seeds == 1:
        return "1 seed (no spread over seeds)"
    return f"{plural(seeds, 'seed')}, mean ± sample std over seeds"
