"""The worst-group headline score and its accuracy guard (sbbench.headline) on the real LMS-5 v2 task.

Gaming predictors (a constant, pseudo-random logits, a perfect S^c classifier plus a huge logit
offset, the same classifier with a tenth of its answers flipped) are evaluated with the task's
own metric spec on its real seed-0 data, next to an ERM model trained there, and must each rank
below ERM. A perfect S^c classifier must rank above ERM.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sbbench.data.blocks import slab_edges, slab_labels
from sbbench.data.features import FeatureSpace
from sbbench.headline import (
    ACCURACY_GUARD,
    CHANCE_ACCURACY,
    WORST_GROUP_SCORE,
    Assessment,
    assess,
    run_score,
    score_meaning,
    suite_score,
)
from sbbench.methods.registry import resolve_method
from sbbench.metrics.evaluate import evaluate
from sbbench.results import RunResult
from sbbench.runner import build_data, fit_job
from sbbench.suite import SYNTHETIC_V1, SYNTHETIC_V2, Suite, get_suite

TASK = SYNTHETIC_V2.task("lms5")
SUITE = SYNTHETIC_V2.model_copy(update={"tasks": (TASK,), "seeds": (0,)})


class SlabClassifier(nn.Module):
    """The Bayes classifier of LMS-5 from its first S^c coordinate alone (smooth slab windows), plus ``offset``."""

    def __init__(self, space: FeatureSpace, offset: float = 0.0, flip_share: float = 0.0) -> None:
        super().__init__()
        self.space, self.offset, self.flip_share = space, offset, flip_share
        edges = torch.as_tensor(slab_edges(5), dtype=torch.float32)
        self.register_buffer("left", edges[:, 0])
        self.register_buffer("right", edges[:, 1])
        self.register_buffer("is_one", torch.as_tensor(slab_labels(5) == 1, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        z = self.space.to_canonical(x)[:, self.space.blocks["Sc"][0]].unsqueeze(1)
        window = torch.sigmoid(200 * (z - self.left)) * torch.sigmoid(200 * (self.right - z))
        margin = 20 * ((window * self.is_one).sum(1) - (window * (1 - self.is_one)).sum(1))
        if self.flip_share:
            # flip the answer on a fixed pseudo-random tenth of the inputs (a function of the input only)
            flipped = torch.frac(torch.sin(x.sum(1) * 1e4) * 1e4).abs() < self.flip_share
            margin = torch.where(flipped, -margin, margin)
        return torch.stack([torch.zeros_like(margin), margin + self.offset], dim=1)


class Constant(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(1, keepdim=True) * 0 + torch.tensor([0.0, 1.0])


class PseudoRandom(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        noise = torch.sin(x @ torch.arange(1.0, x.shape[1] + 1) * 1e3)
        return torch.stack([torch.zeros_like(noise), noise], dim=1)


@pytest.fixture(scope="module")
def assessments() -> dict[str, Assessment]:
    data = build_data(TASK, 0)
    erm = resolve_method("erm")
    torch.manual_seed(0)
    models = {
        "erm": fit_job(erm, erm.configure({}), TASK, data, 0, device=torch.device("cpu")),
        "perfect S^c": SlabClassifier(data.space),
        "constant": Constant(),
        "pseudo-random logits": PseudoRandom(),
        "perfect S^c + 1e4 logit offset": SlabClassifier(data.space, offset=1e4),
        "perfect S^c, 10% flipped": SlabClassifier(data.space, flip_share=0.1),
    }
    found = {}
    for name, model in models.items():
        metrics = evaluate(model.eval(), data.test.x, data.test.y, data.space, TASK.metrics, seed=0).metrics
        run = RunResult(method=name, method_version="1", track="T0", code_hash="x", hparams={}, task=TASK.name,
                        task_hash=TASK.content_hash(), seed=0, status="ok", metrics=metrics)
        found[name] = assess(SUITE, [run])
    return found


def _rank(assessment: Assessment) -> tuple[bool, float]:
    """The leaderboard order: unguarded before guarded, then by score (smaller sorts first)."""
    return assessment.guarded, -assessment.score


@pytest.mark.parametrize("name", ["constant", "pseudo-random logits", "perfect S^c + 1e4 logit offset",
                                  "perfect S^c, 10% flipped"])
def test_a_gaming_predictor_ranks_below_erm(assessments: dict[str, Assessment], name: str) -> None:
    gamed, erm = assessments[name], assessments["erm"]
    assert not erm.guarded
    assert gamed.guarded, f"{name} escaped the accuracy guard: {gamed}"
    assert _rank(gamed) > _rank(erm)


def test_predictors_at_chance_are_failed_runs(assessments: dict[str, Assessment]) -> None:
    for name in ("constant", "pseudo-random logits", "perfect S^c + 1e4 logit offset"):
        (task,) = assessments[name].tasks
        assert task.status == "failed" and task.score == 0.0, name
    (flipped,) = assessments["perfect S^c, 10% flipped"].tasks
    assert flipped.status == "flagged" and flipped.score > 0.5


def test_the_headline_separates_reliance_on_s_from_learning_s_complement(assessments: dict[str, Assessment]) -> None:
    assert assessments["erm"].score < 0.05  # ERM relies on S only: every S-disagreeing group is wrong
    assert assessments["perfect S^c"].score > 0.95
    assert _rank(assessments["perfect S^c"]) < _rank(assessments["erm"])


def test_run_score_is_zero_at_chance_and_the_oracle_normalised_worst_group_accuracy_otherwise() -> None:
    assert run_score({"acc": CHANCE_ACCURACY - 1e-9, "s_rand_wga": 0.9}, 0.9) == 0.0
    assert run_score({"acc": CHANCE_ACCURACY, "s_rand_wga": 0.45}, 0.9) == pytest.approx(0.5)


def test_the_guard_flags_a_task_exactly_beyond_its_margin() -> None:
    reference = SUITE.references[TASK.name]

    def assessed(acc: float) -> Assessment:
        run = RunResult(method="m", method_version="1", track="T0", code_hash="x", hparams={}, task=TASK.name,
                        task_hash="h", seed=0, status="ok", metrics={"acc": acc, "s_rand_wga": 0.5})
        return assess(SUITE, [run])

    assert not assessed(reference.erm_acc - ACCURACY_GUARD + 1e-6).guarded
    assert assessed(reference.erm_acc - ACCURACY_GUARD - 1e-6).guarded


def test_mean_suites_keep_the_mean_of_the_primary_metric() -> None:
    runs = [RunResult(method="m", method_version="1", track="T0", code_hash="x", hparams={}, task=task.name,
                      task_hash="h", seed=seed, status="ok", metrics={"s_rand_auc": 0.5 + 0.1 * i + 0.01 * seed})
            for i, task in enumerate(SYNTHETIC_V1.tasks) for seed in (0, 1)]
    assert assess(SYNTHETIC_V1, runs) is None
    assert suite_score(SYNTHETIC_V1, runs) == pytest.approx(0.605)


def test_a_worst_group_suite_needs_a_reference_for_every_task() -> None:
    fields = {f: getattr(SYNTHETIC_V2, f) for f in Suite.model_fields}
    with pytest.raises(ValueError, match="references"):
        Suite(**{**fields, "references": {}})


def test_score_meaning_speaks_of_s_only_for_the_s_randomized_auc() -> None:
    assert score_meaning(get_suite("images-control")) == "mean over tasks of acc"
    assert "ignores everything but S" in score_meaning(get_suite("synthetic-v1"))
    assert score_meaning(get_suite("images")) == WORST_GROUP_SCORE
