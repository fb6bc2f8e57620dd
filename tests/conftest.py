"""Suite-wide settings.

Tiny tasks run fastest on one thread: with torch's default of one thread per core, a
loaded 2-core machine made a small round about 13x slower (thread thrash).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch

torch.set_num_threads(1)
