"""Algorithm 1 of the paper, FedAvg and Per-FedAvg (FO, HF, exact), vectorized over clients and seeds.

Read :mod:`~perfedavg.engine.local` first (one local step of each algorithm: the specification),
then :mod:`~perfedavg.engine.rounds` (a round, the training loop, what is measured) and
:mod:`~perfedavg.engine.oracle` (the ``Oracle`` and ``FastPath`` protocols a run is driven through,
chosen once per run; :mod:`~perfedavg.engine.mlp` is the hand-written MLP's). The engine computes:
it reads no files and writes none (that is :mod:`perfedavg.runs`'s job).
"""
