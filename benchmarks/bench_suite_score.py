"""Wall time of ``sbbench score erm`` on a suite, against synthetic v1 run back to back (the ratio target).

Usage::

    python benchmarks/bench_suite_score.py [--suite synthetic] [--baseline synthetic-v1] [--workers 2]
        [--target-seconds 180] [--json PATH]

Each score runs as the user runs it (``python -m sbbench score erm --suite ... --workers N``,
isolated fit processes) in a fresh process with a fresh result cache and a throw-away results
folder, so nothing is reused. The baseline suite is scored first in the same invocation; the
report gives both wall times, their ratio and whether the suite met ``--target-seconds``
(issue target: ERM on all of synthetic v2 x 5 seeds in <= 3 min on 2 cores). Run it on an
otherwise idle machine: wall times taken beside other load are not timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command_seconds(arguments: list[str]) -> float:
    """Wall seconds of ``python -m sbbench <arguments>`` with an empty cache and results folder; raises if it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "sbbench", *arguments, "--root", f"{scratch}/root",
                   "--cache-dir", f"{scratch}/cache"]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=scratch)
        return time.perf_counter() - started


def score_seconds(suite: str, workers: int) -> float:
    """Wall seconds of one ``sbbench score erm`` on ``suite`` with an empty cache."""
    return command_seconds(["score", "erm", "--suite", suite, "--workers", str(workers)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="synthetic")
    parser.add_argument("--baseline", default="synthetic-v1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target-seconds", type=float, default=180.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    baseline = score_seconds(args.baseline, args.workers)
    measured = score_seconds(args.suite, args.workers)
    report = {"suite": args.suite, "baseline": args.baseline, "workers": args.workers,
              "baseline_seconds": round(baseline, 1), "suite_seconds": round(measured, 1),
              "ratio": round(measured / baseline, 3), "target_seconds": args.target_seconds,
              "target_met": measured <= args.target_seconds}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
