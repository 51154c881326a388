"""What generated data looks like for each graph input, read from how the graph uses it.

Noise proves little for an integer input: token ids that only ever take the values 0 and 1
exercise two rows of an 8,000-row embedding, so a check (or an INT8 calibration) on them says
nothing about the other 7,998. Each input is therefore given a :class:`FeedKind`, decided in
this order:

1. **mask**: the input is used as one (the mask input of an Attention or
   EmbedLayerNormalization node, the condition of a Where, the operand of Not, or ``1 - x``),
   seen from the graph; else its name says so (``attention_mask``, ``*_mask``). All ones: every
   position attended.
2. **segment ids**: the segment input of an EmbedLayerNormalization node, else a name such as
   ``token_type_ids`` or ``segment_ids``. All zeros: one sentence, as most inputs are.
3. **position ids**: a name such as ``position_ids``: 0, 1, 2, ... along the last axis.
4. **table ids**: the input, through shape-only operators (Cast, Unsqueeze, Reshape, ...),
   indexes a Gather whose table has a known number of rows: ids uniform over all of them
   (the smallest table when it indexes several).
5. **a tested value**: the input is compared (Equal) with a one-element constant, as a sample
   rate is (``sr == 16000`` choosing a branch in silero VAD): that value, which the model was
   written to accept.
6. **bounded integers**: the input is the index of a OneHot with a constant depth, or of a
   Gather into a tensor whose axis length is known: uniform over that range.
7. anything else: floats are N(0, 1) noise; integers 0 or 1 (valid as indices, lengths and
   flags in most models); booleans random.

The report names each input's kind and why it was chosen ("from the graph", "by name",
"default"), so that a reader knows what every figure measured on generated data rests on.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

# Operators that move or reshape an index tensor without changing its values.
_SHAPE_ONLY = frozenset({
    "Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand", "Transpose", "Slice", "Tile",
})
_MASK_NAME = re.compile(r"(^|[_\W])mask($|[_\W])|mask$", re.IGNORECASE)
_SEGMENT_NAME = re.compile(r"token_?type|segment|type_?ids", re.IGNORECASE)
_POSITION_NAME = re.compile(r"position_?ids|pos_?ids", re.IGNORECASE)
# Inputs of onnxruntime's contrib operators that take a mask or segment ids (by position).
_MASK_SLOTS = {"Attention": (3,), "MultiHeadAttention": (4,), "EmbedLayerNormalization": (7,)}
_SEGMENT_SLOTS = {"EmbedLayerNormalization": (1,)}
_IDS_SLOTS = {"EmbedLayerNormalization": ((0, 2), (1, 3))}  # (ids input, table input)


@dataclasses.dataclass(frozen=True)
class FeedKind:
    """How generated values for one input are drawn."""

    kind: str  # "noise" | "mask" | "segment" | "positions" | "ids" | "value" | "range" | "small"
    basis: str = "default"  # "graph" | "name" | "default"
    high: int | None = None  # ids and ranges: values are 0 .. high - 1; "value": the value
    detail: str = ""  # what in the graph decided it

    def describe(self) -> str:
        what = {
            "noise": "N(0, 1) noise (random booleans for bool inputs)",
            "mask": "all ones (every position attended)",
            "segment": "all zeros (one segment)",
            "positions": "0, 1, 2, ... along the last axis",
            "ids": f"ids uniform over 0..{(self.high or 1) - 1}",
            "value": f"the value {self.high}",
            "range": f"integers uniform over 0..{(self.high or 1) - 1}",
            "small": "integers 0 or 1 (no table or range found in the graph)",
        }[self.kind]
        why = {"graph": "from the graph", "name": "by its name", "default": "default"}[self.basis]
        return f"{what} ({why}{': ' + self.detail if self.detail else ''})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "basis": self.basis, "high": self.high, "detail": self.detail,
                "description": self.describe()}

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Values of ``dtype`` and ``shape`` as this kind says."""
        if np.issubdtype(dtype, np.floating):
            if self.kind == "mask":
                return np.ones(shape, dtype)
            return rng.standard_normal(shape).astype(dtype)
        if dtype == np.bool_:
            return np.ones(shape, np.bool_) if self.kind == "mask" else rng.integers(0, 2, shape).astype(np.bool_)
        if self.kind == "mask":
            return np.ones(shape, dtype)
        if self.kind == "segment":
            return np.zeros(shape, dtype)
        if self.kind == "value":
            return np.full(shape, self.high, dtype)
        if self.kind == "positions":
            last = shape[-1] if shape else 1
            positions = np.arange(last) % self.high if self.high else np.arange(last)
            return np.broadcast_to(positions, shape).astype(dtype)
        high = self.high if self.kind in ("ids", "range") and self.high else 2
        high = min(high, int(np.iinfo(dtype).max) + 1)
        return rng.integers(0, high, shape).astype(dtype)


NOISE = FeedKind("noise")


def plan_feed_kinds(graph: onnx.GraphProto, names: Iterable[str]) -> dict[str, FeedKind]:
    """The FeedKind of each input in ``names`` (see the module docstring for the rules)."""
    uses = _Uses(graph)
    integer_like = {vi.name for vi in graph.input if _elem_type(vi) not in _FLOAT_TYPES}
    return {name: _kind_of(name, uses, name in integer_like) for name in names}


_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
})


def _elem_type(vi: onnx.ValueInfoProto) -> int:
    return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0


def _kind_of(name: str, uses: _Uses, integer: bool) -> FeedKind:
    if not integer:
        return NOISE
    mask = uses.mask_use(name)
    if mask:
        return FeedKind("mask", "graph", detail=mask)
    segment = uses.segment_use(name)
    if segment:
        return FeedKind("segment", "graph", detail=segment)
    tables = uses.tables(name)
    if _SEGMENT_NAME.search(name):
        return FeedKind("segment", "name")
    if _POSITION_NAME.search(name):
        rows = min(tables.values()) if tables else None
        return FeedKind("positions", "name", high=rows)
    if tables:
        node, rows = min(tables.items(), key=lambda item: item[1])
        return FeedKind("ids", "graph", high=rows, detail=f"indexes the {rows:,}-row table of {node}")
    if _MASK_NAME.search(name):
        return FeedKind("mask", "name")
    tested = uses.tested_value(name)
    if tested is not None:
        value, detail = tested
        return FeedKind("value", "graph", high=value, detail=detail)
    bound = uses.bound(name)
    if bound is not None:
        high, detail = bound
        return FeedKind("range", "graph", high=high, detail=detail)
    return FeedKind("small")


class _Uses:
    """Where each value flows, and the static facts about tables and bounds the graph holds."""

    def __init__(self, graph: onnx.GraphProto):
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in graph.node:
            for slot, value in enumerate(node.input):
                if value:
                    self.consumers[value].append((node, slot))
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        self.constants: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
            if _small(init):
                self.constants[init.name] = numpy_helper.to_array(init)
        self.fixed = {init.name for init in graph.initializer}
        self.fixed |= {node.output[0] for node in graph.node if node.op_type == "Constant" and node.output}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.shapes[node.output[0]] = tuple(value.dims)
                    if _small(value):
                        self.constants[node.output[0]] = numpy_helper.to_array(value)
        for vi in (*graph.value_info, *graph.input):
            if vi.name not in self.shapes and vi.type.tensor_type.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)

    def reach(self, name: str) -> list[tuple[onnx.NodeProto, int]]:
        """(node, input slot) for every use of ``name``, through shape-only operators."""
        seen, stack, found = {name}, [name], []
        while stack:
            value = stack.pop()
            for node, slot in self.consumers.get(value, ()):
                found.append((node, slot))
                if node.op_type in _SHAPE_ONLY and slot == 0:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            stack.append(out)
        return found

    def mask_use(self, name: str) -> str:
        for node, slot in self.reach(name):
            label = f"{node.op_type} {node.name or '(unnamed)'}"
            if slot in _MASK_SLOTS.get(node.op_type, ()):
                return f"the mask input of {label}"
            if (node.op_type == "Where" and slot == 0) or node.op_type == "Not":
                return f"the condition of {label}"
            if node.op_type == "Sub" and slot == 1 and self._is_one(node.input[0]):
                return f"1 - x in {label}"
        return ""

    def segment_use(self, name: str) -> str:
        for node, slot in self.reach(name):
            if slot in _SEGMENT_SLOTS.get(node.op_type, ()):
                return f"the segment input of {node.op_type} {node.name or '(unnamed)'}"
        return ""

    def tables(self, name: str) -> dict[str, int]:
        """Gather-like nodes ``name`` indexes, with the rows of the table each indexes."""
        out = {}
        for node, slot in self.reach(name):
            label = f"{node.op_type} '{node.name}'" if node.name else node.op_type
            if node.op_type == "Gather" and slot == 1:
                rows = self._dim(node.input[0], _axis(node))
                if rows and self._constant_table(node.input[0]):
                    out[label] = rows
            for ids, table in _IDS_SLOTS.get(node.op_type, ()):
                if slot == ids and len(node.input) > table:
                    rows = self._dim(node.input[table], 0)
                    if rows:
                        out[label] = rows
        return out

    def tested_value(self, name: str) -> tuple[int, str] | None:
        """The one-element integer constant ``name`` is compared with (Equal), if any."""
        for node, slot in self.reach(name):
            if node.op_type != "Equal":
                continue
            other = self.constants.get(node.input[1 - slot])
            if other is not None and other.size == 1 and np.issubdtype(other.dtype, np.integer):
                value = int(other.reshape(-1)[0])
                return value, f"compared with {value} in Equal {node.name}".strip()
        return None

    def bound(self, name: str) -> tuple[int, str] | None:
        """An exclusive upper bound the graph puts on an integer input, and what sets it."""
        bounds = []
        for node, slot in self.reach(name):
            if node.op_type == "OneHot" and slot == 0 and node.input[1] in self.constants:
                depth = int(np.asarray(self.constants[node.input[1]]).reshape(-1)[0])
                bounds.append((depth, f"the indices of OneHot {node.name or ''} (depth {depth})".replace("  ", " ")))
            elif node.op_type in ("Gather", "GatherElements") and slot == 1:
                size = self._dim(node.input[0], _axis(node))
                if size:
                    bounds.append((size, f"indexes axis {_axis(node)} ({size}) of {node.op_type} {node.name}".strip()))
        return min(bounds) if bounds else None

    def _dim(self, value: str, axis: int) -> int | None:
        shape = self.shapes.get(value)
        if not shape or not -len(shape) <= axis < len(shape):
            return None
        dim = shape[axis]
        return dim if isinstance(dim, int) and dim > 0 else None

    def _constant_table(self, value: str) -> bool:
        # An initializer or Constant: its row count is fixed. (A tensor computed at run time
        # has the size value_info recorded, which a range bound uses instead.)
        return value in self.fixed

    def _is_one(self, value: str) -> bool:
        array = self.constants.get(value)
        return array is not None and array.size == 1 and float(array.reshape(-1)[0]) == 1.0


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def _small(tensor: onnx.TensorProto) -> bool:
    return not tensor.external_data and int(np.prod(tensor.dims, dtype=np.int64)) <= 16



