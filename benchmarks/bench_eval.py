"""Where one score's time goes: training and every evaluation family, per task of a suite.

Usage: ``python benchmarks/bench_eval.py [--suite synthetic] [--seed 0] [--threads 1] [--json PATH]``.

For each task of the suite, in this process and with ``--threads`` torch threads (a scoring
worker's setting), it builds the seed's data, trains ERM exactly as ``run_job`` does, then runs
``evaluate`` and the feature-availability probe under ``cProfile`` and reports the seconds spent
in each metric family, read from the profile's cumulative times:

* ``clean``: logits, accuracy and AUC on the test split;
* ``block randomization``: S- and S^c-randomized accuracy and AUC (``R`` repeats each);
* ``block swaps``: S- and S^c-swapped accuracy;
* ``pgd``: every PGD attack (and the adversarial accuracies on its perturbations);
* ``universal``: SVD and stochastic universal perturbations with their accuracies;
* ``coordinate profiles``: per-coordinate randomization and swap curves;
* ``feature availability``: penultimate features and the linear probe.

The families add up to the evaluation's wall time within the profiler's own overhead, which is
printed as the remainder. Data building is not counted (``run_job`` memoises it per process).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import time
from pathlib import Path

import torch

from sbbench.methods.registry import resolve_method
from sbbench.metrics.availability import feature_availability
from sbbench.metrics.evaluate import evaluate
from sbbench.runner import build_data, default_device, fit_in_process, train_context
from sbbench.seeding import derive_seed
from sbbench.suite import get_suite

FAMILIES = {
    "block randomization": [("randomization.py", "block_randomized_metrics")],
    "block swaps": [("randomization.py", "block_swapped_accuracy")],
    "pgd": [("adversarial.py", "pgd_attack"), ("adversarial.py", "adversarial_accuracy")],
    "universal": [("adversarial.py", "svd_universal_perturbation"), ("adversarial.py", "as_uap"),
                  ("adversarial.py", "universal_accuracy")],
    "coordinate profiles": [("evaluate.py", "_coordinate_profiles")],
    "feature availability": [("availability.py", "feature_availability")],
}


def family_seconds(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each family's entry points in ``profile``."""
    stats = pstats.Stats(profile).stats  # {(file, line, function): (cc, nc, tt, ct, callers)}
    seconds = dict.fromkeys(FAMILIES, 0.0)
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        for family, points in FAMILIES.items():
            if any(filename.endswith(suffix) and function == name for suffix, name in points):
                seconds[family] += cumulative
    return seconds


def measure_task(task, seed: int) -> dict:
    """Train ERM on one task and seed, then profile its whole evaluation."""
    info = resolve_method("erm")
    device = default_device()
    data = build_data(task, seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = fit_in_process(info.cls(), train_context(task, data, info.cls.track, seed, device, lambda message: None),
                           task)
    trained = time.perf_counter()
    x, y = data.test.x.to(device), data.test.y.to(device)
    profile = cProfile.Profile()
    profile.enable()
    evaluate(model, x, y, data.space, task.metrics, seed=seed)
    feature_availability(model, data.train.x, data.train.y, data.test.x, data.test.y, data.space,
                         seed=derive_seed(seed, "feature_availability"))
    profile.disable()
    evaluated = time.perf_counter()
    families = family_seconds(profile)
    families["clean and remainder"] = (evaluated - trained) - sum(families.values())
    return {"task": task.name, "train_seconds": trained - started, "eval_seconds": evaluated - trained,
            "families": families}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="synthetic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a scoring worker's setting)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = get_suite(args.suite)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"suite {suite.label}, seed {args.seed}")
    results = []
    for task in suite.tasks:
        result = measure_task(task, args.seed)
        results.append(result)
        total = result["train_seconds"] + result["eval_seconds"]
        print(f"\n{task.name}: train {result['train_seconds']:.1f} s, evaluation {result['eval_seconds']:.1f} s "
              f"({result['eval_seconds'] / total:.0%} of the job)")
        for family, seconds in sorted(result["families"].items(), key=lambda item: -item[1]):
            print(f"  {family:<24} {seconds:7.2f} s  {seconds / result['eval_seconds']:6.1%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
