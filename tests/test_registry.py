"""The method registry: built-ins, installed packages (entry points) and submission folders.

The entry-point tests install a real distribution into ``tmp_path`` (a package plus a
``*.dist-info`` folder) and put it on ``sys.path``, which is exactly how
``importlib.metadata`` finds installed packages: nothing is mocked.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbbench.cache import ResultCache
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.store import build_entry, entry_path, load_entries, suite_dir, write_entry
from sbbench.methods.base import Method, Track
from sbbench.methods.registry import (
    BUILTIN_METHODS,
    ENTRY_POINT_GROUP,
    MethodInfo,
    RegistryError,
    discover,
    resolve_method,
)
from sbbench.scoring import score
from sbbench.suite import Suite

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = REPO / "submissions"
EXAMPLE = SUBMISSIONS / "example-mixup"
EXAMPLE_MODULE = "sbbench_submissions.example_mixup"
"""The module name under which a process that imports the example submission holds it."""
EXPECTED_METRICS = {"acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc", "s_swap_acc",
                    "sc_swap_acc", "adv_acc_l2_1.0"}

PLUGIN_SOURCE = '''"""An out-of-tree method shipped as an installed package."""

from sbbench.methods import HParams, Method, TrainContext, Track, hparam


class PluginHParams(HParams):
    epochs: int = hparam(5, low=1, high=10, description="epochs of ERM")


class Plugin(Method):
    """ERM with the number of epochs as a hyperparameter."""

    name = "{name}"
    version = "0.1"
    track = Track.T0
    HParams = PluginHParams

    def fit(self, ctx: TrainContext):
        model, _ = ctx.fit_model(config=ctx.budget.model_copy(update={{"max_epochs": self.hparams.epochs}}))
        return model
'''


def install_distribution(site: Path, package: str, dist: str, entry_points: dict[str, str], source: str,
                         list_module: bool = True) -> Path:
    """Write ``site/<package>/__init__.py`` and ``site/<dist>-0.1.dist-info`` like pip would."""
    (site / package).mkdir(parents=True)
    module = site / package / "__init__.py"
    module.write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {reference}\n" for name, reference in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    # The file list: the registry hashes the entry point's module found there, without importing it.
    # An editable install (``pip install -e``) lists no module: ``list_module=False``.
    files = [*([f"{package}/__init__.py"] if list_module else []),
             *(f"{info.name}/{name}" for name in ("METADATA", "entry_points.txt"))]
    (info / "RECORD").write_text("".join(f"{file},,\n" for file in [*files, f"{info.name}/RECORD"]))
    return module


@pytest.fixture
def forget_modules() -> Iterator[list[str]]:
    """Names of test packages to drop from ``sys.modules`` afterwards (each test installs its own)."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


# --- built-ins and folder submissions -------------------------------------------------------------------------


def test_discover_lists_builtins_and_the_example_folder_with_their_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, EXAMPLE_MODULE, raising=False)  # an earlier test may have imported it
    methods = discover(SUBMISSIONS)
    for name, reference in BUILTIN_METHODS.items():
        assert methods[name].source == f"built-in {reference}"
        assert methods[name].meta is None
        assert methods[name].name == name
        assert methods[name].trusted and issubclass(methods[name].cls, Method)
    assert methods["erm"].track is Track.T0 and methods["erm"].cls.track is Track.T0
    assert methods["oracle-randomize-s"].track is Track.ORACLE
    example = methods["example-mixup"]
    assert example.source == f"folder {EXAMPLE}"
    assert example.meta is not None and example.meta.name == "example-mixup"
    assert example.meta.display_name == "mixup (example submission)"
    # described by a child process: its code is not imported here
    assert example.cls is None and not example.trusted and EXAMPLE_MODULE not in sys.modules
    assert example.track is Track.T0 and example.description.name == "example-mixup"
    assert example.defaults == {"alpha": 0.2} and "alpha" in example.description.hparams_schema["properties"]
    assert len(example.code_hash) == 64 and all(c in "0123456789abcdef" for c in example.code_hash)


def test_discover_without_a_submissions_folder_lists_exactly_the_builtins() -> None:
    assert set(discover(None)) == set(BUILTIN_METHODS)
    assert set(discover(Path("/nonexistent/submissions"))) == set(BUILTIN_METHODS)


def test_resolve_method_by_name_and_by_folder_path() -> None:
    by_name = resolve_method("example-mixup", submissions_dir=SUBMISSIONS)
    by_path = resolve_method(str(EXAMPLE), submissions_dir=None)
    assert by_name.source == by_path.source == f"folder {EXAMPLE}"
    assert by_name.code_hash == by_path.code_hash
    assert by_name.meta == by_path.meta
    erm = resolve_method("erm", submissions_dir=None)
    assert erm.source == f"built-in {BUILTIN_METHODS['erm']}" and erm.meta is None


def test_resolve_unknown_name_lists_the_known_methods() -> None:
    with pytest.raises(RegistryError) as caught:
        resolve_method("no-such-method", submissions_dir=None)
    message = str(caught.value)
    assert "unknown method 'no-such-method'" in message
    assert "erm" in message and "oracle-randomize-s" in message


def test_code_hash_changes_when_the_submission_code_changes(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("method.py", "submission.toml"):
        (folder / name).write_bytes((EXAMPLE / name).read_bytes())
    original = resolve_method(str(folder), submissions_dir=None).code_hash
    assert original == resolve_method(str(EXAMPLE), submissions_dir=None).code_hash
    (folder / "method.py").write_text((EXAMPLE / "method.py").read_text() + "\n# edited\n")
    assert resolve_method(str(folder), submissions_dir=None).code_hash != original


# --- an out-of-tree package through the entry point -----------------------------------------------------------


def test_installed_package_is_discovered_through_the_entry_point_and_scores_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str], tiny_suite: Suite
) -> None:
    site = tmp_path / "site"
    module = install_distribution(site, "sbx_plugin", "sbx-plugin", {"sbx-plugin": "sbx_plugin:Plugin"},
                                  PLUGIN_SOURCE.format(name="sbx-plugin"))
    forget_modules.append("sbx_plugin")
    assert "sbx-plugin" not in discover(None)
    monkeypatch.syspath_prepend(str(site))

    methods = discover(None)
    assert set(methods) == {*BUILTIN_METHODS, "sbx-plugin"}
    info = methods["sbx-plugin"]
    assert info.source == "entry point sbx-plugin = sbx_plugin:Plugin (sbx-plugin)"
    assert info.source.startswith("entry point ")
    # described by a child process: the plugin's code never runs in the scoring process
    assert info.cls is None and not info.trusted and "sbx_plugin" not in sys.modules
    assert info.locator == {"reference": "sbx_plugin:Plugin", "name": "sbx-plugin"}
    assert (info.name, info.version, info.track) == ("sbx-plugin", "0.1", Track.T0)
    assert info.description.summary == "ERM with the number of epochs as a hyperparameter."
    assert info.defaults == {"epochs": 5}
    assert info.code_hash == hashlib.sha256(b"__init__.py" + module.read_bytes()).hexdigest()
    resolved = resolve_method("sbx-plugin", submissions_dir=None)
    assert resolved.source == info.source and resolved.code_hash == info.code_hash
    assert "sbx_plugin" not in sys.modules

    hparams = info.defaults
    cache = ResultCache(tmp_path / "cache")
    outcome = score(info, hparams, tiny_suite, cache=cache)
    assert outcome.reused == 0
    assert [(r.task, r.seed) for r in outcome.results] == [("tiny-lms5", 0), ("tiny-lms5", 1)]
    for result in outcome.results:
        assert result.status == "ok", result.error
        assert result.error is None
        assert result.method == "sbx-plugin" and result.method_version == "0.1" and result.track == "T0"
        assert result.code_hash == info.code_hash and result.hparams == {"epochs": 5}
        assert set(result.metrics) >= EXPECTED_METRICS
        assert all(0.0 <= result.metrics[m] <= 1.0 for m in EXPECTED_METRICS)
        assert result.metrics["acc"] > 0.9, "ERM learns the linear coordinate of LMS-5"
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    assert "sbx_plugin" not in sys.modules, "scoring imported the plugin in the scoring process"

    again = score(info, hparams, tiny_suite, cache=cache)
    assert again.reused == 2 and again.results == outcome.results


def test_entry_point_claiming_a_builtin_name_is_refused_naming_both_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    install_distribution(tmp_path, "sbx_dup", "sbx-dup", {"erm": "sbx_dup:Plugin"}, PLUGIN_SOURCE.format(name="erm"))
    forget_modules.append("sbx_dup")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError) as caught:
        discover(None)
    message = str(caught.value)
    assert "'erm'" in message and "claimed twice" in message
    assert f"built-in {BUILTIN_METHODS['erm']}" in message
    assert "entry point erm = sbx_dup:Plugin (sbx-dup)" in message
    with pytest.raises(RegistryError, match="claimed twice"):
        resolve_method("erm", submissions_dir=None)


def test_entry_point_named_erm_is_refused_even_when_its_class_uses_another_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    install_distribution(tmp_path, "sbx_alias", "sbx-alias", {"erm": "sbx_alias:Plugin"},
                         PLUGIN_SOURCE.format(name="sbx-alias"))
    forget_modules.append("sbx_alias")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="erm"):
        discover(None)


def test_entry_point_that_is_not_a_method_is_refused_with_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    install_distribution(tmp_path, "sbx_notmethod", "sbx-notmethod", {"sbx-notmethod": "sbx_notmethod:Plugin"},
                         "class Plugin:\n    name = 'sbx-notmethod'\n")
    forget_modules.append("sbx_notmethod")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match=r"'sbx_notmethod:Plugin' is not a subclass of sbbench.methods.Method"):
        discover(None)


# --- the example submission, end to end -----------------------------------------------------------------------


def test_example_submission_scores_and_its_entry_is_written_validated_and_tabulated(
    tmp_path: Path, tiny_suite: Suite
) -> None:
    info: MethodInfo = resolve_method(str(EXAMPLE), submissions_dir=None)
    hparams = info.defaults
    assert hparams == {"alpha": 0.2}
    outcome = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "cache"))
    assert [r.status for r in outcome.results] == ["ok", "ok"], [r.error for r in outcome.results]
    for result in outcome.results:
        assert result.method == "example-mixup" and result.hparams == hparams
        assert set(result.metrics) >= EXPECTED_METRICS

    root = tmp_path / "leaderboard"
    entry = build_entry(info, hparams, "defaults", tiny_suite, outcome.results, "cpu")
    path = write_entry(root, tiny_suite, entry)
    assert path == entry_path(root, tiny_suite, "example-mixup") == root / "tiny-v1" / "entries" / "example-mixup.json"

    reread = Entry.model_validate_json(path.read_bytes())
    assert reread.method.name == "example-mixup" and reread.method.track == "T0"
    assert reread.method.display_name == "mixup (example submission)"
    assert reread.method.authors == ["sbbench maintainers"] and reread.method.source == f"folder {EXAMPLE}"
    assert reread.suite.name == "tiny" and reread.suite.hash == tiny_suite.content_hash()
    assert reread.runs == outcome.results
    expected_primary = sum(r.metrics["s_rand_auc"] for r in outcome.results) / 2
    assert reread.primary_score == pytest.approx(expected_primary)
    assert reread.aggregates["tiny-lms5"]["acc"].n == 2

    loaded = load_entries(root, tiny_suite)
    assert [(item.entry.method.name, item.stale) for item in loaded] == [("example-mixup", False)]

    folder = suite_dir(root, tiny_suite)
    rows = list(csv.DictReader((folder / "leaderboard.csv").read_text().splitlines()))
    assert [row["method"] for row in rows] == ["example-mixup"]
    assert float(rows[0]["score"]) == pytest.approx(entry.primary_score)
    assert rows[0]["status"] == "unverified" and rows[0]["track"] == "T0"
    markdown = (folder / "LEADERBOARD.md").read_text()
    assert "example-mixup" in markdown


def test_every_builtin_key_names_its_class_and_resolving_one_imports_only_it() -> None:
    for name in BUILTIN_METHODS:
        assert resolve_method(name, submissions_dir=None).cls.name == name
    code = ("import sys; from sbbench.methods.registry import resolve_method; resolve_method('erm', "
            "submissions_dir=None); print(sorted(m for m in sys.modules if m.startswith('sbbench.methods.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sbbench.methods.erm" in loaded and "sbbench.methods.sam" not in loaded and "divdis" not in loaded


def test_a_builtin_whose_class_name_differs_from_its_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_METHODS, "not-erm", BUILTIN_METHODS["erm"])
    with pytest.raises(RegistryError, match="its class is named 'erm'; the two names must match"):
        resolve_method("not-erm", submissions_dir=None)


def test_an_editable_install_is_hashed_from_its_source_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    site = tmp_path / "site"
    module = install_distribution(site, "sbx_edit", "sbx-edit", {"sbx-edit": "sbx_edit:Plugin"},
                                  PLUGIN_SOURCE.format(name="sbx-edit"), list_module=False)
    forget_modules.append("sbx_edit")
    monkeypatch.syspath_prepend(str(site))
    info = resolve_method("sbx-edit", submissions_dir=None)
    assert info.code_hash == hashlib.sha256(b"__init__.py" + module.read_bytes()).hexdigest()
    assert "sbx_edit" not in sys.modules
