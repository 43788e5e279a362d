"""Scale-out and isolation overhead: one suite scored by four executors, timed in one run.

Usage::

    python benchmarks/bench_scaleout.py [--suite synthetic] [--tasks lms5,ms57] [--seeds N]
                                        [--max-epochs E] [--method erm] [--rounds R] [--json PATH]
                                        [--configs inline,isolated,dask-1,dask-2]

Each configuration runs in a fresh Python process (so no configuration profits from data or
workers another one built) with a fresh temporary result cache, and is timed from just before
``score`` to just after it: start-up of fit children and of the Dask cluster is included.

* ``inline``: everything in one process (torch's default threads);
* ``isolated``: the default executor, ``fit`` in one persistent child process;
* ``dask-1`` / ``dask-2``: a local Dask cluster of 1 or 2 single-core workers (one torch
  thread per job), every worker isolating ``fit`` as above.

It prints the wall times, the isolation overhead (isolated vs inline), the Dask speed-up (1 vs 2
workers), Dask's 2 workers against one process using every core (``isolated``) and whether every
run's metrics are bit-identical across configurations. On a shared machine wall times move with
other people's load, so the CPU seconds of each configuration's process tree are printed too (for
``inline`` and ``isolated``, whose processes are all reaped by the time the configuration's
process exits; Dask workers' fit children are not, so Dask configurations report no CPU time).
``--tasks``, ``--seeds`` and ``--max-epochs`` make a smaller stand-in of the suite when CPU
time is scarce; the stand-in is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {"inline": ("inline", 1), "isolated": ("isolated", 1), "dask-1": ("dask-local", 1),
           "dask-2": ("dask-local", 2)}


def stand_in(suite_name: str, tasks: str | None, seeds: int | None, max_epochs: int | None):
    """The suite, optionally cut to some tasks, its first ``seeds`` seeds and at most ``max_epochs`` epochs."""
    from sbbench.suite import get_suite

    suite = get_suite(suite_name)
    chosen = [suite.task(name) for name in tasks.split(",")] if tasks else list(suite.tasks)
    if max_epochs is not None:
        chosen = [task.model_copy(update={"budget": task.budget.model_copy(update={"max_epochs": max_epochs})})
                  for task in chosen]
    return suite.model_copy(update={"tasks": tuple(chosen), "seeds": suite.seeds[:seeds] if seeds else suite.seeds})


def run_one(config: str, args: argparse.Namespace) -> dict:
    """Score the stand-in with one configuration in this process; wall time and every run's numbers."""
    from sbbench.cache import ResultCache
    from sbbench.methods.registry import resolve_method
    from sbbench.scoring import score

    suite = stand_in(args.suite, args.tasks, args.seeds, args.max_epochs)
    info = resolve_method(args.method)
    hparams = info.cls.defaults().model_dump(mode="json")
    executor, workers = CONFIGS[config]
    with tempfile.TemporaryDirectory(prefix="sbbench-bench-") as cache:
        started = time.perf_counter()
        outcome = score(info, hparams, suite, cache=ResultCache(Path(cache)), executor=executor, workers=workers)
        seconds = time.perf_counter() - started
    return {"config": config, "seconds": seconds,
            "runs": [[r.task, r.seed, r.status, r.error, r.metrics, r.profiles] for r in outcome.results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="synthetic")
    parser.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    parser.add_argument("--seeds", type=int, help="use the suite's first N seeds")
    parser.add_argument("--max-epochs", type=int, help="cap every task's epochs (a cheaper stand-in)")
    parser.add_argument("--method", default="erm")
    parser.add_argument("--rounds", type=int, default=1, help="measure every configuration this many times, "
                                                                "alternating, and report medians")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of the configurations (default: all four)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--run", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.run, args)))
        return

    forwarded = ["--suite", args.suite, "--method", args.method]
    for option, value in (("--tasks", args.tasks), ("--seeds", args.seeds), ("--max-epochs", args.max_epochs)):
        if value is not None:
            forwarded += [option, str(value)]
    suite = stand_in(args.suite, args.tasks, args.seeds, args.max_epochs)
    print(f"suite {suite.name}: tasks {', '.join(t.name for t in suite.tasks)}; seeds {list(suite.seeds)}; "
          f"epochs {[t.budget.max_epochs for t in suite.tasks]}; method {args.method}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        sys.exit(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    rounds: list[dict[str, dict]] = []
    for number in range(args.rounds):
        measured = {}
        for config in configs:
            measured[config] = _measure(config, forwarded)
            cpu = measured[config]["cpu_seconds"]
            failed = [run for run in measured[config]["runs"] if run[2] != "ok"]
            print(f"round {number + 1} {config:9s} {measured[config]['seconds']:8.1f} s wall"
                  + (f", {cpu:7.1f} s CPU (process tree, imports included)" if cpu is not None else "")
                  + f", load average {os.getloadavg()[0]:.1f}" + (f"  ({len(failed)} failed jobs!)" if failed else ""),
                  flush=True)
        rounds.append(measured)
    summary = summarize(rounds, configs)
    if "isolated" in configs and "inline" in configs:
        print(f"isolation overhead (medians over {args.rounds} round(s)): "
              f"{summary['isolation_overhead_wall_percent']:+.1f}% wall, "
              f"{summary['isolation_overhead_cpu_seconds']:+.1f} s CPU vs inline")
    if "dask-1" in configs and "dask-2" in configs:
        print(f"Dask 2 workers vs 1: {summary['dask_speedup_2_vs_1_median_times']:.2f}x faster (target >= 1.6x); "
              "per round " + ", ".join(f"{x:.2f}x" for x in summary["dask_speedup_2_vs_1_per_round"]))
    if "dask-2" in configs and "isolated" in configs:
        print(f"Dask 2 workers vs one process using every core (isolated, 1 worker): "
              f"{summary['dask_2_vs_isolated_1']:.2f}x faster")
    print(f"every run of every configuration bit-identical: {summary['identical_to_first_run']}; "
          f"load average at end {summary['load_average_at_end']:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))


def summarize(rounds: list[dict[str, dict]], configs: list[str]) -> dict:
    """Median wall and CPU times, the isolation overhead and the Dask speed-ups where measured."""
    wall = {config: statistics.median(r[config]["seconds"] for r in rounds) for config in configs}
    cpu = {config: statistics.median(r[config]["cpu_seconds"] for r in rounds)
           for config in configs if config in ("inline", "isolated")}
    reference = rounds[0][configs[0]]["runs"]
    summary = {"wall_seconds_median": wall, "cpu_seconds_median": cpu,
               "identical_to_first_run": all(m["runs"] == reference for r in rounds for m in r.values()),
               "load_average_at_end": os.getloadavg()[0]}
    if "isolated" in configs and "inline" in configs:
        summary["isolation_overhead_wall_percent"] = 100 * (wall["isolated"] / wall["inline"] - 1)
        summary["isolation_overhead_cpu_seconds"] = cpu["isolated"] - cpu["inline"]
    if "dask-1" in configs and "dask-2" in configs:
        summary["dask_speedup_2_vs_1_per_round"] = [r["dask-1"]["seconds"] / r["dask-2"]["seconds"] for r in rounds]
        summary["dask_speedup_2_vs_1_median_times"] = wall["dask-1"] / wall["dask-2"]
    if "dask-2" in configs and "isolated" in configs:
        summary["dask_2_vs_isolated_1"] = wall["isolated"] / wall["dask-2"]
    return summary


def _measure(config: str, forwarded: list[str]) -> dict:
    """Run one configuration in a fresh process: its wall time, runs, and (not for Dask) process-tree CPU time."""
    cpu_before = _children_cpu()
    done = subprocess.run([sys.executable, __file__, *forwarded, "--run", config], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        sys.exit(f"{config} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["cpu_seconds"] = None if config.startswith("dask") else _children_cpu() - cpu_before
    return measured


def _children_cpu() -> float:
    """User + system CPU seconds of every reaped descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
