"""Remove nodes that compute nothing: nodes whose output equals one of their inputs.

Each rule turns such a node into ``Identity(x)``; :func:`eliminate_identities` then rewires the
Identity's consumers to ``x``. Every rewrite is exact (bit for bit, except where noted):

* ``Identity(x)`` is ``x``.
* ``Dropout(x)`` is ``x`` at inference. Opset 7-11 Dropout has no training mode (its ``ratio``
  attribute only applies in training); from opset 12 the ``training_mode`` input must be absent
  or a constant false. The mask output must be unused: a removed node cannot produce it.
* ``Cast(x, to=T)`` is ``x`` when x already has type T (onnxscript's rule), and
  ``CastLike(x, like)`` when ``like`` has x's type.
* ``Reshape(x, s)`` is ``x`` when s has x's rank and each entry is x's static dim at that
  position, a 0 (copy the input dim; only when allowzero is 0 or absent), or the only -1: the
  -1 then stands for the one dim left, which is x's own whenever the Reshape succeeds.
* ``Expand(x, s)`` is ``x`` when broadcasting x against s gives x's shape: s has no more dims
  than x, and each of its dims is 1 or x's static dim there.
* ``Slice`` is ``x`` when every sliced axis has step 1, starts at 0 (or at -dim or below) and
  ends at or past its dim (at INT64_MAX when the dim is not known statically). Opset 1-9 takes
  starts/ends/axes as attributes, opset 10+ as inputs.
* ``Transpose(x, perm)`` is ``x`` when perm is the identity (onnxscript's rule).
* ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x`` and ``x / 1`` are ``x`` when the
  constant is exactly 0 (1) everywhere and broadcasting it against x gives x's shape; the two
  operands already share a type. ``-0.0 + 0.0`` is ``+0.0``: equal in value, not in bits.
* ``Pad`` is ``x`` when every pad is 0, in any mode (pads are an attribute before opset 11).
* ``Concat``, ``Sum``, ``Max``, ``Min`` and ``Mean`` of a single input are that input, ``Split``
  into a single output is its input, and ``Tile(x, repeats)`` with all repeats 1 is ``x``.

Nodes whose outputs nothing uses go first (onnx_ir's ``RemoveUnusedNodesPass``): exporters and
onnxsim leave dead shape computations behind.

A graph output keeps its name: the value that replaces it is renamed. That is impossible when
the no-op connects a graph input, an initializer, a value from an outer graph or another graph
output straight to a graph output; such a node stays, and the reason is reported.

onnxscript's ``add_0``/``mul_by_1``/``sub_0``/``div_by_1`` rules are not used: their constant
patterns match within a tolerance (``x * 1.000001`` matches ``x * 1``) and only scalars. Its
``dropout_inference`` rule expects ``training_mode`` as an attribute and never matches opset 12+
models; ``dropout_zero``, ``no_op_expand`` and the ``collapse_slice`` rules are correct but
narrower than the rules here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from hwopt import upstream
from hwopt.passes.base import PassContext, PassResult
from hwopt.passes.registry import register
from hwopt.passes.rewiring import eliminate_identities, remove_unused_nodes, rename_blocker
from hwopt.passes.rewrite import RewriteRulePass, not_applicable
from hwopt.passes.values import constant, describe, static_dims

INT64_MAX = np.iinfo(np.int64).max
# Exporters also write INT32_MAX for "to the end"; that is only the end when the dim is smaller.
INT32_MAX = np.iinfo(np.int32).max


def _fail(reason: str) -> MatchResult:
    return MatchResult().fail(reason)


def _keep_name(node: ir.Node, x: ir.Value, out: ir.Value) -> MatchResult:
    reason = rename_blocker(x, out)
    if reason is not None:
        return _fail(f"{describe(node)} kept: {reason}")
    return MatchResult()


class NoOpRule(RewriteRuleClassBase):
    """A single node ``out = Op(x, ...)`` that is rewritten to ``Identity(x)``.

    Subclasses give the ``pattern`` (naming its output ``out``) and ``is_no_op``, which returns
    NOT_APPLICABLE for a node that computes something, or a reason for a near miss.
    """

    def check(self, context, x, out, **bindings) -> MatchResult:
        node = out.producer()
        result = self.is_no_op(node, x, out, **bindings)
        if not result:
            return result
        return _keep_name(node, x, out)

    def is_no_op(self, node: ir.Node, x: ir.Value, out: ir.Value, **bindings) -> MatchResult:
        raise NotImplementedError

    def rewrite(self, op, x, out, **_):
        return op.Identity(x)


class _OnnxscriptNoOp:
    """Mixin for onnxscript's no-op rules (whose output is unnamed): their own failures mean
    "not a no-op", and a no-op whose graph output name cannot be kept is declined."""

    def check(self, context, x, **bindings) -> MatchResult:
        if not super().check(context, x, **bindings):
            return not_applicable()
        return _keep_name(context.root, x, context.output_values[0])


class RemoveIdentityCast(_OnnxscriptNoOp, upstream.CastIdentity):
    pass


class RemoveIdentityTranspose(_OnnxscriptNoOp, upstream.TransposeIdentity):
    pass


class RemoveInferenceDropout(NoOpRule):
    """``Dropout(x)`` at inference, in the opset 7-11 and the opset 12+ form."""

    def __init__(self) -> None:
        # Matched nodes are not removed by the rewriter itself, so that a Dropout whose mask is
        # used reaches is_no_op (and is reported) instead of failing the match; the unused
        # Dropout is dropped by the rewriter's dead-code elimination.
        super().__init__(remove_nodes=False)

    def pattern(self, op, x):
        return op.Dropout(x, _allow_other_inputs=True, _outputs=["out"])

    def is_no_op(self, node, x, out, **_) -> MatchResult:
        mask = node.outputs[1] if len(node.outputs) > 1 else None
        if mask is not None and (mask.uses() or mask.is_graph_output()):
            return _fail(f"{describe(node)} kept: its mask output '{mask.name}' is used")
        training = node.inputs[2] if len(node.inputs) > 2 else None
        if training is None:
            return MatchResult()
        value = constant(training)
        if value is None:
            return _fail(f"{describe(node)} kept: training_mode '{training.name}' is computed at run time")
        if bool(value):
            return _fail(f"{describe(node)} kept: it runs in training mode")
        return MatchResult()


class RemoveIdentityCastLike(NoOpRule):
    def pattern(self, op, x, like):
        return op.CastLike(x, like, _outputs=["out"])

    def is_no_op(self, node, x, out, like, **_) -> MatchResult:
        if x.dtype is None or x.dtype != like.dtype:
            return not_applicable()
        return MatchResult()


class RemoveIdentityReshape(NoOpRule):
    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _outputs=["out"])

    def is_no_op(self, node, x, out, shape, **_) -> MatchResult:
        target, dims = constant(shape), static_dims(x)
        if target is None or dims is None or target.ndim != 1 or len(target) != len(dims):
            return not_applicable()
        copies = node.attributes.get_int("allowzero", 0) == 0
        entries = target.tolist()
        if entries.count(-1) > 1:
            return not_applicable()
        for entry, dim in zip(entries, dims):
            if entry == -1 or (entry == 0 and copies) or (dim is not None and entry == dim):
                continue
            return not_applicable()
        return MatchResult()


class RemoveIdentityExpand(NoOpRule):
    def pattern(self, op, x, shape):
        return op.Expand(x, shape, _outputs=["out"])

    def is_no_op(self, node, x, out, shape, **_) -> MatchResult:
        target, dims = constant(shape), static_dims(x)
        if target is None or dims is None or target.ndim != 1:
            return not_applicable()
        if not _broadcasts_into(target.tolist(), dims):
            return not_applicable()
        return MatchResult()


def _broadcasts_into(shape: Sequence[int], dims: Sequence[int | None]) -> bool:
    """Whether broadcasting a tensor of ``shape`` against one of ``dims`` gives ``dims``."""
    if len(shape) > len(dims):
        return False
    aligned = dims[len(dims) - len(shape) :]
    return all(s == 1 or (d is not None and s == d) for s, d in zip(shape, aligned))


class RemoveWholeSlice(NoOpRule):
    def pattern(self, op, x):
        return op.Slice(x, _allow_other_inputs=True, _outputs=["out"])

    def is_no_op(self, node, x, out, **_) -> MatchResult:
        params = slice_params(node)
        dims = static_dims(x)
        if params is None or dims is None:
            return not_applicable()
        for start, end, axis, step in zip(*params):
            if step != 1 or not -len(dims) <= axis < len(dims):
                return not_applicable()
            dim = dims[axis]
            starts_at_zero = start == 0 or (dim is not None and start <= -dim)
            if not starts_at_zero:
                return not_applicable()
            if end >= INT64_MAX or (dim is not None and end >= dim):
                continue
            if dim is None and end >= INT32_MAX:
                return _fail(
                    f"{describe(node)} kept: it ends at {end} on axis {axis}, whose size is not "
                    "known statically"
                )
            return not_applicable()
        return MatchResult()


def slice_params(node: ir.Node) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(starts, ends, axes, steps) of a Slice, from attributes (opset 1-9) or constant inputs."""
    if "starts" in node.attributes:
        starts = list(node.attributes.get_ints("starts"))
        ends = list(node.attributes.get_ints("ends"))
        axes = list(node.attributes.get_ints("axes", range(len(starts))))
        return starts, ends, axes, [1] * len(starts)
    inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
    starts, ends = constant(inputs[1]), constant(inputs[2])
    if starts is None or ends is None:
        return None
    axes = constant(inputs[3]) if inputs[3] is not None else np.arange(len(starts))
    steps = constant(inputs[4]) if inputs[4] is not None else np.ones(len(starts), np.int64)
    if axes is None or steps is None:
        return None
    return starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()


class RemoveNeutralOperand(RewriteRuleClassBase):
    """``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1``.

    One rule per op tries both operand orders, so that each node gets one verdict.
    """

    def __init__(self, op_type: str, neutral: int, commutes: bool) -> None:
        super().__init__(name=f"Remove{op_type}{ {0: 'Zero', 1: 'One'}[neutral]}")
        self.op_type, self.neutral, self.commutes = op_type, neutral, commutes

    def pattern(self, op, a, b):
        return getattr(op, self.op_type)(a, b, _outputs=["out"])

    def check(self, context, a, b, out) -> MatchResult:
        node = out.producer()
        orders = [(a, b), (b, a)] if self.commutes else [(a, b)]
        for x, c in orders:  # noqa: B007 - x is the kept operand, read after the break
            value = constant(c)
            if value is not None and value.size > 0 and np.all(value == self.neutral):
                break
        else:
            return not_applicable()
        dims = static_dims(x)
        if dims is None and value.ndim > 0:
            return _fail(
                f"{describe(node)} kept: the rank of '{x.name}' is not known, so the constant of "
                f"shape {list(value.shape)} may broadcast it to a bigger shape"
            )
        if dims is not None and not _broadcasts_into(value.shape, dims):
            return _fail(
                f"{describe(node)} kept: its constant of shape {list(value.shape)} broadcasts "
                f"'{x.name}' of shape {_shape_text(x)} to a bigger shape"
            )
        self._x = x
        return _keep_name(node, x, out)

    def rewrite(self, op, a, b, out):
        return op.Identity(self._x)


def _shape_text(value: ir.Value) -> str:
    return "[" + ", ".join(str(d) for d in value.shape) + "]" if value.shape is not None else "?"


class RemoveZeroPad(NoOpRule):
    def pattern(self, op, x):
        return op.Pad(x, _allow_other_inputs=True, _outputs=["out"])

    def is_no_op(self, node, x, out, **_) -> MatchResult:
        if "pads" in node.attributes:
            pads = np.array(node.attributes.get_ints("pads"))
        else:
            pads = constant(node.inputs[1]) if len(node.inputs) > 1 else None
        if pads is None or np.any(pads != 0):
            return not_applicable()
        return MatchResult()


class RemoveSingleInput(NoOpRule):
    """``Concat``, ``Sum``, ``Max``, ``Min`` or ``Mean`` of one input."""

    def __init__(self, op_type: str) -> None:
        super().__init__(name=f"RemoveSingleInput{op_type}")
        self.op_type = op_type

    def pattern(self, op, x):
        return getattr(op, self.op_type)(x, _outputs=["out"])

    def is_no_op(self, node, x, out, **_) -> MatchResult:
        return MatchResult()


class RemoveSingleSplit(NoOpRule):
    def pattern(self, op, x):
        return op.Split(x, _allow_other_inputs=True, _outputs=["out"])

    def is_no_op(self, node, x, out, **_) -> MatchResult:
        # The pattern binds only the first output; a Split with more is not a no-op.
        if len(node.outputs) != 1:
            return not_applicable()
        return MatchResult()


class RemoveUnitTile(NoOpRule):
    def pattern(self, op, x, repeats):
        return op.Tile(x, repeats, _outputs=["out"])

    def is_no_op(self, node, x, out, repeats, **_) -> MatchResult:
        value = constant(repeats)
        if value is None or np.any(value != 1):
            return not_applicable()
        return MatchResult()


@register
class RemoveNoOps(RewriteRulePass):
    # The rules compare shapes of intermediate values.
    needs_shapes = True
    name = "remove_noops"
    description = (
        "remove nodes that compute nothing: Identity, inference Dropout, no-op Cast/Reshape/Slice/"
        "Pad, x+0, x*1"
    )

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        return [
            RemoveInferenceDropout().rule(),
            RemoveIdentityCast().rule(),
            RemoveIdentityCastLike().rule(),
            RemoveIdentityReshape().rule(),
            RemoveIdentityExpand().rule(),
            RemoveWholeSlice().rule(),
            RemoveIdentityTranspose().rule(),
            RemoveNeutralOperand.rule("Add", 0, commutes=True),
            RemoveNeutralOperand.rule("Sub", 0, commutes=False),
            RemoveNeutralOperand.rule("Mul", 1, commutes=True),
            RemoveNeutralOperand.rule("Div", 1, commutes=False),
            RemoveZeroPad().rule(),
            *(RemoveSingleInput.rule(op) for op in ("Concat", "Sum", "Max", "Min", "Mean")),
            RemoveSingleSplit().rule(),
            RemoveUnitTile().rule(),
        ]

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        unused = remove_unused_nodes(model)
        removed, _ = eliminate_identities(model)
        result = super().run(model, ctx)
        # The rules left an Identity in place of each no-op; they go now. The original ones that
        # had to stay are tried (and reported) again.
        _, kept = eliminate_identities(model)
        if unused:
            result.rewrites["RemoveUnusedNodes"] += unused
        if removed:
            result.rewrites["RemoveIdentity"] += removed
        result.declined += kept
        return result
