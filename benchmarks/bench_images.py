"""Seconds per seed of ERM on the image tasks, with the metrics each seed gives.

Usage::

    python benchmarks/bench_images.py [--tasks mnist-cifar mnist-cifar-control] [--seeds 0 1]
        [--data-dir ../shared/data] [--device cpu|cuda] [--threads 2] [--json PATH]

Each (task, seed) job runs through :func:`sbbench.runner.run_job` exactly as ``sbbench score``
runs it: the data is built (or read from the on-disk cache, which is warmed first and not
timed), ERM trains the task's backbone with the task's budget, and every metric of the task
is computed. ``train_seconds`` covers data access plus ``fit``; ``eval_seconds`` the
metrics. On a shared CPU wall time depends on the other load, so each job also reports
``cpu_seconds``, the CPU time of this process (all its threads) during the job: on an
otherwise idle machine with ``T`` threads the wall time is at least ``cpu_seconds / T``. A
``torch.mm`` probe before and after (GFLOP/s of a 1024^3 product, best of 5) shows the load.
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
from sbbench.tasks import IMAGE_ATTACKS, TASKS

SUMMARY = ("acc", "s_rand_auc", "sc_rand_auc", "fresh_s_rand_auc", "fresh_sc_rand_auc",
           *(f"adv_acc_{attack.tag}" for attack in IMAGE_ATTACKS))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist-cifar"])
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
    info = resolve_method("erm")
    report = {"device": str(device), "threads": torch.get_num_threads(), "platform": platform.platform(),
              "torch": torch.__version__, "gflops_before": matmul_gflops(device), "jobs": []}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    for name in args.tasks:
        task = TASKS[name]
        for seed in args.seeds:
            build_data(task, seed)  # warm the data caches: the timing below is training + metrics
            cpu_started = time.process_time()
            result = run_job(info, info.configure({}), task, seed, device=device)
            job = {"task": name, "seed": seed, "status": result.status, "error": result.error,
                   "train_seconds": round(result.train_seconds, 1), "eval_seconds": round(result.eval_seconds, 1),
                   "cpu_seconds": round(time.process_time() - cpu_started, 1),
                   "metrics": {key: round(result.metrics[key], 4) for key in SUMMARY if key in result.metrics}}
            report["jobs"].append(job)
            print(json.dumps(job), flush=True)
    report["gflops_after"] = matmul_gflops(device)
    print(f"matmul probe: {report['gflops_before']:.0f} GFLOP/s before, {report['gflops_after']:.0f} after "
          f"({report['device']}, {report['threads']} threads)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
