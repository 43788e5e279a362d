"""The FCN backbone and the shared training loop (sbbench.models, sbbench.training)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.models import FCN, BackboneSpec, build_backbone
from sbbench.training import TrainConfig, TrainingDiverged, cross_entropy_objective, train


def separable_problem(n: int = 256, d: int = 5, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Gaussian inputs labelled by the sign of their first coordinate, kept away from 0."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    x[:, 0] = torch.where(x[:, 0] >= 0, x[:, 0] + 0.5, x[:, 0] - 0.5)
    return x, (x[:, 0] > 0).long()


def fresh_model(d: int = 5, width: int = 16, depth: int = 1, init_seed: int = 0) -> FCN:
    torch.manual_seed(init_seed)
    return FCN(d, width, depth)


def fixed_epochs(epochs: int, **fields: object) -> TrainConfig:
    """A config that runs exactly ``epochs`` epochs (stopping rule disabled)."""
    return TrainConfig(max_epochs=epochs, stop_train_acc=None, stop_train_loss=None, batch_size=32, **fields)


# --- FCN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "depth"), [(100, 2), (7, 1), (3, 4)])
def test_fcn_output_and_feature_shapes(width: int, depth: int) -> None:
    model = FCN(50, width, depth)
    x = torch.randn(9, 50)
    assert model(x).shape == (9, 2)
    assert model.features(x).shape == (9, width)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == depth + 1
    torch.testing.assert_close(model.head(model.features(x)), model(x))


def test_fcn_flattens_inputs() -> None:
    model = FCN(3 * 4 * 2, width=8, depth=1)
    x = torch.randn(5, 3, 4, 2)
    torch.testing.assert_close(model(x), model(x.reshape(5, -1)))


def test_fcn_of_depth_zero_is_linear() -> None:
    model = FCN(6, width=100, depth=0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [model.head]
    assert model.head.in_features == 6
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), x @ model.head.weight.T + model.head.bias)
    assert model.features(x).shape == (4, 6)


def test_build_backbone_matches_spec() -> None:
    model = build_backbone(BackboneSpec(width=12, depth=3), (2, 5))
    assert isinstance(model, FCN)
    assert model(torch.randn(3, 2, 5)).shape == (3, 2)
    assert model.features(torch.randn(3, 10)).shape == (3, 12)


# --- training loop --------------------------------------------------------------------------


def test_training_is_deterministic_for_the_same_seeds() -> None:
    x, y = separable_problem()
    config = fixed_epochs(3, momentum=0.9)
    models = [fresh_model(init_seed=1) for _ in range(2)]
    logs = [train(model, x, y, config, seed=5) for model in models]
    assert logs[0].train_loss == logs[1].train_loss
    for first, second in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(first, second)


def test_shuffling_seed_changes_the_result() -> None:
    x, y = separable_problem()
    models = [fresh_model(init_seed=1) for _ in range(2)]
    train(models[0], x, y, fixed_epochs(1), seed=0)
    train(models[1], x, y, fixed_epochs(1), seed=1)
    assert not torch.equal(models[0].head.weight, models[1].head.weight)


def test_stops_once_train_accuracy_is_reached() -> None:
    x, y = separable_problem()
    config = TrainConfig(lr=0.1, batch_size=32, max_epochs=200, stop_train_acc=1.0, stop_train_loss=None)
    log = train(fresh_model(), x, y, config, seed=0)
    assert log.epochs < config.max_epochs
    assert log.train_acc[-1] == 1.0
    assert all(acc < 1.0 for acc in log.train_acc[:-1])
    assert len(log.train_loss) == len(log.train_acc) == log.epochs


def test_stops_once_train_loss_is_low_enough() -> None:
    x, y = separable_problem()
    config = TrainConfig(lr=0.5, batch_size=32, max_epochs=300, stop_train_acc=None, stop_train_loss=0.05)
    log = train(fresh_model(), x, y, config, seed=0)
    assert log.epochs < config.max_epochs
    assert log.train_loss[-1] < 0.05
    assert all(loss >= 0.05 for loss in log.train_loss[:-1])


def test_runs_max_epochs_without_stopping_rule() -> None:
    x, y = separable_problem()
    log = train(fresh_model(), x, y, fixed_epochs(4), seed=0)
    assert log.epochs == 4


def test_model_is_left_in_eval_mode() -> None:
    x, y = separable_problem()
    model = fresh_model()
    train(model, x, y, fixed_epochs(1), seed=0)
    assert not model.training


def nan_objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y) * math.nan, logits


def test_nan_objective_raises_training_diverged() -> None:
    x, y = separable_problem()
    epochs_seen: list[int] = []
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        train(fresh_model(), x, y, fixed_epochs(3), seed=0, objective=nan_objective,
              on_epoch=lambda epoch, loss, acc: epochs_seen.append(epoch))
    assert epochs_seen == []


def test_huge_learning_rate_raises_training_diverged() -> None:
    x, y = separable_problem()
    with pytest.raises(TrainingDiverged):
        train(fresh_model(), x * 1e3, y, fixed_epochs(20, lr=1e30, weight_decay=0.0), seed=0)


def test_custom_objective_is_used() -> None:
    """An objective that always targets class 0 trains a constant classifier, batch by batch."""
    x, y = separable_problem(n=200)
    batch_sizes: list[int] = []

    def always_class_zero(model: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        batch_sizes.append(len(yb))
        logits = model(xb)
        return F.cross_entropy(logits, torch.zeros_like(yb)), logits

    model = fresh_model()
    log = train(model, x, y, fixed_epochs(5, lr=0.5), seed=0, objective=always_class_zero)
    assert batch_sizes == ([32] * 6 + [8]) * 5
    assert (model(x).argmax(dim=1) == 0).all()
    assert log.train_acc[-1] == pytest.approx((y == 0).float().mean().item())


def test_logged_statistics_are_the_objectives_epoch_means() -> None:
    x, y = separable_problem(n=100)

    def constant_loss(model: nn.Module, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(xb)
        return 0.0 * logits.sum() + 0.75, logits

    reported: list[tuple[int, float, float]] = []
    log = train(fresh_model(), x, y, fixed_epochs(3), seed=0, objective=constant_loss,
                on_epoch=lambda epoch, loss, acc: reported.append((epoch, loss, acc)))
    assert log.train_loss == pytest.approx([0.75] * 3)
    assert reported == list(zip([1, 2, 3], log.train_loss, log.train_acc, strict=True))


def test_default_objective_is_cross_entropy() -> None:
    model = fresh_model()
    x, y = separable_problem(n=10)
    loss, logits = cross_entropy_objective(model, x, y)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y))


def test_adam_optimizer_trains() -> None:
    x, y = separable_problem()
    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, max_epochs=100)
    log = train(fresh_model(), x, y, config, seed=0)
    assert log.train_acc[-1] == 1.0
