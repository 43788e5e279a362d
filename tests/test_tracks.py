"""Tracks: the TrainContext a method gets holds exactly the side information its track allows,
and never the test split."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.data.features import FeatureSpace
from sbbench.methods.base import Method, Track, TrainContext
from sbbench.methods.registry import MethodInfo
from sbbench.runner import build_data, method_seed, run_job, train_context
from sbbench.tasks import Task

CPU = torch.device("cpu")
SEED = 3

# track -> (pool visible, val visible, space visible)
VISIBLE = {
    Track.T0: (False, False, False),
    Track.T1: (True, False, False),
    Track.T2: (True, True, False),
    Track.ORACLE: (False, False, True),
}


@pytest.fixture
def data(tiny_task: Task) -> Dataset:
    built = build_data(tiny_task, SEED)
    assert built.pool is not None and built.val is not None, "the tiny task offers every kind of side information"
    return built


def tensors_in(obj: object, *, closures: bool, seen: set[int] | None = None) -> Iterator[tuple[str, Tensor]]:
    """Every tensor reachable from ``obj`` through dataclass fields and containers (and, when
    ``closures``, through the cells and defaults of functions), with a path naming where."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        yield "", obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for item in dataclasses.fields(obj):
            for path, tensor in tensors_in(getattr(obj, item.name), closures=closures, seen=seen):
                yield f".{item.name}{path}", tensor
    elif isinstance(obj, dict):
        for key, value in obj.items():
            for path, tensor in tensors_in(value, closures=closures, seen=seen):
                yield f"[{key!r}]{path}", tensor
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            for path, tensor in tensors_in(value, closures=closures, seen=seen):
                yield f"[{index}]{path}", tensor
    elif closures and isinstance(obj, types.FunctionType):
        for index, cell in enumerate(obj.__closure__ or ()):
            for path, tensor in tensors_in(cell.cell_contents, closures=closures, seen=seen):
                yield f".<cell {obj.__code__.co_freevars[index]}>{path}", tensor
        for path, tensor in tensors_in(obj.__defaults__ or (), closures=closures, seen=seen):
            yield f".<defaults>{path}", tensor


def same_storage(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def leaks(found: Iterator[tuple[str, Tensor]], test: LabeledSet) -> list[str]:
    """Paths of tensors that equal, or share storage with, the test inputs or labels."""
    bad = []
    for path, tensor in found:
        for name, target in (("x", test.x), ("y", test.y)):
            if same_storage(tensor, target) or (tensor.shape == target.shape and torch.equal(tensor, target)):
                bad.append(f"ctx{path} is test.{name}")
    return bad


@pytest.mark.parametrize("track", list(Track), ids=[t.value for t in Track])
def test_context_holds_exactly_what_the_track_allows(track: Track, tiny_task: Task, data: Dataset) -> None:
    ctx = train_context(tiny_task, data, track, SEED, CPU, lambda message: None)
    sees_pool, sees_val, sees_space = VISIBLE[track]

    assert torch.equal(ctx.train.x, data.train.x) and torch.equal(ctx.train.y, data.train.y)
    assert ctx.input_shape == data.space.input_shape == tuple(ctx.train.x.shape[1:])
    assert ctx.budget == tiny_task.budget and ctx.device == CPU
    # the method sees its method seed, a one-way hash of the job's data seed, never the data seed itself
    assert ctx.seed == method_seed(SEED) and ctx.seed != SEED

    if sees_pool:
        assert isinstance(ctx.pool, Tensor), "the pool is inputs only: no labels"
        assert torch.equal(ctx.pool, data.pool.x)
    else:
        assert ctx.pool is None
    if sees_val:
        assert isinstance(ctx.val, LabeledSet)
        assert torch.equal(ctx.val.x, data.val.x) and torch.equal(ctx.val.y, data.val.y)
    else:
        assert ctx.val is None
    if sees_space:
        assert isinstance(ctx.space, FeatureSpace) and ctx.space == data.space
        assert ctx.space.blocks["S"] == data.space.blocks["S"]
    else:
        assert ctx.space is None


@pytest.mark.parametrize("track", list(Track), ids=[t.value for t in Track])
def test_no_tensor_in_the_context_is_or_shares_storage_with_the_test_split(
    track: Track, tiny_task: Task, data: Dataset
) -> None:
    ctx = train_context(tiny_task, data, track, SEED, CPU, lambda message: None)
    found = list(tensors_in(ctx, closures=False))
    paths = {path for path, _ in found}
    assert {".train.x", ".train.y"} <= paths
    assert leaks(iter(found), data.test) == []
    # no test example appears in any split the method sees
    test_rows = {tuple(row) for row in data.test.x.tolist()}
    for path, tensor in found:
        if tensor.dim() == 2 and tensor.shape[1:] == data.test.x.shape[1:]:
            assert test_rows.isdisjoint(tuple(row) for row in tensor.tolist()), f"ctx{path} holds a test example"


def test_backbone_factory_builds_fresh_models_of_the_task(tiny_task: Task, data: Dataset) -> None:
    ctx = train_context(tiny_task, data, Track.T0, SEED, CPU, lambda message: None)
    first, second = ctx.make_backbone(), ctx.make_backbone()
    assert first is not second
    assert first(ctx.train.x[:4]).shape == (4, 2)
    assert all(not same_storage(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_context_callables_do_not_capture_the_test_split(tiny_task: Task, data: Dataset) -> None:
    ctx = train_context(tiny_task, data, Track.T0, SEED, CPU, lambda message: None)
    assert leaks(tensors_in(ctx, closures=True), data.test) == []


class _Seen(RuntimeError):
    """Raised by the probe after recording its context, so the job stops before training."""


def _probe(track: Track, seen: list[tuple[TrainContext, int]]) -> type[Method]:
    def fit(self: Method, ctx: TrainContext):
        seen.append((ctx, torch.initial_seed()))
        raise _Seen("context recorded")

    return type("Probe", (Method,), {"name": f"probe-{track.value.lower()}", "track": track, "fit": fit})


@pytest.mark.parametrize("track", list(Track), ids=[t.value for t in Track])
def test_run_job_hands_fit_the_context_of_the_methods_own_track(track: Track, tiny_task: Task, data: Dataset
                                                                ) -> None:
    seen: list[tuple[TrainContext, int]] = []
    cls = _probe(track, seen)
    info = MethodInfo.of_class(cls, source="test probe")
    result = run_job(info, info.defaults, tiny_task, SEED, device=CPU)
    assert result.status == "failed" and "_Seen: context recorded" in result.error
    assert result.track == track.value
    [(ctx, global_seed)] = seen
    sees_pool, sees_val, sees_space = VISIBLE[track]
    assert (ctx.pool is not None, ctx.val is not None, ctx.space is not None) == (sees_pool, sees_val, sees_space)
    assert torch.equal(ctx.train.x, data.train.x) and ctx.seed == method_seed(SEED) != SEED
    assert global_seed == ctx.seed, "torch's global RNG is seeded with the method seed before fit"
    assert leaks(tensors_in(ctx, closures=False), data.test) == []
