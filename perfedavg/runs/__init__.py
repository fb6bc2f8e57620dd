"""One run of the engine on disk: configs from TOML and ``--set``, the run directory and its one
writer (:mod:`~perfedavg.runs.rundir`), what "done" and "the same training" mean
(:mod:`~perfedavg.runs.status`), directory names (:mod:`~perfedavg.runs.names`), resuming, the task
registry, and ``perfedavg run`` (:mod:`~perfedavg.runs.cli`, :mod:`~perfedavg.runs.runner`)."""
