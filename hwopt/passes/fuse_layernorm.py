"""Fuse layer normalization written out in elementary ops into one LayerNormalization (opset 17).

Exporters without a LayerNorm op (PaddlePaddle's paddle2onnx, TorchScript before opset 17)
write ``LayerNorm(x)`` over the last k axes as::

    mean = ReduceMean(x, axes, keepdims=1)
    d    = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2) | Mul(d, d), axes, keepdims=1)
    std  = Sqrt(Add(var, eps))
    y    = Div(d, std) | Mul(d, Reciprocal(std))
    y    = Mul(y, scale)        (optional)
    y    = Add(y, bias)         (optional)

ONNX defines ``LayerNormalization(x, scale, bias, axis, epsilon, stash_type)`` by these same
steps: ``D = X - ReduceMean(X)``, ``Var = ReduceMean(D * D)``, ``D * Reciprocal(Sqrt(Var +
epsilon)) * Scale + B`` over the axes from ``axis`` to the last, computed in ``stash_type``.
For a float32 input with ``stash_type=1`` (float) nothing is cast, so the rewrite is equal in
real arithmetic and apart only by float rounding (``d / std`` against ``d * (1 / std)``).
Every shape in the chain derives from x's, so this holds for every input shape.

Three rules, applied in this order:

* ``FuseLayerNorm``: the chain up to the division -> ``LayerNormalization(x, ones, axis=-k,
  epsilon=eps, stash_type=1)``. The axes (an attribute before opset 18, an input from 18) must
  be the trailing ones (``[-1]``, ``[rank - 1]``, or ``[-2, -1]`` for k = 2 and so on), the
  same for both ReduceMeans; the normalized dims of x must be known statically (the ones
  scale has their shape); eps and the exponent 2 must be single-element constants of rank no
  higher than x's (a higher rank would broadcast x to a larger shape).
* ``FoldScaleIntoLayerNorm``: ``Mul(LayerNormalization(x, s), k)`` -> ``LayerNormalization(x,
  s * k)``: ``(n * s) * k = n * (s * k)``, and exactly so when s is the ones the first rule
  wrote. k must be a constant that broadcasts to the normalized shape without changing x's:
  ``[D]``, ``[1, D]``, ... ``[1, ..., 1, D]`` of rank at most x's, or a single element.
* ``FoldBiasIntoLayerNorm``: ``Add(LayerNormalization(x, s), b)`` -> ``LayerNormalization(x, s,
  b)``, by the definition above; b as k.

A scale or bias of another shape (a per-position ``[T, D]``, a ``[D, 1]``) is not folded: the
normalization is still fused, the Mul or Add stays after it, and the decline says why. ONNX
does let Scale and B broadcast to X (and onnxruntime 1.32 computes a ``[T, D]`` scale right),
but the normalized shape is the form exporters write and the one every runtime's kernel is
built for, so the pass keeps to it. A Mul or Add by a tensor computed at run time (a gate, a
residual) is no scale or bias at all.

Declined, with the reason: below opset 17 (LayerNormalization does not exist there; upgrade_opset
raises the opset), a non-float32 input (LayerNormalization would compute a float16 input in
float32: more precise than the written form, so not the same numbers), ReduceMean over axes
that are not the trailing ones (LayerNormalization normalizes trailing axes only), keepdims=0,
axes or eps computed at run time, normalized dims not known statically, and an intermediate
(the mean, d, the variance) that other nodes also read.

onnxscript's ``LayerNormFusion`` (``rewriter/rules/fusion/_layer_norm.py``) matches only the
opset-18 form with axes as an input, only ``axes=[-1]``, and only with a scale, takes the
scale's shape on trust, writes ``stash_type`` as the input's type (11 for double, outside
the float/bfloat16 that opset 17 allows for it), does not look at the model's opset, and
matches the exponent 2 within a relative 1e-5; its ideas are reused here, not its rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase
from onnxscript.rewriter.pattern import OrValue

from hwopt.passes.base import PassContext, default_opset
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass, not_applicable
from hwopt.passes.values import constant, describe, initializer_name, rank, static_dims

LAYER_NORMALIZATION_OPSET = 17
# stash_type=1: LayerNormalization computes in float, which for a float input is no cast.
STASH_FLOAT = 1


def _fail(reason: str) -> MatchResult:
    return MatchResult().fail(reason)




def _reduced_axes(node: ir.Node, x_rank: int) -> list[int] | str:
    """The sorted, non-negative axes a ReduceMean averages over, or why they cannot be known."""
    if node.attributes.get_int("keepdims", 1) != 1:
        return (
            f"{describe(node)} has keepdims=0: the Sub after it then broadcasts the mean "
            "against other axes than LayerNorm does"
        )
    if "axes" in node.attributes:
        axes = list(node.attributes.get_ints("axes"))
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        value = constant(node.inputs[1])
        if value is None:
            return f"{describe(node)} takes its axes from a value computed at run time"
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = []
    if not axes:
        if node.attributes.get_int("noop_with_empty_axes", 0):
            return f"{describe(node)} has no axes and noop_with_empty_axes=1: it averages nothing"
        axes = list(range(x_rank))
    normalized = sorted({a + x_rank if a < 0 else a for a in axes})
    if len(normalized) != len(axes) or not all(0 <= a < x_rank for a in normalized):
        return f"{describe(node)} has axes {axes}, which are not valid for rank {x_rank}"
    return normalized


def _single_element(value: ir.Value, role: str, x: ir.Value, x_rank: int) -> np.ndarray | str:
    """The constant behind ``value`` when it has one element and cannot broadcast x to a
    higher rank; otherwise why not."""
    array = constant(value)
    if array is None:
        source = "a graph input" if value.is_graph_input() else "computed at run time"
        return f"{role} '{value.name}' is {source}, not a constant"
    if array.size != 1:
        return f"{role} '{value.name}' has shape {list(array.shape)}, not a single element"
    if array.ndim > x_rank:
        return (
            f"{role} '{value.name}' has rank {array.ndim}, which broadcasts '{x.name}' "
            f"(rank {x_rank}) to a larger shape"
        )
    return array


class FuseLayerNorm(RewriteRuleClassBase):
    """The written-out normalization -> ``LayerNormalization(x, ones, axis=-k, epsilon)``.

    Variants (``normalize``): ``div`` (``Div(d, std)``), ``reciprocal`` (``Mul(d,
    Reciprocal(std))``) and ``reciprocal_first`` (``Mul(Reciprocal(std), d)``).
    """

    def __init__(self, opset: int, normalize: str) -> None:
        super().__init__(name="FuseLayerNorm")
        self.opset, self.normalize = opset, normalize

    def pattern(self, op, x, eps, exponent):
        mean = op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"])
        deviation = op.Sub(x, mean, _outputs=["deviation"])
        squared = OrValue(
            [op.Pow(deviation, exponent), op.Mul(deviation, deviation)], tag_var="square"
        )
        variance = op.ReduceMean(squared, _allow_other_inputs=True, _outputs=["variance"])
        std = op.Sqrt(OrValue([op.Add(variance, eps), op.Add(eps, variance)]))
        if self.normalize == "div":
            return op.Div(deviation, std, _outputs=["normalized"])
        inverse = op.Reciprocal(std)
        if self.normalize == "reciprocal":
            return op.Mul(deviation, inverse, _outputs=["normalized"])
        return op.Mul(inverse, deviation, _outputs=["normalized"])

    def check(self, context, x, eps, mean, variance, normalized, square, exponent=None, **_):
        mean_node, variance_node = mean.producer(), variance.producer()
        x_rank = rank(x)
        if x_rank is None:
            return _fail(f"the rank of '{x.name}' is not known, so neither are the normalized axes")
        axes = _reduced_axes(mean_node, x_rank)
        if isinstance(axes, str):
            return _fail(axes)
        variance_axes = _reduced_axes(variance_node, x_rank)
        if isinstance(variance_axes, str):
            return _fail(variance_axes)
        if variance_axes != axes:
            return _fail(
                f"{describe(variance_node)} averages over axes {variance_axes}, the mean "
                f"{describe(mean_node)} over {axes}: that is no LayerNorm"
            )
        first = x_rank - len(axes)
        if axes != list(range(first, x_rank)):
            return _fail(
                f"{describe(mean_node)} averages over axes {axes} of '{x.name}' (rank {x_rank}), "
                "not its last axes: LayerNormalization normalizes the trailing axes only"
            )
        if square == 0:  # Pow(d, exponent)
            got = _single_element(exponent, "the exponent", x, x_rank)
            if isinstance(got, str):
                return _fail(got)
            if float(got.reshape(())) != 2.0:
                return _fail(f"the exponent '{exponent.name}' is {got.reshape(()):g}, not 2")
        got = _single_element(eps, "epsilon", x, x_rank)
        if isinstance(got, str):
            return _fail(got)
        self._epsilon = float(got.reshape(()))
        if x.dtype != ir.DataType.FLOAT:
            dtype = x.dtype.name if x.dtype is not None else "not recorded"
            return _fail(
                f"'{x.name}' is of type {dtype}, not float: LayerNormalization computes in "
                "float (stash_type=1), which for another type is not the written arithmetic"
            )
        dims = static_dims(x)[first:]
        if not all(isinstance(d, int) for d in dims):
            return _fail(
                f"the normalized dims {dims} of '{x.name}' are not all known statically: "
                "LayerNormalization needs a scale of that shape (simplify_shape_ops or static "
                "input shapes may make them known)"
            )
        if self.opset < LAYER_NORMALIZATION_OPSET:
            return _fail(
                f"LayerNormalization needs opset {LAYER_NORMALIZATION_OPSET}; the model imports "
                f"opset {self.opset} (upgrade_opset with target_opset={LAYER_NORMALIZATION_OPSET} "
                "raises it)"
            )
        self._axis = first - x_rank
        self._scale = np.ones(dims, np.float32)
        self._scale_name = initializer_name(context, f"{normalized.name}/layernorm_scale")
        if self._scale_name is None:
            return _fail(
                f"{describe(normalized.producer())} not fused: it is inside a function, which "
                "cannot hold the new scale"
            )
        return MatchResult()

    def rewrite(self, op, x, normalized, **_):
        scale = op.initializer(ir.tensor(self._scale), name=self._scale_name)
        return op.LayerNormalization(
            x, scale, axis=self._axis, epsilon=self._epsilon, stash_type=STASH_FLOAT
        )


class _FoldIntoLayerNorm(RewriteRuleClassBase):
    """``op(LayerNormalization(x, s), c)`` or ``op(c, LayerNormalization(x, s))`` for a constant
    c that is the scale (Mul) or bias (Add) of the normalized axes.

    Variant ``swapped``: the constant is the first operand.
    """

    op_type: str
    role: str

    def __init__(self, swapped: bool) -> None:
        super().__init__(name=type(self).__name__)
        self.swapped = swapped

    def pattern(self, op, x, scale, operand):
        normalized = op.LayerNormalization(x, scale, _outputs=["normalized"])
        apply = getattr(op, self.op_type)
        if self.swapped:
            return apply(operand, normalized, _outputs=["out"])
        return apply(normalized, operand, _outputs=["out"])

    def new_inputs(self, scale, scale_value, operand, value):
        """The new LayerNormalization's inputs after x: (name for a new initializer, its
        value, the model's value it may equal and then is used instead)."""
        raise NotImplementedError

    def check(self, context, x, scale, operand, normalized, out) -> MatchResult:
        node, layernorm = out.producer(), normalized.producer()
        value = constant(operand)
        if value is None:
            # A residual Add or a gate: no parameter of the normalization.
            return not_applicable()
        scale_value = constant(scale)
        if scale_value is None:
            return _fail(f"the scale '{scale.name}' of {describe(layernorm)} is not a constant")
        x_rank = rank(x)
        if x_rank is None:
            return _fail(f"the rank of '{x.name}' is not known")
        axis = layernorm.attributes.get_int("axis", -1)
        normalized_rank = x_rank - (axis + x_rank if axis < 0 else axis)
        if scale_value.ndim != normalized_rank:
            return _fail(
                f"the scale '{scale.name}' of {describe(layernorm)} has rank {scale_value.ndim}, "
                f"not the {normalized_rank} normalized axes"
            )
        if value.dtype != scale_value.dtype:
            return _fail(
                f"{self.role} '{operand.name}' is {value.dtype}, the scale of "
                f"{describe(layernorm)} {scale_value.dtype}"
            )
        # Broadcasting c against x must leave x's shape: c's dims before the normalized ones are
        # 1, and each normalized one is 1 or the normalized dim (the scale's, at run time x's).
        shape = list(scale_value.shape)
        leading = value.shape[: max(0, value.ndim - normalized_rank)]
        tail_shape = value.shape[len(leading) :]
        fits = value.ndim <= x_rank and all(d == 1 for d in leading)
        fits = fits and all(t in (1, s) for t, s in zip(reversed(tail_shape), reversed(shape)))
        if not fits:
            return _fail(
                f"{describe(node)} not folded into the LayerNormalization of '{x.name}': "
                f"{self.role} '{operand.name}' has shape {list(value.shape)}, which does not "
                f"broadcast to the normalized shape {shape} of '{x.name}' (rank {x_rank}) alone; "
                f"LayerNormalization takes a {self.role} of shape {shape}"
            )
        self._inputs: list[ir.Value | tuple[str, np.ndarray]] = []
        for name, array, original in self.new_inputs(
            scale, scale_value, operand, np.broadcast_to(value.reshape(tail_shape), shape)
        ):
            known = constant(original)
            if known.shape == array.shape and np.array_equal(known, array):
                self._inputs.append(original)  # the model's weight, under its own name
                continue
            new_name = initializer_name(context, name)
            if new_name is None:
                return _fail(
                    f"{describe(node)} not folded: it is inside a function, which cannot hold "
                    f"the new {self.role}"
                )
            self._inputs.append((new_name, np.ascontiguousarray(array)))
        return MatchResult()

    def rewrite(self, op, x, scale, operand, normalized, out):
        inputs = [
            item if isinstance(item, ir.Value) else op.initializer(ir.tensor(item[1]), name=item[0])
            for item in self._inputs
        ]
        attributes = dict(normalized.producer().attributes.items())
        return op.LayerNormalization(x, *inputs, **attributes)


class FoldScaleIntoLayerNorm(_FoldIntoLayerNorm):
    op_type = "Mul"
    role = "scale"

    def new_inputs(self, scale, scale_value, operand, value):
        product = (scale_value * value).astype(scale_value.dtype)
        return [(f"{operand.name}/layernorm_scale", product, operand)]


class FoldBiasIntoLayerNorm(_FoldIntoLayerNorm):
    op_type = "Add"
    role = "bias"

    def new_inputs(self, scale, scale_value, operand, value):
        return [
            (scale.name, scale_value, scale),  # always the model's own: reused
            (f"{operand.name}/layernorm_bias", value, operand),
        ]


@register
class FuseLayerNormPass(RewriteRulePass):
    # The rules read the rank and the static dims of the normalized tensor.
    needs_shapes = True
    name = "fuse_layernorm"
    description = (
        "fuse LayerNorm written as ReduceMean/Sub/Pow/Sqrt/Div (+ scale, bias) into "
        "LayerNormalization (opset 17)"
    )

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        opset = default_opset(model.opset_imports)
        rules = [FuseLayerNorm.rule(opset, n) for n in ("div", "reciprocal", "reciprocal_first")]
        if opset < LAYER_NORMALIZATION_OPSET:
            # Kept only to decline with the reason: no LayerNormalization to fold into yet.
            return rules
        return [
            *rules,
            *(FoldScaleIntoLayerNorm.rule(swapped) for swapped in (False, True)),
            *(FoldBiasIntoLayerNorm.rule(swapped) for swapped in (False, True)),
        ]
