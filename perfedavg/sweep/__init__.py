"""``perfedavg sweep``: one sweep definition, many runs, on this machine or a Ray cluster.

Imports go one way, each module only from those above it:

* :mod:`~perfedavg.sweep.spec`: the sweep file, its expansion into named units (no torch);
* :mod:`~perfedavg.sweep.worker`: one unit into its run directory, and whether a run is done;
* :mod:`~perfedavg.sweep.backends`: where units run (a local process pool, Ray);
* :mod:`~perfedavg.sweep.scheduler`: in flight, retries, the sweep's summary;
* :mod:`~perfedavg.sweep.cli`: the command line (loads the worker and the scheduler when a sweep runs).
"""
