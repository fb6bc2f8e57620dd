"""perfedavg: the engine of the Per-FedAvg toolkit and the machinery around it.

* :mod:`perfedavg.engine`: Algorithm 1 (local steps, round loop, sampling, objectives, oracles);
* :mod:`perfedavg.runs`: configs, run directories, resume, the task registry, ``perfedavg run``;
* :mod:`perfedavg.sweep` and :mod:`perfedavg.bench`: many runs, and the engine's speed;
* :mod:`perfedavg.cli`: the ``perfedavg`` command;
* :mod:`perfedavg.api`: the same from Python (``perfedavg.run``, ``perfedavg.bounds``, ...).

Light by design: importing the package imports neither torch nor the subcommands.
``docs/architecture.md`` draws the layers and says where to start reading.
"""

__version__ = "0.1.0"

#: the Python API (:mod:`perfedavg.api`), loaded on first use so that ``import perfedavg`` stays light
API = ("Result", "bounds", "build_task", "directions", "objectives", "register_task", "run", "task_constants")


def __getattr__(name: str):
    if name in API:
        from perfedavg import api

        return getattr(api, name)
    raise AttributeError(f"module 'perfedavg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
