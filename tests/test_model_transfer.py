"""A trained model crosses from the fit process as data: exact round trips, and archives that are refused."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from sbbench.models import BackboneSpec, build_backbone
from sbbench.models.transfer import FORMAT, TransferError, export_model, load_model

CASES = [(BackboneSpec(kind="fcn", width=16, depth=2), (10,)), (BackboneSpec(kind="cnn", width=4, depth=2), (3, 16, 8))]


@pytest.mark.parametrize(("spec", "shape"), CASES, ids=["fcn", "cnn"])
def test_a_backbone_round_trips_bit_for_bit_with_its_features_and_input_gradients(spec, shape) -> None:
    torch.manual_seed(0)
    model = build_backbone(spec, shape)
    model.train()
    model(torch.randn(16, *shape))  # non-trivial batch-norm statistics, where the backbone has them
    model.eval()
    rebuilt = load_model(export_model(model, torch.randn(8, *shape)))
    for batch in (1, 5, 33):  # any batch size, not only the traced one
        x = torch.randn(batch, *shape, requires_grad=True)
        original, copy = model(x), rebuilt(x)
        assert torch.equal(original, copy)
        assert torch.equal(model.features(x), rebuilt.features(x))
        (g_original,) = torch.autograd.grad((original[:, 1] - original[:, 0]).sum(), x)
        (g_copy,) = torch.autograd.grad((copy[:, 1] - copy[:, 0]).sum(), x)
        assert torch.equal(g_original, g_copy)


class Mean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.members = nn.ModuleList([nn.Linear(10, 2) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def test_a_model_without_features_comes_back_without_features() -> None:
    torch.manual_seed(1)
    model = Mean().eval()
    rebuilt = load_model(export_model(model, torch.randn(8, 10)))
    x = torch.randn(4, 10)
    assert torch.equal(model(x), rebuilt(x)) and not hasattr(rebuilt, "features")


class NoGradInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.linear(x)


def test_a_no_grad_block_in_forward_does_not_cross_so_the_attacks_get_gradients() -> None:
    rebuilt = load_model(export_model(NoGradInside(), torch.randn(8, 10)))
    x = torch.randn(3, 10, requires_grad=True)
    assert rebuilt(x).requires_grad


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent Python control flow cannot be exported
            return self.linear(x)
        return -self.linear(x)


def test_an_untraceable_model_is_refused_with_the_reason() -> None:
    with pytest.raises(TransferError, match="cannot be exported as a graph"):
        export_model(Branchy(), torch.randn(8, 10))


def _archive(graphs: dict, tensors: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "graphs": json.dumps(graphs), "tensors": tensors or {}}, buffer)
    return buffer.getvalue()


def _graph(target: str, args: list) -> dict:
    return {"forward": {"inputs": [{"node": "x", "role": "input"}],
                        "nodes": [{"node": "y", "target": target, "args": {"list": args}, "kwargs": {"dict": {}}}],
                        "output": {"node": "y"}}}


@pytest.mark.parametrize(("target", "args", "reason"), [
    ("builtins.eval", ["1"], "only ATen operators"),
    ("torch.ops.aten.relu.default", [{"node": "x"}], "only ATen operators"),
    ("aten.relu_.default", [{"node": "x"}], "writes to its arguments"),
    ("aten.copy_.default", [{"node": "x"}, {"node": "x"}], "writes to its arguments"),
    ("aten.no_such_op.default", [{"node": "x"}], "not an ATen operator"),
    ("aten.relu.default", [{"node": "z"}], "unknown node"),
    ("aten.relu.default", [{"module": "os"}], "unknown argument tag"),
])
def test_an_archive_calling_anything_but_a_pure_aten_operator_is_refused(target: str, args: list, reason: str) -> None:
    with pytest.raises(TransferError, match=reason):
        load_model(_archive(_graph(target, args)))


def test_an_allowed_graph_written_by_hand_runs() -> None:
    rebuilt = load_model(_archive(_graph("aten.relu.default", [{"node": "x"}])))
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.equal(rebuilt(x), torch.relu(x))


class Smuggled:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_an_archive_holding_a_python_object_is_refused_without_loading_it(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "graphs": "{}", "tensors": {"w": Smuggled()}}, buffer)
    with pytest.raises(TransferError, match="cannot be read safely"):
        load_model(buffer.getvalue())
    assert "must never run" not in capsys.readouterr().out


def test_an_archive_of_another_format_is_refused() -> None:
    buffer = io.BytesIO()
    torch.save({"format": "other"}, buffer)
    with pytest.raises(TransferError, match="not in the"):
        load_model(buffer.getvalue())
