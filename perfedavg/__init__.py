"""perfedavg: the engine of the Per-FedAvg toolkit and the machinery around it.

* :mod:`perfedavg.engine`: Algorithm 1 (local steps, round loop, sampling, objectives, oracles);
* :mod:`perfedavg.runs`: configs, run directories, resume, the task registry, ``perfedavg run``;
* :mod:`perfedavg.sweep` and :mod:`perfedavg.bench`: many runs, and the engine's speed;
* :mod:`perfedavg.cli`: the ``perfedavg`` command.

Light by design: importing the package imports neither torch nor the subcommands.
``docs/architecture.md`` draws the layers and says where to start reading.
"""

__version__ = "0.1.0"
