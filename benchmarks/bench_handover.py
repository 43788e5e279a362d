"""Cost of handing a trained model from the fit process to the evaluating process as data.

Usage: ``python benchmarks/bench_handover.py [--repeats N] [--json PATH]``. For the backbones of
the synthetic and image suites, in one process, alternating the two ways, best of ``N``:

* **hand-over**: ``export_model`` + ``load_model`` (sbbench.models.transfer: torch.export to an
  ATen graph and tensors, rebuilt without running the sender's code) against the previous way,
  ``cloudpickle.dumps`` + ``pickle.loads`` of the module (which runs whatever the sender's
  pickle says). The first export in a process pays torch.export's one-time warm-up; it is
  reported on its own (a fit child pays it once, then serves many jobs).
* **use**: one forward and input-gradient pass over a 512-row batch (what every PGD step does)
  with the rebuilt model against the original module: the rebuilt graph must not slow the attacks.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import torch
from torch import nn

from sbbench.models import BackboneSpec, build_backbone
from sbbench.models.transfer import export_model, load_model

CASES = {
    "fcn 100x2, 50-d (lms5, ms57)": (BackboneSpec(kind="fcn", width=100, depth=2), (50,)),
    "fcn 300x2, 50-d (noisy-lms7)": (BackboneSpec(kind="fcn", width=300, depth=2), (50,)),
    "cnn 32x4, 3x64x32 (images)": (BackboneSpec(kind="cnn", width=32, depth=4), (3, 64, 32)),
}


def best_seconds(action: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def gradient_pass(model: nn.Module, x: torch.Tensor) -> None:
    inputs = x.clone().requires_grad_(True)
    logits = model(inputs)
    torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), inputs)


def measure(spec: BackboneSpec, shape: tuple[int, ...], repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_backbone(spec, shape).eval()
    example, batch = torch.randn(8, *shape), torch.randn(512, *shape)
    rebuilt = load_model(export_model(model, example))
    handover = {"export": float("inf"), "pickle": float("inf")}
    use = {"rebuilt": float("inf"), "original": float("inf")}
    for _ in range(repeats):  # alternate, so both ways see the same machine load
        handover["export"] = min(handover["export"], best_seconds(lambda: load_model(export_model(model, example)), 1))
        handover["pickle"] = min(handover["pickle"], best_seconds(lambda: pickle.loads(cloudpickle.dumps(model)), 1))
        use["rebuilt"] = min(use["rebuilt"], best_seconds(lambda: gradient_pass(rebuilt, batch), 3))
        use["original"] = min(use["original"], best_seconds(lambda: gradient_pass(model, batch), 3))
    return {"export_load_s": handover["export"], "pickle_s": handover["pickle"],
            "gradient_pass_rebuilt_s": use["rebuilt"], "gradient_pass_original_s": use["original"],
            "gradient_pass_ratio": use["rebuilt"] / use["original"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    spec, shape = CASES["fcn 100x2, 50-d (lms5, ms57)"]
    warm_up = best_seconds(lambda: export_model(build_backbone(spec, shape).eval(), torch.randn(8, *shape)), 1)
    print(f"first export in this process (one-time warm-up): {warm_up:.2f} s")
    results = {"first_export_s": warm_up}
    for name, (spec, shape) in CASES.items():
        row = measure(spec, shape, args.repeats)
        results[name] = row
        print(f"{name}: hand-over {row['export_load_s'] * 1e3:.1f} ms as data vs {row['pickle_s'] * 1e3:.1f} ms "
              f"pickled; gradient pass (512 rows) {row['gradient_pass_rebuilt_s'] * 1e3:.2f} ms rebuilt vs "
              f"{row['gradient_pass_original_s'] * 1e3:.2f} ms original (ratio {row['gradient_pass_ratio']:.3f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
