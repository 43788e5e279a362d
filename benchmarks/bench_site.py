"""Time to build the static leaderboard site for 100 entries (target: under 5 seconds).

Usage: ``python benchmarks/bench_site.py [--entry PATH] [--root leaderboard] [--copies 100]
[--repeats 3] [--json PATH]``.

The 100 entries are **synthetic**: copies of one real entry file under the names
``synthetic-copy-000`` ... ``synthetic-copy-099`` (display name "synthetic copy i of <method>
(benchmark only)"), every number unchanged. That is fine for a rendering benchmark, since each
copy is as costly to render as the original, and nothing else. The real entry is ``--entry``,
else the first entry under ``--root`` of a known suite, else a fresh ``erm`` score on the
``smoke`` suite (trained here, a minute or so). An entry of the full ``synthetic`` suite (3
tasks, 5 seeds, 50-coordinate profiles, 4 attacks) is the heaviest case; prefer it.

The timing covers :func:`sbbench.leaderboard.site.build_site` end to end: reading and validating
the 100 entry files, the table, every page with its SVG charts, the copies of the entry files
and the CSV/JSON tables. Reported: best, median and worst wall time of ``--repeats`` builds, and
the median CPU time of this process (the part that does not depend on what else the machine runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from sbbench.cache import ResultCache
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.site import build_site
from sbbench.leaderboard.store import build_entry, read_entry, suite_dir, write_entry
from sbbench.methods.registry import resolve_method
from sbbench.scoring import score
from sbbench.suite import SUITES, Suite, get_suite

TARGET_SECONDS = 5.0


def find_entry(root: Path) -> Path | None:
    """The first entry file under ``root`` that belongs to a known suite, preferring the fullest suite."""
    for suite in sorted(SUITES.values(), key=lambda s: -len(s.tasks) * len(s.seeds)):
        found = sorted((suite_dir(root, suite) / "entries").glob("*.json"))
        if found:
            return found[0]
    return None


def score_smoke_entry(folder: Path) -> Path:
    """Score ERM on the smoke suite for real (cached under ``folder``) and return its entry file."""
    suite = get_suite("smoke")
    info = resolve_method("erm")
    hparams = info.cls.defaults().model_dump(mode="json")
    print("no entry given or found: scoring erm on the smoke suite first (real training) ...", flush=True)
    outcome = score(info, hparams, suite, cache=ResultCache(folder / "cache"))
    return write_entry(folder / "scored", suite, build_entry(info, hparams, "defaults", suite, outcome.results, "cpu"))


def synthesize(entry: Entry, suite: Suite, root: Path, copies: int) -> None:
    """Write ``copies`` renamed copies of ``entry`` as the entries of ``suite`` under ``root``."""
    folder = suite_dir(root, suite) / "entries"
    folder.mkdir(parents=True)
    for i in range(copies):
        name = f"synthetic-copy-{i:03d}"
        card = entry.method.model_copy(update={
            "name": name, "display_name": f"synthetic copy {i} of {entry.method.name} (benchmark only)"})
        (folder / f"{name}.json").write_text(entry.model_copy(update={"method": card}).model_dump_json(indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entry", type=Path, help="a real entry file to copy")
    parser.add_argument("--root", type=Path, default=Path("leaderboard"), help="where to look for one otherwise")
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-site-") as scratch:
        work = Path(scratch)
        source = args.entry or find_entry(args.root) or score_smoke_entry(work)
        entry = read_entry(source)
        suite = get_suite(entry.suite.name)
        synthesize(entry, suite, work / "leaderboard", args.copies)
        times, cpu = [], []
        for repeat in range(args.repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            summary = build_site(work / "leaderboard", work / "site", [suite])
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert summary.entries == args.copies and summary.pages == args.copies + 2
            print(f"build {repeat + 1}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU", flush=True)
        size = sum(p.stat().st_size for p in (work / "site").rglob("*") if p.is_file())
        result = {
            "entry": str(source), "suite": suite.label, "tasks": len(entry.aggregates), "runs": len(entry.runs),
            "copies": args.copies, "pages": summary.pages, "site_bytes": size,
            "best_s": min(times), "median_s": statistics.median(times), "worst_s": max(times),
            "cpu_median_s": statistics.median(cpu),
            "target_s": TARGET_SECONDS, "python": platform.python_version(), "machine": platform.machine(),
        }
    print(f"site for {args.copies} synthetic entries (copies of {source.name}, suite {suite.label}, "
          f"{result['tasks']} task(s), {result['runs']} runs each): best {result['best_s']:.2f} s, "
          f"median {result['median_s']:.2f} s, worst {result['worst_s']:.2f} s (median CPU time "
          f"{result['cpu_median_s']:.2f} s); {size / 1e6:.1f} MB; "
          f"target < {TARGET_SECONDS:.0f} s: {'met' if result['worst_s'] < TARGET_SECONDS else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
