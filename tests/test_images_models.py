"""Image backbones (compact CNN, ResNet-18), the one-cycle schedule, and forcing the device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.models.backbone import BackboneSpec, build_backbone
from sbbench.models.cnn import CompactCNN
from sbbench.models.resnet import ResNet18
from sbbench.runner import default_device
from sbbench.training import TrainConfig, cross_entropy_objective, train

DOMINO = (3, 64, 32)


def parameter_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


@pytest.mark.parametrize(("spec", "features", "early"), [
    (BackboneSpec(kind="cnn", width=32, depth=4), 256, (32, 32, 16)),
    (BackboneSpec(kind="cnn", width=8, depth=3), 32, (8, 32, 16)),
    (BackboneSpec(kind="resnet18", width=8, depth=2), 64, (8, 64, 32)),
])
def test_image_backbones_expose_logits_features_head_and_early_layers(spec: BackboneSpec, features: int,
                                                                      early: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_backbone(spec, DOMINO)
    x = torch.rand(5, *DOMINO)
    model.eval()
    assert model(x).shape == (5, 2)
    assert model.features(x).shape == (5, features)
    assert torch.allclose(model.head(model.features(x)), model(x))
    assert model.early_features(x).shape == (5, *early)
    assert parameter_ids(model.early_layers) <= parameter_ids(model), "early layers share the model's parameters"


def test_default_cnn_and_resnet18_sizes() -> None:
    cnn = build_backbone(BackboneSpec(kind="cnn", width=32, depth=4), DOMINO)
    resnet = build_backbone(BackboneSpec(kind="resnet18", width=64, depth=2), DOMINO)
    assert isinstance(cnn, CompactCNN) and isinstance(resnet, ResNet18)
    assert sum(p.numel() for p in cnn.parameters()) == 389_410
    # ResNet-18 (CIFAR stem) has 11,173,962 parameters with a 10-way head; ours has 2 logits.
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962 - 8 * 513
    assert sum(isinstance(m, nn.Conv2d) for m in resnet.modules()) == 1 + 16 + 3


def test_image_backbones_refuse_flat_inputs() -> None:
    with pytest.raises(ValueError, match="image inputs"):
        build_backbone(BackboneSpec(kind="cnn", width=8, depth=2), (50,))
    with pytest.raises(ValueError, match="at least one stage"):
        CompactCNN(3, 8, 0)


def test_fcn_specs_serialise_as_before() -> None:
    assert BackboneSpec().model_dump_json() == '{"kind":"fcn","width":100,"depth":2}'


def test_a_few_steps_fit_a_small_image_problem() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, *DOMINO, generator=generator)
    y = (x[:, :, :32].mean(dim=(1, 2, 3)) > x[:, :, :32].mean()).long()
    x[y == 1, :, :32] += 0.5
    for spec in (BackboneSpec(kind="cnn", width=8, depth=3), BackboneSpec(kind="resnet18", width=4, depth=1)):
        torch.manual_seed(0)
        model = build_backbone(spec, DOMINO)
        log = train(model, x, y, TrainConfig(lr=0.05, momentum=0.9, batch_size=16, max_epochs=8), seed=0)
        assert log.train_loss[-1] < log.train_loss[0], spec.kind


def test_onecycle_sets_the_learning_rate_before_every_step() -> None:
    seen: list[float] = []

    def recording_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor):
        seen.append(optimizer.param_groups[0]["lr"])
        loss, logits = cross_entropy_objective(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss, logits

    config = TrainConfig(lr=0.2, momentum=0.9, batch_size=10, max_epochs=4, stop_train_acc=None,
                         stop_train_loss=None, lr_schedule="onecycle")
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    train(model, torch.randn(100, 6), torch.randint(0, 2, (100,)), config, seed=0, update=recording_step)
    assert len(seen) == 40
    assert seen[0] == pytest.approx(0.2 / 25)
    assert max(seen) == pytest.approx(0.2, rel=1e-3) and seen.index(max(seen)) == 11
    assert seen[-1] < 0.2 / 1000
    assert "lr_schedule" in config.model_dump() and "lr_schedule" not in TrainConfig().model_dump()


def test_sbbench_device_forces_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBBENCH_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("SBBENCH_DEVICE", "cuda:1")
    assert default_device() == torch.device("cuda:1")
    monkeypatch.delenv("SBBENCH_DEVICE")
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cross_entropy_gradients_reach_every_cnn_parameter() -> None:
    torch.manual_seed(0)
    model = build_backbone(BackboneSpec(kind="cnn", width=8, depth=4), DOMINO)
    F.cross_entropy(model(torch.rand(4, *DOMINO)), torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
