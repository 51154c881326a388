"""Collapse and cancel chains of data-movement ops, and make computed Reshape targets constant.

Every rewrite keeps the values and their row-major order, so each is exact whenever the
original succeeds (a Squeeze of a dim that is not 1 fails; its rewrite may not):

* ``Transpose(Transpose(x, p), q)`` is ``Transpose(x, p[q])`` (``y[i] = x[p[q[i]]]``), or ``x``
  when ``p[q]`` is the identity (onnxscript's rule).
* ``Reshape(Reshape(x, s1), s2)`` is ``Reshape(x, s2')``: a Reshape reads only its input's
  size, except that a 0 in s2 copies a dim of the *inner* output; s2' writes each such 0 as
  the static output dim, or as -1 when it is the only unknown entry (onnxscript's rule).
  ``Reshape(Flatten(x), s)`` is the same, Flatten being a Reshape to 2-D.
* A chain of two Squeeze/Unsqueeze nodes only drops and inserts dims of size 1. Following x's
  dims through both gives the net effect: nothing (the pair cancels, e.g. ``Squeeze(Unsqueeze(
  x, a), a)``), one Unsqueeze, or one Squeeze. Axes are an attribute before opset 13 and an
  input from 13; the rewrite uses the model's form.
* ``Reshape(x, s)`` where s is computed from x's own shape, such as TorchScript's flatten
  ``Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])``, gets a constant target: a dim of x that
  lands at its own position becomes 0 (copy the input dim; ONNX Reshape does that when
  allowzero is 0 or absent), a dim known statically becomes its value, and a single other dim
  becomes -1 when every other entry is a positive constant. Pieces may be constants,
  ``Shape(x)`` (with start/end), and Gather, Slice, Unsqueeze of those.
* ``Gather(Shape(x), i)`` is a constant when the dims it picks are known statically.
* ``Reshape(Softmax(Flatten(x, axis=k), axis=1), Shape(x))`` is ``Softmax(x, axis=-1)`` when
  ``k == rank(x) - 1``; the same for LogSoftmax. onnx.version_converter writes this wrapper
  for every Softmax/LogSoftmax it takes from opset 12 to 13 whose input rank it does not know,
  to keep opset 12's "coerce to 2-D at axis" meaning. Flattening at the last axis makes one
  row per position of the other dims, the 2-D softmax normalizes each row, and the Reshape
  restores x's shape in the same row-major order: that is a softmax over the last axis, at
  every opset (before 13, axis=-1 coerces to the same rows). For any other k the softmax runs
  over dims k..rank-1 together: when all of them but one, j, are statically 1 (a classifier
  head [N, C, 1, 1] flattened at 1), that is ``Softmax(x, axis=j)`` at every opset; otherwise
  the wrapper is needed. An unknown rank leaves k unknown. A constant target equal to x's
  static shape (onnxsim folds ``Shape(x)`` into one) stands for ``Shape(x)``.
  The one difference is an empty x with dim 1 and another dim 0: a 0 in ``Shape(x)`` tells
  Reshape to copy the 2-D tensor's dim, so the wrapper returns an empty tensor of another
  shape than x's, where the rewrite returns x's. (The converter leaves Hardmax alone, wrapped
  or not.)
* ``Cast<to=INT64>(Slice(Cast<to=INT32>(Shape(x)), ...))`` is ``Slice(Shape(x), ...)``, and the
  same for Gather (PaddlePaddle's shape arithmetic). Slice and Gather pick the same elements
  whatever their type, and the round trip int64 -> int32 -> int64 returns every value in
  int32's range, which dims are (only a Shape's values are known to be dims; other int64
  values are declined). A dim of 2^31 or more would not survive the original's cast (ONNX
  leaves out-of-range casts undefined); the rewrite returns the dim itself. The int32 chain
  goes when every consumer of the picked int32 value is such a Cast (otherwise it stays and
  the rewrite would add a node: declined).

Chains through other tensors are left alone. A channel shuffle, ``Reshape`` to
``[N, g, C/g, H, W]`` then ``Transpose`` then ``Reshape`` back, moves data and matches none of
these rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from hwopt import upstream
from hwopt.passes.base import PassContext, PassResult, default_opset
from hwopt.passes.registry import register
from hwopt.passes.remove_noops import slice_params
from hwopt.passes.rewiring import eliminate_identities, identity_nodes, remove_unused_nodes, rename_blocker
from hwopt.passes.rewrite import RewriteRulePass, not_applicable
from hwopt.passes.values import constant, describe, initializer_name


def _fail(reason: str) -> MatchResult:
    return MatchResult().fail(reason)




def _in_function(node: ir.Node) -> MatchResult:
    return _fail(
        f"{describe(node)} not rewritten: it is inside a function, which cannot hold the new "
        "constant"
    )


def _sole_use(outer: ir.Node, inner_out: ir.Value) -> MatchResult:
    """The inner node of a chain goes away only when the outer node is its only consumer."""
    if inner_out.is_graph_output() or len(inner_out.uses()) > 1:
        return _fail(
            f"{describe(outer)} not collapsed: '{inner_out.name}' also feeds other nodes or is a "
            "graph output"
        )
    return MatchResult()


class CollapseTransposes(upstream.TransposeTranspose):
    def __init__(self) -> None:
        # The inner Transpose is left to dead-code elimination, so that one with other uses
        # reaches check and is reported.
        super().__init__(remove_nodes=False)

    def check(self, context, x, perm1, perm2) -> MatchResult:
        outer, inner_out = context.root, context.root.inputs[0]
        result = _sole_use(outer, inner_out)
        if not result:
            return result
        if not super().check(context, x, perm1, perm2):
            return _fail(f"{describe(outer)} not collapsed: a permutation is a reference attribute")
        composed = upstream.composed_permutation(self, [perm1.as_ints(), perm2.as_ints()])
        if composed == list(range(len(composed))):
            reason = rename_blocker(x, context.output_values[0])
            if reason is not None:
                return _fail(f"{describe(outer)} not removed: {reason}")
        return MatchResult()


class _CollapseIntoReshape:
    """Mixin: onnxscript's ReshapeReshape check, with reasons that name the nodes."""

    def _check_outer_reshape(self, context, x, shape) -> MatchResult:
        outer = context.root
        inner_out = outer.inputs[0]
        if constant(shape) is None:
            producer = shape.producer()
            origin = f"by {describe(producer)}" if producer else f"as graph input '{shape.name}'"
            return _fail(f"{describe(outer)} not collapsed: its shape is computed at run time {origin}")
        result = _sole_use(outer, inner_out)
        if not result:
            return result
        result = upstream.ReshapeReshape.check(self, context, x, None, shape)
        if not result:
            return _fail(
                f"{describe(outer)} not collapsed into {describe(inner_out.producer())}: "
                f"{result.reason}"
            )
        name = initializer_name(context, upstream.reshape_shape_name(self))
        upstream.set_reshape_shape_name(self, name)
        if name is None:
            return _in_function(outer)
        return result


class CollapseReshapes(_CollapseIntoReshape, upstream.ReshapeReshape):
    def __init__(self) -> None:
        super().__init__(remove_nodes=False)

    def check(self, context, x, shape_ignored, shape) -> MatchResult:
        return self._check_outer_reshape(context, x, shape)


class CollapseFlattenReshape(_CollapseIntoReshape, upstream.ReshapeReshape):
    def __init__(self) -> None:
        super().__init__(remove_nodes=False)

    def pattern(self, op, x, shape):
        return op.Reshape(op.Flatten(x), shape)

    def check(self, context, x, shape) -> MatchResult:
        return self._check_outer_reshape(context, x, shape)

    def rewrite(self, op, x, shape):
        return super().rewrite(op, x, None, shape)


def _axes(node: ir.Node) -> list[int] | None:
    """A Squeeze/Unsqueeze's axes, from the attribute (opset < 13) or a constant input; [] when
    none are given; None when they are computed at run time."""
    if "axes" in node.attributes:
        return list(node.attributes.get_ints("axes"))
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return []
    value = constant(node.inputs[1])
    return None if value is None else [int(a) for a in value.reshape(-1)]


class ComposeUnitDims(RewriteRuleClassBase):
    """``outer(inner(x))`` for inner, outer in {Squeeze, Unsqueeze}: at most one node."""

    def __init__(self, inner: str, outer: str, opset: int) -> None:
        super().__init__(name=f"Compose{inner}{outer}", remove_nodes=False)
        self.inner, self.outer, self.opset = inner, outer, opset

    def pattern(self, op, x):
        mid = getattr(op, self.inner)(x, _allow_other_inputs=True, _outputs=["mid"])
        return getattr(op, self.outer)(mid, _allow_other_inputs=True, _outputs=["out"])

    def check(self, context, x, mid, out) -> MatchResult:
        outer, inner = out.producer(), mid.producer()
        result = _sole_use(outer, mid)
        if not result:
            return result
        if x.shape is None:
            return _fail(f"{describe(outer)} not merged: the rank of '{x.name}' is not known")
        dims = list(x.shape)
        tokens: list[tuple[str, int]] = [("x", i) for i in range(len(dims))]
        removed: list[int] = []
        for node in (inner, outer):
            axes = _axes(node)
            if axes is None:
                return _fail(f"{describe(node)} not merged: its axes are computed at run time")
            tokens = self._apply(node.op_type, axes, tokens, dims, removed)
            if isinstance(tokens, str):
                return _fail(f"{describe(node)} not merged: {tokens}")
        inserted = [p for p, token in enumerate(tokens) if token[0] == "new"]
        # Dropping a dim of size 1 and inserting one where it was leaves x as it is.
        unit_in_x = [("unit", -1) if i in removed else ("x", i) for i in range(len(dims))]
        unit_in_out = [("unit", -1) if kind == "new" else (kind, i) for kind, i in tokens]
        if unit_in_x == unit_in_out:
            inserted, removed = [], []
        if inserted and removed:
            return _fail(
                f"{describe(outer)} not merged with {describe(inner)}: together they drop dims "
                f"{sorted(removed)} of '{x.name}' and insert others, which no single Squeeze or "
                "Unsqueeze does"
            )
        if not inserted and not removed:
            reason = rename_blocker(x, out)
            if reason is not None:
                return _fail(f"{describe(outer)} not removed: {reason}")
        self._result = ("Unsqueeze", inserted) if inserted else ("Squeeze", sorted(removed))
        self._name = initializer_name(context, f"{out.name}/axes")
        if self._name is None and self.opset >= 13 and (inserted or removed):
            return _in_function(outer)
        return MatchResult()

    @staticmethod
    def _apply(op_type, axes, tokens, dims, removed):
        """tokens after one Squeeze/Unsqueeze: ("x", i) is x's dim i, ("new", -1) a new 1."""
        rank = len(tokens) + (len(axes) if op_type == "Unsqueeze" else 0)
        if op_type == "Squeeze" and not axes:
            # No axes: squeeze every dim of size 1, which needs them all known statically.
            for p, (kind, i) in enumerate(tokens):
                if kind == "new" or dims[i] == 1:
                    axes.append(p)
                elif not isinstance(dims[i], int):
                    return f"it has no axes and dim {i} of the input is not known statically"
        normalized = {a + rank if a < 0 else a for a in axes}
        if len(normalized) != len(axes) or not all(0 <= a < rank for a in normalized):
            return f"its axes {axes} are not valid for rank {rank}"
        if op_type == "Unsqueeze":
            rest = iter(tokens)
            return [("new", -1) if p in normalized else next(rest) for p in range(rank)]
        removed.extend(i for p, (kind, i) in enumerate(tokens) if p in normalized and kind == "x")
        return [token for p, token in enumerate(tokens) if p not in normalized]

    def rewrite(self, op, x, mid, out):
        op_type, axes = self._result
        if not axes:
            return op.Identity(x)
        if self.opset < 13:
            return getattr(op, op_type)(x, axes=axes)
        value = op.initializer(ir.tensor(np.array(axes, np.int64)), name=self._name)
        return getattr(op, op_type)(x, value)



def _reshape_target(node: ir.Node) -> list[int] | None:
    """A Reshape's constant target, or None when it is computed at run time."""
    value = constant(node.inputs[1])
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _resolve_zeros(target: list[int], x: ir.Value) -> list[int] | None:
    """A Reshape target with each 0 (copy x's dim there) written as that dim's static value;
    None when one is not known."""
    dims = list(x.shape) if x.shape is not None else []
    resolved = []
    for i, t in enumerate(target):
        if t == 0:
            if i >= len(dims) or not isinstance(dims[i], int):
                return None
            t = dims[i]
        resolved.append(t)
    return resolved


class ReshapeThenUnitDims(RewriteRuleClassBase):
    """``Squeeze|Unsqueeze(Reshape(x, s))`` -> ``Reshape(x, s')``: s with the inserted 1s added
    or the dropped entries (1, or -1 that resolves to 1) taken out."""

    def __init__(self, outer: str) -> None:
        super().__init__(name=f"Reshape{outer}", remove_nodes=False)
        self.outer = outer

    def pattern(self, op, x, shape):
        mid = op.Reshape(x, shape, _outputs=["mid"])
        return getattr(op, self.outer)(mid, _allow_other_inputs=True, _outputs=["out"])

    def check(self, context, x, shape, mid, out) -> MatchResult:
        outer, inner = out.producer(), mid.producer()
        target, axes = _reshape_target(inner), _axes(outer)
        if target is None or axes is None:
            return not_applicable()
        result = _sole_use(outer, mid)
        if not result:
            return result
        if inner.attributes.get_int("allowzero", 0) == 0:
            # A 0 copies x's dim at its own position, which the new entries would shift: it
            # becomes that dim's static value.
            target = _resolve_zeros(target, x)
            if target is None:
                return _fail(f"{describe(outer)} not merged: {describe(inner)} copies a dim of "
                             f"'{x.name}' that is not known statically")
        merged = self._merge(target, axes, mid)
        if isinstance(merged, str):
            return _fail(f"{describe(outer)} not merged into {describe(inner)}: {merged}")
        self._target = merged
        self._allowzero = inner.attributes.get_int("allowzero", 0)
        self._name = initializer_name(context, f"{out.name}/shape")
        return MatchResult() if self._name is not None else _in_function(outer)

    def _merge(self, target: list[int], axes: list[int], mid: ir.Value) -> list[int] | str:
        if self.outer == "Unsqueeze":
            rank = len(target) + len(axes)
            inserted = {a + rank if a < 0 else a for a in axes}
            if len(inserted) != len(axes) or not all(0 <= a < rank for a in inserted):
                return f"its axes {axes} are not valid for rank {rank}"
            rest = iter(target)
            return [1 if p in inserted else next(rest) for p in range(rank)]
        # The Reshape's output dims where shape inference knows them (a stale record of another
        # rank tells nothing).
        known = mid.shape is not None and len(mid.shape) == len(target)
        dims = list(mid.shape) if known else [None] * len(target)
        ones = [p for p, t in enumerate(target) if t == 1 or dims[p] == 1]
        dropped = {a + len(target) if a < 0 else a for a in axes} if axes else set(ones)
        if not axes and any(t <= 0 and not isinstance(dims[p], int) for p, t in enumerate(target)):
            return "it has no axes and a dim of the Reshape's output is not known statically"
        if not dropped <= set(ones):
            return f"dims {sorted(dropped - set(ones))} it drops are not known to be 1"
        return [t for p, t in enumerate(target) if p not in dropped]

    def rewrite(self, op, x, shape, mid, out):
        value = op.initializer(ir.tensor(np.array(self._target, np.int64)), name=self._name)
        if self._allowzero:
            return op.Reshape(x, value, allowzero=self._allowzero)
        return op.Reshape(x, value)


class UnitDimsThenReshape(RewriteRuleClassBase):
    """``Reshape(Squeeze|Unsqueeze(x), s)`` -> ``Reshape(x, s)``: a Reshape reads only its input's
    size, unless a 0 in s copies one of its dims."""

    def __init__(self, inner: str) -> None:
        super().__init__(name=f"{inner}Reshape", remove_nodes=False)
        self.inner = inner

    def pattern(self, op, x, shape):
        mid = getattr(op, self.inner)(x, _allow_other_inputs=True, _outputs=["mid"])
        return op.Reshape(mid, shape, _outputs=["out"])

    def check(self, context, x, shape, mid, out) -> MatchResult:
        outer = out.producer()
        target = _reshape_target(outer)
        if target is None:
            return not_applicable()
        if outer.attributes.get_int("allowzero", 0) == 0 and 0 in target:
            return _fail(f"{describe(outer)} not merged: a 0 in its target copies a dim of "
                         f"'{mid.name}', which {describe(mid.producer())} moved")
        return _sole_use(outer, mid)

    def rewrite(self, op, x, shape, mid, out):
        allowzero = out.producer().attributes.get_int("allowzero", 0)
        return op.Reshape(x, shape, allowzero=allowzero) if allowzero else op.Reshape(x, shape)


def _shape_piece(value: ir.Value, x: ir.Value, rank: int) -> list[int | tuple[str, int]] | str:
    """A 1-D (or scalar) int64 value as its entries: ints for constants, ("dim", k) for dim k of
    x. A string says why it is neither."""
    const = constant(value)
    if const is not None:
        return [int(v) for v in const.reshape(-1)]
    node = value.producer()
    if node is None:
        return f"graph input '{value.name}'"
    if node.op_type == "Shape" and node.domain == "":
        if node.inputs[0] is not x:
            return f"the shape of another tensor '{node.inputs[0].name}'"
        start = node.attributes.get_int("start", 0)
        end = node.attributes.get_int("end", rank)
        return [("dim", k) for k in range(rank)[start:end]]
    if node.op_type in ("Gather", "Slice", "Unsqueeze", "Identity") and node.domain == "":
        source = _shape_piece(node.inputs[0], x, rank)
        if isinstance(source, str):
            return source
        if node.op_type == "Identity":
            return source
        if node.op_type == "Unsqueeze":
            return source if len(source) == 1 else f"{describe(node)} of several dims"
        if node.op_type == "Gather":
            indices = constant(node.inputs[1])
            if indices is None or node.attributes.get_int("axis", 0) != 0:
                return f"{describe(node)} with indices computed at run time"
            if not all(-len(source) <= i < len(source) for i in indices.reshape(-1)):
                return f"{describe(node)} out of range"
            return [source[int(i)] for i in indices.reshape(-1)]
        params = slice_params(node)
        if params is None or len(params[0]) != 1 or params[2][0] not in (0, -1) or params[3][0] != 1:
            return f"{describe(node)} with bounds computed at run time or a step other than 1"
        return source[params[0][0] : params[1][0]]
    return f"{describe(node)}"


class ReshapeToOwnDims(RewriteRuleClassBase):
    """``Reshape(x, s)`` with s computed from x's own dims and constants -> a constant s."""

    def __init__(self) -> None:
        # Only the Reshape is matched; the shape computation it no longer uses is left to
        # dead-code elimination (it may feed other Reshapes too).
        super().__init__(remove_nodes=False)

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _outputs=["out"])

    def check(self, context, x, shape, out) -> MatchResult:
        node = out.producer()
        if constant(shape) is not None:
            return not_applicable()
        if x.shape is None:
            return _fail(f"{describe(node)} not simplified: the rank of '{x.name}' is not known")
        rank = len(x.shape)
        concat = shape.producer()
        if concat is not None and concat.op_type == "Concat" and concat.domain == "":
            pieces = list(concat.inputs)
        else:
            pieces = [shape]
        entries: list[int | tuple[str, int]] = []
        for piece in pieces:
            got = _shape_piece(piece, x, rank)
            if isinstance(got, str):
                return _fail(
                    f"{describe(node)} not simplified: its shape is computed at run time from {got}"
                )
            entries.extend(got)
        target = self._constant_target(node, x, entries)
        if isinstance(target, str):
            return _fail(f"{describe(node)} not simplified: {target}")
        self._target = target
        self._name = initializer_name(context, f"{out.name}/target")
        if self._name is None:
            return _in_function(node)
        return MatchResult()

    @staticmethod
    def _constant_target(node, x, entries) -> list[int] | str:
        copies = node.attributes.get_int("allowzero", 0) == 0
        target: list[int | None] = []
        for position, entry in enumerate(entries):
            if isinstance(entry, int):
                target.append(entry)
                continue
            k = entry[1]
            if k == position and copies:
                target.append(0)
            elif isinstance(x.shape[k], int):
                target.append(x.shape[k])
            else:
                target.append(None)
        unknown = [p for p, t in enumerate(target) if t is None]
        if not unknown:
            return target
        others_positive = all(t is not None and t > 0 for p, t in enumerate(target) if p != unknown[0])
        if len(unknown) == 1 and others_positive:
            target[unknown[0]] = -1
            return target
        p = unknown[0]
        return (
            f"dim {entries[p][1]} of '{x.name}' lands at position {p} and is not known "
            "statically"
        )

    def rewrite(self, op, x, shape, out):
        node = out.producer()
        value = op.initializer(ir.tensor(np.array(self._target, np.int64)), name=self._name)
        if "allowzero" in node.attributes:
            return op.Reshape(x, value, allowzero=node.attributes.get_int("allowzero"))
        return op.Reshape(x, value)


class FoldStaticShapeGather(RewriteRuleClassBase):
    """``Gather(Shape(x), i)`` -> the constant dims, when they are known statically."""

    def __init__(self) -> None:
        super().__init__(remove_nodes=False)

    def pattern(self, op, x, indices):
        return op.Gather(op.Shape(x), indices, _outputs=["out"])

    def check(self, context, x, indices, out) -> MatchResult:
        node = out.producer()
        picked = constant(indices)
        if picked is None or x.shape is None or node.attributes.get_int("axis", 0) != 0:
            return not_applicable()
        entries = _shape_piece(node.inputs[0], x, len(x.shape))
        if isinstance(entries, str) or not all(-len(entries) <= i < len(entries) for i in picked.flat):
            return not_applicable()
        dims = [x.shape[entries[int(i)][1]] for i in picked.reshape(-1)]
        if not all(isinstance(d, int) for d in dims):
            return not_applicable()
        if out.is_graph_output():
            return _fail(f"{describe(node)} not folded: its output is a graph output, not a constant")
        self._value = np.array(dims, np.int64).reshape(picked.shape)
        self._name = initializer_name(context, f"{out.name}/value")
        if self._name is None:
            return _in_function(node)
        return MatchResult()

    def rewrite(self, op, x, indices, out):
        # The Identity goes when the pass rewires consumers to the initializer.
        return op.Identity(op.initializer(ir.tensor(self._value), name=self._name))


def _producer(value: ir.Value | None, op_types: tuple[str, ...]) -> ir.Node | None:
    """The default-domain node of one of ``op_types`` that computes ``value``, if one does."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type not in op_types or node.domain != "":
        return None
    return node


def _is_own_shape(shape: ir.Value, x: ir.Value) -> bool:
    """Whether ``shape`` is x's whole shape: ``Shape(x)``, or a constant equal to x's dims when
    they are all known statically."""
    shape_node = _producer(shape, ("Shape",))
    if shape_node is not None:
        if shape_node.inputs[0] is not x:
            return False
        if x.shape is None:  # the rank check that follows says why it cannot go further
            return "start" not in shape_node.attributes and "end" not in shape_node.attributes
        rank = len(x.shape)
        start = shape_node.attributes.get_int("start", 0)
        end = shape_node.attributes.get_int("end", rank)
        return range(rank)[start:end] == range(rank)
    value = constant(shape)
    if value is None or x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return False
    return [int(v) for v in value.reshape(-1)] == list(x.shape)


class UnwrapCoercedSoftmax(RewriteRuleClassBase):
    """``Reshape(Softmax(Flatten(x, axis=k)), Shape(x))`` -> ``Softmax(x, axis=-1)`` when k is the
    last axis, or ``Softmax(x, axis=j)`` when every dim from k on but j is statically 1; the
    same for LogSoftmax. A constant target equal to x's static shape stands for ``Shape(x)``.

    The pattern is the Reshape alone and check follows its inputs: a pattern of the whole chain
    would report every Reshape of a Softmax of something else as a near miss.
    """

    def __init__(self) -> None:
        # The Shape node may feed other nodes; what is left is dead-code elimination's.
        super().__init__(name="UnwrapCoercedSoftmax", remove_nodes=False)

    def pattern(self, op, rows, shape):
        return op.Reshape(rows, shape, _outputs=["out"])

    def check(self, context, rows, shape, out) -> MatchResult:
        node = out.producer()
        softmax = _producer(rows, ("Softmax", "LogSoftmax"))
        flatten = _producer(softmax.inputs[0], ("Flatten",)) if softmax else None
        if flatten is None or not _is_own_shape(shape, flatten.inputs[0]):
            return not_applicable()
        # On the 2-D Flatten output, axis 1 (or -1, the default from opset 13) is the last one.
        if softmax.attributes.get_int("axis", 1) not in (1, -1):
            return not_applicable()
        x = flatten.inputs[0]
        if x.shape is None:
            return _fail(
                f"{describe(node)} not unwrapped: the rank of '{x.name}' is not known, so whether "
                f"{describe(flatten)} keeps the {softmax.op_type} to the last axis is not either"
            )
        rank = len(x.shape)
        axis = flatten.attributes.get_int("axis", 1)
        axis = axis + rank if axis < 0 else axis
        # The softmax runs over dims axis..rank-1 together: over one of them alone when every
        # other one is known to be 1 (a [N, C, 1, 1] classifier head flattened at 1).
        wide = [d for d in range(axis, rank) if x.shape[d] != 1]
        if len(wide) > 1:
            return _fail(
                f"{describe(node)} not unwrapped: {describe(flatten)} folds dims {axis} to "
                f"{rank - 1} of '{x.name}' (rank {rank}) into one row, and the {softmax.op_type} "
                "runs over all of them: that needs the wrapper"
            )
        for inner_out in (flatten.outputs[0], rows):
            result = _sole_use(node, inner_out)
            if not result:
                return result
        self._op_type, self._x = softmax.op_type, x
        self._axis = wide[0] if wide and wide[0] != rank - 1 else -1
        return MatchResult()

    def rewrite(self, op, rows, shape, out):
        return getattr(op, self._op_type)(self._x, axis=self._axis)


class DropInt32ShapeCasts(RewriteRuleClassBase):
    """``Cast<to=INT64>(op(Cast<to=INT32>(Shape(x)), ...))`` -> ``op(Shape(x), ...)`` for op in
    {Slice, Gather}. The pattern is the outer Cast alone, for the reason UnwrapCoercedSoftmax's
    is the Reshape alone."""

    def __init__(self) -> None:
        # The int32 chain goes with its last consumer, by dead-code elimination.
        super().__init__(name="DropInt32ShapeCasts", remove_nodes=False)

    def pattern(self, op, picked):
        return op.Cast(picked, _outputs=["out"])

    def check(self, context, picked, out) -> MatchResult:
        node = out.producer()
        if node.attributes.get_int("to", 0) != ir.DataType.INT64:
            return not_applicable()
        pick = _producer(picked, ("Slice", "Gather"))
        narrow = _producer(pick.inputs[0], ("Cast",)) if pick else None
        if narrow is None or narrow.attributes.get_int("to", 0) != ir.DataType.INT32:
            return not_applicable()
        values = narrow.inputs[0]
        if _producer(values, ("Shape",)) is None:
            producer = values.producer()
            origin = describe(producer) if producer else f"'{values.name}'"
            return _fail(
                f"{describe(node)} not removed: the values {describe(narrow)} casts to int32 come "
                f"from {origin}, not from a Shape, so they may not survive the round trip"
            )
        if picked.is_graph_output():
            return _fail(
                f"{describe(node)} not removed: the int32 value '{picked.name}' is a graph output"
            )
        for consumer, _ in picked.uses():
            to = consumer.attributes.get_int("to", 0) if consumer.op_type == "Cast" else None
            if to != ir.DataType.INT64:
                # Rewriting this Cast would leave the int32 chain in place and add a node.
                return _fail(
                    f"{describe(node)} not removed: {describe(consumer)} also reads the int32 "
                    f"value '{picked.name}', so the int32 chain would stay"
                )
        self._pick, self._values = pick, values
        return MatchResult()

    def rewrite(self, op, picked, out):
        pick = self._pick
        attributes = dict(pick.attributes.items())
        return getattr(op, pick.op_type)(self._values, *pick.inputs[1:], **attributes)


@register
class SimplifyShapeOps(RewriteRulePass):
    # The rules read ranks and static dims of intermediate values.
    needs_shapes = True
    name = "simplify_shape_ops"
    description = (
        "collapse Transpose/Reshape/Squeeze/Unsqueeze chains; constant Reshape targets from own "
        "dims; unwrap last-axis Softmax from opset-12 coercion; drop int32 round trips of shapes"
    )

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        opset = default_opset(model.opset_imports)
        return [
            # First: the Reshape targets it exposes are what ReshapeToOwnDims reads.
            DropInt32ShapeCasts().rule(),
            UnwrapCoercedSoftmax().rule(),
            ReshapeToOwnDims().rule(),
            FoldStaticShapeGather().rule(),
            CollapseTransposes().rule(),
            CollapseReshapes().rule(),
            CollapseFlattenReshape().rule(),
            *(
                ComposeUnitDims.rule(inner, outer, opset)
                for inner in ("Squeeze", "Unsqueeze")
                for outer in ("Squeeze", "Unsqueeze")
            ),
            *(ReshapeThenUnitDims.rule(op) for op in ("Squeeze", "Unsqueeze")),
            *(UnitDimsThenReshape.rule(op) for op in ("Squeeze", "Unsqueeze")),
        ]

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        # The rewriter removes dead nodes after rules that leave the old chain behind; dead
        # nodes that were already there go first, so that they can be counted apart.
        unused = remove_unused_nodes(model)
        present = set(identity_nodes(model))
        result = super().run(model, ctx)
        # Chains that cancel were replaced by an Identity; rewire their consumers. The model's
        # own Identity nodes are remove_noops' business.
        eliminate_identities(model, spare=present)
        if unused and result.changed:
            result.rewrites["RemoveUnusedNodes"] += unused
        return result
