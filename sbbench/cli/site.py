"""Commands that publish results: the static site, the Hub repository, and figures for papers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from torch import nn

from sbbench.cli.common import (
    LEADERBOARD_ROOT,
    UserError,
    app,
    configure,
    console,
    errors,
    hub_snapshot_root,
    leaderboard_app,
    method_named,
    parse_overrides,
    suite_named,
    task_named,
)
from sbbench.data.dataset import Dataset
from sbbench.leaderboard.store import EntryError, load_entries
from sbbench.methods.base import Method
from sbbench.methods.registry import MethodInfo
from sbbench.runner import InvalidModel, build_data, check_model, default_device, train_context
from sbbench.suite import Suite
from sbbench.tasks import Task


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
    """Upload entries, regenerated tables and the dataset card to a Hub dataset repository."""
    from sbbench.leaderboard.hub import HubError, file_digest, hub_base, plan_push, push, require_token

    try:
        token = None if dry_run else require_token()
        base, parent = hub_base(repo)
        plan = plan_push(root, base, _suites(suite), parent)
    except (HubError, EntryError) as error:
        raise UserError(str(error)) from None
    console.print(f"{'new repository' if parent is None else f'on top of {repo} at {parent[:12]}'}: "
                  f"{len(plan.changed_entries)} new or changed entr{'y' if len(plan.changed_entries) == 1 else 'ies'}",
                  markup=False)
    for operation in plan.operations:
        size = len(operation.path_or_fileobj) if isinstance(operation.path_or_fileobj, bytes) else 0
        console.print(f"  add {operation.path_in_repo} ({size} bytes, sha256 {file_digest(operation)[:12]})",
                      markup=False)
    if dry_run:
        console.print("dry run: nothing was sent", markup=False, soft_wrap=True)
        return
    names = ", ".join(Path(path).stem for path in plan.changed_entries)
    title = message or f"{'Propose' if create_pr else 'Update'} entries {names} ({', '.join(plan.suites)})"
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
    from sbbench.leaderboard.site import suites_with_entries

    try:
        folder = pull(repo, revision=revision)
        counts = [f"{s.label}: {len(load_entries(folder, s))} entries" for s in suites_with_entries(folder)]
    except (HubError, EntryError) as error:
        raise UserError(str(error)) from None
    console.print(f"{repo} at revision {folder.name[:12]} is in the local Hub cache ({folder}); "
                  f"{'; '.join(counts) or 'no entries of a known suite'}", markup=False, soft_wrap=True)
    console.print(f"browse it with: sbbench leaderboard --from-hub {repo} --suite NAME", markup=False, soft_wrap=True)


@app.command("plot")
def plot_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    task: Annotated[str, typer.Option(help="task name (see `sbbench tasks`)")] = "lms5",
    seed: Annotated[int, typer.Option(help="seed of the data draw and the training run")] = 0,
    out: Annotated[Path, typer.Option(help="folder for the figures")] = Path("figures"),
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    sc_coord: Annotated[int | None, typer.Option(help="S^c coordinate of the boundary plot (default: first)")]
    = None,
    anchor: Annotated[int, typer.Option(help="test example whose other coordinates the boundary plot keeps")] = 0,
    format: Annotated[list[str] | None, typer.Option(help="svg and/or png (repeatable; default both)")] = None,
) -> None:
    """Train a method on one task and seed, then write figures of it on the test split (SVG and PNG)."""
    try:
        from sbbench.leaderboard import plots
    except ImportError as error:
        raise UserError(f"`sbbench plot` needs matplotlib ({error}): pip install 'sbbench[plot]'") from None
    formats = format or list(plots.FORMATS)
    if bad := [f for f in formats if f not in plots.FORMATS]:
        raise UserError(f"--format must be svg or png, got {', '.join(bad)}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    task_spec = task_named(task)
    info = method_named(method)
    configured = configure(info, parse_overrides(hp or []))
    data = build_data(task_spec, seed)
    space = data.space
    simple, complex_ = space.blocks["S"], space.blocks["Sc"]
    sc = complex_[0] if sc_coord is None else sc_coord
    if sc not in complex_:
        raise UserError(f"--sc-coord must be an S^c coordinate of {task} ({complex_[0]} .. {complex_[-1]}), got {sc}")
    if not 0 <= anchor < len(data.test):
        raise UserError(f"--anchor must index a test example (0 .. {len(data.test) - 1}), got {anchor}")
    model = _train(info, configured, task_spec, data, seed)
    device = next(model.parameters(), torch.empty(0)).device
    x, y = data.test.x.to(device), data.test.y.to(device)
    label = f"{info.name} on {task_spec.name}, seed {seed}"
    figures = {
        "logits": plots.logit_histograms(model, x, y, space, seed=seed, title=label),
        "boundary": plots.decision_boundary(model, x, y, space, s_coord=simple[0], sc_coord=sc, anchor=anchor,
                                            title=f"{label}: P(y = 1) in the S / S$^c$ plane"),
        "profile": plots.reliance_profile(model, x, y, space, seed=seed, title=f"{label}: reliance per coordinate"),
    }
    for kind, figure in figures.items():
        for path in plots.save(figure, out / f"{info.name}_{task_spec.name}_seed{seed}_{kind}", formats):
            console.print(f"wrote {path}", markup=False, soft_wrap=True)


def _train(info: MethodInfo, method: Method, task: Task, data: Dataset, seed: int) -> nn.Module:
    """Fit ``method`` on ``data`` (the task's draw for ``seed``) exactly as a scored job does: no test split."""
    device = default_device()
    torch.manual_seed(seed)
    with errors.status(f"training {info.name} on {task.name}, seed {seed}") as status:
        context = train_context(task, data, info.cls.track, seed, device,
                                lambda message: status.update(f"training {info.name} on {task.name}: {message}"))
        model = method.fit(context)
    try:
        check_model(model, data.train.x[:8].to(device))
    except InvalidModel as error:
        raise UserError(f"{info.name}: {error}") from None
    return model
