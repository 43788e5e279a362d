"""The static leaderboard site: rendered from entry files only, self-contained, truthful.

The entries come from real ``score()`` runs on a tiny suite (``make_leaderboard``, shared with
the browser and Hub tests through the on-disk result cache, so each job trains once per session).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_TASK, committed_entries
from typer.testing import CliRunner

from sbbench.cache import ResultCache
from sbbench.cli import app
from sbbench.cli.common import UserError
from sbbench.leaderboard import store, svg
from sbbench.leaderboard.glossary import column_description, metric_description
from sbbench.leaderboard.render import leaderboard_frame
from sbbench.leaderboard.site import MARKER, SiteError, build_site
from sbbench.leaderboard.store import build_entry, load_entries, write_entry
from sbbench.methods.registry import resolve_method
from sbbench.metrics.evaluate import AttackSpec, MetricSpec
from sbbench.scoring import score
from sbbench.suite import SUITES, SYNTHETIC_V2, Suite

REPO = Path(__file__).resolve().parents[1]

SITE_TASK = TINY_TASK.model_copy(update={
    "name": "site-lms5",
    "metrics": MetricSpec(randomization_repeats=2, universal=False, coordinate_profile=True,
                          attacks=[AttackSpec(norm="l2", eps=0.5, steps=5), AttackSpec(norm="l2", eps=1.0, steps=5),
                                   AttackSpec(norm="linf", eps=0.1, steps=5)]),
})
SITE_SUITE = Suite(name="site", version=1, description="tests of the web site: one tiny LMS-5 task, 2 seeds",
                   tasks=(SITE_TASK,), seeds=(0, 1))
OLD_SITE_SUITE = SITE_SUITE.model_copy(update={"seeds": (0,)})
"""The same suite name and version with another definition: entries scored on it are stale."""

CURRENT_METHODS = ("erm", "oracle-randomize-s")
STALE_METHOD = "example-mixup"


def make_leaderboard(root: Path, cache: Path) -> list[str]:
    """Score ERM and the oracle on ``SITE_SUITE`` and the example submission on the old definition.

    Returns the entry names. Jobs are cached under ``cache``, so repeated calls train nothing.
    """
    jobs = [(name, SITE_SUITE) for name in CURRENT_METHODS]
    jobs.append((str(REPO / "submissions" / STALE_METHOD), OLD_SITE_SUITE))
    names = []
    for reference, suite in jobs:
        info = resolve_method(reference)
        hparams = info.defaults
        outcome = score(info, hparams, suite, cache=ResultCache(cache))
        assert all(r.status == "ok" for r in outcome.results), [r.error for r in outcome.results]
        write_entry(root, suite, build_entry(info, hparams, "defaults", suite, outcome.results, "cpu"))
        names.append(info.name)
    return names


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leaderboard")
    make_leaderboard(root, tmp_path_factory.getbasetemp() / "result-cache")
    return root


@pytest.fixture(scope="module")
def site(board: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "out"
    summary = build_site(board, out, [SITE_SUITE])
    assert summary.entries == 3 and summary.pages == 5 and summary.suites == ["site-v1"]
    return out


class _Page(HTMLParser):
    """Collects what the tests look at: resource links, anchors, table rows and svg charts."""

    def __init__(self) -> None:
        super().__init__()
        self.resources: list[str] = []
        self.anchors: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.svgs = 0
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "link" or (tag in ("script", "img") and "src" in values):
            self.resources.append(values.get("href") or values["src"])
        elif tag == "a" and "href" in values:
            self.anchors.append(values["href"])
        elif tag == "tr" and "data-track" in values:
            self.rows.append(values)
        elif tag == "svg":
            self.svgs += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_every_page_is_self_contained_resources_and_internal_links_resolve_to_files(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert [p.relative_to(site).as_posix() for p in pages] == [
        "index.html", "site-v1/entries/erm.html", "site-v1/entries/example-mixup.html",
        "site-v1/entries/oracle-randomize-s.html", "site-v1/index.html"]
    for page_path in pages:
        page = parse(page_path)
        for resource in page.resources:
            if resource.startswith("data:"):
                continue
            assert "//" not in resource, f"{page_path}: loads {resource} from the network"
            assert (page_path.parent / resource).is_file(), f"{page_path}: missing resource {resource}"
        for href in page.anchors:
            if re.match(r"https?://", href):
                continue  # a link a reader may follow (a paper), never loaded by the page itself
            if href.startswith("#"):  # a place on the same page
                assert f'id="{href[1:]}"' in page_path.read_text(encoding="utf-8"), f"{page_path}: broken link {href}"
                continue
            assert (page_path.parent / href.split("#")[0]).is_file(), f"{page_path}: broken link {href}"


def test_suite_page_lists_every_entry_in_table_order_and_marks_the_stale_one(site: Path, board: Path) -> None:
    frame = leaderboard_frame(load_entries(board, SITE_SUITE), SITE_SUITE)
    rows = parse(site / "site-v1" / "index.html").rows
    assert [row["data-search"].split()[0] for row in rows] == list(frame["method"])
    status = {row["data-search"].split()[0]: row["data-status"] for row in rows}
    assert status == {"erm": "unverified", "oracle-randomize-s": "unverified", "example-mixup": "stale"}
    assert [row.get("class") for row in rows if row["data-status"] == "stale"] == ["stale"]
    assert frame["method"].iloc[-1] == STALE_METHOD, "stale entries are listed last"


def test_suite_page_cells_carry_sortable_values_and_the_ci_of_each_mean(site: Path, board: Path) -> None:
    html = (site / "site-v1" / "index.html").read_text()
    erm = next(item.entry for item in load_entries(board, SITE_SUITE) if item.entry.method.name == "erm")
    summary = erm.aggregates["site-lms5"]["s_rand_auc"]
    cell = re.search(r'<td data-value="([^"]+)" data-task="site-lms5" title="([^"]+)" class="num">'
                     + re.escape(f"{summary.mean:.3f}") + "</td>", html)
    assert cell is not None
    assert float(cell.group(1)) == pytest.approx(summary.mean, abs=1e-12)
    assert cell.group(2) == f"95% CI [{summary.ci_low:.3f}, {summary.ci_high:.3f}] over 2 seeds"


def test_entry_page_shows_provenance_hyperparameters_metrics_with_cis_and_charts(site: Path, board: Path) -> None:
    loaded = {item.entry.method.name: item for item in load_entries(board, SITE_SUITE)}
    mixup = loaded[STALE_METHOD].entry
    html = (site / "site-v1" / "entries" / "example-mixup.html").read_text()
    assert mixup.provenance.git_commit in html and mixup.method.code_hash in html
    assert "<th scope=\"row\">alpha</th><td><code>0.2</code>" in html
    assert "Stale entry:" in html
    for metric, summary in mixup.aggregates["site-lms5"].items():
        row = re.search(rf"<code title=\"[^\"]*\">{re.escape(metric)}</code>.*?</tr>", html)
        assert row is not None, metric
        assert f"[{summary.ci_low:.3f}, {summary.ci_high:.3f}]" in row.group(0)
    page = parse(site / "site-v1" / "entries" / "erm.html")
    assert page.svgs == 4, "overview bars, l2 and linf adversarial curves, reliance profile"
    erm = loaded["erm"].entry.aggregates["site-lms5"]
    for label, metric in (("standard", "auc"), ("S randomized", "s_rand_auc"), ("S\u1d9c randomized", "sc_rand_auc")):
        expected = svg.Interval(erm[metric].mean, erm[metric].ci_low, erm[metric].ci_high).describe()
        assert f"site-lms5, {label}: {expected}" in page.titles
    adversarial = erm["adv_acc_l2_0.5"]
    expected = svg.Interval(adversarial.mean, adversarial.ci_low, adversarial.ci_high).describe()
    assert f"adversarial accuracy at 0.5: {expected}" in page.titles


def test_reliance_profile_chart_shows_the_mean_auc_drop_per_coordinate_with_s_highlighted(
        site: Path, board: Path) -> None:
    erm = next(item.entry for item in load_entries(board, SITE_SUITE) if item.entry.method.name == "erm")
    runs = [r for r in erm.runs if r.task == "site-lms5"]
    html = (site / "site-v1" / "entries" / "erm.html").read_text()
    bars = re.findall(r"<title>(\d+) \((S|S\u1d9c)\): ([-\d.]+)", html)
    assert [(int(c), block) for c, block, _ in bars] == [(0, "S")] + [(c, "S\u1d9c") for c in range(1, 10)]
    for coordinate, _, shown in bars:
        drops = [r.metrics["auc"] - r.profiles["coord_random_auc"][int(coordinate)] for r in runs]
        assert float(shown) == pytest.approx(sum(drops) / len(drops), abs=6e-4)
    assert max(bars, key=lambda bar: float(bar[2]))[0] == "0", "ERM relies on S above all"


def test_data_files_are_the_table_and_the_entry_files_themselves(site: Path, board: Path) -> None:
    frame = leaderboard_frame(load_entries(board, SITE_SUITE), SITE_SUITE)
    assert (site / "site-v1" / "leaderboard.csv").read_text() == frame.to_csv(index=False)
    assert [row["method"] for row in json.loads((site / "site-v1" / "leaderboard.json").read_text())] == list(
        frame["method"])
    for name in ("erm", "oracle-randomize-s", "example-mixup"):
        source = board / "site-v1" / "entries" / f"{name}.json"
        assert (site / "site-v1" / "entries" / f"{name}.json").read_bytes() == source.read_bytes()


def test_rebuilding_replaces_a_previous_site_but_never_a_foreign_folder(board: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_site(board, out, [SITE_SUITE])
    (out / "site-v1" / "entries" / "removed-entry.html").write_text("left over")
    build_site(board, out, [SITE_SUITE])
    assert not (out / "site-v1" / "entries" / "removed-entry.html").exists() and (out / MARKER).is_file()
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(SiteError, match="not empty and was not made by"):
        build_site(board, foreign, [SITE_SUITE])
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_cli_html_renders_registered_suites_with_entries_and_reports_bad_input(
        board: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SUITES, "site", SITE_SUITE)
    monkeypatch.setattr(store, "ALL_SUITES", (*store.ALL_SUITES, SITE_SUITE))  # what suites_with_entries lists
    runner = CliRunner()
    result = runner.invoke(app, ["leaderboard", "html", "--out", str(tmp_path / "web"), "--root", str(board)])
    assert result.exit_code == 0, result.output
    assert "wrote 5 pages for 3 entries (site-v1)" in result.output
    assert (tmp_path / "web" / "site-v1" / "entries" / "erm.html").is_file()
    empty = runner.invoke(app, ["leaderboard", "html", "--out", str(tmp_path / "empty"), "--root", str(tmp_path)])
    assert empty.exit_code == 0 and "no suite has entries" in empty.output
    assert "No suite has entries yet" in (tmp_path / "empty" / "index.html").read_text()
    unknown = runner.invoke(app, ["leaderboard", "html", "--out", str(tmp_path / "x"), "--suite", "nope"],
                            standalone_mode=False)
    assert isinstance(unknown.exception, UserError) and "unknown suite 'nope'" in str(unknown.exception)
    assert not (tmp_path / "x").exists()


def test_nice_ticks_are_round_cover_the_range_and_number_about_five() -> None:
    assert svg.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(-0.001, 0.52)[0] == 0.0, "a hair below zero is clipped, not given a tick"
    for low, high in ((0.0, 1.0), (-0.013, 0.52), (0.0, 0.1), (0.4, 1.0), (0.0, 7.3), (-0.3, 0.05)):
        ticks = svg.nice_ticks(low, high)
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1
        step = next(iter(steps))
        assert ticks[0] <= low + svg.SLACK * step + 1e-12 and ticks[-1] >= high - svg.SLACK * step - 1e-12
        assert 3 <= len(ticks) <= 8
        mantissa = next(iter(steps)) / 10 ** math.floor(math.log10(next(iter(steps))))
        assert round(mantissa, 6) in (1, 2, 2.5, 5)


def test_bar_heights_are_proportional_to_the_values() -> None:
    chart = svg.grouped_bars(["a", "b"], [svg.BarSeries("s", "#000", [svg.Interval(0.25, 0.25, 0.25),
                                                                      svg.Interval(1.0, 0.9, 1.0)])],
                             title="t", y_label="y")
    heights = [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" '
                                            r'fill="#000"/>', chart)]
    assert len(heights) == 3 and heights.pop() == 10, "two bars and the legend's swatch"
    assert heights[1] == pytest.approx(4 * heights[0], rel=1e-2)
    assert chart.count("<line x1=") - chart.count('stroke="#ddd"') - 2 == 1, "a whisker only where the CI is wide"


def test_glossary_explains_fixed_columns_and_parametrised_metrics() -> None:
    assert "stale" in column_description("status")
    assert metric_description("adv_acc_linf_0.05") == "accuracy under a PGD attack in the l_inf ball of radius 0.05"
    assert column_description("lms5/s_rand_auc").startswith("on task lms5: ROC-AUC with S randomized")
    assert metric_description("brand_new") == "metric brand_new (see docs/suites-and-metrics.md)"


def test_a_worst_group_suite_page_shows_the_pareto_plot_and_a_mean_suite_page_does_not(
        site: Path, tmp_path: Path) -> None:
    """The committed synthetic-v2 entries of ERM and the oracle (copied: other entries would move the front)."""
    out = tmp_path / "v2-site"
    build_site(committed_entries(tmp_path / "board", SYNTHETIC_V2.label), out, [SYNTHETIC_V2])
    html = (out / SYNTHETIC_V2.label / "index.html").read_text()
    section = html.split('<section class="pareto" id="pareto">')[1].split("</section>")[0]
    assert "<h2>Score against clean accuracy, per task</h2>" in section
    assert section.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart pareto"') == 1
    for task in SYNTHETIC_V2.tasks:
        assert f"oracle-randomize-s (oracle) on {task.name}: score 1.000, accuracy 1.000" in section
        assert f"erm (T0) on {task.name}: score " in section
    assert "erm (T0) on lms5: score 0.000, accuracy 1.000, on the Pareto front" in section
    assert "erm (T0) on lms7: score 0.000, accuracy 1.000</title>" in section, "tied accuracy, lower score"
    assert "the accuracy guard, ERM&#39;s clean accuracy on the task minus 0.02" in section
    assert 'id="pareto"' not in (site / "site-v1" / "index.html").read_text()
