"""Fold a constant-mode Pad into the pads of the Conv, AveragePool or MaxPool it feeds.

A Pad that only widens the spatial axes, followed by an op that pads those axes itself, is one
op too many when the two paddings agree on the value they pad with::

    Conv(Pad(X, p, 0))          = Conv(X, pads = pads + p)
    AveragePool(Pad(X, p, 0))   = AveragePool(X, pads = pads + p, count_include_pad = 1)
    MaxPool(Pad(X, p, v))       = MaxPool(X, pads = pads + p)
                                  when v = -inf, or when every element of X is >= v

Why each is exact:

* Conv pads with zeros, so a Pad with value 0 is the same padding done earlier.
* AveragePool with ``count_include_pad=1`` counts padded positions as zeros in the average,
  which is what the Pad's zeros were. This needs the pool's own padding (if any) to have been
  counted too: a pool with nonzero pads and ``count_include_pad=0`` leaves its own padding out
  of the average but would have to count the Pad's, which no single pool can express.
* MaxPool pads with -inf, so a padded element never wins. A Pad with value v only ever wins
  where it exceeds every real element of the window; if every input element is >= v and every
  window holds a real element, the Pad's values never change a maximum. Inputs are known to be
  >= v when they come from Relu or Sigmoid (>= 0) or from Clip with a constant min >= v.
  Every window holds a real element when the combined padding on each side is smaller than
  the kernel (stride and floor rounding cannot then place a window wholly in the padding);
  ONNX Runtime requires pool pads smaller than the kernel anyway, so the rules check it for
  both pools.

Conv uses onnxscript's ``FuseConvPad`` pattern and rewrite with hwopt's own check: onnxscript's
check indexes the Pad's ``pads`` input and raises IndexError on opset < 11, where ``pads`` and
``value`` are attributes. onnxscript's ``normalize_pad_format`` rules (auto_pad to explicit pads)
are not used: they size SAME padding with the kernel, not the dilated kernel.

Declined: a Pad whose mode is not ``constant``, whose pads or value are not constants, that
pads the batch or channel axis or crops (negative pads); a consumer with ``auto_pad`` set; a
pool with dilations, with a partial last window under ``ceil_mode=1``, with combined pads not
smaller than the kernel, or (MaxPool) with an Indices output. The Pad stays when it has other
consumers that cannot absorb it; it disappears once every consumer has (the rules, like
onnxscript's, do not remove the Pad themselves: the rewriter then removes every unused node of
the model, so a model with dead code loses that too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from hwopt import upstream
from hwopt.passes.base import PassContext
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass
from hwopt.passes.values import constant, label
from hwopt.passes.values import rank as value_rank

# Ops whose output is never below a bound, which is what lets a MaxPool absorb a Pad whose
# value is not -inf (Clip's bound is its constant min, read from the node).
_LOWER_BOUND = {"Relu": 0.0, "Sigmoid": 0.0}


@dataclasses.dataclass(frozen=True)
class _ConstantPad:
    """A constant-mode Pad over all ``rank`` axes: ``pads`` as [x1_begin, ..., x1_end, ...]."""

    pads: tuple[int, ...]
    value: float

    @property
    def rank(self) -> int:
        return len(self.pads) // 2

    def spatial(self) -> list[int]:
        """Pads of the axes after batch and channel, in the [begins..., ends...] layout of a
        Conv's or pool's ``pads`` attribute."""
        return [*self.pads[2 : self.rank], *self.pads[self.rank + 2 :]]




def _read_constant_pad(pad: ir.Node, rank: int) -> _ConstantPad | str:
    """The Pad's padding over all axes, or the reason it cannot be folded.

    Pad-2 (opset < 11) holds ``pads`` and ``value`` as attributes; Pad-11 takes them as inputs,
    Pad-18 adds an optional ``axes`` input.
    """
    mode = pad.attributes.get_string("mode", "constant")
    if mode != "constant":
        return (
            f"Pad '{label(pad)}' has mode '{mode}'; only constant padding can move into a "
            "Conv or pool"
        )
    if "pads" in pad.attributes:
        pads = list(pad.attributes.get_ints("pads"))
        value = pad.attributes.get_float("value", 0.0)
    else:
        pads_input = pad.inputs[1] if len(pad.inputs) > 1 else None
        pads_array = constant(pads_input)
        if pads_array is None:
            return f"Pad '{label(pad)}' pads are not a constant"
        value_input = pad.inputs[2] if len(pad.inputs) > 2 else None
        if value_input is None:
            value = 0.0
        else:
            value_array = constant(value_input)
            if value_array is None:
                return f"Pad '{label(pad)}' constant_value is not a constant"
            value = float(value_array.reshape(-1)[0])
        axes_input = pad.inputs[3] if len(pad.inputs) > 3 else None
        if axes_input is None:
            pads = [int(p) for p in pads_array.reshape(-1)]
        else:
            axes_array = constant(axes_input)
            if axes_array is None:
                return f"Pad '{label(pad)}' axes are not a constant"
            axes = [int(a) % rank for a in axes_array.reshape(-1)]
            if pads_array.size != 2 * len(axes):
                return f"Pad '{label(pad)}' has {pads_array.size} pads for {len(axes)} axes"
            pads = upstream.fill_pads_with_axes(pads_array.reshape(-1).tolist(), axes, rank)
    if len(pads) != 2 * rank:
        return f"Pad '{label(pad)}' has {len(pads)} pads for an input of rank {rank}"
    pads = [int(p) for p in pads]
    if any(p < 0 for p in pads):
        return f"Pad '{label(pad)}' crops (negative pads {pads}); a Conv or pool cannot crop"
    if any(pads[:2] + pads[rank : rank + 2]):
        return (
            f"Pad '{label(pad)}' pads the batch or channel axis (pads={pads}); "
            "a Conv or pool pads spatial axes only"
        )
    return _ConstantPad(tuple(pads), value)



class FoldPadIntoConv(upstream.FuseConvPad):
    """``Conv(Pad(x, p, 0))`` -> ``Conv(x, pads + p)``: onnxscript's pattern and rewrite, with
    a check that also reads opset < 11 Pads (attributes) and says why it declines."""

    def check(self, context, x: ir.Value, pad: ir.Value, conv: ir.Value) -> MatchResult:
        del context
        result = MatchResult()
        rank = value_rank(x)
        if rank is None:
            return result.fail(f"the rank of Pad input '{x.name}' is unknown")
        spec = _read_constant_pad(pad.producer(), rank)
        if isinstance(spec, str):
            return result.fail(spec)
        if spec.value != 0:
            return result.fail(
                f"Conv pads with zeros; the Pad's value {spec.value:g} is not 0"
            )
        conv_node = conv.producer()
        auto_pad = conv_node.attributes.get_string("auto_pad", "NOTSET")
        if auto_pad != "NOTSET":
            return result.fail(
                f"Conv '{label(conv_node)}' has auto_pad={auto_pad}; only explicit pads "
                "(auto_pad=NOTSET) can absorb a Pad"
            )
        # onnxscript's rewrite reads the Pad's pads, over all axes, from what check leaves.
        upstream.set_conv_pad_pads(self, spec.pads)
        return result


class _FoldPadIntoPool(RewriteRuleClassBase):
    """Shared check and rewrite of the pool rules; subclasses add what their pool pads with."""

    op_type: str

    def __init__(self) -> None:
        # As onnxscript's Conv rule: keep the Pad when it has other consumers; unused Pads are
        # removed after rewriting.
        super().__init__(remove_nodes=False)

    def pattern(self, op, x):
        return getattr(op, self.op_type)(
            op.Pad(x, _allow_other_inputs=True, _outputs=["pad"]), _outputs=["pool"]
        )

    def check(self, context, x: ir.Value, pad: ir.Value, pool: ir.Value) -> MatchResult:
        del context
        result = MatchResult()
        pool_node = pool.producer()
        rank = value_rank(x)
        if rank is None:
            return result.fail(f"the rank of Pad input '{x.name}' is unknown")
        spec = _read_constant_pad(pad.producer(), rank)
        if isinstance(spec, str):
            return result.fail(spec)
        attrs = pool_node.attributes
        auto_pad = attrs.get_string("auto_pad", "NOTSET")
        if auto_pad != "NOTSET":
            return result.fail(
                f"{self.op_type} '{label(pool_node)}' has auto_pad={auto_pad}; only explicit pads "
                "(auto_pad=NOTSET) can absorb a Pad"
            )
        kernel = list(attrs.get_ints("kernel_shape"))
        spatial = len(kernel)
        if any(d != 1 for d in attrs.get_ints("dilations", [1] * spatial)):
            return result.fail(
                f"{self.op_type} '{label(pool_node)}' is dilated; a dilated window can skip every "
                "real element and see only padding"
            )
        own = list(attrs.get_ints("pads", [0] * 2 * spatial))
        merged = [a + b for a, b in zip(own, spec.spatial())]
        for axis, k in enumerate(kernel):
            if merged[axis] >= k or merged[axis + spatial] >= k:
                return result.fail(
                    f"{self.op_type} '{label(pool_node)}' would pad axis {axis + 2} by "
                    f"({merged[axis]}, {merged[axis + spatial]}) with kernel {k}; pool pads "
                    "must be smaller than the kernel (ONNX Runtime rejects any other)"
                )
        if attrs.get_int("ceil_mode", 0) and not self._windows_fit(pad, own, kernel, attrs):
            return result.fail(
                f"{self.op_type} '{label(pool_node)}' has ceil_mode=1 and a partial last window "
                "(or unknown spatial sizes); runtimes differ in how they count the padding of "
                "such a window, so the fold is not provably exact"
            )
        condition = self.condition(x, spec, pool_node, own)
        if not condition:
            return condition
        self._merged_pads = merged
        return result

    @staticmethod
    def _windows_fit(pad: ir.Value, own: Sequence[int], kernel: Sequence[int], attrs) -> bool:
        """Whether every window ends inside the padded input, so ceil_mode changes nothing."""
        if pad.shape is None:
            return False
        spatial = len(kernel)
        strides = attrs.get_ints("strides", [1] * spatial)
        for axis, (k, s) in enumerate(zip(kernel, strides)):
            size = pad.shape[axis + 2]
            if not isinstance(size, int):
                return False
            if (size + own[axis] + own[axis + spatial] - k) % s:
                return False
        return True

    def condition(
        self, x: ir.Value, spec: _ConstantPad, pool: ir.Node, own_pads: Sequence[int]
    ) -> MatchResult:
        raise NotImplementedError

    def extra_attributes(self) -> dict[str, int]:
        return {}

    def rewrite(self, op, x: ir.Value, pad: ir.Value, pool: ir.Value) -> ir.Value:
        pool_node = pool.producer()
        attributes = pool_node.attributes.copy()
        attributes.add(ir.AttrInt64s("pads", self._merged_pads))
        for name, value in self.extra_attributes().items():
            attributes.add(ir.AttrInt64(name, value))
        return op.op(
            self.op_type, x, _domain=pool_node.domain, _name=pool_node.name, **attributes
        )


class FoldPadIntoAveragePool(_FoldPadIntoPool):
    """``AveragePool(Pad(x, p, 0))`` -> ``AveragePool(x, pads + p, count_include_pad=1)``."""

    op_type = "AveragePool"

    def condition(self, x, spec, pool, own_pads) -> MatchResult:
        result = MatchResult()
        if spec.value != 0:
            return result.fail(
                f"AveragePool pads with zeros (count_include_pad=1); the Pad's value "
                f"{spec.value:g} is not 0"
            )
        if any(own_pads) and not pool.attributes.get_int("count_include_pad", 0):
            return result.fail(
                f"AveragePool '{label(pool)}' leaves its own padding out of the average "
                "(count_include_pad=0) but would have to count the Pad's zeros; only a pool "
                "without pads or with count_include_pad=1 can absorb a Pad"
            )
        return result

    def extra_attributes(self) -> dict[str, int]:
        return {"count_include_pad": 1}


class FoldPadIntoMaxPool(_FoldPadIntoPool):
    """``MaxPool(Pad(x, p, v))`` -> ``MaxPool(x, pads + p)`` when v is -inf or x >= v."""

    op_type = "MaxPool"

    def condition(self, x, spec, pool, own_pads) -> MatchResult:
        result = MatchResult()
        if len(pool.outputs) > 1:
            return result.fail(
                f"MaxPool '{label(pool)}' has an Indices output, which counts positions in "
                "the padded tensor"
            )
        if spec.value == -np.inf or (x.dtype is not None and _is_lowest(spec.value, x.dtype)):
            return result
        bound = _lower_bound(x)
        if bound is not None and bound >= spec.value:
            return result
        wanted = "known non-negative" if spec.value == 0 else f"known to be >= {spec.value:g}"
        return result.fail(
            f"MaxPool pads with -inf; the Pad's value {spec.value:g} is only equivalent when "
            f"the input is {wanted} (produced by Relu or Sigmoid, or by Clip with a constant "
            f"min >= {spec.value:g})"
        )


def _is_lowest(value: float, dtype: ir.DataType) -> bool:
    """Whether ``value`` is the lowest value of an integer type (what MaxPool pads ints with)."""
    if not dtype.is_integer():
        return False
    return value <= np.iinfo(dtype.numpy()).min


def _lower_bound(x: ir.Value) -> float | None:
    """A constant every element of ``x`` is known to be >= to, from the op that produced it."""
    producer = x.producer()
    if producer is None or producer.domain not in ("", "ai.onnx"):
        return None
    if producer.op_type in _LOWER_BOUND:
        return _LOWER_BOUND[producer.op_type]
    if producer.op_type == "Clip":
        if "min" in producer.attributes:  # Clip-6 (opset < 11)
            return producer.attributes.get_float("min")
        low = constant(producer.inputs[1] if len(producer.inputs) > 1 else None)
        if low is not None and low.size == 1:
            return float(low.reshape(-1)[0])
    return None


@register
class FoldPad(RewriteRulePass):
    # The checks need ranks and spatial sizes of intermediate values.
    needs_shapes = True
    name = "fold_pad"
    description = (
        "fold a constant-mode Pad into the pads of the Conv, AveragePool or MaxPool it feeds"
    )

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        return [
            FoldPadIntoConv().rule(),
            FoldPadIntoAveragePool().rule(),
            FoldPadIntoMaxPool().rule(),
        ]

