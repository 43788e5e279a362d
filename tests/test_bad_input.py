"""Bad submissions: each gives a clear message naming the file and the problem, failed jobs are
recorded with their error, and the leaderboard is never touched.

Loading errors are checked at the ``load_submission`` level and through the CLI in-process
(the console script's ``main``, cheap); errors inside ``fit`` are checked with ``score`` on the tiny
suite, and one of each kind through the real console script in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from sbbench.cache import ResultCache
from sbbench.leaderboard.store import build_entry, load_entries, suite_dir, write_entry
from sbbench.methods.registry import load_folder, resolve_method
from sbbench.methods.submission import SubmissionError, load_submission
from sbbench.results import RunResult
from sbbench.scoring import score
from sbbench.suite import SUITES, Suite

SMOKE = SUITES["smoke"]

GOOD_TOML = 'name = "bad-sub"\ntrack = "T0"\n'

METHOD_HEADER = """\
import torch
import torch.nn.functional as F
from torch import nn

from sbbench.methods import HParams, Method, Track, hparam


class BadHParams(HParams):
    alpha: float = hparam(0.2, low=0.05, high=2.0)


"""

GOOD_METHOD = METHOD_HEADER + """\
class Good(Method):
    name = "good"
    track = Track.T0
    HParams = BadHParams

    def fit(self, ctx):
        model, _ = ctx.fit_model()
        return model
"""


def fit_method(body: str) -> str:
    """A method.py whose single Method subclass has ``fit`` = ``body`` (indented 8 spaces)."""
    return METHOD_HEADER + "class Bad(Method):\n    name = 'bad'\n    track = Track.T0\n    HParams = BadHParams\n\n" \
        "    def fit(self, ctx):\n" + textwrap.indent(textwrap.dedent(body), " " * 8)


def write_submission(folder: Path, toml: str = GOOD_TOML, method: str | None = GOOD_METHOD) -> Path:
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(toml)
    if method is not None:
        (folder / "method.py").write_text(method)
    return folder


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def leaderboard_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard root holding one (fabricated) ERM entry for the smoke suite, tables included."""
    root = tmp_path_factory.mktemp("template") / "leaderboard"
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    metrics = dict.fromkeys((*SMOKE.table_metrics, SMOKE.primary_metric), 0.5)
    runs = [RunResult(method="erm", method_version="1", track="T0", code_hash=info.code_hash, hparams=hparams,
                      task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={name: value + 0.01 * seed for name, value in metrics.items()})
            for task in SMOKE.tasks for seed in SMOKE.seeds]
    write_entry(root, SMOKE, build_entry(info, hparams, "defaults", SMOKE, runs, "cpu"))
    folder = suite_dir(root, SMOKE)
    assert (folder / "leaderboard.csv").is_file() and (folder / "LEADERBOARD.md").is_file()
    assert [loaded.entry.method.name for loaded in load_entries(root, SMOKE)] == ["erm"]
    return root


@pytest.fixture
def leaderboard(leaderboard_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template leaderboard for one test."""
    return Path(shutil.copytree(leaderboard_template, tmp_path / "leaderboard"))


def run_cli_inprocess(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                      ) -> tuple[int, str, str]:
    """Run the console script's entry point (what the ``sbbench`` command runs) in this process."""
    main = entry_points(group="console_scripts")["sbbench"].load()
    monkeypatch.setattr(sys, "argv", ["sbbench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def sbbench_command() -> list[str]:
    script = shutil.which("sbbench") or str(Path(sys.executable).parent / "sbbench")
    if Path(script).is_file():
        return [script]
    return [sys.executable, "-c", "from sbbench.cli import main; main()"]


def run_cli_subprocess(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SBBENCH_CACHE": str(cache), "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*sbbench_command(), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


# --- submissions that do not load -----------------------------------------------------------------------------

LOAD_ERRORS = {
    "malformed-toml": ('name = "bad-sub"\ntrack = T0\n', GOOD_METHOD, "submission.toml",
                       ["not valid TOML", "line 2"]),
    "wrong-field-type": (GOOD_TOML + 'authors = "Ada Lovelace"\n', GOOD_METHOD, "submission.toml",
                         ["authors", "valid list"]),
    "unknown-key": (GOOD_TOML + 'homepage = "https://example.org"\n', GOOD_METHOD, "submission.toml",
                    ["homepage", "Extra inputs are not permitted"]),
    "bad-track": ('name = "bad-sub"\ntrack = "T3"\n', GOOD_METHOD, "submission.toml",
                  ["track", "'T0', 'T1', 'T2' or 'oracle'"]),
    "bad-name": ('name = "Bad Name"\n', GOOD_METHOD, "submission.toml", ["name", "pattern"]),
    "missing-method-py": (GOOD_TOML, None, "method.py", ["missing", "needs method.py"]),
    "import-raises": (GOOD_TOML, GOOD_METHOD + "\nraise RuntimeError('needs a GPU driver')\n", "method.py",
                      ["importing it raised RuntimeError", "needs a GPU driver"]),
    "syntax-error": (GOOD_TOML, "def fit(:\n", "method.py", ["importing it raised SyntaxError"]),
    "missing-class": (GOOD_TOML + 'class_name = "Nope"\n', GOOD_METHOD, "method.py",
                      ["no class named 'Nope'", "class_name in submission.toml"]),
    "class-not-a-method": (GOOD_TOML + 'class_name = "Helper"\n', GOOD_METHOD + "\n\nclass Helper:\n    pass\n",
                           "method.py", ["Helper is not a subclass of sbbench.methods.Method"]),
    "no-method-class": (GOOD_TOML, "class Helper:\n    pass\n", "method.py",
                        ["expected exactly one Method subclass, found none", "set class_name"]),
    "two-method-classes": (GOOD_TOML, GOOD_METHOD + "\n\nclass Other(Good):\n    pass\n", "method.py",
                           ["expected exactly one Method subclass, found Good, Other", "set class_name"]),
    "track-mismatch": ('name = "bad-sub"\ntrack = "T1"\n', GOOD_METHOD, "method.py",
                       ["class Good declares track 'T0'", "submission.toml says 'T1'"]),
    "hparam-wrong-type": (GOOD_TOML + '[hparams]\nalpha = "abc"\n', GOOD_METHOD, "submission.toml",
                          ["[hparams] alpha", "valid number"]),
    "hparam-unknown": (GOOD_TOML + "[hparams]\nbeta = 1\n", GOOD_METHOD, "submission.toml",
                       ["[hparams] beta", "Extra inputs are not permitted"]),
}


@pytest.mark.parametrize("case", LOAD_ERRORS, ids=list(LOAD_ERRORS))
def test_bad_submission_is_refused_naming_the_file_and_the_problem(
    case: str, tmp_path: Path, leaderboard: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml, method, culprit, fragments = LOAD_ERRORS[case]
    folder = write_submission(tmp_path / "sub", toml, method)
    with pytest.raises(SubmissionError) as caught:
        load_submission(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / culprit}: "), message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    with pytest.raises(SubmissionError) as again:
        resolve_method(str(folder), submissions_dir=None)
    assert str(again.value) == message

    before = snapshot(leaderboard)
    code, _, err = run_cli_inprocess(["score", str(folder), "--suite", "smoke", "--root", str(leaderboard),
                                      "--cache-dir", str(tmp_path / "cache")], monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {message}"]
    assert snapshot(leaderboard) == before
    assert not (tmp_path / "cache").exists()


def test_method_class_without_fit_is_refused_at_load_time(tmp_path: Path) -> None:
    method = METHOD_HEADER + "class NoFit(Method):\n    name = 'x'\n\n    def train(self, ctx):\n        return None\n"
    folder = write_submission(tmp_path / "sub", GOOD_TOML, method)
    with pytest.raises(SubmissionError, match=r"method\.py: .*fit"):
        load_submission(folder)


def test_plain_string_track_is_normalised_or_refused(tmp_path: Path, tiny_suite: Suite) -> None:
    method = fit_method("raise ValueError('not reached')\n").replace("track = Track.T0", "track = 'T0'")
    folder = write_submission(tmp_path / "sub", GOOD_TOML, method)
    try:
        info = load_folder(folder)
    except SubmissionError as error:
        assert "track" in str(error)
        return
    outcome = score(info, info.defaults, tiny_suite,
                    cache=ResultCache(tmp_path / "cache"))
    assert all(r.status == "failed" and r.track == "T0" for r in outcome.results)


def test_cli_hp_of_the_wrong_type_is_one_line_exit_2_and_no_traceback(tmp_path: Path, leaderboard: Path) -> None:
    folder = write_submission(tmp_path / "sub")
    before = snapshot(leaderboard)
    cache = tmp_path / "cache"
    done = run_cli_subprocess(["score", str(folder), "--suite", "smoke", "--hp", "alpha=abc", "--root",
                               str(leaderboard)], cwd=tmp_path, cache=cache)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: hyperparameter alpha of bad-sub: ")
    assert "valid number" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert snapshot(leaderboard) == before
    assert not cache.exists()


@pytest.mark.parametrize(("hp", "fragment"), [("alpha", "--hp expects key=value, got 'alpha'"),
                                              ("beta=1", "hyperparameter beta of bad-sub: Extra inputs"),
                                              ("alpha=[1]", "hyperparameter alpha of bad-sub: ")])
def test_cli_bad_hp_in_process(hp: str, fragment: str, tmp_path: Path, leaderboard: Path,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_submission(tmp_path / "sub")
    before = snapshot(leaderboard)
    code, _, err = run_cli_inprocess(["score", str(folder), "--suite", "smoke", "--hp", hp, "--root",
                                      str(leaderboard), "--cache-dir", str(tmp_path / "cache")], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert snapshot(leaderboard) == before


# --- submissions that load but fail while running ---------------------------------------------------------------

RUN_ERRORS = {
    "fit-raises": ("raise ValueError('the optimiser exploded')\n",
                   ["ValueError: the optimiser exploded", "method.py:"]),
    "fit-returns-non-module": ("return {'weights': [1.0, 2.0]}\n",
                               ["fit must return a torch.nn.Module, got dict"]),  # refused in the fit child
    "wrong-output-shape": ("return nn.Linear(ctx.input_shape[0], 3)\n",
                           ["InvalidModel", "must map a batch of 8 inputs to (8, 2) logits, got (8, 3)"]),
    "nan-logits": ("""\
                   class Nan(nn.Module):
                       def forward(self, x):
                           return torch.full((x.shape[0], 2), float('nan'))  # len(x) fixes the batch size
                   return Nan()
                   """, ["InvalidModel", "logits contain NaN or infinite values"]),
    "nan-loss": ("""\
                 def objective(model, x, y):
                     logits = model(x)
                     return F.cross_entropy(logits, y) * float('nan'), logits
                 model, _ = ctx.fit_model(objective=objective)
                 return model
                 """, ["TrainingDiverged", "training loss became nan in epoch 1"]),
}


@pytest.mark.parametrize("case", RUN_ERRORS, ids=list(RUN_ERRORS))
def test_failing_fit_is_recorded_as_failed_jobs_with_the_error(case: str, tmp_path: Path, tiny_suite: Suite) -> None:
    body, fragments = RUN_ERRORS[case]
    folder = write_submission(tmp_path / "sub", method=fit_method(body))
    info = load_folder(folder)
    hparams = info.defaults
    cache = ResultCache(tmp_path / "cache")
    outcome = score(info, hparams, tiny_suite, cache=cache)
    assert [(r.seed, r.status) for r in outcome.results] == [(0, "failed"), (1, "failed")]
    for result in outcome.results:
        assert result.method == "bad-sub" and result.metrics == {} and result.profiles == {}
        assert result.error is not None
        for fragment in fragments:
            assert fragment in result.error, result.error
    if case == "fit-raises":
        assert f"{folder / 'method.py'}:" in outcome.results[0].error
    # failed jobs are cached but never reused: the next score retries them
    assert len(list(cache.root.rglob("*.json"))) == 2
    assert score(info, hparams, tiny_suite, cache=cache).reused == 0


def test_cli_score_with_failing_fit_exits_1_and_leaves_the_leaderboard_alone(tmp_path: Path, leaderboard: Path
                                                                              ) -> None:
    folder = write_submission(tmp_path / "sub", method=fit_method("raise ValueError('the optimiser exploded')\n"))
    before = snapshot(leaderboard)
    cache = tmp_path / "cache"
    done = run_cli_subprocess(["score", str(folder), "--suite", "smoke", "--root", str(leaderboard)],
                              cwd=tmp_path, cache=cache)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == 1, done.stderr
    assert "2 of 2 jobs failed; the leaderboard was not changed" in done.stderr
    assert "lms5-smoke seed 0: failed (ValueError: the optimiser exploded" in done.stderr
    assert "lms5-smoke seed 1: failed (ValueError: the optimiser exploded" in done.stderr
    assert snapshot(leaderboard) == before
    assert not (suite_dir(leaderboard, SMOKE) / "entries" / "bad-sub.json").exists()
    assert [loaded.entry.method.name for loaded in load_entries(leaderboard, SMOKE)] == ["erm"]
    assert len(list(cache.rglob("*.json"))) == 2, "the failed jobs are cached (and retried next time)"
    assert not (tmp_path / ".sbbench").exists(), "SBBENCH_CACHE is honoured"
