"""``perfedavg bench``: the engine's speed on the paper's workload, against a per-client loop.

Imports go one way, each module only from those above it:

* :mod:`~perfedavg.bench.workload`: the workload and its FLOP counts (no torch);
* :mod:`~perfedavg.bench.pool`: the distribution over runs, and whether a host was quiet (no torch);
* :mod:`~perfedavg.bench.loop`: the per-client ``nn.Module`` loop the engine is timed against;
* :mod:`~perfedavg.bench.measure`: the timing itself and the matmul throughput;
* :mod:`~perfedavg.bench.plot`: the picture of pooled runs;
* :mod:`~perfedavg.bench.cli`: the command line (loads the measurement and the picture when used).
"""
