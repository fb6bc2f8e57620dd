"""perfedavg: the engine of the Per-FedAvg toolkit (local steps, round loop, runs, CLI).

Light by design: importing the package imports neither torch nor the subcommands;
see :mod:`perfedavg.engine.rounds` for the round loop and :mod:`perfedavg.cli` for the commands.
"""

__version__ = "0.1.0"
