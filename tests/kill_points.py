"""``python tests/kill_points.py N ARGS...``: ``perfedavg ARGS...`` that SIGKILLs itself at the N-th
file-system point of its run directory (:mod:`perfedavg.runs.faults`; N = 0: never), printing the
number of points it met last, as ``points=P``."""

from __future__ import annotations

import sys

from perfedavg.runs import faults

if __name__ == "__main__":
    faults.arm(int(sys.argv[1]))
    from perfedavg.cli import main

    code = main(sys.argv[2:])
    print(f"points={faults.passed()}")
    sys.exit(code)
