"""Named tasks: a dataset spec, a backbone, a training budget and the metric settings.

A :class:`Task` is hashable content: its :meth:`Task.content_hash` changes whenever anything
that changes numbers changes. The job seed picks the data draw (a new rotation and new
points) and the model initialisation, so two methods compared at the same seed see the same
data.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Tag
from torch import nn

from sbbench.data.dataset import Dataset
from sbbench.data.images import DominoSpec, make_dominoes
from sbbench.data.synthetic import SyntheticSpec, adv_ms, lms, make_synthetic, ms
from sbbench.metrics.evaluate import AttackSpec, MetricSpec
from sbbench.models import BackboneSpec, build_backbone
from sbbench.training import TrainConfig


def _data_kind(value: Any) -> str:
    """Discriminator of :data:`DataSpec`: a spec's ``kind``; synthetic specs carry none."""
    if isinstance(value, dict):
        return value.get("kind", "synthetic")
    return getattr(value, "kind", "synthetic")


DataSpec = Annotated[Annotated[SyntheticSpec, Tag("synthetic")] | Annotated[DominoSpec, Tag("dominoes")],
                     Discriminator(_data_kind)]
"""A task's dataset: synthetic (no ``kind`` key, which keeps the synthetic tasks' hashes) or dominoes."""


class Task(BaseModel):
    """One benchmark task; everything in it is part of its content hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = 1
    description: str
    data: DataSpec
    backbone: BackboneSpec
    budget: TrainConfig
    metrics: MetricSpec = MetricSpec()

    def content_hash(self) -> str:
        """sha256 of the task's canonical JSON."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def build(self, seed: int) -> Dataset:
        """The task's data for ``seed`` (deterministic; image tasks read the source of ``$SBBENCH_DATA_DIR``)."""
        if isinstance(self.data, DominoSpec):
            return make_dominoes(self.data, seed)
        return make_synthetic(self.data, seed)

    def make_backbone(self, input_shape: tuple[int, ...]) -> nn.Module:
        """A freshly initialised backbone for inputs of ``input_shape``."""
        return build_backbone(self.backbone, input_shape)


_POOL = {"n_pool": 10_000, "n_val": 1_000}
_FCN_100 = BackboneSpec(width=100, depth=2)
_FCN_300 = BackboneSpec(width=300, depth=2)
_SGD = TrainConfig(lr=0.1, batch_size=256, weight_decay=5e-5, max_epochs=50)
_NOISY_SGD = TrainConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, max_epochs=20, stop_train_acc=0.995)

IMAGE_ATTACKS = (AttackSpec(norm="linf", eps=2 / 255, steps=10), AttackSpec(norm="linf", eps=8 / 255, steps=10),
                 AttackSpec(norm="linf", eps=0.3, steps=10), AttackSpec(norm="l2", eps=2.0, steps=10))
"""PGD on pixels in [0, 1]: l_inf at 2/255, 8/255 and the paper's 0.3, and l_2 at 2.0 (10 steps each)."""
_IMAGE_TRACKS = {"n_pool": 1000, "n_val": 200}
_CNN = BackboneSpec(kind="cnn", width=32, depth=4)
_IMAGE_SGD = TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-5, batch_size=128, max_epochs=20)
_IMAGE_METRICS = MetricSpec(attacks=list(IMAGE_ATTACKS), universal=False, coordinate_profile=False, clamp=(0.0, 1.0),
                            batch_size=1024)


def _image_extra_tasks() -> list[Task]:
    """Dominoes outside the suites (:mod:`sbbench.data.images`): a ResNet-18 variant and a smoke task."""
    return [
        Task(name="mnist-cifar-resnet18", description="dominoes A with a CIFAR-style ResNet-18 (for GPUs)",
             data=DominoSpec(variant="A", **_IMAGE_TRACKS), backbone=BackboneSpec(kind="resnet18", width=64, depth=2),
             budget=_IMAGE_SGD,
             metrics=_IMAGE_METRICS),
        Task(name="mnist-cifar-smoke", description="dominoes A cut to 500 train / 250 test per class, cheap metrics",
             data=DominoSpec(n_pool=200, n_val=100, max_train_per_class=500, max_test_per_class=250),
             backbone=BackboneSpec(kind="cnn", width=8, depth=3),
             budget=_IMAGE_SGD.model_copy(update={"batch_size": 32, "max_epochs": 3}),
             metrics=MetricSpec(randomization_repeats=2, attacks=[AttackSpec(norm="linf", eps=0.3, steps=3)],
                                universal=False, coordinate_profile=False, clamp=(0.0, 1.0), batch_size=1024)),
    ]


def _image_v1_tasks() -> list[Task]:
    """The dominoes variants at v1's budget and metrics (suite ``images`` v1 scores variant A)."""
    def dominoes(variant: str) -> DominoSpec:
        return DominoSpec(variant=variant, **_IMAGE_TRACKS)

    return [
        Task(name="mnist-cifar", description="MNIST-CIFAR dominoes A: digit 0/1 over automobile/truck, compact CNN",
             data=dominoes("A"), backbone=_CNN, budget=_IMAGE_SGD, metrics=_IMAGE_METRICS),
        Task(name="mnist-cifar-b", description="MNIST-CIFAR dominoes B: digit 1/4 over automobile/truck, compact CNN",
             data=dominoes("B"), backbone=_CNN, budget=_IMAGE_SGD, metrics=_IMAGE_METRICS),
        Task(name="mnist-cifar-c", description="MNIST-CIFAR dominoes C: digit 0/1 over airplane/ship, compact CNN",
             data=dominoes("C"), backbone=_CNN, budget=_IMAGE_SGD, metrics=_IMAGE_METRICS),
    ]


_IMAGE_V2_DATA = {**_IMAGE_TRACKS, "max_train_per_class": 2500, "max_test_per_class": 1000}
_IMAGE_V2_SGD = TrainConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, max_epochs=12,
                            lr_schedule="onecycle", stop_train_acc=None, stop_train_loss=None)
"""The images v2 budget: v1's CIFAR-only control recipe, 12 whole epochs of a one-cycle schedule for every method
(no early stop), which lets the oracle and the control learn the CIFAR half (docs/suites/images-v2.md)."""
IMAGE_V2_ATTACK = AttackSpec(norm="linf", eps=2 / 255, steps=10)
_IMAGE_V2_METRICS = MetricSpec(randomization_repeats=2, attacks=[IMAGE_V2_ATTACK], universal=False,
                               coordinate_profile=False, clamp=(0.0, 1.0), batch_size=512, worst_group=True,
                               summary_attack=IMAGE_V2_ATTACK.tag)
"""The images v2 metrics: one l_inf 2/255 PGD attack (where ERM and the CIFAR-reading models differ), two
permutations per randomized metric, 512-row batches."""
IMAGE_V2_VARIANTS = {"A": "mnist-cifar", "B": "mnist-cifar-b", "C": "mnist-cifar-c"}
"""The task name of each dominoes variant in suite ``images`` v2; its control is ``<name>-control``."""


def _image_v2_tasks() -> list[Task]:
    """The dominoes A, B and C of suite ``images`` v2, and each one's CIFAR-only control."""
    def task(name: str, description: str, data: DominoSpec) -> Task:
        return Task(name=name, version=2, description=description, data=data, backbone=_CNN, budget=_IMAGE_V2_SGD,
                    metrics=_IMAGE_V2_METRICS)

    pairs = {"A": "digit 0/1 over automobile/truck", "B": "digit 1/4 over automobile/truck",
             "C": "digit 0/1 over airplane/ship"}
    tasks = []
    for variant, name in IMAGE_V2_VARIANTS.items():
        tasks.append(task(name, f"MNIST-CIFAR dominoes {variant}: {pairs[variant]}, 2,500 per class, compact CNN",
                          DominoSpec(variant=variant, **_IMAGE_V2_DATA)))
        tasks.append(task(f"{name}-control", f"dominoes {variant} with the MNIST half blanked: the CIFAR-only "
                          "ceiling", DominoSpec(variant=variant, blank_mnist=True, **_IMAGE_V2_DATA)))
    return tasks


_V2_SGD = TrainConfig(lr=0.1, momentum=0.9, batch_size=256, weight_decay=5e-5, max_epochs=40)
"""The synthetic v2 budget. Momentum 0.9 is what lets the oracle learn a 7-slab S^c: at v1's plain SGD
(and 20k points) it stayed a constant predictor; with momentum and 100k points it reaches accuracy
1.0 within 12-37 epochs on every seed measured (docs/suites/synthetic-v2.md)."""
_V2_METRICS = MetricSpec(attacks=[AttackSpec(norm="l2", eps=0.1), AttackSpec(norm="l2", eps=0.25),
                                  AttackSpec(norm="linf", eps=0.02)],
                         coordinate_profile=False, batch_size=512, worst_group=True, summary_attack="l2_0.25")
"""The synthetic v2 metrics. Radii where models differ (measured on seed 0): at l2 1.0, v1's radius, ERM and the
oracle are both at accuracy ~0 on every task. The stated radius is l2 0.25 (LMS-7: ERM 0.83, oracle 0.0, whose
narrow 7-slabs are easy to leave) and l2 0.1 on AdvMS-(5,7), the task built for it (ERM 0.81, oracle 1.0)."""
_V2_DATA = {"n_train": 100_000, "n_test": 10_000, **_POOL}


def _synthetic_v2_tasks() -> list[Task]:
    """The six tasks of suite ``synthetic`` v2, one budget and one metric spec for all."""
    def task(name: str, description: str, data, summary_attack: str = "l2_0.25") -> Task:
        return Task(name=name, version=2, description=description, data=data, backbone=_FCN_100, budget=_V2_SGD,
                    metrics=_V2_METRICS.model_copy(update={"summary_attack": summary_attack}))

    return [
        task("lms5", "LMS-5: linear S, 49 five-slab coordinates, rotated (d=50)", lms(5, **_V2_DATA)),
        task("lms7", "LMS-7: linear S, 49 seven-slab coordinates, rotated (d=50)", lms(7, **_V2_DATA)),
        task("ms57", "MS-(5,7): one 5-slab S, 49 seven-slab coordinates, rotated (d=50)", ms(5, 7, **_V2_DATA)),
        task("noisy-lms7", "noisy LMS-7: S linear but only 95% predictive (p=0.1), 7-slab S^c",
             lms(7, noise=0.1, **_V2_DATA)),
        task("adv-ms57", "AdvMS-(5,7): d=20, ten 5-slabs (g=0.05) as S, ten 7-slabs (g=0.15)",
             adv_ms(**_V2_DATA), summary_attack="l2_0.1"),
        task("spurious-lms7", "LMS-7 with rho=0.95: in 5% of the training points S points to the other class",
             lms(7, rho=0.95, **_V2_DATA)),
    ]


def _synthetic_v1_tasks() -> list[Task]:
    """The tasks of the superseded suite ``synthetic`` v1 (kept so its entries stay checkable)."""
    return [
        Task(name="lms5", description="LMS-5: linear S, 49 five-slab coordinates, rotated (d=50)",
             data=lms(5, **_POOL), backbone=_FCN_100, budget=_SGD),
        Task(name="ms57", description="MS-(5,7): one 5-slab S, 49 seven-slab coordinates, rotated (d=50)",
             data=ms(5, 7, **_POOL), backbone=_FCN_100, budget=_SGD),
        Task(name="noisy-lms7", description="noisy LMS-7: S linear but only 95% predictive (p=0.1), 7-slab S^c",
             data=lms(7, noise=0.1, n_train=40_000, **_POOL), backbone=_FCN_300, budget=_NOISY_SGD),
    ]


def _tasks() -> dict[str, Task]:
    defs = [
        *_synthetic_v2_tasks(),
        Task(name="ms5", description="MS-5: 50 five-slab coordinates, no simpler block (control)",
             data=ms(5, 5, n_train=40_000, **_POOL), backbone=_FCN_300,
             budget=TrainConfig(lr=0.3, momentum=0.9, weight_decay=5e-4, max_epochs=100)),
        Task(name="ms7", description="MS-7: 50 seven-slab coordinates, the 'S removed' control",
             data=ms(7, 7, n_train=40_000, **_POOL), backbone=_FCN_300,
             budget=TrainConfig(lr=0.3, momentum=0.9, weight_decay=5e-4, max_epochs=100)),
        Task(name="noisy-ms57", description="noisy MS-(5,7): S a 5-slab with 10% swap noise, 7-slab S^c",
             data=ms(5, 7, noise=0.1, n_train=40_000, **_POOL), backbone=_FCN_300, budget=_NOISY_SGD),
        Task(name="lms5-smoke", description="a tiny LMS-5 (3k train) with cheap metrics, for checking a method works",
             data=lms(5, n_train=3000, n_test=1000, n_pool=500, n_val=200), backbone=_FCN_100,
             budget=_SGD.model_copy(update={"max_epochs": 10}),
             metrics=MetricSpec(randomization_repeats=2, attacks=[AttackSpec(norm="l2", eps=1.0, steps=10)],
                                universal=False, coordinate_profile=False)),
        Task(name="lms5-ci", description="a 10-dimensional LMS-5 (2k train, 5 epochs, (32,2)-FCN): exercises the "
                                         "scoring machinery in about a second per job; not a benchmark",
             data=lms(5, d=10, n_train=2000, n_test=500, n_pool=300, n_val=100),
             backbone=BackboneSpec(width=32, depth=2), budget=TrainConfig(lr=0.1, batch_size=128, max_epochs=5),
             metrics=MetricSpec(randomization_repeats=2, attacks=[AttackSpec(norm="l2", eps=1.0, steps=5)],
                                universal=False, coordinate_profile=False)),
        *_image_v2_tasks(),
        *_image_extra_tasks(),
    ]
    return {task.name: task for task in defs}


TASKS: dict[str, Task] = _tasks()
"""Every current task, by name (the superseded suites' own definitions are in :data:`V1_SYNTHETIC_TASKS`)."""

V1_SYNTHETIC_TASKS: tuple[Task, ...] = tuple(_synthetic_v1_tasks())
"""The tasks of suite ``synthetic`` v1, superseded by v2."""

V1_IMAGE_TASKS: tuple[Task, ...] = tuple(_image_v1_tasks())
"""The dominoes tasks at v1's budget; suite ``images`` v1 (superseded by v2) scores the first."""


def get_task(name: str) -> Task:
    """The task called ``name``; a KeyError lists the known names."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


