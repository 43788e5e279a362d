"""Commands that list what the benchmark offers: tasks, suites and methods."""

from __future__ import annotations

from rich import box
from rich.table import Table

from sbbench.cli.common import app, console, errors
from sbbench.data.images import DominoSpec
from sbbench.methods.registry import RegistryError, SubmissionError, claims, clash_message
from sbbench.suite import ALL_SUITES, Suite
from sbbench.tasks import TASKS, Task


def _data_summary(task: Task) -> tuple[str, str]:
    """``(train / test sizes, blocks)`` of a task's dataset, for synthetic and image tasks alike."""
    data = task.data
    if isinstance(data, DominoSpec):
        def cap(per_class: int | None) -> str:
            return "all" if per_class is None else f"{2 * per_class:,}"

        mnist = "blank" if data.blank_mnist else f"digits {data.digits[0]}/{data.digits[1]}"
        return (f"{cap(data.max_train_per_class)} / {cap(data.max_test_per_class)}",
                f"S: MNIST half ({mnist}), S^c: CIFAR-10 half")
    return f"{data.n_train:,} / {data.n_test:,}", f"S: {data.simple.dims} coord, S^c: {data.complex.dims}"


@app.command("tasks")
def tasks_command() -> None:
    """List the named tasks: description, train/test sizes, blocks, backbone and budget."""
    table = Table(title="sbbench tasks", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    table.add_column("task", no_wrap=True)
    table.add_column("dataset; train / test; blocks; backbone; budget")
    for task in TASKS.values():
        budget = task.budget
        sizes, blocks = _data_summary(task)
        table.add_row(
            f"{task.name}\n(v{task.version})",
            f"{task.description}\n{sizes}; {blocks}; "
            f"({task.backbone.width},{task.backbone.depth})-{task.backbone.kind.upper()}; "
            f"{budget.optimizer} lr {budget.lr} mom {budget.momentum} wd {budget.weight_decay} "
            f"bs {budget.batch_size}, <= {budget.max_epochs} epochs",
        )
        table.add_section()
    console.print(table)


@app.command("suites")
def suites_command() -> None:
    """List every suite, current and superseded (marked), with its hash, tasks, seeds and score rule."""
    table = Table(title="sbbench suites", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    for column in ("suite", "hash", "tasks", "seeds", "score"):
        table.add_column(column, no_wrap=column != "tasks", overflow="fold",
                         min_width=max(len(t.name) for t in TASKS.values()) + 1 if column == "tasks" else None)
    for suite in ALL_SUITES:
        label = f"{suite.label}\n(superseded)" if suite.superseded_by else suite.label
        table.add_row(label, suite.content_hash()[:8], ", ".join(t.name for t in suite.tasks), _seeds(suite.seeds),
                      _score_rule(suite))
        table.add_section()
    console.print(table)
    for suite in ALL_SUITES:
        if suite.superseded_by:
            console.print(f"{suite.label} is superseded by {suite.superseded_by}: it stays browsable and checkable "
                          f"by label (sbbench leaderboard --suite {suite.label}); --suite {suite.name} means "
                          f"{suite.superseded_by}.", markup=False)
    console.print("worst-group: s_rand_wga over the oracle's, mean over tasks, with the accuracy guard "
                  "(docs/suites/synthetic-v2.md, docs/suites/images-v2.md)", markup=False)


def _seeds(seeds: tuple[int, ...]) -> str:
    """``0-4`` for consecutive seeds, else the list."""
    consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if consecutive and len(seeds) > 2 else ", ".join(map(str, seeds))


def _score_rule(suite: Suite) -> str:
    """The score column: the worst-group rule, or the mean of the primary metric."""
    if suite.score_rule == "worst-group":
        return "worst-group"
    return f"mean {suite.primary_metric}"


@app.command("methods")
def methods_command() -> None:
    """List every available method with its track and source; a clash or a broken source is shown, not fatal."""
    table = Table(title="sbbench methods")
    for column in ("method", "version", "track", "source"):
        table.add_column(column, overflow="fold")
    problems = []
    for name, claimed in sorted(claims().items()):
        if len(claimed) > 1:
            problems.append(clash_message(name, claimed))
        for claim in claimed:
            try:
                info = claim.load()
            except (RegistryError, SubmissionError) as error:
                problems.append(str(error))
                table.add_row(name, "-", "-", f"{claim.source} (broken, see below)")
                continue
            note = " (name clash, see below)" if len(claimed) > 1 else ""
            table.add_row(name, info.version, info.track.value, info.source + note)
    console.print(table)
    for problem in problems:
        errors.print(f"warning: {problem}", markup=False, soft_wrap=True)
