"""Seconds per seed of a method (ERM by default) on the image tasks, against the issue's 2-minute target.

Usage::

    python benchmarks/bench_images.py [--tasks mnist-cifar mnist-cifar-b mnist-cifar-c] [--seeds 0 1]
        [--method erm] [--data-dir ../shared/data] [--device cpu|cuda] [--threads 2]
        [--target-seconds 120] [--json PATH]

The defaults time suite ``images`` v2's three variants on seed 0 (target: at most 2 minutes of wall
time per seed per variant on 2 cores). A baseline job, ERM on synthetic v2's ``lms5`` seed 0, runs
first in the same process; each image job reports its wall time as a ratio to it, so runs on
different machines compare.

Each (task, seed) job runs through :func:`sbbench.runner.run_job` as ``sbbench score --workers 1``
runs it, except that ``fit`` runs in this process (no isolation, no model hand-over): the data
is built (or read from the on-disk cache, which is warmed first and not timed), the method
trains the task's backbone with the task's budget, and every metric of the task is computed.
``train_seconds`` covers data access plus ``fit``; ``eval_seconds`` the metrics. On a shared CPU
wall time depends on the other load, so each job also reports ``cpu_seconds``, the CPU time of
this process (all its threads) during the job: on an otherwise idle machine with ``T`` threads
the wall time is at least ``cpu_seconds / T``. A ``torch.mm`` probe before and after (GFLOP/s of
a 1024^3 product, best of 5) shows the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sbbench.data.images.sources import DATA_DIR_ENV
from sbbench.methods.registry import resolve_method
from sbbench.runner import build_data, default_device, run_job
from sbbench.tasks import IMAGE_ATTACKS, IMAGE_V2_ATTACK, IMAGE_V2_VARIANTS, TASKS

SUMMARY = ("acc", "s_rand_wga", "s_rand_acc", "s_rand_auc", "sc_rand_auc", "fresh_s_rand_auc", "fresh_sc_rand_auc",
           "feature_availability", *(f"adv_acc_{attack.tag}" for attack in (*IMAGE_ATTACKS, IMAGE_V2_ATTACK)))
BASELINE_TASK = "lms5"
"""The baseline job's task (synthetic v2), seed 0, ERM."""


def matmul_gflops(device: torch.device, size: int = 1024, repeats: int = 5) -> float:
    """Best GFLOP/s of a square fp32 ``torch.mm`` on ``device``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def timed_job(method: str, task_name: str, seed: int, device: torch.device) -> dict:
    """Run one job as ``sbbench score`` does (data caches warmed first, not timed); its times and summary metrics."""
    info, task = resolve_method(method), TASKS[task_name]
    build_data(task, seed)
    cpu_started, started = time.process_time(), time.perf_counter()
    result = run_job(info, info.configure({}), task, seed, device=device)
    return {"method": method, "task": task_name, "seed": seed, "status": result.status, "error": result.error,
            "wall_seconds": round(time.perf_counter() - started, 1), "train_seconds": round(result.train_seconds, 1),
            "eval_seconds": round(result.eval_seconds, 1), "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "metrics": {key: round(result.metrics[key], 4) for key in SUMMARY if key in result.metrics}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(IMAGE_V2_VARIANTS.values()))
    parser.add_argument("--method", default="erm")
    parser.add_argument("--target-seconds", type=float, default=120.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(args.data_dir)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    report = {"device": str(device), "threads": torch.get_num_threads(), "platform": platform.platform(),
              "torch": torch.__version__, "gflops_before": matmul_gflops(device), "method": args.method,
              "target_seconds": args.target_seconds, "jobs": []}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    baseline = timed_job("erm", BASELINE_TASK, 0, device)
    report["baseline"] = baseline
    print(json.dumps({"baseline": baseline}), flush=True)
    for name in args.tasks:
        for seed in args.seeds:
            job = timed_job(args.method, name, seed, device)
            job["ratio_to_baseline"] = round(job["wall_seconds"] / baseline["wall_seconds"], 1)
            job["target_met"] = job["wall_seconds"] <= args.target_seconds
            report["jobs"].append(job)
            print(json.dumps(job), flush=True)
    report["gflops_after"] = matmul_gflops(device)
    print(f"matmul probe: {report['gflops_before']:.0f} GFLOP/s before, {report['gflops_after']:.0f} after "
          f"({report['device']}, {report['threads']} threads)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
