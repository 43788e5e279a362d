"""Every view of a worst-group suite (synthetic v2) and of a superseded one (synthetic v1), without training.

Entries are built by hand from synthetic run records (6 tasks x 5 seeds), so the guard's verdict
is known in advance: ``spurious-gain`` has the highest score but loses accuracy on noisy-lms7,
``coin-flip`` is at chance on lms5, the others are unguarded.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

from sbbench.cli.common import RESULTS_ENV
from sbbench.headline import suite_score
from sbbench.leaderboard.entry import Entry, LoadedEntry, MethodCard, Provenance, SuiteRef
from sbbench.leaderboard.hub import dataset_card, plan_push
from sbbench.leaderboard.render import (
    GUARD,
    STATED_ADVERSARIAL,
    leaderboard_frame,
    stated_radii,
    summary_columns,
    summary_frame,
    to_markdown,
)
from sbbench.leaderboard.site import build_site
from sbbench.leaderboard.stats import summarize
from sbbench.leaderboard.store import load_entries, write_entry
from sbbench.results import RunResult
from sbbench.suite import SUITES, SYNTHETIC_V1, SYNTHETIC_V2, Suite, get_suite
from sbbench.tasks import Task

V2 = SYNTHETIC_V2
LONGEST_NAME = "input-grad-diversity"

BASE_METRICS = {"acc": 0.99, "auc": 0.99, "s_rand_wga": 0.05, "s_rand_auc": 0.55, "s_rand_acc": 0.52,
                "sc_rand_auc": 0.99, "s_swap_acc": 0.02, "feature_availability": 0.5}


def base_metrics(task: Task) -> dict[str, float]:
    """:data:`BASE_METRICS` and ``adv_acc_<tag>`` of the task's i-th attack, ``0.01 + 0.1 * i`` (all differ)."""
    return BASE_METRICS | {f"adv_acc_{attack.tag}": 0.01 + 0.1 * i for i, attack in enumerate(task.metrics.attacks)}


def make_runs(name: str, track: str, suite: Suite, changes: dict[str, dict[str, float]]) -> list[RunResult]:
    """One ok run per task and seed; ``changes[task]`` (or ``changes["*"]``) overrides metrics, seed-shifted.

    Key ``adv`` of a change sets every attack's accuracy.
    """
    runs = []
    for task in suite.tasks:
        for seed in suite.seeds:
            metrics = base_metrics(task)
            for change in (changes.get("*", {}), changes.get(task.name, {})):
                metrics |= {key: change["adv"] for key in metrics if key.startswith("adv_acc_") and "adv" in change}
                metrics |= {key: value for key, value in change.items() if key != "adv"}
            metrics = {key: min(1.0, value + 0.001 * seed) for key, value in metrics.items()}
            runs.append(RunResult(method=name, method_version="1", track=track, code_hash="0" * 64, hparams={},
                                  task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                                  metrics=metrics))
    return runs


def make_entry(name: str, track: str = "T0", suite: Suite = V2,
               changes: dict[str, dict[str, float]] | None = None) -> Entry:
    """An entry of ``suite`` as ``build_entry`` writes one, from :func:`make_runs`."""
    runs = make_runs(name, track, suite, changes or {})
    aggregates = {task.name: {metric: summarize([r.metrics[metric] for r in runs if r.task == task.name])
                              for metric in base_metrics(task)} for task in suite.tasks}
    card = MethodCard(name=name, display_name=name, version="1", track=track, code_hash="0" * 64, hparams={},
                      hparams_source="defaults", source=f"test {name}")
    provenance = Provenance(sbbench_version="0", git_commit="unknown", python="3", torch="2", device="cpu",
                            platform="test", created=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return Entry(method=card, provenance=provenance,
                 suite=SuiteRef(name=suite.name, version=suite.version, hash=suite.content_hash()),
                 primary_metric=suite.primary_metric, primary_score=suite_score(suite, runs), aggregates=aggregates,
                 runs=runs, wall_seconds=1.0)


V2_ENTRIES = {
    "erm": ("T0", {"noisy-lms7": {"acc": 0.948}}),
    "spurious-gain": ("T0", {"*": {"s_rand_wga": 0.9}, "noisy-lms7": {"acc": 0.9}}),
    "coin-flip": ("T0", {"*": {"s_rand_wga": 0.95}, "lms5": {"acc": 0.5}}),
    LONGEST_NAME: ("T0", {"*": {"s_rand_wga": 0.4, "s_rand_auc": 0.8, "s_swap_acc": 0.3, "adv": 0.2}}),
    "oracle-randomize-s": ("oracle", {"*": {"s_rand_wga": 1.0, "s_rand_auc": 1.0}}),
}


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard folder with the v2 entries above and two v1 entries."""
    root = tmp_path_factory.mktemp("v2-board")
    for name, (track, changes) in V2_ENTRIES.items():
        write_entry(root, V2, make_entry(name, track, V2, changes))
    for name in ("erm", "sifer"):
        v1_changes = {"*": {"s_rand_auc": 0.5 if name == "erm" else 0.6}}
        write_entry(root, SYNTHETIC_V1, make_entry(name, "T0", SYNTHETIC_V1, v1_changes))
    return root


def loaded(board: Path, suite: Suite = V2) -> list[LoadedEntry]:
    return load_entries(board, suite)


def sbbench(*args: str, cwd: Path, columns: int = 100) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != RESULTS_ENV}
    environment |= {"OMP_NUM_THREADS": "1", "SBBENCH_CACHE": str(cwd / "cache"), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "sbbench", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)


def task_mean(entry: Entry, suite: Suite, metric_of: dict[str, str]) -> float:
    """Mean over the suite's tasks of the seed mean of ``metric_of[task]``."""
    return sum(entry.aggregates[t.name][metric_of[t.name]].mean for t in suite.tasks) / len(suite.tasks)


def test_every_table_of_a_worst_group_suite_has_the_guard_and_the_summary_columns(board: Path) -> None:
    summary = ["mean acc", "mean s_rand_wga", "mean s_rand_auc", "mean s_swap_acc", STATED_ADVERSARIAL]
    assert summary_columns(V2) == summary and summary_columns(SYNTHETIC_V1) == []
    frame = leaderboard_frame(loaded(board), V2)
    head = ["method", "track", "status", "score", GUARD, *summary]
    assert list(frame.columns[:10]) == head and list(frame.columns[-2:]) == ["seeds", "hparams"]
    assert "noisy-lms7/acc" in frame.columns, "per-task detail stays in the frame (CSV, JSON, --wide)"
    assert list(summary_frame(frame, V2).columns) == [*head, "seeds", "hparams"]
    erm = next(item.entry for item in loaded(board) if item.entry.method.name == "erm")
    row = frame.set_index("method").loc["erm"]
    stated = {t.name: f"adv_acc_{t.metrics.summary_attack}" for t in V2.tasks}
    assert row[STATED_ADVERSARIAL] == pytest.approx(task_mean(erm, V2, stated))
    assert row[STATED_ADVERSARIAL] != pytest.approx(task_mean(erm, V2, {t.name: "adv_acc_l2_0.1" for t in V2.tasks}))
    assert row["mean s_rand_auc"] == pytest.approx(task_mean(erm, V2, {t.name: "s_rand_auc" for t in V2.tasks}))

    with (board / V2.label / "leaderboard.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header[:10] == head and "spurious-lms7/s_rand_wga" in header
    records = json.loads(frame.to_json(orient="records"))
    assert {"guard", STATED_ADVERSARIAL, "lms5/adv_acc_l2_0.25"} <= set(records[0])

    markdown = (board / V2.label / "LEADERBOARD.md").read_text()
    assert "| " + " | ".join([*head, "seeds"]) + " |" in markdown
    assert "lms5/acc" not in markdown.split("## Track")[1], "the markdown tables are the summary"
    text = " ".join(markdown.split())
    assert "Score = oracle-normalised worst-group accuracy on the S-randomized test set" in text
    assert "more than 0.02 below ERM's" in text and "below 0.55 accuracy" in text
    assert "ranks after every unguarded entry" in text
    assert f"adversarial column `{STATED_ADVERSARIAL}`: {stated_radii(V2)}" in text
    assert "Superseded" not in markdown


def test_stated_radii_name_each_tasks_summary_attack() -> None:
    tags = {t.name: t.metrics.summary_attack for t in V2.tasks}
    words = stated_radii(V2)
    common = max(set(tags.values()), key=list(tags.values()).count)
    norm, _, eps = common.partition("_")
    assert words.startswith(f"{norm} radius {eps} on every task")
    for name, tag in tags.items():
        if tag != common:
            assert f"{name} ({tag.replace('_', ' radius ')})" in words
    same = V2.model_copy(update={"tasks": V2.tasks[:2]})
    first = V2.tasks[0].metrics.summary_attack.partition("_")
    assert stated_radii(same) == f"{first[0]} radius {first[2]} on every task"


def test_a_guarded_entry_ranks_after_every_unguarded_one_of_its_track_whatever_its_score(board: Path) -> None:
    frame = leaderboard_frame(loaded(board), V2)
    t0 = frame[frame["track"] == "T0"]
    assert list(t0["method"]) == [LONGEST_NAME, "erm", "spurious-gain", "coin-flip"]
    scores = dict(zip(frame["method"], frame["score"], strict=True))
    assert scores["spurious-gain"] > scores["coin-flip"] > scores[LONGEST_NAME] > scores["erm"]
    guard = dict(zip(frame["method"], frame[GUARD], strict=True))
    assert guard == {LONGEST_NAME: "", "erm": "", "spurious-gain": "flagged: noisy-lms7", "coin-flip": "failed: lms5",
                     "oracle-randomize-s": ""}
    by_acc = leaderboard_frame(loaded(board), V2, sort="mean acc")
    assert list(by_acc["method"][:2]) == [LONGEST_NAME, "erm"] and by_acc["method"].iloc[-1] == "oracle-randomize-s"


def test_an_entry_the_rule_cannot_assess_says_why_and_counts_as_guarded(board: Path) -> None:
    item = next(item for item in loaded(board) if item.entry.method.name == "erm")
    runs = [run.model_copy(update={"metrics": {k: v for k, v in run.metrics.items() if k != "s_rand_wga"}})
            for run in item.entry.runs]
    broken = LoadedEntry(entry=item.entry.model_copy(update={"runs": runs}), path=item.path, stale=False)
    frame = leaderboard_frame([broken], V2)
    assert frame[GUARD].iloc[0] == "not assessed: a run lacks s_rand_wga"


def test_the_superseded_suite_keeps_its_format_and_is_marked(board: Path) -> None:
    frame = leaderboard_frame(loaded(board, SYNTHETIC_V1), SYNTHETIC_V1)
    assert GUARD not in frame.columns and list(frame.columns[:5]) == ["method", "track", "status", "score", "lms5/acc"]
    markdown = to_markdown(frame, SYNTHETIC_V1)
    assert "**Superseded:** synthetic-v1 is superseded by synthetic-v2" in markdown
    assert "Score = mean over tasks of `s_rand_auc`" in markdown
    assert "| method | track | status | score | lms5/acc |" in markdown
    assert markdown == (board / SYNTHETIC_V1.label / "LEADERBOARD.md").read_text()
    assert get_suite("synthetic") is V2 and SUITES["synthetic"] is V2 and get_suite("synthetic-v1") is SYNTHETIC_V1


def test_the_site_shows_summary_and_guard_and_marks_the_superseded_suite(board: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    summary = build_site(board, out)
    assert summary.suites == ["synthetic-v2", "synthetic-v1"]
    index = (out / "index.html").read_text()
    v1_card = index.split('href="synthetic-v1/index.html"')[1]
    assert 'Superseded</strong> by <a href="synthetic-v2/index.html">synthetic-v2</a>' in v1_card
    assert "Superseded" not in index.split('href="synthetic-v1/index.html"')[0]
    assert f"T0: {LONGEST_NAME} (0.402)" in index, "the leader is the best unguarded entry"
    v1 = (out / "synthetic-v1" / "index.html").read_text()
    assert 'Superseded</strong> by <a href="../synthetic-v2/index.html">synthetic-v2</a>' in v1
    assert 'data-key="guard"' not in v1
    v2 = (out / "synthetic-v2" / "index.html").read_text()
    keys = [key for key in ("guard", "mean acc", "mean s_rand_wga", "mean s_rand_auc", "mean s_swap_acc",
                            STATED_ADVERSARIAL) if f'data-key="{key}"' in v2]
    assert len(keys) == 6 and "Superseded" not in v2
    assert '<span class="badge guard">flagged: noisy-lms7</span>' in v2
    assert v2.index("spurious-gain.html") > v2.index(f"{LONGEST_NAME}.html"), "table order: guarded after"
    entry = (out / "synthetic-v2" / "entries" / "spurious-gain.html").read_text()
    assert "Score and guard per task" in entry and "<dd>flagged: noisy-lms7</dd>" in entry
    rows = dict(re_rows(entry))
    assert rows["noisy-lms7"] == ("flagged", "0.902") and rows["lms5"] == ("ok", "0.902")
    assert 'id="task-noisy-lms7"' in entry and "lms5/acc" not in entry
    coin = dict(re_rows((out / "synthetic-v2" / "entries" / "coin-flip.html").read_text()))
    assert coin["lms5"] == ("failed", "0.000")


def re_rows(html: str) -> list[tuple[str, tuple[str, str]]]:
    """(task, (guard status, task score)) of the entry page's guard table."""
    pattern = (r'<tr><td><a href="#task-([^"]+)">[^<]+</a></td><td><span class="badge badge-guard-(\w+)">\w+</span>'
               r'</td><td class="num">([\d.]+)</td>')
    return [(task, (status, score)) for task, status, score in re.findall(pattern, html)]


def test_the_hub_card_and_tables_mark_the_superseded_suite_and_carry_the_guard(board: Path) -> None:
    plan = plan_push(board, None)
    sent = {op.path_in_repo: op.path_or_fileobj.decode() for op in plan.operations if op.path_in_repo.endswith(".md")}
    assert "**Superseded:** synthetic-v1 is superseded by synthetic-v2" in sent["synthetic-v1/LEADERBOARD.md"]
    card = DatasetCard(sent["README.md"])
    assert [config["config_name"] for config in card.data.configs] == ["synthetic-v2", "synthetic-v1"]
    text = card.text
    assert f"| synthetic | 1 | `{SYNTHETIC_V1.content_hash()[:16]}` |" in text
    row = next(line for line in text.splitlines() if line.startswith("| synthetic | 1 |"))
    assert row.endswith("| superseded by synthetic-v2 |")
    assert next(line for line in text.splitlines() if line.startswith("| synthetic | 2 |")).endswith("| current |")
    assert "## Standings: synthetic-v1 (superseded by synthetic-v2)" in text
    assert "## Standings: synthetic-v2\n" in text
    assert "| T0 | spurious-gain | 0.902 | unverified | flagged: noisy-lms7 |" in text
    assert f"| `{GUARD}` (synthetic-v2) |" in text and f"| `{STATED_ADVERSARIAL}` (synthetic-v2) |" in text
    assert dataset_card([(V2, loaded(board))]).count("superseded by") == 0


def test_suites_command_lists_superseded_suites_marked(tmp_path: Path) -> None:
    done = sbbench("suites", cwd=tmp_path, columns=200)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.split()[0]: (line, lines[i + 1]) for i, line in enumerate(lines[:-1]) if line.strip()
            and line.startswith(" ") and "-v" in line.split()[0]}
    assert set(rows) >= {"synthetic-v2", "synthetic-v1", "smoke-v1", "images-v2", "images-v1"}
    assert rows["synthetic-v1"][1].strip() == "(superseded)" and rows["images-v1"][1].strip() == "(superseded)"
    assert "(superseded)" not in rows["synthetic-v2"][1] and "worst-group" in rows["synthetic-v2"][0]
    assert "synthetic-v1 is superseded by synthetic-v2" in done.stdout


def test_terminal_table_fits_100_columns_and_marks_guard_and_superseded(board: Path, tmp_path: Path) -> None:
    done = sbbench("leaderboard", "--root", str(board), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 100 and "…" not in done.stdout
    assert lines[0].strip() == f"sbbench leaderboard: synthetic-v2 ({board})", "the default suite is the current v2"
    shown = [line.split()[0] for line in lines if line.strip() and line.split()[0] in V2_ENTRIES]
    assert shown == [LONGEST_NAME, "erm", "spurious-gain", "coin-flip", "oracle-randomize-s"]
    header = " ".join(lines[1:4])
    for word in ("guard", "s_rand", "_wga", "_auc", "s_swap", "stated", "radius", "seeds"):
        assert word in header, word
    assert "guard on spurious-gain: flagged: noisy-lms7" in done.stdout
    assert "superseded" not in done.stdout
    assert f"sbbench leaderboard --suite synthetic-v1 --root {board}" in " ".join(done.stderr.split())
    old = sbbench("leaderboard", "--suite", "synthetic-v1", "--root", str(board), cwd=tmp_path)
    assert old.returncode == 0, old.stderr
    assert old.stdout.startswith("synthetic-v1 is superseded by synthetic-v2")
    assert {"erm", "sifer"} <= {line.split()[0] for line in old.stdout.splitlines() if line.strip()}


def test_a_pixel_scale_radius_is_stated_as_a_fraction_of_255() -> None:
    assert stated_radii(get_suite("images")) == "linf radius 2/255 on every task"
