"""The sweep protocol's selection rule per track, K, and the entry's tuning record as the leaderboard shows it.

The methods here build their models without training (a readout of one input coordinate, or a
nearest neighbour on one), so each trial costs a forward pass; the tasks are the tiny LMS-5 of
``conftest`` and an unrotated copy of it, in which input coordinate 0 is S and 1 belongs to S^c.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from conftest import poisoned
from pydantic import ValidationError
from torch import Tensor, nn
from typer.testing import CliRunner

from sbbench import selection as selection_module
from sbbench import suite as suite_module
from sbbench.cache import ResultCache
from sbbench.cli import app
from sbbench.leaderboard.entry import (
    Entry,
    MethodCard,
    Provenance,
    SuiteRef,
    Verdict,
    claims_digest,
)
from sbbench.leaderboard.render import HPARAMS, leaderboard_frame, summary_frame, to_markdown
from sbbench.leaderboard.site import build_site
from sbbench.leaderboard.stats import summarize
from sbbench.leaderboard.store import entry_path, load_entries, read_entry, suite_dir, write_entry, write_verdict
from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.methods.registry import MethodInfo
from sbbench.metrics.randomization import donor_block_worst_group
from sbbench.results import RunResult
from sbbench.runner import build_data, fit_in_process, method_seed
from sbbench.seeding import derive_seed
from sbbench.selection import SELECTION_ACC, SELECTION_WGA, run_trial, selection_rule, selection_split
from sbbench.suite import Suite
from sbbench.sweep import DEFAULT_TRIALS, draw_hparams, run_sweep, trial_jobs, trial_seed
from sbbench.tasks import Task
from sbbench.tuning import TrialRecord, TrialTask, Tuning, implied_tuning

# --- methods that build their models without training --------------------------------------------------------------


class ReadS(nn.Module):
    """Predicts the class from the sign of input coordinate 0 (S on the unrotated task): relies on S alone."""

    def forward(self, x: Tensor) -> Tensor:
        return 10 * torch.stack([-x[:, 0], x[:, 0]], dim=1)


class NearestOnSc(nn.Module):
    """A (soft, hence differentiable) nearest neighbour on input coordinate 1, an S^c slab coordinate: ignores S."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        super().__init__()
        self.register_buffer("keys", x[:, 1].clone())
        self.register_buffer("votes", nn.functional.one_hot(y, 2).float())

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(-(x[:, 1:2] - self.keys[None, :]).abs() / 1e-3, dim=1)
        return 10 * weights @ self.votes


class PickerParams(HParams):
    mode: str = hparam("S", choices=["S", "Sc"])


class Picker(Method):
    """``mode`` S (the defaults) relies on S; Sc ignores it. Both fit the training split perfectly."""

    name = "picker"
    track = Track.T1
    HParams = PickerParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        return ReadS() if self.hparams.mode == "S" else NearestOnSc(ctx.train.x, ctx.train.y)


def picker(track: Track) -> MethodInfo:
    cls = type(f"Picker{track.value}", (Picker,), {"name": f"picker-{track.value.lower()}", "track": track})
    return MethodInfo.of_class(cls, source="tests")


class Seen:
    """What the last fit of :class:`Recorder` saw."""

    train: int = 0
    val: bool = False
    space: bool = False


class Recorder(Method):
    """A fixed linear model; records the sizes of what its context holds."""

    name = "recorder"
    track = Track.T2

    def fit(self, ctx: TrainContext) -> nn.Module:
        Seen.train, Seen.val, Seen.space = len(ctx.train), ctx.val is not None, ctx.space is not None
        torch.manual_seed(ctx.seed)
        return nn.Linear(ctx.input_shape[0], 2)


def recorder(track: Track) -> MethodInfo:
    return MethodInfo.of_class(type(f"Recorder{track.value}", (Recorder,), {"track": track}), source="tests")


@pytest.fixture
def plain_task(tiny_task: Task) -> Task:
    """The tiny LMS-5 without the rotation: input coordinate 0 is S, 1 .. 9 are S^c."""
    plain = tiny_task.data.model_copy(update={"rotate": False})
    return tiny_task.model_copy(update={"name": "tiny-plain", "data": plain})


def one_task_suite(task: Task) -> Suite:
    return Suite(name="one", version=1, description="tests", tasks=(task,), seeds=(0,))


@pytest.fixture
def no_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every trial's data draw has a test split that fails on any access."""
    monkeypatch.setattr(selection_module, "build_data", lambda task, seed: poisoned(build_data(task, seed)))


# --- the selection rule per track ----------------------------------------------------------------------------------


@pytest.mark.parametrize("track", [Track.T2, Track.ORACLE])
def test_t2_and_oracle_trials_score_worst_group_accuracy_on_the_validation_set(
        track: Track, tiny_task: Task, no_test_split: None) -> None:
    seed = trial_seed(0)
    clean = build_data(tiny_task, seed)
    info = recorder(track)
    result = run_trial(info, {}, tiny_task, seed, 0.2, fit=fit_in_process, device=torch.device("cpu"))
    assert result.status == "ok", result.error
    # the method trained on the whole training split, saw the validation set only on T2 and S only on oracle
    assert (Seen.train, Seen.val, Seen.space) == (len(clean.train), track == Track.T2, track == Track.ORACLE)
    torch.manual_seed(method_seed(seed))  # what the method sees as ctx.seed
    model = nn.Linear(clean.space.input_shape[0], 2)
    expected = donor_block_worst_group(model, clean.val.x, clean.val.y, clean.train.x, clean.train.y, clean.space,
                                       "S", repeats=5, seed=derive_seed(seed, "sweep selection wga"))
    assert result.metrics == {SELECTION_WGA: expected}
    fit_data, selection = selection_split(poisoned(clean), track, seed, 0.2)
    assert selection is clean.val and fit_data.train is clean.train


@pytest.mark.parametrize(("track", "chosen_mode"), [(Track.T1, "S"), (Track.T2, "Sc"), (Track.ORACLE, "Sc")])
def test_the_rule_of_the_track_chooses_and_only_worst_group_accuracy_sees_past_s(
        track: Track, chosen_mode: str, plain_task: Task, tmp_path: Path, no_test_split: None) -> None:
    """Both settings fit the training split: held-out accuracy keeps the S-reliant defaults, worst-group
    accuracy on the validation set (S permuted) picks the setting that ignores S."""
    info = picker(track)
    draws = draw_hparams(info, 4, seed=0)
    assert [d["mode"] for d in draws][:1] == ["S"] and "Sc" in {d["mode"] for d in draws}
    outcome = run_sweep(info, one_task_suite(plain_task), 4, 0, cache=ResultCache(tmp_path), executor="inline")
    assert outcome.best is not None and outcome.tuning is not None
    assert outcome.best.hparams["mode"] == chosen_mode
    value = {trial.hparams["mode"]: trial.score for trial in outcome.trials}
    metric = SELECTION_ACC if track == Track.T1 else SELECTION_WGA
    assert all(set(r.metrics) == {metric} for t in outcome.trials for r in t.results)
    if track == Track.T1:
        assert value["S"] == 1.0 and value["Sc"] > 0.95  # both fit the held-out training rows
    else:
        # S taken from training examples: relying on S fails the disagreeing groups, S^c keeps its accuracy
        assert value["S"] < 0.1 and value["Sc"] > 0.9
    record = outcome.tuning
    assert record.metric == metric and record.chosen == outcome.best.index
    assert record.holdout == (0.2 if track == Track.T1 else None)
    assert record.rule == selection_rule(track, 0.2) + ", mean over tasks"
    assert ("worst-group accuracy" in record.rule) == (track != Track.T1)
    assert f"selected by {selection_rule(track, 0.2)}" in outcome.source


@pytest.mark.parametrize("track", [Track.T2, Track.ORACLE])
def test_a_t2_or_oracle_sweep_on_a_task_without_validation_set_is_refused_before_training(
        track: Track, tiny_task: Task, tmp_path: Path) -> None:
    bare = tiny_task.model_copy(update={"name": "no-val", "data": tiny_task.data.model_copy(update={"n_val": 0})})
    assert build_data(bare, 0).val is None
    Seen.train = 0
    with pytest.raises(ValueError, match=rf"a {track.value} sweep selects by worst-group accuracy .* no-val of suite "
                                         r"one-v1 has none"):
        run_sweep(recorder(track), one_task_suite(bare), 2, 0, cache=ResultCache(tmp_path), executor="inline")
    assert Seen.train == 0 and not list(tmp_path.rglob("*.json")), "nothing trained, nothing cached"
    with pytest.raises(ValueError, match="selects on the task's labeled decorrelated validation set"):
        selection_split(build_data(bare, 0), track, 0, 0.2)
    # T0/T1 select on the training split and do not need one
    run_sweep(recorder(Track.T1), one_task_suite(bare), 1, 0, cache=ResultCache(tmp_path), executor="inline")


def test_a_cached_trial_without_the_rules_metric_is_run_again(tiny_task: Task, tmp_path: Path) -> None:
    """A T2 trial cached when T2 selected by accuracy is not reused for the worst-group rule."""
    info, suite, cache = recorder(Track.T2), one_task_suite(tiny_task), ResultCache(tmp_path)
    [(key, _)] = trial_jobs(info, suite, draw_hparams(info, 1, 0), 0, 0.2).items()
    stale = RunResult(method=info.name, method_version=info.version, track="T2", code_hash=info.code_hash,
                      hparams={}, task=tiny_task.name, task_hash=tiny_task.content_hash(), seed=trial_seed(0),
                      status="ok", metrics={SELECTION_ACC: 0.5})
    cache.store(key, stale)
    outcome = run_sweep(info, suite, 1, 0, cache=cache, executor="inline")
    assert outcome.reused == 0 and set(outcome.trials[0].results[0].metrics) == {SELECTION_WGA}
    assert run_sweep(info, suite, 1, 0, cache=cache, executor="inline").reused == 1


# --- K and the tuning record ---------------------------------------------------------------------------------------


def test_k_is_8_by_default_and_decides_tuned_or_exploratory() -> None:
    assert DEFAULT_TRIALS == 8
    trials = [TrialRecord(index=i, hparams={}, status="ok", value=0.5,
                          tasks=[TrialTask(task="t", status="ok", value=0.5)]) for i in range(8)]
    common = {"rule": "r", "metric": SELECTION_ACC, "sweep_seed": 0, "trial_seed": 10000, "chosen": 0}
    assert Tuning(status="tuned", k=8, trials=trials, **common).label == "tuned (K=8)"
    assert Tuning(status="exploratory", k=4, trials=trials[:4], **common).label == "exploratory (K=4)"
    for bad in ({"status": "tuned", "k": 7, "trials": trials[:7]}, {"status": "exploratory", "k": 8},
                {"status": "tuned", "k": 8, "trials": trials[:7]}, {"status": "tuned", "k": 8, "chosen": 8}):
        with pytest.raises(ValidationError):
            Tuning(**(common | bad))
    failed = [trials[0].model_copy(update={"status": "failed", "value": None}), *trials[1:]]
    with pytest.raises(ValidationError, match="chosen trial 0 failed"):
        Tuning(status="tuned", k=8, trials=failed, **common)
    with pytest.raises(ValidationError, match="holds no search data"):
        Tuning(status="default", k=8)
    assert Tuning(status="default").label == "default" and Tuning(status="given").label == "given"


LINEAR = '''\
import torch
from torch import nn

from sbbench.methods import HParams, Method, Track, hparam


class Params(HParams):
    scale: float = hparam(1.0, low=0.5, high=2.0)


class Linear(Method):
    """A fixed linear model scaled by ``scale``: no training."""

    name = "linear"
    track = Track.T0
    HParams = Params

    def fit(self, ctx):
        torch.manual_seed(ctx.seed)
        model = nn.Linear(ctx.input_shape[0], 2)
        with torch.no_grad():
            model.weight.mul_(self.hparams.scale)
        return model
'''


def test_a_sweep_entry_records_every_trial_and_the_leaderboard_shows_it(
        tiny_suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(suite_module.SUITES, tiny_suite.name, tiny_suite)
    monkeypatch.setenv("SBBENCH_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "linear"
    folder.mkdir()
    (folder / "submission.toml").write_text('name = "linear"\ntrack = "T0"\n')
    (folder / "method.py").write_text(textwrap.dedent(LINEAR))
    root, cache = tmp_path / "board", tmp_path / "cache"
    result = CliRunner().invoke(app, ["sweep", str(folder), "--suite", tiny_suite.name, "--seed", "3", "--root",
                                      str(root), "--cache-dir", str(cache), "--executor", "inline"])
    assert result.exit_code == 0, result.output
    assert "linear (tuned (K=8)): score" in " ".join(result.output.split())
    [loaded] = load_entries(root, tiny_suite)
    tuning = loaded.entry.tuning
    assert (tuning.status, tuning.k, tuning.sweep_seed, tuning.trial_seed) == ("tuned", 8, 3, 10003)
    assert tuning.holdout == 0.2
    assert tuning.metric == SELECTION_ACC and tuning.rule == selection_rule(Track.T0, 0.2) + ", mean over tasks"
    assert [trial.index for trial in tuning.trials] == list(range(8))
    assert len({trial.hparams["scale"] for trial in tuning.trials}) == 8 and tuning.trials[0].hparams["scale"] == 1.0
    for trial in tuning.trials:
        [task] = trial.tasks
        assert trial.status == task.status == "ok" and task.task == tiny_suite.tasks[0].name
        assert trial.value == task.value and 0 <= trial.value <= 1
    best = max(tuning.trials, key=lambda trial: (trial.value, -trial.index))
    assert tuning.chosen == best.index and loaded.entry.method.hparams == best.hparams
    assert "tuning" in json.loads(loaded.path.read_text())
    assert loaded.entry.method.hparams_source.startswith("random search, 8 trials")

    # a short sweep is exploratory
    short = CliRunner().invoke(app, ["sweep", str(folder), "--trials", "3", "--suite", tiny_suite.name, "--root",
                                     str(tmp_path / "short"), "--cache-dir", str(cache), "--executor", "inline"])
    assert short.exit_code == 0, short.output
    assert "fewer than the protocol's K = 8, so the entry will be marked exploratory (K=3)" in " ".join(
        short.output.split())
    assert read_entry(entry_path(tmp_path / "short", tiny_suite, "linear")).tuning.label == "exploratory (K=3)"

    # next to a default entry: every table says which is which
    write_entry(root, tiny_suite, make_entry("erm", tiny_suite))
    frame = leaderboard_frame(load_entries(root, tiny_suite), tiny_suite)
    assert dict(zip(frame["method"], frame[HPARAMS], strict=True)) == {"linear": "tuned (K=8)", "erm": "default"}
    assert list(frame.columns[-2:]) == ["seeds", HPARAMS] and summary_frame(frame, tiny_suite).columns[-1] == HPARAMS
    markdown = to_markdown(frame, tiny_suite)
    assert (root / tiny_suite.label / "LEADERBOARD.md").read_text() == markdown
    assert "| seeds | hparams |" in markdown and "| 2 | tuned (K=8) |" in markdown and "| 2 | default |" in markdown
    assert "tuned (K=8)" in (suite_dir(root, tiny_suite) / "leaderboard.csv").read_text()
    for args in ([], ["--wide"]):  # the terminal's short form: K=8 (tuned), dflt (default), and its legend
        shown = CliRunner().invoke(app, ["leaderboard", "--suite", tiny_suite.name, "--root", str(root), *args])
        assert shown.exit_code == 0, shown.output
        assert "K=8" in shown.output and "dflt = defaults" in " ".join(shown.output.split()), args
    shown = CliRunner().invoke(app, ["leaderboard", "--suite", tiny_suite.name, "--root", str(root),
                                     "--format", "json"])
    rows = json.loads(shown.output)
    assert {row["method"]: row[HPARAMS] for row in rows} == {"linear": "tuned (K=8)", "erm": "default"}

    # the web: the column links to the entry page's trial table
    site = build_site(root, tmp_path / "site", [tiny_suite])
    assert site.entries == 2
    board = (tmp_path / "site" / tiny_suite.label / "index.html").read_text()
    assert 'data-key="hparams"' in board and '<a href="entries/linear.html#tuning">tuned (K=8)</a>' in board
    page = (tmp_path / "site" / tiny_suite.label / "entries" / "linear.html").read_text()
    assert 'id="tuning"' in page and "Hyperparameters: tuned (K=8)" in page
    assert page.count('<tr class="chosen">') == 1 and page.count("&#34;scale&#34;") == 8, "one row per trial"
    assert f"<td>trial {tuning.chosen}</td>" in page and "10003 (each trial trained once per task" in page
    assert "Hyperparameters: default" in (tmp_path / "site" / tiny_suite.label / "entries" / "erm.html").read_text()


# --- entries written before the record -----------------------------------------------------------------------------


def make_entry(name: str, suite: Suite, source: str = "defaults", tuning: Tuning | None = None) -> Entry:
    """An entry of ``suite`` from made-up runs; with ``tuning`` ``None``, one that has no record (as read from an
    older file)."""
    runs = [RunResult(method=name, method_version="1", track="T0", code_hash="0" * 64, hparams={}, task=task.name,
                      task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={metric: 0.5 + 0.01 * seed for metric in suite.table_metrics})
            for task in suite.tasks for seed in suite.seeds]
    aggregates = {task.name: {metric: summarize([r.metrics[metric] for r in runs if r.task == task.name])
                              for metric in suite.table_metrics} for task in suite.tasks}
    card = MethodCard(name=name, display_name=name, version="1", track="T0", code_hash="0" * 64, hparams={},
                      hparams_source=source, source=f"test {name}")
    provenance = Provenance(sbbench_version="0", git_commit="unknown", python="3", torch="2", device="cpu",
                            platform="test", created=datetime(2025, 1, 1, tzinfo=timezone.utc))
    fields = {"tuning": tuning} if tuning is not None else {}
    return Entry(method=card, provenance=provenance,
                 suite=SuiteRef(name=suite.name, version=suite.version, hash=suite.content_hash()),
                 primary_metric=suite.primary_metric, primary_score=0.5, aggregates=aggregates, runs=runs,
                 wall_seconds=1.0, **fields)


def test_an_entry_without_the_record_loads_as_default_and_keeps_its_digest_and_verdict(
        tiny_suite: Suite, tmp_path: Path) -> None:
    old = json.loads(make_entry("erm", tiny_suite).model_dump_json())
    assert "tuning" not in old  # the file format of entries written before the record
    old_digest = claims_digest(Entry.model_validate(old))
    path = entry_path(tmp_path, tiny_suite, "erm")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old, indent=1))
    entry = read_entry(path)
    assert entry.tuning == Tuning(status="default") and entry.tuning.label == "default"
    assert claims_digest(entry) == old_digest == json_digest(old)
    write_verdict(tmp_path, tiny_suite, Verdict(claims=old_digest, method="erm", accepted=True, mode="identical",
                                                rule="test", software="test", seeds=[0, 1], by="tests",
                                                at=datetime(2025, 1, 1, tzinfo=timezone.utc), sbbench_version="0",
                                                torch_version="2"))
    [loaded] = load_entries(tmp_path, tiny_suite)
    assert loaded.verdict is not None and loaded.verdict.accepted, "the verdict on the old file still applies"
    write_entry(tmp_path, tiny_suite, entry)  # written back as it was: no implied record added
    assert "tuning" not in json.loads(path.read_text()) and claims_digest(read_entry(path)) == old_digest
    frame = leaderboard_frame(load_entries(tmp_path, tiny_suite), tiny_suite)
    assert list(frame[HPARAMS]) == ["default"] and list(frame["status"]) == ["verified"]

    # a new entry carries its record, and the record is part of its claims
    explicit = make_entry("erm", tiny_suite, tuning=Tuning(status="default"))
    assert json.loads(explicit.model_dump_json())["tuning"]["status"] == "default"
    assert claims_digest(explicit) != old_digest


def json_digest(raw: dict) -> str:
    """The claims digest of an entry file's JSON object as it is, by the documented formula."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_older_entries_imply_their_record_from_hparams_source() -> None:
    assert implied_tuning("defaults") == Tuning(status="default")
    assert implied_tuning("given on the command line: lr=0.3") == Tuning(status="given")
    source = ("random search, 8 trials (trial 0 = defaults, the rest drawn from the declared ranges), seed 2; each "
              "trial trained once per task at seed 10002; selected by accuracy on a held-out 20% of the training "
              "split (the method trains on the rest), mean over tasks; chosen: trial 5 (0.9875)")
    record = implied_tuning(source)
    assert (record.label, record.sweep_seed, record.trial_seed, record.chosen, record.trials) == (
        "tuned (K=8)", 2, 10002, 5, [])
    assert record.rule == "accuracy on a held-out 20% of the training split (the method trains on the rest)"
    assert implied_tuning(source.replace("8 trials", "2 trials").replace("trial 5", "trial 1")).label == (
        "exploratory (K=2)")
