"""End to end through the command line: one test per user job, plus bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED_METRICS = {"acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc", "adv_acc_l2_1.0"}


def sbbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SBBENCH_CACHE": str(cwd / "cache"), "COLUMNS": "240"}
    return subprocess.run([sys.executable, "-m", "sbbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_run_writes_one_record_per_seed(tmp_path: Path) -> None:
    done = sbbench("run", "erm", "--task", "lms5-smoke", "--seeds", "2", "--out", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "out.json").read_text())
    assert [(r["method"], r["task"], r["seed"]) for r in records] == [("erm", "lms5-smoke", s) for s in (0, 1)]
    assert all(set(r["metrics"]) >= REQUIRED_METRICS for r in records)
    assert "s_rand_auc" in done.stdout and "±" in done.stdout


def test_score_browse_and_compare(tmp_path: Path) -> None:
    for method in ("erm", "oracle-randomize-s"):
        done = sbbench("score", method, "--suite", "smoke", "--root", "lb", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "lb" / "smoke-v1" / "entries" / f"{method}.json").is_file()
    rescored = sbbench("score", "erm", "--suite", "smoke", "--root", "lb", cwd=tmp_path)
    assert "2 of 2 jobs reused from the cache" in " ".join(rescored.stdout.split())

    table = sbbench("leaderboard", "--suite", "smoke", "--root", "lb", "--format", "json", cwd=tmp_path)
    rows = json.loads(table.stdout)
    assert {row["method"] for row in rows} == {"erm", "oracle-randomize-s"}
    assert [row["track"] for row in rows] == ["T0", "oracle"]
    markdown = (tmp_path / "lb" / "smoke-v1" / "LEADERBOARD.md").read_text()
    assert "## Track T0" in markdown and "| erm |" in markdown

    compared = sbbench("compare", "erm", "oracle-randomize-s", "--suite", "smoke", "--root", "lb", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert "paired" in compared.stdout and "s_rand_auc" in compared.stdout

    report = sbbench("leaderboard", "report", "--suite", "smoke", "--root", "lb", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    oracle_rows = [line for line in report.stdout.splitlines() if line.startswith("| oracle-randomize-s |")]
    assert len(oracle_rows) == 1 and "| erm (baseline) | T0 |" in report.stdout
    header = next(line for line in report.stdout.splitlines() if line.startswith("| method |"))
    compared_cells = [cell for name, cell in zip(header.split("|"), oracle_rows[0].split("|"), strict=True)
                      if name.strip() not in ("", "method", "track", "status")]
    assert compared_cells and all(cell.strip().endswith(("higher", "lower", "n.s.")) for cell in compared_cells)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "erm", "--task", "nope"], "unknown task 'nope'"),
    (["run", "erm", "--seeds", "0"], "--seeds must be at least 1"),
    (["run", "erm", "--seeds", "abc"], "Invalid value for '--seeds'"),
    (["run", "no-such-method"], "unknown method 'no-such-method'"),
    (["score", "erm", "--suite", "nope"], "unknown suite 'nope'"),
    (["compare", "erm", "nobody", "--root", "lb"], "erm and nobody have no suite in common"),
    (["compare", "erm", "nobody", "--suite", "smoke", "--root", "lb"], "no entry 'erm' for smoke-v1"),
    (["run", "erm", "--device", "foo"], "--device must name a torch device"),
    (["run", "erm-adam", "--hp", "lr=fast"], "hyperparameter lr of erm-adam"),
    (["leaderboard", "report", "--alpha", "1.5"], "--alpha must lie strictly between 0 and 1"),
    (["leaderboard", "report", "--root", "lb"], "no entry 'erm'"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = sbbench(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in done.stderr


def test_run_applies_hyperparameter_overrides(tmp_path: Path) -> None:
    done = sbbench("run", "erm-adam", "--task", "lms5-smoke", "--hp", "lr=0.01", "--out", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["hparams"] for r in json.loads((tmp_path / "out.json").read_text())] == [{"lr": 0.01}]
