"""Tests of sbbench.metrics.classification: predictions, accuracy and ROC-AUC."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sbbench.metrics import accuracy, eval_mode, margin_scores, predict_logits, roc_auc

SETTINGS = settings(derandomize=True, deadline=None, database=None, max_examples=200)


def pairwise_auc(scores: list[float], labels: list[int]) -> float:
    """AUC by its definition: the fraction of (positive, negative) pairs ranked correctly."""
    positives = [s for s, label in zip(scores, labels, strict=True) if label == 1]
    negatives = [s for s, label in zip(scores, labels, strict=True) if label == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 1)), min_size=2, max_size=60).filter(
        lambda pairs: len({label for _, label in pairs}) == 2
    )
)
def test_roc_auc_equals_pairwise_definition_with_ties(pairs: list[tuple[int, int]]) -> None:
    scores = [s / 2 for s, _ in pairs]
    labels = [label for _, label in pairs]
    auc = roc_auc(torch.tensor(scores), torch.tensor(labels))
    assert auc == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)


@settings(SETTINGS, max_examples=30)
@given(st.integers(0, 2**31 - 1))
def test_roc_auc_is_invariant_to_monotone_maps_and_flips_with_the_score(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(50, generator=g)
    y = torch.arange(50) % 2
    auc = roc_auc(scores, y)
    assert roc_auc(torch.exp(3 * scores) + 1, y) == pytest.approx(auc)
    assert roc_auc(-scores, y) == pytest.approx(1 - auc)


def test_roc_auc_extremes() -> None:
    y = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert roc_auc(torch.tensor([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert roc_auc(torch.zeros(4), y) == 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_roc_auc_needs_both_classes(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor(labels))


def test_labels_must_be_binary_integers() -> None:
    with pytest.raises(ValueError, match="integers in"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="integers in"):
        accuracy(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.zeros(3, 2), torch.tensor([0, 1]))


def test_margin_scores_and_accuracy() -> None:
    logits = torch.tensor([[1.0, 3.0], [2.0, -1.0], [0.5, 0.5], [0.0, 1.0]])
    assert torch.equal(margin_scores(logits), torch.tensor([2.0, -3.0, 0.0, 1.0]))
    # A tie predicts class 0, so the third example counts as correct only with label 0.
    assert accuracy(logits, torch.tensor([1, 0, 0, 0])) == 0.75
    assert accuracy(logits, torch.tensor([1, 0, 1, 1])) == 0.75
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        margin_scores(torch.zeros(4, 3))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))


def test_predict_logits_batches_like_one_eval_pass() -> None:
    model = small_net().eval()
    x = torch.randn(37, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    logits = predict_logits(model, x, batch_size=5)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert not logits.requires_grad


def test_predict_logits_uses_eval_mode_and_restores_each_module_mode() -> None:
    model = small_net().train()
    model[2].eval()  # a mixed state must come back exactly as it was
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(2))
    first, second = predict_logits(model, x), predict_logits(model, x)
    assert torch.equal(first, second)  # dropout was off
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert all(p.grad is None for p in model.parameters())


def test_eval_mode_restores_after_an_exception() -> None:
    model = small_net().train()

    def fail_in_eval_mode() -> None:
        with eval_mode(model):
            assert not model.training
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_in_eval_mode()
    assert model.training


def test_predict_logits_rejects_a_model_without_two_logits() -> None:
    with pytest.raises(ValueError, match=r"\(n, 2\) logits"):
        predict_logits(nn.Linear(3, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="batch_size"):
        predict_logits(nn.Linear(3, 2), torch.zeros(4, 3), batch_size=0)
