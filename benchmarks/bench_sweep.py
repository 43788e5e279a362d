"""Wall time of one method's whole sweep (``sbbench sweep``, K trials plus the final score), against ERM's score.

Usage::

    python benchmarks/bench_sweep.py [--method jtt] [--suite synthetic] [--trials 8] [--workers 2]
        [--target-seconds 1800] [--json PATH]

Both commands run as a user runs them (``python -m sbbench ...``, isolated fit processes) in
fresh processes with a fresh result cache and a throw-away results folder. The baseline,
``sbbench score erm`` on the same suite, runs first in the same invocation; the report gives both
wall times, their ratio and whether the sweep met ``--target-seconds`` (issue target: one
method's whole sweep on synthetic v2 in at most 30 minutes on 2 cores). Run it on an otherwise
idle machine: wall times taken beside other load are not timings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_suite_score import command_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="jtt")
    parser.add_argument("--suite", default="synthetic")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target-seconds", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    workers = ["--workers", str(args.workers)]
    baseline = command_seconds(["score", "erm", "--suite", args.suite, *workers])
    sweep = command_seconds(["sweep", args.method, "--suite", args.suite, "--trials", str(args.trials), *workers])
    report = {"method": args.method, "suite": args.suite, "trials": args.trials, "workers": args.workers,
              "baseline_erm_score_seconds": round(baseline, 1), "sweep_seconds": round(sweep, 1),
              "ratio": round(sweep / baseline, 2), "target_seconds": args.target_seconds,
              "target_met": sweep <= args.target_seconds}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
