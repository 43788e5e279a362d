"""`sbbench leaderboard`: browse, report, render and publish the leaderboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from sbbench.cli.common import (
    LEADERBOARD_ROOT,
    UserError,
    app,
    browse_roots,
    console,
    errors,
    hub_snapshot_root,
    load_named_entry,
    print_frame,
    results_root,
    suite_named,
)
from sbbench.headline import ACCURACY_GUARD, CHANCE_ACCURACY
from sbbench.leaderboard.entry import LoadedEntry
from sbbench.leaderboard.render import (
    GUARD,
    HPARAMS,
    STATED_ADVERSARIAL,
    is_worst_group,
    leaderboard_frame,
    metric_columns,
    stated_radii,
    summary_frame,
    superseded_note,
)
from sbbench.leaderboard.report import CORRECTIONS, baseline_report
from sbbench.leaderboard.report import pareto_svg as draw_pareto
from sbbench.leaderboard.store import (
    EntryError,
    NewerEntryError,
    entry_path,
    load_entries,
    loaded_entry,
    suite_dir,
    suites_with_entries,
)
from sbbench.suite import ALL_SUITES, SUITES, Suite

leaderboard_app = typer.Typer(help="Browse the leaderboard (and render or publish it).")
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.callback(invoke_without_command=True)
def leaderboard_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="suite name (its current version), or the label of any version, "
                                            "e.g. synthetic-v1")] = "synthetic",
    track: Annotated[str | None, typer.Option(help="only this track (T0, T1, T2, oracle)")] = None,
    sort: Annotated[str | None, typer.Option(help="sort by this column instead of the score")] = None,
    format: Annotated[str, typer.Option(help="table, md, csv or json")] = "table",
    wide: Annotated[bool, typer.Option("--wide", help="table: every task's column of every table metric (csv and "
                                                      "json always have them, md too but for a worst-group "
                                                      "suite)")] = False,
    metrics: Annotated[str | None, typer.Option(help="table: per-task columns of these comma-separated metrics "
                                                     "instead of the summary")] = None,
    root: Annotated[Path, typer.Option(help="leaderboard folder (your own scores: --root sbbench-results)")]
    = LEADERBOARD_ROOT,
    from_hub: Annotated[str | None, typer.Option(help="browse Hub repository OWNER/NAME from the local Hub cache "
                                                      "(see `leaderboard pull`) instead of --root")] = None,
) -> None:
    """Show the leaderboard of a suite.

    The terminal table shows the score and the mean over tasks of a few metrics (and, for a
    worst-group suite, the guard); `--metrics` or `--wide` show per-task columns. The last
    column, hparams (hp in the terminal, in short form), says how the hyperparameters were chosen:
    default, given, tuned (K=n) by a sweep of n >= 8 trials, or exploratory (K=n). A superseded
    suite is marked as such.
    """
    if ctx.invoked_subcommand is not None:
        return
    if format not in ("table", "md", "csv", "json"):
        raise UserError(f"--format must be table, md, csv or json, got {format!r}")
    if from_hub is not None:
        root = hub_snapshot_root(from_hub)
    suite_spec = suite_named(suite)
    try:
        frame = leaderboard_frame(_readable_entries(root, suite_spec), suite_spec, track=track, sort=sort)
        if format == "table" and not frame.empty and not wide:
            chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
            frame = metric_columns(frame, suite_spec, chosen) if chosen else summary_frame(frame, suite_spec)
    except (EntryError, KeyError) as error:
        raise UserError(str(error.args[0])) from None
    if format in ("csv", "json") and suite_spec.superseded_by:
        errors.print(f"note: {superseded_note(suite_spec)}", markup=False, soft_wrap=True)
    if format == "csv":
        console.file.write(frame.to_csv(index=False))
    elif format == "json":
        console.file.write(frame.to_json(orient="records", indent=1) + "\n")
    elif format == "md":
        from sbbench.leaderboard.render import to_markdown
        console.file.write(to_markdown(frame, suite_spec))
    else:
        _print_table(frame, suite_spec, root, summary=not wide and not metrics)


def _print_table(frame: pd.DataFrame, suite: Suite, root: Path, *, summary: bool) -> None:
    """The terminal view: the superseded mark, the table, what the guard means, where else entries are.

    Every terminal view shows the hparams column in short form, headed ``hp`` (:func:`_short_hparams`),
    with a legend below. A worst-group suite's ``summary`` view (the default) is compact, with headers of
    at most 7 characters, so twelve columns fit 100 terminal columns with method names of up to about 20
    characters.
    """
    note = superseded_note(suite)
    if note:
        console.print(f"{note}.", markup=False)
    title = f"sbbench leaderboard: {suite.label} ({root})"
    shown = _short_hparams(frame) if not frame.empty else frame
    if is_worst_group(suite) and not frame.empty:
        print_frame(_short_guard(shown), title, compact=summary, header=_compact_header if summary else None)
        console.print(SHORT_HPARAMS_LEGEND, markup=False)
        _print_guard(frame, suite)
    else:
        print_frame(shown, title)
        if not frame.empty:
            console.print(SHORT_HPARAMS_LEGEND, markup=False)
    _mention_other_versions(root, suite)
    _mention_own_results(root, suite)


def _short_guard(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each guard remark cut to its first word (``failed``, ``flagged``): the table stays narrow."""
    return frame.assign(**{GUARD: frame[GUARD].map(lambda remarks: remarks.split(":")[0])})


SHORT_HPARAMS_LEGEND = ("hp = hyperparameters: dflt = defaults, given = set by hand, K=n = tuned by a sweep of "
                        "n >= 8 trials, K=n* = exploratory sweep (n < 8)")
"""What the compact table's short hparams values mean, printed below it."""


def _short_hparams(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the hparams column renamed ``hp`` and each label (:attr:`~sbbench.tuning.Tuning.label`)
    in at most 6 characters: ``dflt``, ``given``, ``K=8`` (tuned), ``K=4*`` (exploratory)."""
    def short(label: str) -> str:
        status, _, k = label.partition(" (K=")
        if status == "default":
            return "dflt"
        if not k:
            return status
        return f"K={k.rstrip(')')}" + ("*" if status == "exploratory" else "")

    return frame.assign(**{HPARAMS: frame[HPARAMS].map(short)}).rename(columns={HPARAMS: "hp"})


def _compact_header(column: str) -> str:
    """``mean s_rand_wga`` as ``mean`` / ``s_rand`` / ``_wga``; the stated-radius column as three short lines."""
    if column == STATED_ADVERSARIAL:
        return "adv acc\nstated\nradius"
    if not column.startswith("mean "):
        return column
    metric = column.removeprefix("mean ")
    head, _, tail = metric.rpartition("_")
    return f"mean\n{head}\n_{tail}" if len(metric) > 6 and head else f"mean\n{metric}"


def _print_guard(frame: pd.DataFrame, suite: Suite) -> None:
    """Below a worst-group table: the guard's full remarks per entry, the rule, and the stated radius."""
    for method, remarks in zip(frame["method"], frame[GUARD], strict=True):
        if remarks:
            console.print(f"guard on {method}: {remarks}", markup=False)
    console.print(f"Guarded entries (a task's accuracy more than {ACCURACY_GUARD} below ERM's, or a run below "
                  f"{CHANCE_ACCURACY}) rank after the unguarded ones of their track; "
                  f"{STATED_ADVERSARIAL}: {stated_radii(suite)}.", markup=False)


def suite_option(suite: Suite) -> str:
    """What to pass to ``--suite`` for ``suite``: its name when it is the current version, else its label."""
    return suite.name if SUITES.get(suite.name) is suite else suite.label


def _mention_other_versions(root: Path, suite: Suite) -> None:
    """Point to the superseded versions of ``suite`` that have entries under ``root``."""
    for other in ALL_SUITES:
        if other.name != suite.name or other is suite or other.superseded_by is None:
            continue
        folder = suite_dir(root, other) / "entries"
        count = len(list(folder.glob("*.json"))) if folder.is_dir() else 0
        if count:
            errors.print(f"{other.label} (superseded by {other.superseded_by}) has {count} entr"
                         f"{'y' if count == 1 else 'ies'} under {root}: sbbench leaderboard --suite {other.label}"
                         f"{'' if root == LEADERBOARD_ROOT else f' --root {root}'}", markup=False, soft_wrap=True)


def _readable_entries(root: Path, suite: Suite) -> list[LoadedEntry]:
    """The suite's readable entries; a warning line for each skipped file (an entry of a newer sbbench: an error)."""
    problems: list[EntryError] = []
    loaded = load_entries(root, suite, problems)
    newer = [problem for problem in problems if isinstance(problem, NewerEntryError)]
    if newer:
        raise newer[0]
    warn_skipped(problems)
    return loaded


def warn_skipped(problems: list[EntryError]) -> None:
    """One warning line per entry file left out because it cannot be read."""
    for problem in problems:
        errors.print(f"warning: skipped an entry file: {problem}", markup=False, soft_wrap=True)


def _mention_own_results(root: Path, suite: Suite) -> None:
    """Point to the user's own entries of ``suite`` when ``root`` is not where they are."""
    own = results_root()
    folder = suite_dir(own, suite) / "entries"
    if own.resolve() == root.resolve() or not folder.is_dir():
        return
    names = sorted(path.stem for path in folder.glob("*.json"))
    if names:
        errors.print(f"your own entries for {suite.label} ({', '.join(names)}) are in {own}: "
                     f"sbbench leaderboard --suite {suite_option(suite)} --root {own}", markup=False, soft_wrap=True)


@leaderboard_app.command("report")
def report_command(
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    baseline: Annotated[str, typer.Option(help="the entry every other entry is compared with")] = "erm",
    metrics: Annotated[str | None, typer.Option(help="comma-separated metrics (default: the primary metric, "
                                                     "then acc)")] = None,
    alpha: Annotated[float, typer.Option(help="significance level of the paired t-test")] = 0.05,
    correction: Annotated[str, typer.Option(help="multiple-comparison correction over every method x task x "
                                                 "metric cell: holm (Holm-Bonferroni step-down) or none")] = "holm",
    pareto_svg: Annotated[Path | None, typer.Option(help="also write the Pareto plot (per task: score against "
                                                         "clean accuracy; worst-group suites) to this SVG file")]
    = None,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
) -> None:
    """Markdown report: each entry against a baseline, per task, paired over seeds.

    The p-values of all cells are adjusted together (`--correction holm`, the default) and the
    verdicts `higher` / `lower` follow the adjusted ones; the report's first lines say which
    correction was applied over how many tests. `--pareto-svg` writes the current entries' task
    score against clean accuracy, one panel per task, with the Pareto front and the accuracy guard.
    """
    if not 0.0 < alpha < 1.0:
        raise UserError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if correction not in CORRECTIONS:
        raise UserError(f"--correction must be {' or '.join(CORRECTIONS)}, got {correction!r}")
    suite_spec = suite_named(suite)
    if pareto_svg is not None and not is_worst_group(suite_spec):
        raise UserError(f"--pareto-svg needs a worst-group suite (a per-task score and accuracy guard); "
                        f"{suite_spec.label} is scored by the mean rule")
    chosen = metrics.split(",") if metrics else [suite_spec.primary_metric, "acc"]
    base = _named_loaded_entry(root, suite_spec, baseline)
    try:
        entries = [loaded for loaded in _readable_entries(root, suite_spec) if not loaded.stale]
    except EntryError as error:
        raise UserError(str(error.args[0])) from None
    console.file.write(baseline_report(entries, base, suite_spec, chosen, alpha, correction) + "\n")
    if pareto_svg is not None:
        try:
            pareto_svg.parent.mkdir(parents=True, exist_ok=True)
            pareto_svg.write_text(draw_pareto(entries, suite_spec) + "\n", encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot write {pareto_svg}: {error.strerror or error}") from None
        errors.print(f"wrote the Pareto plot of {suite_spec.label} (from {len(entries)} current entries) to "
                     f"{pareto_svg}", markup=False, soft_wrap=True)


def _named_loaded_entry(root: Path, suite: Suite, name: str) -> LoadedEntry:
    """Entry ``name`` from ``root`` or else the user's results folder, with its verdict from that same folder."""
    entry = load_named_entry(root, suite, name)
    folder = next(folder for folder in browse_roots(root) if entry_path(folder, suite, name).is_file())
    return loaded_entry(folder, suite, entry, entry_path(folder, suite, name))


def _suites(names: list[str] | None) -> list[Suite] | None:
    return None if not names else [suite_named(name) for name in names]


@leaderboard_app.command("html")
def html_command(
    out: Annotated[Path, typer.Option(help="folder to write the site into (created; a previous site is replaced)")],
    suite: Annotated[list[str] | None, typer.Option(help="only this suite (repeatable); default: all with entries")]
    = None,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    from_hub: Annotated[str | None, typer.Option(help="render OWNER/NAME from the local Hub cache instead of --root")]
    = None,
) -> None:
    """Render a self-contained static web site (works from file:// and any static host)."""
    from sbbench.leaderboard.site import SiteError, build_site

    source = hub_snapshot_root(from_hub) if from_hub else root
    started = time.perf_counter()
    try:
        summary = build_site(source, out, _suites(suite))
    except (SiteError, EntryError) as error:
        raise UserError(str(error)) from None
    console.print(f"wrote {summary.pages} pages for {summary.entries} entries "
                  f"({', '.join(summary.suites) or 'no suite has entries'}) to {out} "
                  f"in {time.perf_counter() - started:.2f} s; open {out / 'index.html'}", markup=False, soft_wrap=True)


@leaderboard_app.command("push")
def push_command(
    repo: Annotated[str, typer.Option(help="Hub dataset repository OWNER/NAME")],
    create_pr: Annotated[bool, typer.Option("--create-pr", help="open a pull request instead of committing")] = False,
    suite: Annotated[list[str] | None, typer.Option(help="only this suite (repeatable); default: all with entries")]
    = None,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    message: Annotated[str | None, typer.Option(help="commit or pull-request title")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the files it would send, send nothing")] = False,
) -> None:
    """Upload entries, regenerated tables and the dataset card to a Hub dataset repository.

    A commit also uploads the local verdict store (maintainers' verdicts); a pull request never does.
    """
    from sbbench.leaderboard.hub import HubError, file_digest, hub_base, plan_push, push, require_token

    try:
        token = None if dry_run else require_token()
        base, parent = hub_base(repo)
        plan = plan_push(root, base, _suites(suite), parent, verdicts=not create_pr)
    except (HubError, EntryError) as error:
        raise UserError(str(error)) from None
    console.print(f"{'new repository' if parent is None else f'on top of {repo} at {parent[:12]}'}: "
                  f"{len(plan.changed_entries)} new or changed entr{'y' if len(plan.changed_entries) == 1 else 'ies'}"
                  + (f", {len(plan.changed_verdicts)} new or changed verdict(s)" if plan.changed_verdicts else ""),
                  markup=False)
    for operation in plan.operations:
        size = len(operation.path_or_fileobj) if isinstance(operation.path_or_fileobj, bytes) else 0
        console.print(f"  add {operation.path_in_repo} ({size} bytes, sha256 {file_digest(operation)[:12]})",
                      markup=False)
    if dry_run:
        console.print("dry run: nothing was sent", markup=False, soft_wrap=True)
        return
    names = ", ".join(Path(path).stem for path in plan.changed_entries) or "none"
    verdicts = f", {len(plan.changed_verdicts)} verdict(s)" if plan.changed_verdicts else ""
    title = message or f"{'Propose' if create_pr else 'Update'} entries {names}{verdicts} ({', '.join(plan.suites)})"
    try:
        url = push(plan, repo, create_pr=create_pr, message=title, token=token)
    except HubError as error:
        raise UserError(str(error)) from None
    console.print(f"{'opened pull request' if create_pr else 'committed'}: {url}", markup=False, soft_wrap=True)


@leaderboard_app.command("pull")
def pull_command(
    repo: Annotated[str, typer.Option(help="Hub dataset repository OWNER/NAME")],
    revision: Annotated[str | None, typer.Option(help="branch, tag or commit (default: main)")] = None,
) -> None:
    """Download a Hub leaderboard into the local Hub cache; browse it with `--from-hub`."""
    from sbbench.leaderboard.hub import HubError, pull

    try:
        folder = pull(repo, revision=revision)
        counts = [f"{s.label}{' (superseded)' if s.superseded_by else ''}: {len(_readable_entries(folder, s))} "
                  "entries" for s in suites_with_entries(folder)]
    except (HubError, EntryError) as error:
        raise UserError(str(error)) from None
    console.print(f"{repo} at revision {folder.name[:12]} is in the local Hub cache ({folder}); "
                  f"{'; '.join(counts) or 'no entries of a known suite'}", markup=False, soft_wrap=True)
    console.print(f"browse it with: sbbench leaderboard --from-hub {repo} --suite NAME", markup=False, soft_wrap=True)
