"""Isolation: ``fit`` runs in a reused child process under the suite's limits, without the test split.

Every test scores real submissions (folders written here) through ``score`` with the default
executor, so the children are real processes and the limits are real ``RLIMIT_AS`` and SIGKILL.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sbbench.cache import ResultCache
from sbbench.data.dataset import LabeledSet
from sbbench.isolation import IsolatedFit, Limits
from sbbench.methods.base import Track
from sbbench.methods.registry import MethodInfo, load_folder, resolve_method
from sbbench.models.transfer import TransferredModel
from sbbench.runner import build_data, train_context
from sbbench.scoring import score
from sbbench.suite import Suite
from sbbench.tasks import Task

TIME_LIMIT = 30.0  # generous: a normal tiny job must finish well inside it on a loaded 2-core machine
MEMORY_LIMIT_GB = 3.0

MISBEHAVING = '''\
import ctypes
import os
import resource
import time

import torch
from torch import nn

from sbbench.methods import HParams, Method, Track, hparam
from sbbench.runner import method_seed


class Params(HParams):
    mode: str = hparam("hog")


class Untraceable(nn.Module):
    """Branches in Python on the values of its input: no graph of it can be exported."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) if bool(x.sum() > 0) else -self.inner(x)


class Misbehaving(Method):
    """Misbehaves in the job of data seed 0 (as ``mode`` says) and trains normally in every other job."""

    name = "misbehaving"
    track = Track.T0
    HParams = Params

    def fit(self, ctx):
        if ctx.seed == method_seed(0):  # the method sees its method seed, derived from the data seed
            if self.hparams.mode == "hog":
                soft, _ = resource.getrlimit(resource.RLIMIT_AS)
                if soft == resource.RLIM_INFINITY:
                    raise AssertionError("no address-space limit is set: refusing to allocate")
                blocks = []
                for _ in range(10 * soft // 2**28):  # ten times the limit, 256 MiB at a time
                    blocks.append(torch.ones(2**26))
            elif self.hparams.mode == "sleep":
                time.sleep(3600)
            elif self.hparams.mode == "exit":
                os._exit(3)
            elif self.hparams.mode == "segfault":
                ctypes.string_at(0)
        model, _ = ctx.fit_model()
        if ctx.seed == method_seed(0) and self.hparams.mode == "untraceable":
            return Untraceable(model)
        return model
'''

PROBE = '''\
import gc
import os
from pathlib import Path

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor

from sbbench.methods import HParams, Method, Track, hparam
from sbbench.tasks import Task

TASK = Task.model_validate_json({task_json!r})
SEEDS = {seeds!r}  # the suite's data seeds: the method does not learn its job's data seed, so it tries them all


class Params(HParams):
    out: str = hparam("")


def holds_rows_of(obj, needle):
    """Whether the bytes behind ``obj`` (a tensor's whole storage, not just its view) contain ``needle``."""
    if issubclass(type(obj), np.ndarray) and obj.dtype == np.float32:
        obj = torch.from_numpy(np.array(obj))
    if not issubclass(type(obj), torch.Tensor) or issubclass(type(obj), FakeTensor):
        return False  # fake tensors (left by an earlier job's torch.export of its model) hold no data
    if obj.device.type != "cpu" or obj.is_sparse:
        return False
    storage = obj.untyped_storage()
    flat = torch.empty(0, dtype=torch.float32).set_(storage, 0, (storage.nbytes() // 4,))
    starts = (flat == needle[0]).nonzero().flatten().tolist()
    return any(torch.equal(flat[i:i + len(needle)], needle) for i in starts[:1000])


class Probe(Method):
    """Regenerates its task's test splits from the public generator, then searches the whole process for them."""

    name = "probe"
    track = Track.ORACLE
    HParams = Params

    def fit(self, ctx):
        Path(self.hparams.out, f"{{ctx.seed}}.pid").write_text(str(os.getpid()))
        needles = []
        for seed in SEEDS:
            test = TASK.build(seed).test
            needles += [test.x[i].clone() for i in (0, len(test) // 2, len(test) - 1)]
            del test
        gc.collect()
        mine = {{id(needle) for needle in needles}}
        arrays = {{}}  # id -> every tensor or array reachable in one step from a tracked object
        for holder in gc.get_objects():
            for obj in [holder, *gc.get_referents(holder)]:
                if issubclass(type(obj), (torch.Tensor, np.ndarray)) and id(obj) not in mine:
                    arrays[id(obj)] = obj
        found = [type(obj).__name__ for obj in arrays.values()
                 if any(holds_rows_of(obj, needle) for needle in needles)]
        if found:
            raise RuntimeError(f"the test split is in the fit process: {{len(found)}} objects ({{found[:3]}})")
        model, _ = ctx.fit_model()
        return model
'''

COMPACT = '''\
from sbbench.methods import Method, Track


class Compact(Method):
    """Refuses to train when a tensor of its context has more storage than it shows."""

    name = "compact"
    track = Track.T2

    def fit(self, ctx):
        tensors = {"train.x": ctx.train.x, "train.y": ctx.train.y, "pool": ctx.pool, "val.x": ctx.val.x}
        hidden = [name for name, t in tensors.items() if t.untyped_storage().nbytes() > t.numel() * t.element_size()]
        if hidden:
            raise RuntimeError(f"storage beyond the view: {hidden}")
        model, _ = ctx.fit_model()
        return model
'''


def write_submission(folder: Path, name: str, method: str, track: str = "T0") -> MethodInfo:
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(f'name = "{name}"\ntrack = "{track}"\n')
    (folder / "method.py").write_text(textwrap.dedent(method))
    return load_folder(folder)


@pytest.fixture
def limited_suite(tiny_suite: Suite) -> Suite:
    """The tiny suite with small limits: the tiny task trains well within both."""
    return tiny_suite.model_copy(update={"fit_seconds_limit": TIME_LIMIT, "fit_memory_limit_gb": MEMORY_LIMIT_GB})


@pytest.mark.parametrize(("mode", "reason"), [
    ("hog", f"memory limit exceeded ({MEMORY_LIMIT_GB:g} GB address space): RuntimeError"),
    ("sleep", f"time limit exceeded after {TIME_LIMIT:g} s"),
    ("exit", "the fit process exited with code 3"),
    ("segfault", "the fit process was killed by SIGSEGV"),
    ("untraceable", "the model cannot be exported as a graph"),
])
def test_a_misbehaving_fit_is_a_failed_job_with_its_reason_and_the_score_goes_on(
    mode: str, reason: str, tmp_path: Path, limited_suite: Suite
) -> None:
    info = write_submission(tmp_path / "sub", "misbehaving", MISBEHAVING)
    hparams = {"mode": mode}
    outcome = score(info, hparams, limited_suite, cache=ResultCache(tmp_path / "cache"))
    first, second = outcome.results
    assert first.status == "failed" and first.error is not None and first.error.startswith(reason), first.error
    assert first.metrics == {}
    assert second.status == "ok", second.error
    assert second.metrics["acc"] > 0.9


def test_fit_runs_in_a_reused_child_that_never_holds_the_test_split(tmp_path: Path, tiny_suite: Suite) -> None:
    task = tiny_suite.tasks[0]
    info = write_submission(tmp_path / "probe", "probe",
                            PROBE.format(task_json=task.model_dump_json(), seeds=list(tiny_suite.seeds)), "oracle")
    pids = tmp_path / "pids"
    pids.mkdir()
    outcome = score(info, {"out": str(pids)}, tiny_suite, cache=ResultCache(tmp_path / "cache"))
    assert [r.status for r in outcome.results] == ["ok", "ok"], [r.error for r in outcome.results]
    seen = {p.read_text() for p in pids.iterdir()}
    assert len(seen) == 1 and seen != {str(os.getpid())}, "both jobs ran in one child, not in this process"

    # The probe does find the split where it exists: in this process, run inline.
    inline = score(info, {"out": str(pids)}, tiny_suite, cache=ResultCache(tmp_path / "inline"), executor="inline")
    assert all(r.status == "failed" and "the test split is in the fit process" in r.error for r in inline.results)


def test_a_training_split_that_views_a_larger_tensor_is_sent_without_the_rest(tmp_path: Path, tiny_task: Task
                                                                             ) -> None:
    info = write_submission(tmp_path / "compact", "compact", COMPACT, "T2")
    data = build_data(tiny_task, 0)
    n = len(data.train)
    x, y = torch.cat([data.train.x, data.test.x]), torch.cat([data.train.y, data.test.y])
    ctx = replace(train_context(tiny_task, data, Track.T2, 0, torch.device("cpu"), lambda message: None),
                  train=LabeledSet(x=x[:n], y=y[:n]))  # the test split hides in the storage behind the view
    assert info.cls is None  # a submission folder is not imported by resolving it
    method = info.load_class()()
    with pytest.raises(RuntimeError, match="storage beyond the view"):
        method.fit(ctx)
    fitter = IsolatedFit(limits=Limits(60.0, None))
    model = fitter(info, info.defaults, ctx)
    assert model(data.test.x[:4]).shape == (4, 2)
    # the model came back as data: rebuilt from ATen operators here, not an instance of anything the method defined
    assert isinstance(model, TransferredModel) and type(model).__module__ == "sbbench.models.transfer"
    assert model.features(data.test.x[:4]).shape[0] == 4  # the backbone's features were exported too


def test_isolated_results_equal_inline_results(tmp_path: Path, tiny_suite: Suite) -> None:
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    isolated = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "a"))
    inline = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "b"), executor="inline")
    assert [(r.status, r.metrics, r.profiles) for r in isolated.results] == \
        [(r.status, r.metrics, r.profiles) for r in inline.results]
    assert all(r.status == "ok" for r in isolated.results)


def test_fit_children_do_not_inherit_dasks_malloc_trim_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    from sbbench.isolation import _child_environment

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("SBBENCH_DEVICE", "cpu")
    environment = _child_environment()
    assert "MALLOC_TRIM_THRESHOLD_" not in environment and environment["SBBENCH_DEVICE"] == "cpu"
