"""Bad input, systematically: hypothesis feeds malformed input to the console script's ``main``.

Every malformed ``submission.toml``, entry file, ``--hp`` string and command line must give one
clear error line (``error: ...``, exit code 2, no traceback) and leave every file as it was
(Python's own ``__pycache__`` aside). Result-cache files are different: a bad one is never an
error but is detected, never trusted, and removed so that the job is recomputed.

Inputs are malformed by construction (and, where that is not certain, filtered with
``assume`` against the schema), so a valid input never starts a real score.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sbbench.cache import ResultCache
from sbbench.leaderboard.store import EntryError, build_entry, entry_path, read_entry
from sbbench.methods.registry import BUILTIN_METHODS, resolve_method
from sbbench.methods.submission import SubmissionError, load_submission, tomllib
from sbbench.results import RunResult
from sbbench.suite import SUITES

CI = SUITES["ci"]
# Derandomized, with no example database: the profile loaded in tests/conftest.py.
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

METHOD = textwrap.dedent('''\
    from sbbench.methods import HParams, Method, Track, hparam


    class Params(HParams):
        alpha: float = hparam(0.2)


    class WithAlpha(Method):
        name = "with-alpha"
        track = Track.T0
        HParams = Params

        def fit(self, ctx):
            model, _ = ctx.fit_model()
            return model
    ''')


# --- running the CLI and watching the disk ------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh temporary folder that is also the working directory."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="sbbench-prop-") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(previous)


def run_main(args: list[str], watched: Path) -> tuple[int, str, str]:
    """Run ``sbbench ARGS`` in this process and return (exit code, stdout, stderr).

    Asserts that no traceback was printed and nothing under ``watched`` changed.
    """
    before = snapshot(watched)
    code, out, err = run_cli(*args)
    assert "Traceback" not in err + out, err
    assert snapshot(watched) == before, f"{args} changed files on disk"
    return code, out, err


def assert_one_clear_error(args: list[str], watched: Path) -> str:
    """Run ``sbbench ARGS``; assert exit 2, one ``error:`` line, no traceback and no change under ``watched``."""
    code, out, text = run_main(args, watched)
    assert code == 2, (args, text, out)
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text.endswith("\n") and errors[0] == text.splitlines()[-1], text
    return errors[0]


def assert_skipped_with_a_warning(args: list[str], watched: Path) -> str:
    """Run ``sbbench ARGS``; assert exit 0, one ``warning:`` line, no traceback and no change under ``watched``."""
    code, out, text = run_main(args, watched)
    assert code == 0, (args, text, out)
    warnings = [line for line in text.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, text
    return warnings[0]


# --- strategies ------------------------------------------------------------------------------------------------------

printable = st.characters(blacklist_categories=("Cs", "Cc"))
toml_scalar = st.one_of(st.text(printable, max_size=12), st.integers(-(2**63), 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False), st.booleans())
toml_value = st.one_of(toml_scalar, st.lists(toml_scalar, max_size=3),
                       st.dictionaries(st.text(printable, min_size=1, max_size=8), toml_scalar, max_size=3))
META_KEYS = ["name", "display_name", "authors", "paper", "description", "track", "class_name", "hparams"]
meta_tables = st.dictionaries(st.sampled_from([*META_KEYS, "version", "Name", "hparam"]), toml_value, max_size=6)


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_literal(v)}" for k, v in value.items()) + "}"


def toml_document(table: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_literal(v)}\n" for k, v in table.items())


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=6)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one randomly chosen node replaced, deleted, or given an unknown key."""
    if not isinstance(document, dict | list) or not document or draw(st.integers(0, 3)) == 0:
        return draw(json_values())
    if isinstance(document, dict):
        key = draw(st.sampled_from(sorted(document)))
        action = draw(st.sampled_from(["descend", "delete", "add"]))
        copy = dict(document)
        if action == "delete":
            del copy[key]
        elif action == "add":
            copy[draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in document))] = draw(json_values())
        else:
            copy[key] = draw(mutated(document[key]))
        return copy
    index = draw(st.integers(0, len(document) - 1))
    return [draw(mutated(item)) if i == index else item for i, item in enumerate(document)]


def erm_entry_json() -> str:
    info = resolve_method("erm", submissions_dir=None)
    runs = [RunResult(method="erm", method_version="1", track="T0", code_hash=info.code_hash, hparams={},
                      task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics=dict.fromkeys((*CI.table_metrics, CI.primary_metric), 0.5 + 0.01 * seed))
            for task in CI.tasks for seed in CI.seeds]
    return build_entry(info, {}, "defaults", CI, runs, "cpu").model_dump_json()


VALID_ENTRY = json.loads(erm_entry_json())


# --- submission.toml -------------------------------------------------------------------------------------------------


def write_folder(base: Path, toml_text: str | bytes) -> Path:
    folder = base / "sub"
    folder.mkdir()
    (folder / "method.py").write_text(METHOD)
    # Exact bytes: UTF-8, as TOML is, and no newline translation (a lone "\r" stays one).
    data = toml_text if isinstance(toml_text, bytes) else toml_text.encode()
    (folder / "submission.toml").write_bytes(data)
    return folder


@PROPERTY
@given(text=st.one_of(st.text(max_size=80), st.binary(max_size=80)))
# A lone carriage return (CR not followed by LF) is not a TOML newline and is not allowed in comments or
# strings: invalid TOML, which reading the file in text mode (universal newlines) once turned into LF.
@example(text=b"\r")
@example(text="\r")
@example(text=b"\r\r\n")
@example(text=b'name = "x"\r')
@example(text=b'name = "x"\rtrack = "T0"\n')
@example(text=b"# comment\r")
@example(text=b'name = "x"  # comment\r')
@example(text=b'name = "x"\ndescription = """one\rtwo"""\n')
@example(text=b"\xff")  # not UTF-8
@example(text=b'name = "\xe9"\n')  # Latin-1, not UTF-8
def test_unparsable_submission_toml_is_one_clear_error(text: str | bytes) -> None:
    try:
        tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        pass
    else:
        assume(False)
    with workspace() as base:
        folder = write_folder(base, text)
        line = assert_one_clear_error(["score", str(folder), "--suite", "ci", "--root", str(base / "board")], base)
        assert "submission.toml: not valid TOML" in line


@PROPERTY
@given(table=meta_tables)
def test_invalid_submission_metadata_is_one_clear_error(table: dict[str, Any]) -> None:
    document = toml_document(table)
    assert tomllib.loads(document) == table
    with workspace() as base:
        folder = write_folder(base, document)
        try:
            load_submission(folder)
        except SubmissionError:
            pass
        else:
            assume(False)  # a valid submission: not this property's business
        line = assert_one_clear_error(["score", str(folder), "--suite", "ci", "--root", str(base / "board")], base)
        assert str(folder) in line


# --- entry files -----------------------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_malformed_entry_files_are_skipped_by_the_table_and_one_clear_error_for_the_rest(data: st.DataObject) -> None:
    content = data.draw(st.one_of(st.binary(max_size=200),
                                  mutated(VALID_ENTRY).map(lambda doc: json.dumps(doc).encode())))
    with workspace() as base:
        path = entry_path(base / "board", CI, "erm")
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        try:
            read_entry(path)
        except EntryError:
            pass
        else:
            assume(False)
        root = str(base / "board")
        warning = assert_skipped_with_a_warning(["leaderboard", "--suite", "ci", "--root", root], base)
        assert str(path) in warning, warning
        for args in (["compare", "erm", "erm", "--suite", "ci", "--root", root],
                     ["verify", "erm", "--suite", "ci", "--root", root],
                     ["verify", str(path)]):
            line = assert_one_clear_error(args, base)
            assert str(path) in line, line


# --- hyperparameter strings ------------------------------------------------------------------------------------------

hp_without_equals = st.text(printable, max_size=20).filter(lambda s: "=" not in s)
hp_empty_key = st.builds(lambda spaces, value: f"{spaces}={value}", st.text(" ", max_size=3), st.text(printable,
                                                                                                       max_size=10))
hp_unknown_key = st.builds(lambda key, value: f"{key}={value}",
                           st.text(string.ascii_letters + "_", min_size=1, max_size=10).filter(lambda k: k != "alpha"),
                           st.text(printable, max_size=10))
non_numbers = st.one_of(st.text(string.ascii_letters, min_size=1, max_size=10).filter(
    lambda s: s.lower() not in {"inf", "nan", "infinity", "true", "false"}),
    st.lists(st.integers(), max_size=3).map(json.dumps),
    st.dictionaries(st.text(string.ascii_letters, max_size=3), st.integers(), max_size=2).map(json.dumps))


@PROPERTY
@given(hp=st.one_of(hp_without_equals, hp_empty_key, hp_unknown_key, non_numbers.map(lambda v: f"alpha={v}")))
def test_malformed_hyperparameter_strings_are_one_clear_error(hp: str) -> None:
    assume(not hp.startswith("-"))  # an option, not a value: covered by the command-line property
    with workspace() as base:
        line = assert_one_clear_error(["score", "erm", "--suite", "ci", "--root", str(base / "board"), "--hp", hp],
                                      base)
        assert "--hp expects key=value" in line or "hyperparameter" in line


# A folder's hyperparameters are validated in a child process (about 2-5 s per call), so one fixed example per
# kind of malformed string above rather than a drawn sample.
@pytest.mark.parametrize("hp", ["alpha", "=1", "beta=1", "alpha=[1, 2]"])
def test_malformed_hyperparameter_strings_for_a_folder_are_one_clear_error(hp: str) -> None:
    with workspace() as base:
        target = str(write_folder(base, 'name = "with-alpha"\n'))
        line = assert_one_clear_error(["score", target, "--suite", "ci", "--root", str(base / "board"), "--hp", hp],
                                      base)
        assert "--hp expects key=value" in line or "hyperparameter" in line


# --- command lines ---------------------------------------------------------------------------------------------------

COMMANDS = {"tasks", "methods", "run", "suites", "score", "verify", "leaderboard", "compare", "data", "sweep", "plot",
            "images"}
names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
unknown_method = names.filter(lambda n: n not in BUILTIN_METHODS)
unknown_suite = names.filter(lambda n: n not in SUITES)
not_positive = st.integers(max_value=0).map(str)
not_an_int = st.text(string.ascii_letters + ".", min_size=1, max_size=6)


@st.composite
def bad_command_lines(draw: st.DrawFn, root: str) -> list[str]:
    return draw(st.sampled_from([
        ["score", draw(unknown_method), "--suite", "ci", "--root", root],
        ["score", "erm", "--suite", draw(unknown_suite), "--root", root],
        ["score", "erm", "--suite", "ci", "--root", root, "--workers", draw(st.one_of(not_positive, not_an_int))],
        ["score", "erm", "--suite", "ci", "--root", root, "--executor", draw(names.filter(
            lambda n: n not in {"isolated", "inline", "dask", "dask-local"}))],
        ["score", "erm", "--suite", "ci", "--root", root, "--" + draw(names.filter(lambda n: not n.startswith("-")))],
        ["verify", draw(names), "--suite", "ci", "--root", root],
        ["verify", "erm", "--suite", draw(unknown_suite), "--root", root],
        ["verify", "erm", "--suite", "ci", "--root", root, "--workers", draw(not_positive)],
        ["verify", draw(names) + ".json"],
        ["leaderboard", "--suite", "ci", "--root", root, "--format", draw(names.filter(
            lambda n: n not in {"table", "md", "csv", "json"}))],
        ["compare", draw(names), draw(names), "--suite", "ci", "--root", root],
        [draw(names.filter(lambda n: n not in COMMANDS))],
    ]))


@PROPERTY
@given(data=st.data())
def test_malformed_command_lines_are_one_clear_error(data: st.DataObject) -> None:
    with workspace() as base:
        assert_one_clear_error(data.draw(bad_command_lines(str(base / "board"))), base)


# --- result-cache files ----------------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_bad_result_cache_files_are_never_trusted(data: st.DataObject) -> None:
    result = RunResult(method="erm", method_version="1", track="T0", code_hash="c" * 64, hparams={}, task="lms5-ci",
                       task_hash="t" * 64, seed=0, status="ok", metrics={"acc": 0.9, "s_rand_auc": 0.5})
    with workspace() as base:
        cache = ResultCache(base / "cache")
        cache.store("a" * 64, result)
        cache.store("b" * 64, result)
        good = json.loads(cache.path("a" * 64).read_text())
        content = data.draw(st.one_of(st.binary(max_size=300), mutated(good).map(lambda d: json.dumps(d).encode()),
                                      st.just(cache.path("a" * 64).read_bytes()[:data.draw(st.integers(0, 200))])))
        cache.path("a" * 64).write_bytes(content)
        other = cache.path("b" * 64).read_bytes()
        loaded = cache.load("a" * 64)
        assert loaded is None or loaded == result, "a changed file never yields a changed result"
        assert loaded is not None or not cache.path("a" * 64).exists(), "a bad file is removed, to be recomputed"
        assert cache.path("b" * 64).read_bytes() == other
