"""The results report: verdicts by p-value, Holm's correction over the report's cells, and the Pareto plot.

Entries are built by hand (no training): the p-values and the front are known in advance.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import TINY_TASK, committed_entries
from typer.testing import CliRunner

from sbbench.cli import app
from sbbench.cli.common import UserError
from sbbench.leaderboard.compare import ComparisonRow
from sbbench.leaderboard.entry import Entry, LoadedEntry, MethodCard, Provenance, SuiteRef
from sbbench.leaderboard.render import column_label
from sbbench.leaderboard.report import (
    baseline_report,
    pareto_front,
    pareto_panels,
    pareto_svg,
    report_cells,
    verdict,
)
from sbbench.leaderboard.stats import holm, paired_difference
from sbbench.leaderboard.store import load_entries
from sbbench.results import RunResult
from sbbench.suite import SYNTHETIC_V2, Suite

REPO = Path(__file__).resolve().parents[1]


def _row(method: list[float], baseline: list[float]) -> ComparisonRow:
    return ComparisonRow("lms5", "s_rand_auc", sum(method) / len(method), sum(baseline) / len(baseline),
                         paired_difference(method, baseline))


@pytest.mark.parametrize(("method", "expected"), [
    ([0.90, 0.91, 0.92, 0.90, 0.93], "higher"),
    ([0.10, 0.11, 0.12, 0.10, 0.13], "lower"),
    ([0.48, 0.52, 0.49, 0.51, 0.50], "n.s."),
    ([0.50, 0.50, 0.50, 0.50, 0.50], "n.s."),
])
def test_verdict_follows_the_paired_t_test(method: list[float], expected: str) -> None:
    baseline = [0.50, 0.50, 0.50, 0.50, 0.50]
    assert verdict(_row(method, baseline), alpha=0.05) == expected


def test_a_consistent_but_small_gain_is_higher_only_at_a_loose_level() -> None:
    row = _row([0.51, 0.50, 0.52, 0.50, 0.51], [0.50, 0.50, 0.50, 0.50, 0.50])
    assert 0.01 < row.diff.p_value < 0.1
    assert verdict(row, alpha=0.05) == "n.s." and verdict(row, alpha=0.1) == "higher"


@pytest.mark.parametrize(("column", "label"), [
    ("mnist-cifar/adv_acc_linf_0.03137254901960784", "mnist-cifar/adv_acc_linf_8/255"),
    ("mnist-cifar/adv_acc_linf_0.00784313725490196", "mnist-cifar/adv_acc_linf_2/255"),
    ("mnist-cifar/adv_acc_linf_0.3", "mnist-cifar/adv_acc_linf_0.3"),
    ("lms5/adv_acc_linf_0.2", "lms5/adv_acc_linf_0.2"),
    ("lms5/adv_acc_l2_0.123456789", "lms5/adv_acc_l2_0.123456789"),
    ("lms5/s_rand_auc", "lms5/s_rand_auc"),
])
def test_long_radii_in_255ths_are_labelled_as_fractions(column: str, label: str) -> None:
    assert column_label(column) == label


# Holm's correction.


def test_holm_matches_a_hand_computed_example() -> None:
    # m = 4. Sorted: 0.005, 0.01, 0.03, 0.04, times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; the running
    # maximum lifts the last to 0.06. Back in the input order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    # Ties and the cap at 1: m = 3, sorted 0.2, 0.2, 0.9 times 3, 2, 1: 0.6, 0.4 -> 0.6 (monotone), 0.9.
    assert holm([0.9, 0.2, 0.2]) == pytest.approx([0.9, 0.6, 0.6], abs=1e-12)
    # m = 2: 0.4 * 2 = 0.8, then 0.5 * 1 = 0.5 lifted to 0.8; and 0.6 * 2 = 1.2 capped at 1, 0.7 lifted to 1.
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8]) and holm([0.7, 0.6]) == [1.0, 1.0]
    assert holm([0.03]) == [0.03] and holm([]) == []


def test_holm_never_lowers_a_p_value_and_keeps_their_order() -> None:
    raw = [0.001, 0.2, 0.04, 0.04, 0.0005, 0.7, 0.013, 1.0, 0.0]
    adjusted = holm(raw)
    assert all(p <= q <= 1.0 for p, q in zip(raw, adjusted, strict=True))
    by_raw = [q for _, q in sorted(zip(raw, adjusted, strict=True))]
    assert by_raw == sorted(by_raw)
    assert min(adjusted) == pytest.approx(len(raw) * min(raw))


@pytest.mark.parametrize("bad", [[0.1, math.nan], [1.5], [-0.01]])
def test_holm_refuses_what_is_not_a_p_value(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        holm(bad)


REPORT_SUITE = Suite(name="report-test", version=1, description="tests of the report: one task, 5 seeds",
                     tasks=(TINY_TASK,), seeds=(0, 1, 2, 3, 4))
BASELINE = {"a": [0.50] * 5, "b": [0.50] * 5}
STRONG = {"a": [0.90, 0.91, 0.92, 0.90, 0.93], "b": [0.50] * 5}
WEAK = {"a": [0.51, 0.52, 0.51, 0.52, 0.50], "b": [0.50] * 5}
"""``weak`` gains on ``a`` with an uncorrected p between 0.05 / 3 and 0.05: significant alone, not after Holm
over the report's four tests (strong/a, strong/b, weak/a, weak/b), where it ranks second and is multiplied by 3."""


def loaded_entry(name: str, values: dict[str, list[float]], suite: Suite = REPORT_SUITE) -> LoadedEntry:
    """An entry of ``suite``'s single task, one ok run per seed with ``values[metric][i]`` at seed ``i``."""
    task = suite.tasks[0]
    runs = [RunResult(method=name, method_version="1", track="T0", code_hash="0" * 64, hparams={}, task=task.name,
                      task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={metric: series[i] for metric, series in values.items()})
            for i, seed in enumerate(suite.seeds)]
    card = MethodCard(name=name, display_name=name, version="1", track="T0", code_hash="0" * 64, hparams={},
                      hparams_source="defaults", source=f"test {name}")
    provenance = Provenance(sbbench_version="0", git_commit="unknown", python="3", torch="2", device="cpu",
                            platform="test", created=datetime(2025, 1, 1, tzinfo=timezone.utc))
    entry = Entry(method=card, provenance=provenance,
                  suite=SuiteRef(name=suite.name, version=suite.version, hash=suite.content_hash()),
                  primary_metric="a", primary_score=0.0, aggregates={}, runs=runs, wall_seconds=1.0)
    return LoadedEntry(entry=entry, path=Path(f"{name}.json"), stale=False)


def report_entries() -> tuple[list[LoadedEntry], LoadedEntry]:
    base = loaded_entry("erm", BASELINE)
    return [base, loaded_entry("strong", STRONG), loaded_entry("weak", WEAK)], base


def cell(report: str, method: str, column: int) -> str:
    """The text of ``method``'s ``column``-th metric cell in the report's (single) table."""
    row = next(line for line in report.splitlines() if line.startswith(f"| {method} |"))
    return row.split("|")[4 + column].strip()


def test_report_cells_are_the_family_holm_adjusts_together() -> None:
    entries, base = report_entries()
    cells = report_cells(entries, base, REPORT_SUITE, ["a", "b"])
    assert [(c.method, c.metric) for c in cells] == [("strong", "a"), ("strong", "b"), ("weak", "a"), ("weak", "b")]
    raw = [c.row.diff.p_value for c in cells]
    assert [c.p_adjusted for c in cells] == holm(raw)
    assert raw[1] == raw[3] == 1.0, "identical values: no difference, p = 1"
    unadjusted = report_cells(entries, base, REPORT_SUITE, ["a", "b"], correction="none")
    assert [c.p_adjusted for c in unadjusted] == raw
    with pytest.raises(ValueError, match="unknown correction 'bonferroni'"):
        report_cells(entries, base, REPORT_SUITE, ["a"], correction="bonferroni")  # type: ignore[arg-type]


def test_holm_turns_a_lone_significant_gain_into_n_s_and_keeps_the_strong_one() -> None:
    entries, base = report_entries()
    weak = paired_difference(WEAK["a"], BASELINE["a"]).p_value
    strong = paired_difference(STRONG["a"], BASELINE["a"]).p_value
    assert 0.05 / 3 < weak < 0.05 and 4 * strong < 0.05

    plain = baseline_report(entries, base, REPORT_SUITE, ["a", "b"], correction="none")
    assert cell(plain, "weak", 0).endswith(f"p={weak:.2g}) higher")
    assert "no correction over the m = 4 tests" in plain and "p_holm" not in plain

    corrected = baseline_report(entries, base, REPORT_SUITE, ["a", "b"])
    assert cell(corrected, "weak", 0).endswith(f"p={weak:.2g}, p_holm={3 * weak:.2g}) n.s.")
    assert cell(corrected, "strong", 0).endswith(f"p_holm={4 * strong:.2g}) higher")
    assert cell(corrected, "weak", 1).endswith("p=1, p_holm=1) n.s.")
    assert "Holm–Bonferroni correction over m = 4 tests" in corrected
    assert "when the Holm-adjusted p-value is below 0.05" in corrected


def test_a_cell_without_a_comparison_is_no_test() -> None:
    entries, base = report_entries()
    report = baseline_report(entries, base, REPORT_SUITE, ["a", "missing"])
    assert "over m = 2 tests" in report and cell(report, "weak", 1) == "–"


# The Pareto front and plot.


def test_pareto_front_on_a_hand_example_with_ties() -> None:
    points = [
        (0.2, 0.99),  # 0: front, the highest accuracy with the highest score among them
        (0.5, 0.97),  # 1: front
        (0.4, 0.96),  # 2: dominated by 1 (lower on both)
        (0.5, 0.95),  # 3: dominated by 1: same score, lower accuracy
        (0.9, 0.90),  # 4: front, the highest score
        (0.9, 0.90),  # 5: identical to 4: neither dominates the other, both on the front
        (0.1, 0.99),  # 6: dominated by 0: same accuracy, lower score
        (0.0, 0.50),  # 7: dominated by everyone
    ]
    assert pareto_front(points) == [True, True, False, False, True, True, False, False]
    assert pareto_front([]) == [] and pareto_front([(0.3, 0.3)]) == [True]
    assert pareto_front([(0.3, 0.3), (0.3, 0.3), (0.4, 0.4)]) == [False, False, True], "a dominated tie is off"
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([(0.1, math.nan)])


def committed_v2() -> list[LoadedEntry]:
    """The committed synthetic-v2 entries of ERM and the oracle (read only)."""
    return [item for item in load_entries(REPO / "leaderboard", SYNTHETIC_V2)
            if item.entry.method.name in ("erm", "oracle-randomize-s")]


def test_pareto_panels_of_the_committed_v2_entries() -> None:
    panels = {panel.task: panel for panel in pareto_panels(committed_v2(), SYNTHETIC_V2)}
    assert list(panels) == [task.name for task in SYNTHETIC_V2.tasks]
    for name, panel in panels.items():
        front = dict(zip(panel.methods, panel.on_front, strict=True))
        reference = SYNTHETIC_V2.references[name]
        assert panel.guard == pytest.approx(reference.erm_acc - 0.02)
        assert front["oracle-randomize-s"], "the oracle has the highest score on every task"
        erm = panel.methods.index("erm")
        # ERM is on the front only where its accuracy beats the oracle's (lms5: 1.0 against 0.99996).
        assert front["erm"] == (panel.accs[erm] > panel.accs[1 - erm]), name
    assert [name for name, panel in panels.items() if panel.on_front[panel.methods.index("erm")]] == ["lms5"]
    with pytest.raises(ValueError, match="not a worst-group suite"):
        pareto_panels([], REPORT_SUITE)


def test_pareto_svg_has_a_panel_per_task_a_point_per_entry_and_the_guard() -> None:
    chart = pareto_svg(committed_v2(), SYNTHETIC_V2)
    assert chart.startswith("<svg") and chart.endswith("</svg>")
    assert chart.count('<g transform="translate(') == len(SYNTHETIC_V2.tasks)
    points = re.findall(r"<title>([^<]+) on ([^:<]+): score ([\d.]+), accuracy ([\d.]+)([^<]*)</title>", chart)
    assert len(points) == 2 * len(SYNTHETIC_V2.tasks)
    for panel in pareto_panels(committed_v2(), SYNTHETIC_V2):
        for method, score, acc, front in zip(panel.methods, panel.scores, panel.accs, panel.on_front, strict=True):
            track = "oracle" if method.startswith("oracle") else "T0"
            assert (f"{method} ({track})", panel.task, f"{score:.3f}", f"{acc:.3f}",
                    ", on the Pareto front" if front else "") in points
        assert f"guard {panel.guard:.3f}" in chart
    assert chart.count('stroke-dasharray="4 3"') == len(SYNTHETIC_V2.tasks) + 1, "a guard per panel, the legend's"


def test_cli_report_applies_the_correction_and_writes_the_pareto_svg(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "figures" / "pareto.svg"
    # ERM and the oracle only, so that m does not move when another committed entry lands.
    root = str(committed_entries(tmp_path / "board", "synthetic-v2"))
    result = runner.invoke(app, ["leaderboard", "report", "--suite", "synthetic-v2", "--root", root,
                                 "--metrics", "s_rand_wga,acc", "--pareto-svg", str(out)])
    assert result.exit_code == 0, result.output
    assert "Holm–Bonferroni correction over m = 12 tests" in result.output
    assert "wrote the Pareto plot of synthetic-v2" in result.output
    assert out.read_text().startswith("<svg") and "lms5" in out.read_text()
    plain = runner.invoke(app, ["leaderboard", "report", "--suite", "synthetic-v2", "--root", root,
                                "--correction", "none"])
    assert plain.exit_code == 0 and "no correction over the m = 12 tests" in plain.output
    for args, message in ((["--correction", "bonferroni"], "--correction must be holm or none"),
                          (["--suite", "synthetic-v1", "--pareto-svg", str(tmp_path / "x.svg")],
                           "--pareto-svg needs a worst-group suite")):
        bad = runner.invoke(app, ["leaderboard", "report", "--root", root, *args],
                            standalone_mode=False)
        assert isinstance(bad.exception, UserError) and message in str(bad.exception)
    assert not (tmp_path / "x.svg").exists()
