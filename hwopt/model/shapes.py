"""Concrete tensor shapes: shape inference on a copy of the model whose inputs are fixed.

Compute estimates (MACs) and memory planning need the size of every tensor. Symbolic input
dimensions are first replaced by the concrete shapes hwopt resolved (see ``inputs.py``), then
shape inference fills in the rest. onnxruntime's symbolic shape inference goes first: it
evaluates shape arithmetic (Shape -> Gather -> Concat -> Reshape chains, as exporters write
them) that ``onnx.shape_inference`` leaves unknown at older opsets (on the ShuffleNet sample,
132 of 187 tensors). It asserts on some graphs (control flow among them); onnx's inference with
data propagation is then used, and the result says which ran and why. A tensor whose shape
stays unknown is reported as unknown; nothing is guessed.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from hwopt.errors import ModelLoadError, one_line
from hwopt.feeds.inputs import InputSpec
from hwopt.guard import phase
from hwopt.output import inside, quiet_logger


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A tensor's element type and, when fully known, its concrete shape."""

    elem_type: int
    shape: tuple[int, ...] | None

    @property
    def known(self) -> bool:
        return self.shape is not None

    @property
    def itemsize(self) -> int | None:
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type)).itemsize
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def nbytes(self) -> int | None:
        if self.shape is None or self.itemsize is None:
            return None
        return math.prod(self.shape) * self.itemsize


def with_concrete_inputs(model: onnx.ModelProto, specs: Sequence[InputSpec]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs declare the specs' concrete shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    by_name = {spec.name: spec for spec in specs}
    for vi in fixed.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for size in spec.shape:
            shape.dim.add().dim_value = size
    return fixed


@dataclasses.dataclass
class ShapeInference:
    """Tensor facts by name, and how they were obtained."""

    tensors: dict[str, TensorInfo]
    method: str

    @property
    def unknown(self) -> list[str]:
        return [name for name, info in self.tensors.items() if not info.known]


def infer_tensor_info(
    model: onnx.ModelProto,
    specs: Sequence[InputSpec],
    feeds: Mapping[str, np.ndarray] | None = None,
) -> ShapeInference:
    """Element type and concrete shape (or None) of every tensor of the main graph.

    Shape inference knows nothing of some operators (the com.microsoft QLinear* ops of an
    INT8 build, custom domains); with ``feeds`` of the specs' shapes, the tensors it leaves
    unknown are observed in one onnxruntime run instead.
    """
    result = _inferred_tensor_info(model, specs)
    if feeds is None:
        return result
    produced = [out for node in model.graph.node for out in node.output if out]
    missing = [name for name in produced if name not in result.tensors or not result.tensors[name].known]
    if missing:
        observed = observe_tensor_info(model, feeds, missing)
        if observed:
            result.tensors.update(observed)
            result.method += f"; {len(observed)} tensor shape(s) observed in one onnxruntime run"
    return result


def observe_tensor_info(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, TensorInfo]:
    """The element type and shape of the tensors ``names``, read from one run of ``model``
    on ``feeds`` with them added as outputs (no graph optimization, so every name survives).
    Empty when the model does not run: the caller keeps the tensors as unknown."""
    from hwopt.session import create_session  # session pulls in onnxruntime's bindings

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {vi.name for vi in probe.graph.output}
    wanted = list(dict.fromkeys(names))
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in wanted if name not in outputs)
    try:
        session = create_session(probe, {"graph_optimization_level": "disable_all", "log_severity_level": 4})
        with phase("onnxruntime run (observing shapes)", "run"):
            arrays = session.run(wanted, dict(feeds))
    except Exception:  # noqa: BLE001 - onnxruntime raises several types; unknown stays unknown
        return {}
    return {
        name: TensorInfo(helper.np_dtype_to_tensor_dtype(array.dtype), tuple(array.shape))
        for name, array in zip(wanted, arrays)
        if isinstance(array, np.ndarray)
    }


def _inferred_tensor_info(model: onnx.ModelProto, specs: Sequence[InputSpec]) -> ShapeInference:
    # Imported here: it pulls in sympy, a second of start-up that most commands do not need.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    fixed = with_concrete_inputs(model, specs)
    try:
        # When it cannot infer every shape it saves the model to the working directory first.
        with (
            phase("onnxruntime symbolic shape inference", "shape_inference"),
            tempfile.TemporaryDirectory(prefix="hwopt-shapes-") as tmp,
            inside(Path(tmp)),
            quiet_logger("onnxruntime.tools.symbolic_shape_infer"),
        ):
            inferred = SymbolicShapeInference.infer_shapes(fixed, auto_merge=True)
        method = "onnxruntime symbolic shape inference"
    except Exception as exc:  # noqa: BLE001 - it asserts on graphs it cannot handle; recorded below
        method = f"onnx shape inference (symbolic inference failed: {type(exc).__name__} {one_line(exc)})"
        inferred = None
    if inferred is None:
        try:
            with phase("onnx shape inference", "shape_inference"):
                inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
            raise ModelLoadError(f"shape inference failed: {one_line(exc)}") from exc
    return ShapeInference(_collect(inferred.graph), method)


def _collect(graph: onnx.GraphProto) -> dict[str, TensorInfo]:
    info: dict[str, TensorInfo] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.type.HasField("tensor_type"):
            info[vi.name] = TensorInfo(vi.type.tensor_type.elem_type, _concrete(vi))
    for init in graph.initializer:
        info[init.name] = TensorInfo(init.data_type, tuple(init.dims))
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    info[node.output[0]] = TensorInfo(attr.t.data_type, tuple(attr.t.dims))
    return info


def _concrete(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor_type = vi.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return None
        dims.append(dim.dim_value)
    return tuple(dims)
