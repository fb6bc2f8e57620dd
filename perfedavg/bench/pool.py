"""Pooling bench runs: the distribution over runs of one workload, and whether a run's host was quiet.

On a shared machine the neighbours' load moves one run's ratios, so a verdict rests on the
distribution over runs (``--repeat N``, ``--pool FILE...``), not on one run.  No torch: pooling
saved results times nothing.
"""

from __future__ import annotations

import json
import statistics

from perfedavg.errors import UsageError

#: the largest spread of a run's bmm throughput samples (:func:`throughput_spread`; one sample before and one
#: after each variant) at which the host counts as quiet: it lies between the spreads of the saved runs on a
#: quiet host and of those under load from other tenants (benchmarks/README.md).  Load that lasts through a
#: whole run moves no sample against another and goes unseen.
QUIET_SPREAD = 0.15
#: a run's fields that :func:`perfedavg.bench.measure.run_bench` measures (the rest of its JSON describes the
#: workload and the machine)
MEASURED = ("variants", "matmul_gflops", "matmul_gflops_samples", "matmul_gflops_spread", "host_quiet")


def throughput_spread(samples: list[float]) -> float:
    """``max / min - 1`` of a run's bmm throughput samples: how far the machine's speed moved during the
    run (other tenants of a shared host; see :data:`QUIET_SPREAD`)."""
    return max(samples) / min(samples) - 1.0


def pool(runs: list[dict]) -> dict:
    """Per variant, the distribution over bench runs of the same workload: the median, least and greatest
    ``speedup`` (each run's own ratio of medians), every run's speedup and fraction of the bmm throughput
    in run order, the medians of ``engine_ms``, ``loop_ms`` and ``fraction_of_matmul``, and the speedup
    median over the runs on a quiet host only (:data:`QUIET_SPREAD`; None when there is none); and which
    runs were quiet.  ``runs`` are single-run results (:func:`perfedavg.bench.measure.run_bench`), for one
    machine's load is the noise that a single run cannot average out."""
    flags = [_quiet(run) for run in runs]
    quiet = [run for run, flag in zip(runs, flags) if flag]
    variants: dict[str, dict] = {}
    for variant in runs[0]["variants"]:
        speedups = _values(runs, variant, "speedup")
        variants[variant] = {
            "speedup_median": round(statistics.median(speedups), 2),
            "speedup_min": min(speedups),
            "speedup_max": max(speedups),
            "speedups": speedups,
            "speedup_median_quiet": round(statistics.median(_values(quiet, variant, "speedup")), 2) if quiet else None,
            "engine_ms_median": round(statistics.median(_values(runs, variant, "engine_ms")), 3),
            "loop_ms_median": round(statistics.median(_values(runs, variant, "loop_ms")), 3),
            "fraction_of_matmul_median": round(statistics.median(_values(runs, variant, "fraction_of_matmul")), 3),
            "fractions_of_matmul": _values(runs, variant, "fraction_of_matmul"),
        }
    return {"runs": len(runs), "quiet_runs": len(quiet), "host_quiet": flags, "variants": variants}


def _values(runs: list[dict], variant: str, key: str) -> list:
    """``key`` of ``variant`` in each of ``runs``, in run order."""
    return [run["variants"][variant][key] for run in runs]


def _quiet(run: dict) -> bool:
    """Whether a run's host was quiet: its ``host_quiet``, or for a saved run without one, from its samples."""
    return run.get("host_quiet", throughput_spread(run["matmul_gflops_samples"]) <= QUIET_SPREAD)


def pool_files(paths: list[str]) -> dict:
    """:func:`pool` over saved bench results (each a single run's JSON or a ``--repeat`` one's), which must
    share the workload, dtype, device, thread count and variants: the first run's description, the files,
    the pool."""
    saved = [(path, _saved_runs(path)) for path in paths]
    runs = [run for _, found in saved for run in found]
    like = ("workload", "dtype", "device", "threads")
    for path, found in saved:
        for run in found:
            if any(run.get(k) != runs[0].get(k) for k in like) or set(run["variants"]) != set(runs[0]["variants"]):
                raise UsageError(
                    f"--pool: {path} measured another workload, dtype, device, thread count or set of "
                    f"variants than {paths[0]}; only like runs pool"
                )
    first = {k: v for k, v in runs[0].items() if k not in (*MEASURED, "runs", "pooled", "repeat")}
    return {**first, "files": [str(p) for p in paths], "pooled": pool(runs)}


def _saved_runs(path: str) -> list[dict]:
    """The single-run results in the saved bench JSON at ``path`` (a ``--repeat`` file's runs, each with the
    file's description); a one-line :class:`UsageError` for anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except OSError as e:
        raise UsageError(f"--pool: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"--pool: {path} is not JSON ({e})") from None
    runs = [{**saved, **run} for run in saved.get("runs", [saved])] if isinstance(saved, dict) else []
    fields = ("speedup", "engine_ms", "loop_ms", "fraction_of_matmul")
    if not runs or not all(
        isinstance(run, dict)
        and run.get("variants")
        and run.get("matmul_gflops_samples")
        and all(isinstance(v, dict) and all(f in v for f in fields) for v in run["variants"].values())
        for run in runs
    ):
        raise UsageError(
            f"--pool: {path} is not a perfedavg bench result (single or --repeat run; pooled outputs "
            f"do not pool again: pool their files)"
        )
    return runs
