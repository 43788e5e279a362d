"""Core throughput of sbbench on this machine: matmul peak, LMS-5 generation and ERM training.

Usage: ``python benchmarks/bench_core.py [--json PATH]``. Runs in one process, in well under a
minute on an otherwise idle 2-core CPU:

* **matmul peak**: GFLOP/s of a square fp32 ``torch.mm`` (``2 n^3`` FLOPs), best of several;
* **data**: seconds for ``make_synthetic(lms(5), seed)`` (110k x 50), best of 3;
* **training**: ERM on LMS-5 with the (100,2)-FCN, batch 256, SGD lr 0.1, a fixed number of
  epochs with the stopping rule disabled, through :func:`sbbench.training.train`, and the same
  updates (same initialisation, same shuffling) by a plain PyTorch loop written here (index
  the batch, ``F.cross_entropy``, ``backward``, ``torch.optim.SGD.step``). The two alternate
  epoch by epoch and the best epoch of each is compared, so both see the same machine load;
  the final parameters are checked to agree. One epoch
  costs ``3 * 2 * n_train * (50*100 + 100*100 + 100*2)`` FLOPs: the multiply-adds (2 FLOPs
  each) of the three linear layers, tripled for the forward pass plus the two backward
  matmuls (input and weight gradients). Biases, ReLU, softmax and the optimiser step are
  ignored, so the achieved rate is a slight underestimate.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sbbench.data.synthetic import lms, make_synthetic
from sbbench.models import FCN
from sbbench.training import TrainConfig, train

WIDTH, DEPTH, BATCH_SIZE, LR = 100, 2, 256, 0.1


def matmul_gflops(size: int, repeats: int) -> float:
    """Best GFLOP/s of ``torch.mm`` on two ``size x size`` fp32 matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def generation_seconds(seed: int, repeats: int) -> float:
    """Best wall time of ``make_synthetic(lms(5), seed)``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        make_synthetic(lms(5), seed)
        best = min(best, time.perf_counter() - start)
    return best


def fcn_epoch_flops(n_train: int, d: int) -> int:
    """FLOPs of one epoch of the (WIDTH, DEPTH)-FCN: 3 (fwd + 2 bwd) x 2 x n x multiply-adds per example."""
    sizes = [d] + [WIDTH] * DEPTH + [2]
    macs_per_example = sum(fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes))
    return 3 * 2 * n_train * macs_per_example


def training_epoch_seconds(seed: int, epochs: int) -> tuple[list[float], int, int]:
    """Per-epoch wall times of ERM on LMS-5, plus ``n_train`` and ``d``.

    A one-epoch warm-up on a small slice first pays the one-time costs (lazy imports, kernel
    selection) that would otherwise land in the first timed epoch.
    """
    data = make_synthetic(lms(5), seed)
    x, y, d = data.train.x, data.train.y, data.space.n_features
    config = TrainConfig(lr=LR, batch_size=BATCH_SIZE, max_epochs=epochs, stop_train_acc=None, stop_train_loss=None)
    train(FCN(d, WIDTH, DEPTH), x[:4096], y[:4096], config.model_copy(update={"max_epochs": 1}), seed=seed)
    torch.manual_seed(seed)
    model = FCN(d, WIDTH, DEPTH)
    stamps = [time.perf_counter()]
    train(model, x, y, config, seed=seed, on_epoch=lambda epoch, loss, acc: stamps.append(time.perf_counter()))
    return [end - start for start, end in itertools.pairwise(stamps)], len(y), d


def plain_loop(model: FCN, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> list[float]:
    """The reference: a plain PyTorch loop making the same updates as ``train``; per-epoch seconds."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=TrainConfig().weight_decay)
    generator = torch.Generator().manual_seed(seed)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=generator)
        for first in range(0, len(y), BATCH_SIZE):
            batch = order[first:first + BATCH_SIZE]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def compare_with_plain_loop(seed: int, epochs: int, rounds: int = 2) -> dict[str, float]:
    """Best epoch seconds of ``train`` and of the plain loop over alternating rounds, and their agreement.

    Both start from the same initialisation and draw the same epoch permutations (``train``
    seeds its shuffling generator with ``seed`` exactly as the plain loop does), so they make
    the same updates up to floating-point rounding.
    """
    data = make_synthetic(lms(5), seed)
    x, y, d = data.train.x, data.train.y, data.space.n_features
    config = TrainConfig(lr=LR, batch_size=BATCH_SIZE, max_epochs=epochs, stop_train_acc=None, stop_train_loss=None)
    best_ours = best_plain = float("inf")
    for _ in range(rounds):
        torch.manual_seed(seed)
        ours = FCN(d, WIDTH, DEPTH)
        plain = copy.deepcopy(ours)
        stamps = [time.perf_counter()]
        train(ours, x, y, config, seed=seed,
              on_epoch=lambda *_, record=stamps.append: record(time.perf_counter()))
        best_ours = min(best_ours, *(end - begin for begin, end in itertools.pairwise(stamps)))
        best_plain = min(best_plain, *plain_loop(plain, x, y, seed, epochs))
    gap = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), plain.parameters(), strict=True))
    return {"sbbench_epoch_s": best_ours, "plain_epoch_s": best_plain, "speedup_vs_plain": best_plain / best_ours,
            "max_parameter_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the square fp32 matmul")
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (stopping rule disabled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice); on a "
                        "loaded machine 1 thread avoids OpenMP oversubscription")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    peak = matmul_gflops(args.matmul_size, args.matmul_repeats)
    generation = generation_seconds(args.seed, repeats=3)
    epoch_times, n_train, d = training_epoch_seconds(args.seed, args.epochs)
    versus_plain = compare_with_plain_loop(args.seed, args.epochs)
    epoch_seconds = sum(epoch_times) / len(epoch_times)
    achieved = fcn_epoch_flops(n_train, d) / epoch_seconds / 1e9

    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min_before": load_before,
        "matmul_size": args.matmul_size,
        "matmul_peak_gflops": peak,
        "lms5_generation_s": generation,
        "train_epochs": args.epochs,
        "train_epoch_s": epoch_times,
        "train_mean_epoch_s": epoch_seconds,
        "train_epoch_gflop": fcn_epoch_flops(n_train, d) / 1e9,
        "train_gflops": achieved,
        "train_fraction_of_peak": achieved / peak,
        **versus_plain,
    }
    rows = [
        ("torch / threads / cpus", f"{torch.__version__} / {torch.get_num_threads()} / {os.cpu_count()}"),
        ("1-min load average before (skews timings)", f"{load_before:.2f}"),
        (f"matmul peak (fp32 mm {args.matmul_size}^2, best of {args.matmul_repeats})", f"{peak:.1f} GFLOP/s"),
        ("lms5 generation (110k x 50, best of 3)", f"{generation:.3f} s"),
        (f"ERM epoch, ({WIDTH},{DEPTH})-FCN, bs {BATCH_SIZE}, mean of {args.epochs}", f"{epoch_seconds:.3f} s"),
        ("  per epoch", ", ".join(f"{t:.3f}" for t in epoch_times) + " s"),
        ("  FLOPs per epoch = 3*2*n*(50*100+100*100+100*2)", f"{results['train_epoch_gflop']:.2f} GFLOP"),
        ("  achieved", f"{achieved:.1f} GFLOP/s"),
        ("  fraction of matmul peak", f"{achieved / peak:.1%}"),
        ("same updates, best epoch: sbbench.train / plain PyTorch loop",
         f"{versus_plain['sbbench_epoch_s']:.3f} s / {versus_plain['plain_epoch_s']:.3f} s"),
        ("  speed-up over the plain loop", f"{versus_plain['speedup_vs_plain']:.2f}x"),
        ("  largest parameter difference after training", f"{versus_plain['max_parameter_gap']:.2e}"),
    ]
    label_width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{label_width}}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
