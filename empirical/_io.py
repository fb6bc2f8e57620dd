"""Checksums of downloaded data files. (Every file the package writes goes through
:func:`perfedavg.runs.rundir.atomic_write`, the project's one atomic writer.)"""

from __future__ import annotations

import hashlib
import os


def md5_bytes(data: bytes) -> str:
    """Hex md5 of ``data`` (used only to compare with published checksums)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of the file at ``path``, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
