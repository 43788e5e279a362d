"""Nothing lost: checksummed result files, SIGKILL at any moment, concurrent writers, schema versions.

The SIGKILL test drives the real console script (``sbbench score``, default isolated executor)
on the ``ci`` suite; the other tests use the library directly.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sbbench.cache import ResultCache
from sbbench.cli import main
from sbbench.leaderboard import migrations
from sbbench.leaderboard.entry import ENTRY_SCHEMA_VERSION, Entry
from sbbench.leaderboard.store import (
    EntryError,
    build_entry,
    entry_path,
    load_entries,
    read_entry,
    suite_dir,
    write_entry,
)
from sbbench.methods.registry import resolve_method
from sbbench.results import RunResult
from sbbench.scoring import score
from sbbench.suite import SUITES, Suite

CI = SUITES["ci"]
SBBENCH = [sys.executable, "-c", "import sys; from sbbench.cli import main; sys.argv[0] = 'sbbench'; main()"]


def erm_entry(suite: Suite, name: str = "erm", offset: float = 0.0) -> Entry:
    """A fabricated, internally consistent ERM entry for ``suite`` named ``name``."""
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    metrics = dict.fromkeys((*suite.table_metrics, suite.primary_metric), 0.5 + offset)
    runs = [RunResult(method="erm", method_version="1", track="T0", code_hash=info.code_hash, hparams=hparams,
                      task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={metric: value + 0.01 * seed for metric, value in metrics.items()})
            for task in suite.tasks for seed in suite.seeds]
    entry = build_entry(info, hparams, "defaults", suite, runs, "cpu")
    return entry.model_copy(update={"method": entry.method.model_copy(update={"name": name})})


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- result cache: corrupt, truncated and doctored files are recomputed --------------------------------------------


def test_corrupt_truncated_or_doctored_cache_files_are_detected_and_recomputed(tmp_path: Path) -> None:
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    cache = ResultCache(tmp_path / "cache")
    first = score(info, hparams, CI, cache=cache, executor="inline")
    assert all(r.status == "ok" for r in first.results)
    files = sorted(cache.root.rglob("*.json"))
    assert len(files) == 4
    truncated, doctored, garbage, intact = files
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    record = json.loads(doctored.read_text())
    record["result"]["metrics"]["acc"] = 1.0  # valid JSON and schema, wrong checksum
    doctored.write_text(json.dumps(record))
    garbage.write_bytes(os.urandom(300))
    intact_bytes = intact.read_bytes()

    again = score(info, hparams, CI, cache=cache, executor="inline")
    assert again.reused == 1
    def numbers(results: list[RunResult]) -> list[tuple]:
        return [(r.task, r.seed, r.status, r.metrics, r.profiles) for r in results]

    assert numbers(again.results) == numbers(first.results), "recomputed: the original numbers, not the doctored one"
    assert intact.read_bytes() == intact_bytes
    assert all(cache.load(path.stem) is not None for path in files), "bad files were replaced by valid ones"


# --- SIGKILL at random moments, then completion ----------------------------------------------------------------------


def valid_cache(cache: Path) -> dict[str, bytes]:
    """Cache files that load (checksum ok), by name, with their bytes."""
    store = ResultCache(cache)
    return {p.stem: p.read_bytes() for p in sorted(cache.rglob("*.json")) if store.load(p.stem) is not None}


def child_pids(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reported(stderr: str) -> tuple[set[int], set[int]]:
    """Seeds the run reported as taken from the cache, and as computed."""
    cached = {int(s) for s in re.findall(r"lms5-ci seed (\d+): cached", stderr)}
    computed = {int(s) for s in re.findall(r"lms5-ci seed (\d+): (?:ok|failed)", stderr)}
    return cached, computed


def score_cli(root: Path, cache: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "SBBENCH_CACHE": str(cache), "COLUMNS": "200"}
    return subprocess.Popen([*SBBENCH, "score", "erm", "--suite", "ci", "--root", str(root)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_metrics(root: Path) -> dict[tuple[str, int], dict[str, float]]:
    entry = read_entry(entry_path(root, CI, "erm"))
    return {(run.task, run.seed): run.metrics for run in entry.runs}


def test_sigkilled_scores_lose_no_finished_job_and_the_final_entry_equals_an_uninterrupted_run(tmp_path: Path
                                                                                                ) -> None:
    reference = score_cli(tmp_path / "reference", tmp_path / "reference-cache", tmp_path)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    expected = run_metrics(tmp_path / "reference")

    seed = random.randrange(2**32)
    draw = random.Random(seed)
    root, cache = tmp_path / "root", tmp_path / "cache"
    kept: dict[str, bytes] = {}
    kills = 0
    for number in range(4):
        # Kill at a random moment: the first run during start-up (0 to 3 s in), the others once 1 or 2
        # more jobs have finished, 0 to 0.5 s later (mid-job, mid-write or between jobs).
        process = score_cli(root, cache, tmp_path)
        target = 0 if number == 0 else min(len(kept) + draw.randint(1, 2), 3)
        while len(list(cache.rglob("*.json"))) < target and process.poll() is None:
            time.sleep(0.02)
        time.sleep(draw.uniform(0.0, 3.0) if number == 0 else draw.uniform(0.0, 0.5))
        children = child_pids(process.pid)
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate()
        kills += process.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(running(pid) for pid in children), f"fit children outlived the killed score (seed {seed})"
        cached, computed = reported(err)
        finished_before = {json.loads(b)["result"]["seed"] for b in kept.values()}
        assert not computed & finished_before, f"a finished job was computed again (seed {seed})"
        now = valid_cache(cache)
        assert {k: now.get(k) for k in kept} == kept, f"a finished job was lost or changed (seed {seed})"
        print(f"run {number + 1}: {'killed' if process.returncode == -signal.SIGKILL else 'finished'} with "
              f"{len(now)} of 4 jobs in the cache ({len(now) - len(kept)} new); {len(children)} fit child(ren) exited")
        kept = now
    assert kills >= 1, f"no run was killed before it finished (seed {seed})"

    final = score_cli(root, cache, tmp_path)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    cached, computed = reported(err)
    assert cached == {json.loads(b)["result"]["seed"] for b in kept.values()} and not cached & computed
    assert f"{len(kept)} of 4 jobs reused from the cache" in out.replace("\n", " ")
    assert run_metrics(root) == expected, f"the final entry differs from an uninterrupted run (seed {seed})"


# --- ten concurrent writers ------------------------------------------------------------------------------------------


def _write_repeatedly(root: str, entry_json: str, start: Any) -> None:
    entry = Entry.model_validate_json(entry_json)
    start.wait()
    for _ in range(3):
        write_entry(Path(root), CI, entry)


def test_ten_concurrent_writers_leave_a_valid_table_holding_every_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    entries = [erm_entry(CI, f"writer-{i}", offset=0.01 * i) for i in range(10)]
    writers = [context.Process(target=_write_repeatedly, args=(str(tmp_path), e.model_dump_json(), start))
               for e in entries]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=300)
    assert [w.exitcode for w in writers] == [0] * 10
    folder = suite_dir(tmp_path, CI)
    assert sorted(loaded.entry.method.name for loaded in load_entries(tmp_path, CI)) == sorted(
        e.method.name for e in entries)
    table = pd.read_csv(folder / "leaderboard.csv")
    assert sorted(table["method"]) == sorted(e.method.name for e in entries)
    assert table["score"].notna().all()
    markdown = (folder / "LEADERBOARD.md").read_text()
    assert all(markdown.count(f"| {e.method.name} |") == 1 for e in entries)
    assert not list(folder.rglob("*.tmp")), "no temporary file is left behind"


# --- entry schema versions -------------------------------------------------------------------------------------------


def write_raw(root: Path, raw: dict) -> Path:
    path = entry_path(root, CI, "erm")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def test_an_entry_from_a_newer_sbbench_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = json.loads(erm_entry(CI).model_dump_json())
    raw["schema_version"] = ENTRY_SCHEMA_VERSION + 1
    raw["a_field_from_the_future"] = True
    path = write_raw(tmp_path, raw)
    before = snapshot(tmp_path)
    with pytest.raises(EntryError, match="written by a newer sbbench"):
        read_entry(path)
    monkeypatch.setattr(sys, "argv", ["sbbench", "leaderboard", "--suite", "ci", "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "written by a newer sbbench" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_an_older_entry_is_migrated_when_a_migration_exists_and_refused_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = erm_entry(CI)
    old = json.loads(current.model_dump_json())
    old["schema_version"] = ENTRY_SCHEMA_VERSION - 1
    old["method"]["hash_of_code"] = old["method"].pop("code_hash")  # how a fictional version 0 spelled it
    path = write_raw(tmp_path, old)
    before = snapshot(tmp_path)
    with pytest.raises(EntryError, match="no migration from it exists: score the method again"):
        read_entry(path)

    def rename_code_hash(raw: dict) -> dict:
        raw["method"] = {**raw["method"], "code_hash": raw["method"]["hash_of_code"]}
        del raw["method"]["hash_of_code"]
        return raw

    monkeypatch.setitem(migrations.MIGRATIONS, ENTRY_SCHEMA_VERSION - 1, rename_code_hash)
    assert read_entry(path) == current
    assert snapshot(tmp_path) == before, "reading migrates in memory only"
