"""Fold a constant per-channel scale (Mul) or shift (Add) into the Conv, ConvTranspose or Gemm
next to it.

Conv, ConvTranspose and Gemm are linear in their weights and add their bias once per output
channel, so a per-output-channel affine map after them is absorbed exactly by the weights and
bias (``o`` is an output channel, ``a[o]`` the scale, ``d[o]`` the shift)::

    Conv(X; W, b) * a + d          W'[o, i, ...] = W[o, i, ...] * a[o]
                                   b'[o]         = b[o] * a[o] + d[o]      (b = 0 when absent)
    ConvTranspose(X; W, b) * a + d W'[i, j, ...] = W[i, j, ...] * a[o(i, j)],
                                   o(i, j) = (i // (C_in / group)) * (C_out / group) + j
                                   b' as for Conv
    Gemm(A, B, C) * a              B'[:, n] = B[:, n] * a[n]  (B[n, :] when transB=1)
                                   C' = C * a;  alpha and beta unchanged
    Gemm(A, B, C) + d              C' = beta * C + d, beta' = 1

(ConvTranspose's weight is [C_in, C_out / group, k...]: group g owns input rows
g * C_in / group ... and output channels g * C_out / group + j.) A Mul and an Add fold one after
the other, in either order.

Before a Conv, a per-input-channel scale folds into the weights' input channels
(``c(o, i) = (o // (C_out / group)) * (C_in / group) + i`` is the input channel that weight
column ``i`` of output channel ``o`` reads)::

    Conv(X * a; W, b)              W'[o, i, ...] = W[o, i, ...] * a[c(o, i)]
    Conv(X + d; W, b)              b'[o] = b[o] + sum_{i, k} W[o, i, k] * d[c(o, i)]

The scale is exact with padding too (the Conv pads ``X * a`` with zeros, and ``0 * a = 0``); the
shift only when the Conv does not pad: a padded Conv sees zeros at the border, not ``d``, so a
padded Conv is declined.

A constant is per channel when it broadcasts against the op's output (or input) without growing
it and varies only along the channel axis: a scalar, [1], [C, 1, 1] or [1, C, 1, 1] for a 2-D
Conv; a scalar, [1], [N] or [1, N] for Gemm's N output columns. Anything else ([W] varies along
the width, [1, C, H, W] over positions, [B, C, 1, 1] over the batch) is declined with its shape.

onnxscript's ``_fuse_conv_affine`` rules are not used: they fold only scalar (one-element)
constants, need both the Mul and the Add and a Conv bias, match only 2-D Convs with an explicit
``pads=[0, 0, 0, 0]`` for the input side, and name the new weight ``<weight>_scaled``: two Convs
sharing a weight get two initializers of that name, one overwrites the other, and the graph is
left invalid. The rules here cover theirs and decline a weight they would have to rewrite when
it is shared (folding would duplicate it; a layer whose only consumer is a constant Mul or Add
gets its own copy first, hwopt.passes.unshare), a Conv output or Mul/Add input with other consumers
(the matcher's "other uses"), and constants that are graph inputs (overridable at run time).

The weights, biases and Constant nodes a fold leaves unused are removed; anything that was
unused before the pass is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from hwopt.passes.base import PassContext
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass
from hwopt.passes.unshare import UnshareBeforeFolding, constant_operand
from hwopt.passes.values import constant, fresh_name, label, static_shape


def _channel_vector(const: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``const`` as one value per channel of a rank-``rank`` tensor whose axis 1 has
    ``channels`` entries, or None when it has more axes, varies along another axis, or has a
    different channel count."""
    if const.ndim > rank:
        return None
    shape = (1,) * (rank - const.ndim) + const.shape
    if any(size != 1 for axis, size in enumerate(shape) if axis != 1):
        return None
    if shape[1] not in (1, channels):
        return None
    return np.broadcast_to(const.reshape(-1), (channels,)).astype(np.float64)


def _fresh_name(graph: ir.Graph | None, base: str) -> str:
    return fresh_name(graph.initializers if graph is not None else (), base)


def _new_initializer(op, node: ir.Node, array: np.ndarray, dtype: np.dtype, base: str) -> ir.Value:
    return op.initializer(ir.tensor(array.astype(dtype)), name=_fresh_name(node.graph, base))


def _replacement(op, node: ir.Node, inputs: Sequence[ir.Value | None], attributes=None) -> ir.Value:
    """``node`` again, with new inputs (and attributes), keeping its op, domain and name."""
    attributes = node.attributes if attributes is None else attributes
    return op.op(node.op_type, *inputs, _domain=node.domain, _name=node.name, **attributes)


def _unshared_weight(weight: ir.Value, node: ir.Node, result: MatchResult) -> MatchResult:
    """Fail ``result`` unless ``weight`` is a constant that only ``node`` reads."""
    if constant(weight) is None:
        return result.fail(f"{node.op_type} weight '{weight.name}' is not a constant")
    users = {user for user, _ in weight.uses()}
    if users != {node}:
        return result.fail(
            f"{node.op_type} weight '{weight.name}' is shared with {len(users) - 1} other "
            "node(s); folding would duplicate it"
        )
    return result


def _optionalconstant(node: ir.Node, index: int, role: str, result: MatchResult) -> MatchResult:
    """Fail ``result`` when ``node``'s optional input ``index`` is present but not constant."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is not None and constant(value) is None:
        return result.fail(f"{node.op_type} {role} '{value.name}' is not a constant")
    return result


def _per_channel_reason(
    kind: str, const: ir.Value, node: ir.Node, rank: int, channels: int, side: str = "output"
) -> str:
    """Why ``const`` is not one value per channel (Gemm: per column), and what would fold."""
    shape = list(constant(const).shape)
    gemm = node.op_type == "Gemm"
    aligned = [1] * (rank - len(shape)) + shape
    if len(shape) > rank:
        why = f"it has more axes than the {node.op_type} {side}"
    elif aligned[1] not in (1, channels):
        why = f"it has {aligned[1]} channels, not {channels}"
    elif aligned[0] != 1:
        why = "it varies along the rows" if gemm else "it varies over the batch"
    else:
        why = "it varies over spatial positions"
    unit = "output column" if gemm else f"{side} channel"
    folding = [[], [1], [channels], [1, channels]] if gemm else [
        [], [1], [channels] + [1] * (rank - 2), [1, channels] + [1] * (rank - 2)
    ]
    return (
        f"{kind} constant '{const.name}' of shape {shape} is not one value per {unit} of "
        f"{node.op_type} '{label(node)}': {why}; only shapes {', '.join(map(str, folding))} fold"
    )



def _output_channels(node: ir.Node, weight_shape: Sequence[int]) -> int:
    if node.op_type == "ConvTranspose":
        return weight_shape[1] * node.attributes.get_int("group", 1)
    return weight_shape[0]


def _scale_output_channels(node: ir.Node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``W'`` with every output channel ``o`` of ``node`` multiplied by ``scale[o]``."""
    w = weight.astype(np.float64)
    kernel_ones = (1,) * (w.ndim - 2)
    if node.op_type == "ConvTranspose":
        group = node.attributes.get_int("group", 1)
        c_in, c_out_per_group = w.shape[:2]
        grouped = w.reshape(group, c_in // group, c_out_per_group, *w.shape[2:])
        factor = scale.reshape(group, 1, c_out_per_group, *kernel_ones)
        return (grouped * factor).reshape(w.shape)
    return w * scale.reshape(-1, 1, *kernel_ones)


def _by_input_channel(node: ir.Node, weight: np.ndarray, per_channel: np.ndarray) -> np.ndarray:
    """``W[o, i, ...] * v[c(o, i)]`` for a Conv weight: ``v`` spread over the input channel each
    weight column reads, group by group."""
    group = node.attributes.get_int("group", 1)
    w = weight.astype(np.float64)
    c_out, c_in_per_group = w.shape[:2]
    grouped = w.reshape(group, c_out // group, c_in_per_group, *w.shape[2:])
    factor = per_channel.reshape(group, 1, c_in_per_group, *(1,) * (w.ndim - 2))
    return (grouped * factor).reshape(w.shape)


class _FoldAfter(RewriteRuleClassBase):
    """``combine(producer(x, W, ...), const)``: the pattern and checks shared by the rules that
    fold a constant after a Conv, ConvTranspose or Gemm."""

    producer: str
    combiner: str

    def pattern(self, op, x, weight, const):
        produced = getattr(op, self.producer)(
            x, weight, _allow_other_inputs=True, _outputs=["produced"]
        )
        return getattr(op, self.combiner)(produced, const)

    @staticmethod
    def layout(node: ir.Node, weight: ir.Value) -> tuple[int, int] | None:
        """Rank of ``node``'s output and its channel (Gemm: column) count, from the weight."""
        shape = static_shape(weight)
        if shape is None:
            return None
        if node.op_type == "Gemm":
            return 2, shape[0] if node.attributes.get_int("transB", 0) else shape[1]
        return len(shape), _output_channels(node, shape)

    def check(self, context, x, weight, const, produced) -> MatchResult:
        del context, x
        result = MatchResult()
        node = produced.producer()
        value = constant(const)
        if value is None:
            return result.fail(f"{self.combiner} operand '{const.name}' is not a constant")
        layout = self.layout(node, weight)
        if layout is None:
            return result.fail(f"{node.op_type} weight '{weight.name}' has no static shape")
        if _channel_vector(value, *layout) is None:
            return result.fail(_per_channel_reason(self.combiner, const, node, *layout))
        return self.check_operands(node, weight, result)

    def check_operands(self, node: ir.Node, weight: ir.Value, result: MatchResult) -> MatchResult:
        raise NotImplementedError

    def vector(self, node: ir.Node, weight: ir.Value, const: ir.Value) -> np.ndarray:
        return _channel_vector(constant(const), *self.layout(node, weight))


class FoldScaleIntoConv(_FoldAfter):
    """``Conv(x, W, b) * a`` -> ``Conv(x, W * a, b * a)``, ``a`` per output channel."""

    producer, combiner = "Conv", "Mul"

    def check_operands(self, node, weight, result) -> MatchResult:
        result = _unshared_weight(weight, node, result)
        return _optionalconstant(node, 2, "bias", result) if result else result

    def rewrite(self, op, x, weight, const, produced):
        node = produced.producer()
        scale = self.vector(node, weight, const)
        w = constant(weight)
        scaled = _scale_output_channels(node, w, scale)
        inputs = [x, _new_initializer(op, node, scaled, w.dtype, f"{weight.name}_scaled")]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            bias = constant(node.inputs[2])
            scaled_bias = bias.astype(np.float64) * scale
            name = f"{label(node)}_bias_scaled"
            inputs.append(_new_initializer(op, node, scaled_bias, bias.dtype, name))
        return _replacement(op, node, inputs)


class FoldScaleIntoConvTranspose(FoldScaleIntoConv):
    """``ConvTranspose(x, W, b) * a`` -> ``ConvTranspose(x, W', b * a)``, grouped too."""

    producer = "ConvTranspose"


class FoldShiftIntoConv(_FoldAfter):
    """``Conv(x, W, b) + d`` -> ``Conv(x, W, b + d)``, ``d`` per output channel."""

    producer, combiner = "Conv", "Add"

    def check_operands(self, node, weight, result) -> MatchResult:
        # The weight is not rewritten, so it may be shared or even computed.
        return _optionalconstant(node, 2, "bias", result)

    def rewrite(self, op, x, weight, const, produced):
        node = produced.producer()
        shift = self.vector(node, weight, const)
        dtype = constant(const).dtype
        bias = shift
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            bias = constant(node.inputs[2]).astype(np.float64) + shift
        new_bias = _new_initializer(op, node, bias, dtype, f"{label(node)}_bias_shifted")
        return _replacement(op, node, [x, weight, new_bias])


class FoldShiftIntoConvTranspose(FoldShiftIntoConv):
    """``ConvTranspose(x, W, b) + d`` -> ``ConvTranspose(x, W, b + d)``."""

    producer = "ConvTranspose"


class FoldScaleIntoGemm(_FoldAfter):
    """``Gemm(A, B, C) * a`` -> ``Gemm(A, B * a, C * a)``, ``a`` per output column."""

    producer, combiner = "Gemm", "Mul"

    def check_operands(self, node, weight, result) -> MatchResult:
        result = _unshared_weight(weight, node, result)
        return _optionalconstant(node, 2, "C", result) if result else result

    def rewrite(self, op, x, weight, const, produced):
        node = produced.producer()
        scale = self.vector(node, weight, const)
        b = constant(weight)
        # B is [K, N], or [N, K] with transB=1: scale its columns, or its rows.
        factor = scale[:, np.newaxis] if node.attributes.get_int("transB", 0) else scale
        scaled = b.astype(np.float64) * factor
        inputs = [x, _new_initializer(op, node, scaled, b.dtype, f"{weight.name}_scaled")]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            # C and the scale both broadcast to [M, N] one way, so their product does too; it
            # keeps the smaller of the shapes that way (a scalar C times [N] is [N]).
            c = constant(node.inputs[2])
            c_scaled = c.astype(np.float64) * constant(const)
            inputs.append(_new_initializer(op, node, c_scaled, c.dtype, f"{label(node)}_c_scaled"))
        return _replacement(op, node, inputs)


class FoldShiftIntoGemm(_FoldAfter):
    """``Gemm(A, B, C) + d`` -> ``Gemm(A, B, beta * C + d, beta=1)``, ``d`` per output column."""

    producer, combiner = "Gemm", "Add"

    def check_operands(self, node, weight, result) -> MatchResult:
        return _optionalconstant(node, 2, "C", result)

    def rewrite(self, op, x, weight, const, produced):
        node = produced.producer()
        shift = constant(const)
        c = shift.astype(np.float64)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            beta = node.attributes.get_float("beta", 1.0)
            c = beta * constant(node.inputs[2]).astype(np.float64) + c
        attributes = node.attributes.copy()
        attributes.add(ir.AttrFloat32("beta", 1.0))
        new_c = _new_initializer(op, node, c, shift.dtype, f"{label(node)}_c_shifted")
        return _replacement(op, node, [x, weight, new_c], attributes)


class _FoldBeforeConv(RewriteRuleClassBase):
    """``Conv(combine(x, const), W, ...)``: pattern and checks of the input-side rules."""

    combiner: str

    def pattern(self, op, x, const, weight):
        combined = getattr(op, self.combiner)(x, const)
        return op.Conv(combined, weight, _allow_other_inputs=True, _outputs=["conv_out"])

    def check(self, context, x, const, weight, conv_out) -> MatchResult:
        del context
        result = MatchResult()
        conv = conv_out.producer()
        value = constant(const)
        if value is None:
            return result.fail(f"{self.combiner} operand '{const.name}' is not a constant")
        w = constant(weight)
        if w is None:
            return result.fail(f"Conv weight '{weight.name}' is not a constant")
        c_in = w.shape[1] * conv.attributes.get_int("group", 1)
        if _channel_vector(value, w.ndim, c_in) is None:
            return result.fail(
                _per_channel_reason(self.combiner, const, conv, w.ndim, c_in, "input")
            )
        # The constant must not broadcast x up: x must already have the Conv's rank and, when
        # the constant has one value per channel, all the channels.
        if x.shape is None or x.shape.rank() != w.ndim or (value.size > 1 and x.shape[1] != c_in):
            return result.fail(
                f"{self.combiner} input '{x.name}' has shape {x.shape}; folding needs it known "
                f"to be of rank {w.ndim} with {c_in} channels"
            )
        return self.check_conv(conv, weight, result)

    def check_conv(self, conv: ir.Node, weight: ir.Value, result: MatchResult) -> MatchResult:
        raise NotImplementedError

    def vector(self, conv: ir.Node, weight: ir.Value, const: ir.Value) -> np.ndarray:
        w = constant(weight)
        c_in = w.shape[1] * conv.attributes.get_int("group", 1)
        return _channel_vector(constant(const), w.ndim, c_in)


class FoldInputScaleIntoConv(_FoldBeforeConv):
    """``Conv(x * a, W, b)`` -> ``Conv(x, W', b)``, ``a`` per input channel."""

    combiner = "Mul"

    def check_conv(self, conv, weight, result) -> MatchResult:
        return _unshared_weight(weight, conv, result)

    def rewrite(self, op, x, const, weight, conv_out):
        conv = conv_out.producer()
        w = constant(weight)
        scaled = _by_input_channel(conv, w, self.vector(conv, weight, const))
        new_weight = _new_initializer(op, conv, scaled, w.dtype, f"{weight.name}_scaled")
        return _replacement(op, conv, [x, new_weight, *conv.inputs[2:]])


class FoldInputShiftIntoConv(_FoldBeforeConv):
    """``Conv(x + d, W, b)`` -> ``Conv(x, W, b + sum W * d)``, only for a Conv that does not pad."""

    combiner = "Add"

    def check_conv(self, conv, weight, result) -> MatchResult:
        auto_pad = conv.attributes.get_string("auto_pad", "NOTSET")
        pads = list(conv.attributes.get_ints("pads", []))
        if auto_pad not in ("NOTSET", "VALID") or any(pads):
            padding = f"pads={pads}" if auto_pad in ("NOTSET", "VALID") else f"auto_pad={auto_pad}"
            return result.fail(
                f"Conv '{label(conv)}' pads its input ({padding}) with zeros, not with the "
                "shifted value; a shift before a padded Conv does not fold"
            )
        return _optionalconstant(conv, 2, "bias", result)

    def rewrite(self, op, x, const, weight, conv_out):
        conv = conv_out.producer()
        w = constant(weight)
        shifted = _by_input_channel(conv, w, self.vector(conv, weight, const))
        bias = shifted.sum(axis=tuple(range(1, w.ndim)))
        if len(conv.inputs) > 2 and conv.inputs[2] is not None:
            bias = bias + constant(conv.inputs[2]).astype(np.float64)
        new_bias = _new_initializer(op, conv, bias, w.dtype, f"{label(conv)}_bias_shifted")
        return _replacement(op, conv, [x, weight, new_bias])


@register
class FoldScaleShift(UnshareBeforeFolding, RewriteRulePass):
    # The input-side rules need the rank and channels of the Mul's or Add's other input.
    needs_shapes = True
    name = "fold_scale_shift"
    description = (
        "fold constant per-channel Mul/Add into the weights and bias of the Conv, "
        "ConvTranspose or Gemm before them, or of the Conv after them"
    )

    def folds_into(self, node: ir.Node) -> bool:
        return node.op_type in ("Mul", "Add") and constant_operand(node)

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        rules = [
            FoldScaleIntoConv(),
            FoldShiftIntoConv(),
            FoldScaleIntoConvTranspose(),
            FoldShiftIntoConvTranspose(),
            FoldScaleIntoGemm(),
            FoldShiftIntoGemm(),
            FoldInputScaleIntoConv(),
            FoldInputShiftIntoConv(),
        ]
        # Mul and Add take the constant on either side.
        return [variant for rule in rules for variant in rule.rule().commute()]



