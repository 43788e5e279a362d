"""A trained model as data: exported where it was trained, rebuilt where it is evaluated.

The process that trains a submitted method runs the submission's Python; the process that
evaluates the model must not. So the model crosses between them as data:

* :func:`export_model` (in the training process) traces the model with :func:`torch.export.export`
  (a dynamic batch dimension) into a graph of ATen operators, for ``forward`` and, when the model
  has one, ``features`` (the penultimate features some metrics probe). Each graph is written as
  JSON (operators by name, arguments as tagged literals) and every tensor it uses is stored in
  one ``torch.save`` archive beside it.
* :func:`load_model` (in the evaluating process) reads the archive with
  ``torch.load(weights_only=True)`` (tensors, strings, numbers, lists and dicts only: no object is
  constructed from the bytes), checks every operator against an allow-list *before* building
  anything (non-mutating ``aten`` operators and a few arithmetic functions on sizes), and builds
  a ``torch.fx`` graph module from it. Nothing of the submission's code exists on this side: the
  rebuilt module runs only PyTorch's own operators, with autograd, so the attacks get input
  gradients.

``torch.export.save``/``load`` are not used for the crossing: ``torch.export.load`` unpickles
parts of its archive and falls back to ``weights_only=False`` when the safe load fails.
A model whose ``forward`` cannot be traced (data-dependent Python control flow, a ``no_grad``
block, in-place writes to its input or buffers) is refused with the reason: :class:`TransferError`.
"""

from __future__ import annotations

import io
import json
import math
import operator
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.export import Dim, ExportedProgram, export
from torch.export.graph_signature import InputKind, OutputKind

FORMAT = "sbbench-graph-1"
MAX_NODES = 200_000
"""Refuse larger graphs (a guard against absurd payloads; a ResNet-18 has about 200 nodes)."""

SIZE_FUNCTIONS: dict[str, Any] = {
    f"operator.{name}": getattr(operator, name)
    for name in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "eq", "ne", "lt", "le",
                 "gt", "ge", "pow")
} | {f"torch.{name}": getattr(torch, name) for name in ("sym_max", "sym_min", "sym_float", "sym_int", "sym_not")} | {
    f"math.{name}": getattr(math, name) for name in ("ceil", "floor", "sqrt")
}
"""The non-ATen call targets a graph may use: arithmetic on tensor sizes and taking an element of a tuple."""


class TransferError(RuntimeError):
    """The model cannot be exported, or an archive is not a valid, allowed model graph."""


# --- export (the training side) -------------------------------------------------------------------------------


class _Features(nn.Module):
    """``model.features`` as a module's ``forward``, so that it can be exported like ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.features(x)


def export_model(model: nn.Module, example: Tensor) -> bytes:
    """The archive of ``model`` (in eval mode) for inputs shaped like ``example`` with any batch size ``>= 1``.

    Raises :class:`TransferError` when ``forward`` (or ``features``) cannot be exported.
    """
    model.eval()
    programs = {"forward": _export(model, example)}
    if callable(getattr(model, "features", None)):
        programs["features"] = _export(_Features(model), example)
    graphs, tensors = {}, {}
    for name, program in programs.items():
        graphs[name] = _encode_program(program, prefix=f"{name}.", tensors=tensors)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "graphs": json.dumps(graphs), "tensors": tensors}, buffer)
    return buffer.getvalue()


def _export(module: nn.Module, example: Tensor) -> ExportedProgram:
    batch = Dim("batch", min=1)
    try:
        with torch.no_grad():
            return export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as error:
        raise TransferError(f"the model cannot be exported as a graph with torch.export ({type(error).__name__}: "
                            f"{_first_line(error)}); models must be traceable: no data-dependent Python control "
                            "flow, no in-place writes to inputs, any batch size") from None


def _encode_program(program: ExportedProgram, prefix: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The program as JSON-ready data; its tensors are added to ``tensors`` under ``prefix``-ed keys."""
    signature = program.graph_signature
    for spec in signature.output_specs:
        if spec.kind != OutputKind.USER_OUTPUT:
            raise TransferError(f"the model writes to its {spec.kind.name.lower().replace('_', ' ')} "
                                f"({spec.target}) when called; evaluation needs a model without side effects")
    placeholders = [node for node in program.graph.nodes if node.op == "placeholder"]
    inputs = []
    for node, spec in zip(placeholders, signature.input_specs, strict=True):
        if spec.kind == InputKind.USER_INPUT:
            inputs.append({"node": node.name, "role": "input"})
            continue
        if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            raise TransferError(f"the model holds a {spec.kind.name.lower()} ({spec.target}); only tensors can be "
                                "handed over")
        value = program.state_dict.get(spec.target)
        if value is None:
            value = program.constants[spec.target]
        key = prefix + spec.target
        tensors[key] = value.detach().clone().contiguous()
        inputs.append({"node": node.name, "role": "tensor", "key": key})
    nodes, output = [], None
    for node in program.graph.nodes:
        if node.op == "call_function":
            nodes.append({"node": node.name, "target": _target_name(node.target),
                          "args": _encode(node.args), "kwargs": _encode(node.kwargs)})
        elif node.op == "output":
            if len(node.args[0]) != 1:
                raise TransferError(f"the model returns {len(node.args[0])} values; it must return one tensor")
            output = _encode(node.args[0][0])
        elif node.op != "placeholder":
            raise TransferError(f"the exported graph has a {node.op!r} node ({node.target}); only operator calls "
                                "can be handed over")
    return {"inputs": inputs, "nodes": nodes, "output": output}


def _target_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}.{target._overloadname}"
    module = getattr(target, "__module__", None) or ""
    name = f"{'operator' if module == '_operator' else module}.{getattr(target, '__name__', target)}"
    if name not in SIZE_FUNCTIONS:
        raise TransferError(f"the exported graph calls {name}, which the evaluating process does not run "
                            "(it runs ATen operators only)")
    return name


def _encode(value: Any) -> Any:
    """A node argument as JSON: node references and non-JSON literals are tagged one-key objects."""
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        return {"list" if isinstance(value, list) else "tuple": [_encode(item) for item in value]}
    if isinstance(value, dict):
        return {"dict": {str(key): _encode(item) for key, item in value.items()}}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": value.type}
    if isinstance(value, torch.layout):
        return {"layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).removeprefix("torch.")}
    raise TransferError(f"the exported graph has an argument of type {type(value).__name__}, which cannot be "
                        "handed over")


# --- load (the evaluating side) -------------------------------------------------------------------------------


class TransferredModel(nn.Module):
    """A model rebuilt from an archive: ``forward`` only."""

    def __init__(self, graphs: dict[str, fx.GraphModule]) -> None:
        super().__init__()
        self.forward_graph = graphs["forward"]
        self.features_graph = graphs.get("features")

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_graph(x)


class TransferredModelWithFeatures(TransferredModel):
    """A model rebuilt from an archive that also exported ``features`` (penultimate activations)."""

    def features(self, x: Tensor) -> Tensor:
        return self.features_graph(x)


def load_model(archive: bytes, device: torch.device | str = "cpu") -> TransferredModel:
    """Rebuild the model of an :func:`export_model` archive on ``device``, running none of the sender's code.

    Raises :class:`TransferError` when the archive is malformed or uses an operator outside the
    allow-list (see the module docstring).
    """
    try:
        content = torch.load(io.BytesIO(archive), weights_only=True, map_location="cpu")
    except Exception as error:
        raise TransferError(f"the model archive cannot be read safely: {_first_line(error)}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise TransferError(f"the model archive is not in the {FORMAT} format")
    tensors = content.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(t, Tensor) for t in tensors.values()):
        raise TransferError("the model archive's tensors are malformed")
    try:
        graphs = json.loads(content["graphs"])
    except (TypeError, ValueError) as error:
        raise TransferError(f"the model archive's graphs are not JSON: {error}") from None
    if not isinstance(graphs, dict) or "forward" not in graphs or set(graphs) - {"forward", "features"}:
        raise TransferError("the model archive must hold a 'forward' graph and at most a 'features' graph")
    device = torch.device(device)
    placed = {key: tensor.to(device) for key, tensor in tensors.items()}
    kind = TransferredModelWithFeatures if "features" in graphs else TransferredModel
    return kind({name: _build(graph, placed, device) for name, graph in graphs.items()}).eval()


def _build(graph: Any, tensors: dict[str, Tensor], device: torch.device) -> fx.GraphModule:
    """The graph module of one encoded program; refuses unknown targets, references and tags."""
    try:
        inputs, nodes, output = graph["inputs"], graph["nodes"], graph["output"]
        if len(nodes) > MAX_NODES:
            raise TransferError(f"the model graph has {len(nodes)} nodes, more than {MAX_NODES}")
        targets = [_resolve_target(node["target"]) for node in nodes]  # all checked before anything is built
        root, result = nn.Module(), fx.Graph()
        values: dict[str, fx.Node] = {}
        user_inputs = 0
        for index, spec in enumerate(inputs):
            if spec["role"] == "input":
                values[spec["node"]] = result.placeholder("x")
                user_inputs += 1
            elif spec["role"] == "tensor":
                attribute = f"tensor_{index}"
                root.register_buffer(attribute, tensors[spec["key"]])
                values[spec["node"]] = result.get_attr(attribute)
            else:
                raise TransferError(f"unknown input role {spec['role']!r}")
        if user_inputs != 1:
            raise TransferError(f"the model graph takes {user_inputs} inputs; it must take exactly one")
        for node, target in zip(nodes, targets, strict=True):
            values[node["node"]] = result.call_function(target, tuple(_decode(node["args"], values, device)),
                                                        _decode(node["kwargs"], values, device))
        result.output(_decode(output, values, device))
        return fx.GraphModule(root, result)
    except TransferError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise TransferError(f"the model graph is malformed: {type(error).__name__}: {error}") from None


def _resolve_target(name: Any) -> Any:
    """The callable a target name stands for: a non-mutating ``aten`` operator or a size function."""
    if not isinstance(name, str):
        raise TransferError(f"a target must be a string, got {type(name).__name__}")
    if name in SIZE_FUNCTIONS:
        return SIZE_FUNCTIONS[name]
    namespace, _, rest = name.partition(".")
    op_name, _, overload = rest.partition(".")
    if namespace != "aten" or not op_name.isidentifier() or not overload.isidentifier():
        raise TransferError(f"the model graph calls {name!r}; only ATen operators are allowed")
    try:
        target = getattr(getattr(torch.ops.aten, op_name), overload)
    except (AttributeError, RuntimeError):
        raise TransferError(f"the model graph calls {name!r}, which is not an ATen operator") from None
    if not isinstance(target, torch._ops.OpOverload) or target._schema.is_mutable:
        raise TransferError(f"the model graph calls {name!r}, which writes to its arguments; only operators "
                            "without side effects are allowed")
    return target


_TAGS = {
    "dtype": lambda value, device: _torch_attribute(value, torch.dtype),
    "layout": lambda value, device: _torch_attribute(value, torch.layout),
    "memory_format": lambda value, device: _torch_attribute(value, torch.memory_format),
    "device": lambda value, device: device,  # wherever the model was traced, it now runs on the load device
    "float": lambda value, device: float({"inf": "inf", "-inf": "-inf", "nan": "nan"}[value]),
}


def _torch_attribute(name: Any, kind: type) -> Any:
    value = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(value, kind):
        raise TransferError(f"{name!r} is not a torch {kind.__name__}")
    return value


def _decode(value: Any, nodes: dict[str, fx.Node], device: torch.device) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise TransferError(f"malformed argument {str(value)[:80]!r}")
    (tag, content), = value.items()
    if tag == "node":
        if content not in nodes:
            raise TransferError(f"argument refers to an unknown node {content!r}")
        return nodes[content]
    if tag in ("list", "tuple") and isinstance(content, list):
        items = [_decode(item, nodes, device) for item in content]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and isinstance(content, dict):
        return {key: _decode(item, nodes, device) for key, item in content.items()}
    if tag in _TAGS:
        return _TAGS[tag](content, device)
    raise TransferError(f"unknown argument tag {tag!r}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
