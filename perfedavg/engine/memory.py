"""How much memory the engine may take on a device, for the checks that refuse a run before it allocates."""

from __future__ import annotations

import os

import torch

#: the share of a device's memory (CUDA: its own; CPU: the machine's physical memory) that one run's
#: buffers whose size the options choose (a round's draws, the sample-space caches) may take
MEMORY_SHARE = 0.5


def memory_budget(device: torch.device | str) -> int:
    """Bytes a run's option-sized buffers may take on ``device``: :data:`MEMORY_SHARE` of its memory, no
    limit where that is unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        total = int(torch.cuda.get_device_properties(device).total_memory)
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 2**63 - 1
    return int(total * MEMORY_SHARE)


def in_units(size: float) -> str:
    """``size`` bytes in B, KiB, MiB or GiB (e.g. ``1.5 GiB``)."""
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"
