"""``sbbench images``: fetch MNIST and CIFAR-10 from the Hub once, and build the dominoes datasets."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from sbbench.cli.common import UserError, app, console, task_named
from sbbench.data.images import DatasetUnavailable, DominoSpec, ImageSource
from sbbench.data.images.cache import default_cache_root
from sbbench.data.images.sources import DATA_DIR_ENV, hub_file

images_app = typer.Typer(no_args_is_help=True, help="Real-image data: fetch MNIST/CIFAR-10, build the dominoes.")
app.add_typer(images_app, name="images")

DataDir = Annotated[Path | None, typer.Option(help=f"folder with MNIST/CIFAR-10 files (default ${DATA_DIR_ENV}; "
                                                   "unset: the Hugging Face Hub cache)")]


@images_app.command("fetch")
def fetch_command(
    mnist_repo: Annotated[str | None, typer.Option(help="Hub dataset repository of MNIST")] = None,
    mnist_revision: Annotated[str | None, typer.Option(help="its revision (commit sha)")] = None,
    cifar_repo: Annotated[str | None, typer.Option(help="Hub dataset repository of CIFAR-10")] = None,
    cifar_revision: Annotated[str | None, typer.Option(help="its revision (commit sha)")] = None,
) -> None:
    """Download the MNIST and CIFAR-10 parquet files into the Hugging Face cache (needed once)."""
    source = ImageSource.from_env().model_copy(update={"data_dir": None})
    overrides = {"mnist": (mnist_repo, mnist_revision), "cifar10": (cifar_repo, cifar_revision)}
    hub = {name: repo.model_copy(update={key: value for key, value in zip(("repo_id", "revision"), overrides[name],
                                                                        strict=True) if value is not None})
           for name, repo in source.hub.items()}
    source = source.model_copy(update={"hub": hub})
    for dataset, repo in source.hub.items():
        for split in repo.files:
            try:
                path = hub_file(source, dataset, split)
            except DatasetUnavailable as error:
                raise UserError(str(error)) from None
            console.print(f"{dataset} {split}: {repo.repo_id}@{repo.revision[:12]} -> {path}", markup=False)


@images_app.command("build")
def build_command(
    task: Annotated[str, typer.Option(help="an image task (see `sbbench tasks`)")] = "mnist-cifar",
    seeds: Annotated[int, typer.Option(help="number of seeds: 0 .. N-1")] = 5,
    data_dir: DataDir = None,
) -> None:
    """Build (and cache on disk) a dominoes task's data for the first N seeds, and print its sizes."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    task_spec = task_named(task)
    if not isinstance(task_spec.data, DominoSpec):
        raise UserError(f"{task} is not an image task")
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir)
    for seed in range(seeds):
        started = time.perf_counter()
        try:
            data = task_spec.build(seed)
        except DatasetUnavailable as error:
            raise UserError(str(error)) from None
        sizes = ", ".join(f"{name} {len(split):,}" for name, split in
                          (("train", data.train), ("test", data.test), ("pool", data.pool), ("val", data.val))
                          if split is not None)
        console.print(f"{task} seed {seed}: {sizes}; {time.perf_counter() - started:.1f} s", markup=False)
    console.print(f"cached under {default_cache_root() / 'images'}", markup=False)
