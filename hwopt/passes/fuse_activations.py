"""Rewrite activations that exporters spell out in several nodes into the single op that
execution providers run as one kernel, when the model's opset has that op.

Hard-swish and hard-sigmoid (MobileNetV3, PP-OCR, PaddlePaddle exports), with ``relu6(v)``
written as ``Clip(v, 0, 6)`` (min/max as attributes before opset 11, as inputs since):

* ``Div(Clip(Add(x, 3), 0, 6), 6)`` or ``Mul(Clip(Add(x, 3), 0, 6), 1/6)``
  -> ``HardSigmoid(x, alpha=1/6, beta=0.5)`` (opset 6). HardSigmoid computes ``x * 1/6 + 0.5``
  where the written form computes ``(x + 3) / 6``: equal in real arithmetic, apart by float32
  rounding in a model (at most ~5e-7 absolute for |x| <= 8; relative to an element that is
  itself near 0, around x = -3, that can be 1e-3, so compare against the output's scale).
* ``Mul(x, HardSigmoid(x))`` with alpha 1/6 and beta 0.5 -> ``HardSwish(x)`` (opset 14), which
  ONNX defines as exactly that product. The PaddlePaddle form ``Mul(x, Div(Clip(Add(x, 3),
  0, 6), 6))`` takes both steps.
* ``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` or ``Mul(Mul(x, Clip(...)), 1/6)`` (PP-OCR)
  -> ``HardSwish(x)`` at opset 14 and later; before 14, ``Mul(x, HardSigmoid(x))``. Within float
  rounding, as above.

GELU, as exporters write ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` in any of its association
orders (``(x * (1 + e)) * 0.5`` from TorchScript, ``x * (0.5 * (1 + e))`` from the dynamo
exporter, ``(x * 0.5) * (1 + e)`` from Hugging Face code), with ``x / sqrt(2)`` or
``x * (1/sqrt(2))`` (x first), and its tanh approximation
``x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * Pow(x, 3))))``:

* -> ``Gelu(x, approximate="none" | "tanh")`` (opset 20), which ONNX defines by the same
  formulas: within float rounding. Below opset 20 the match is declined with the reason
  ("Gelu needs opset 20"); com.microsoft's Gelu is never emitted.

SiLU, ``Mul(x, Sigmoid(x))`` (PP-OCRv4 rec writes ``Mul(x, Sigmoid(Mul(x, 1)))``), is left as
written on purpose. Its single op, Swish, needs opset 24, and onnxruntime 1.32 has no CPU
kernel for it: it runs Swish's function body (Cast, Mul, Sigmoid, Mul), 2.3x slower on a
1x64x80x80 tensor than the written form, which it fuses into com.microsoft.QuickGelu itself.

Clamps:

* ``Min(Max(x, lo), hi)`` and ``Max(Min(x, hi), lo)`` -> ``Clip(x, lo, hi)`` for single-element
  constants with ``lo <= hi``: exact (the same comparisons; NaN stays NaN in both).
* ``Relu(Relu(x))`` -> ``Relu(x)`` (onnxscript's rule); ``Clip(Clip(x))``, ``Clip(Relu(x))`` and
  ``Relu(Clip(x))`` -> one ``Clip`` to the intersection of the two intervals: exact when they
  overlap. When they do not, the pair outputs a constant and is declined.

Every constant is checked, not assumed: 0, 0.5, 1, 3 and 6 exactly (every float type holds
them), the others (1/6, sqrt(2), 1/sqrt(2), sqrt(2/pi), 0.044715) to within the rounding of a
float32 written to seven significant digits (PaddlePaddle writes 1/6 as 0.1666667). A
single-element constant of higher rank than the tensor it meets is declined: removing it would
undo its broadcast. An intermediate that other nodes also read is never removed (the
onnxscript matcher declines it: "other uses"). A rule that needs a newer opset than the
model's is kept only to decline with that reason, so ``--explain`` can say which
``target_opset`` would unlock it; it never emits an op the model's opset lacks.

On onnxruntime 1.32's CPU provider (ORT_ENABLE_ALL, 2 threads, interleaved runs): HardSwish
has no kernel and runs as its function body, HardSigmoid and Mul, which is still 0.64x the
time of the written Add/Clip/Mul/Div on 1x64x80x80 (PP-OCRv4 det at 1x3x320x320: about
0.95x end to end). The erf GELU is fused by onnxruntime itself (into com.microsoft.BiasGelu or
Gelu) whichever way it is written, so Gelu changes nothing there; the tanh GELU as written
above is not, and Gelu(approximate="tanh") takes 0.28x its time on 1x128x3072.

onnxscript's own rules (``_fuse_hardswish``, ``_fuse_relus_clips``, ``_min_max_to_clip``,
``ort_fusions.gelu``) are not reused beyond ``Relu(Relu)``: they emit HardSwish at any opset
and Clip with inputs before opset 11, read Clip bounds only from inputs (two Clips with
attribute bounds merge into an unbounded one), raise on bounds from Constant nodes and on
inputs whose type is not recorded, merge disjoint intervals into a Clip with min > max (its
output is then the upper bound, not the constant the pair computes), accept 3 and 6 within
1e-4, and their GELU rules emit com.microsoft ops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase
from onnxscript.rewriter.pattern import OrValue

from hwopt import upstream
from hwopt.passes.base import PassContext, default_opset
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass
from hwopt.passes.values import constant, fresh_name

# An exporter that writes 1/6 as 0.1666667 is 2e-7 off, and float32 rounding adds up to 6e-8:
# four float32 epsilons (4.8e-7) accept those and nothing a different constant would be.
_DECIMAL_ROUNDING = 4 * float(np.finfo(np.float32).eps)

# The first opset that has each form of an op this pass emits (HardSigmoid: 6, below the
# pass's range).
CLIP_INPUTS_OPSET = 11  # Clip takes min/max as inputs (before: attributes, floats only)
CLIP_INTEGER_OPSET = 12
HARD_SWISH_OPSET = 14
GELU_OPSET = 20


def _need_opset(op_type: str, needed: int, opset: int) -> str:
    return (
        f"{op_type} needs opset {needed}; the model imports opset {opset} "
        f"(upgrade_opset with target_opset={needed} raises it)"
    )


class _OpsetRule(RewriteRuleClassBase):
    """A rule that knows the model's opset and one structural variant of its pattern.

    Variants that differ only in operand order exist because the matcher binds a pattern
    variable where it first meets it: where two free variables meet in a commutative op, each
    order is its own rule (``OrValue`` covers the orders where one side is a subpattern).
    """

    def __init__(self, opset: int, name: str | None = None, **variant):
        super().__init__(name or type(self).__name__)
        self.opset = opset
        self.variant = variant


# ---------------------------------------------------------------------------------------------
# Constants


def _scalar_constant(value: ir.Value | None, role: str, like: ir.Value | None = None):
    """The single element of a constant ``value`` as a numpy array, or the reason it is not one.

    ``like`` is the tensor the constant is combined with: a constant of higher rank would
    broadcast it to a larger shape, which removing the constant would undo.
    """
    if value is None:
        return None, f"{role} is missing"
    if value.is_graph_input():
        return None, f"{role} '{value.name}' is a graph input, so it can change at run time"
    array = constant(value)
    if array is None:
        return None, f"{role} '{value.name}' is not a constant"
    if array.size != 1:
        return None, f"{role} '{value.name}' has {array.size} elements, not one"
    if array.ndim > 0 and like is not None:
        rank = like.shape.rank() if like.shape is not None else None
        if rank is None or array.ndim > rank:
            return None, (
                f"{role} '{value.name}' has rank {array.ndim}, which may broadcast "
                f"'{like.name}' (rank {rank if rank is not None else 'unknown'}) to a larger shape"
            )
    return array, None


def _expect(
    value: ir.Value | None,
    expected: float,
    role: str,
    label: str,
    *,
    exact: bool = True,
    like: ir.Value | None = None,
) -> str | None:
    """None when ``value`` is a constant equal to ``expected``; otherwise the reason it is not.

    ``exact`` constants (0, 0.5, 1, 3, 6) are representable in every float type and must be
    equal; the others must be within the rounding of the constant's own type, and at least
    :data:`_DECIMAL_ROUNDING`.
    """
    array, reason = _scalar_constant(value, role, like)
    if reason:
        return reason
    got = float(array.reshape(()))
    if exact:
        ok = got == expected
    else:
        floating = np.issubdtype(array.dtype, np.floating)
        eps = float(np.finfo(array.dtype).eps) if floating else 0.0
        ok = abs(got - expected) <= max(_DECIMAL_ROUNDING, eps) * abs(expected)
    if not ok:
        return f"{role} '{value.name}' is {got:.9g}, not {label}"
    return None


def _other_operand(a: ir.Value, b: ir.Value, x: ir.Value) -> ir.Value | None:
    """Of a commutative op's operands, the one that is not ``x`` (None when neither is)."""
    if a is x:
        return b
    if b is x:
        return a
    return None


def _split_constant(a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value] | None:
    """A commutative op's operands as (variable, constant), whichever order they come in."""
    a_const = ir.convenience.get_const_tensor(a) is not None and not a.is_graph_input()
    b_const = ir.convenience.get_const_tensor(b) is not None and not b.is_graph_input()
    if a_const == b_const:
        return None
    return (b, a) if a_const else (a, b)


# ---------------------------------------------------------------------------------------------
# Clamp bounds: Relu, Clip with attributes (opset < 11) or inputs (opset >= 11), Min/Max


@dataclasses.dataclass(frozen=True)
class _Bound:
    """One side of a clamp: its value, and the rank-0 tensor holding it when there is one."""

    value: float
    source: ir.Value | None = None


def _bound_from_input(
    value: ir.Value, role: str, like: ir.Value
) -> tuple[_Bound | None, str | None]:
    array, reason = _scalar_constant(value, role, like)
    if reason:
        return None, reason
    return _Bound(float(array.reshape(())), value if array.ndim == 0 else None), None


def _clamp_bounds(node: ir.Node):
    """((lower, upper), None) of a Relu or Clip, a side None when open; or (None, reason)."""
    if node.op_type == "Relu":
        return (_Bound(0.0), None), None
    lower = upper = None
    for side, attr in (("min", node.attributes.get("min")), ("max", node.attributes.get("max"))):
        if attr is not None:
            bound = _Bound(attr.as_float())
            lower, upper = (bound, upper) if side == "min" else (lower, bound)
    for index, side in ((1, "min"), (2, "max")):
        if len(node.inputs) > index and node.inputs[index] is not None:
            bound, reason = _bound_from_input(
                node.inputs[index], f"Clip '{node.name}' {side}", node.inputs[0]
            )
            if reason:
                return None, reason
            lower, upper = (bound, upper) if side == "min" else (lower, bound)
    return (lower, upper), None


def _is_relu6(clip: ir.Node) -> str | None:
    """None when ``clip`` clamps to [0, 6] with constant bounds; otherwise why it does not."""
    bounds, reason = _clamp_bounds(clip)
    if reason:
        return reason
    lower, upper = bounds
    if lower is None or lower.value != 0.0 or upper is None or upper.value != 6.0:
        shown = [b.value if b is not None else None for b in bounds]
        return f"Clip '{clip.name}' clamps to {shown}, not [0, 6] (relu6)"
    return None


class _FreshNames:
    """Initializer names not yet used anywhere in a model (graph values, subgraphs, functions)."""

    def __init__(self, model: ir.Model):
        self._model = model
        self._taken: set[str] | None = None

    def __call__(self, base: str) -> str:
        if self._taken is None:
            self._taken = set()
            for graph in self._model.graphs():
                self._taken.update(graph.initializers)
                self._taken.update(v.name for v in graph.inputs if v.name)
                for node in graph:
                    self._taken.update(v.name for v in node.outputs if v.name)
        name = fresh_name(self._taken, base)
        self._taken.add(name)
        return name


class _ClampRule(_OpsetRule):
    """Base of the rules that emit a Clip, in the form the model's opset has."""

    def __init__(self, opset: int, names: _FreshNames, name: str | None = None, **variant):
        super().__init__(opset, name, **variant)
        self.names = names

    def clip_type_reason(self, x: ir.Value) -> str | None:
        dtype = x.dtype
        if dtype is None:
            # A new bound must be a tensor of x's type.
            return f"the element type of '{x.name}' is not recorded"
        if self.opset < CLIP_INTEGER_OPSET and not dtype.is_floating_point():
            return (
                f"Clip takes {dtype.name} only from opset {CLIP_INTEGER_OPSET}; "
                f"the model imports opset {self.opset}"
            )
        return None

    def emit_clip(self, op, x: ir.Value, lower: _Bound | None, upper: _Bound | None, hint: str):
        if self.opset < CLIP_INPUTS_OPSET:
            attrs = {}
            if lower is not None:
                attrs["min"] = lower.value
            if upper is not None:
                attrs["max"] = upper.value
            return op.Clip(x, **attrs)
        dtype = x.dtype.numpy()
        inputs = []
        for bound, side in ((lower, "min"), (upper, "max")):
            if bound is None:
                inputs.append(None)
            elif bound.source is not None:
                inputs.append(bound.source)
            else:
                tensor = ir.tensor(np.array(bound.value, dtype=dtype))
                inputs.append(op.initializer(tensor, name=self.names(f"{hint}_clip_{side}")))
        while inputs and inputs[-1] is None:
            inputs.pop()
        return op.Clip(x, *inputs)


class MinMaxToClip(_ClampRule):
    """``Min(Max(x, lo), hi)`` / ``Max(Min(x, hi), lo)`` -> ``Clip(x, lo, hi)``.

    Variants: ``outer`` ("Min" or "Max"), ``swapped`` (the constant is the outer op's first input).
    """

    def pattern(self, op, a, b, bound):
        outer, inner = (op.Min, op.Max) if self.variant["outer"] == "Min" else (op.Max, op.Min)
        clamped = inner(a, b, _outputs=["inner_out"])
        if self.variant["swapped"]:
            return outer(bound, clamped, _outputs=["outer_out"])
        return outer(clamped, bound, _outputs=["outer_out"])

    def _bounds(self, a, b, bound):
        split = _split_constant(a, b)
        if split is None:
            inner = "Max" if self.variant["outer"] == "Min" else "Min"
            return None, None, None, f"the inner {inner} has no single constant operand"
        x, inner_const = split
        inner_bound, reason = _bound_from_input(inner_const, "the inner bound", x)
        if reason:
            return None, None, None, reason
        outer_bound, reason = _bound_from_input(bound, "the outer bound", x)
        if reason:
            return None, None, None, reason
        if self.variant["outer"] == "Min":
            return x, inner_bound, outer_bound, None
        return x, outer_bound, inner_bound, None

    def check(self, context, a, b, bound, **_) -> MatchResult:
        result = MatchResult()
        x, lower, upper, reason = self._bounds(a, b, bound)
        if reason:
            return result.fail(reason)
        if lower.value > upper.value:
            return result.fail(
                f"lower bound {lower.value:g} is above upper bound {upper.value:g}: "
                "the output is a constant"
            )
        if reason := self.clip_type_reason(x):
            return result.fail(reason)
        return result

    def rewrite(self, op, a, b, bound, outer_out, **_):
        x, lower, upper, _reason = self._bounds(a, b, bound)
        return self.emit_clip(op, x, lower, upper, outer_out.name)


class MergeClamps(_ClampRule):
    """``Clip(Clip(x))``, ``Clip(Relu(x))``, ``Relu(Clip(x))`` -> one Clip on the intersection.

    Variants: ``outer`` and ``inner``, each "Clip" or "Relu" (not both Relu: onnxscript's rule).
    """

    def pattern(self, op, x):
        inner_op, outer_op = getattr(op, self.variant["inner"]), getattr(op, self.variant["outer"])
        inner = inner_op(x, _allow_other_inputs=True, _outputs=["inner_out"])
        return outer_op(inner, _allow_other_inputs=True, _outputs=["outer_out"])

    def _merged(self, inner_out, outer_out):
        intervals = []
        for node in (inner_out.producer(), outer_out.producer()):
            bounds, reason = _clamp_bounds(node)
            if reason:
                return None, reason
            intervals.append(bounds)
        (lo1, hi1), (lo2, hi2) = intervals
        lower = max((b for b in (lo1, lo2) if b is not None), key=lambda b: b.value, default=None)
        upper = min((b for b in (hi1, hi2) if b is not None), key=lambda b: b.value, default=None)
        return (lower, upper), None

    def check(self, context, x, inner_out, outer_out) -> MatchResult:
        result = MatchResult()
        merged, reason = self._merged(inner_out, outer_out)
        if reason:
            return result.fail(reason)
        lower, upper = merged
        if lower is not None and upper is not None and lower.value > upper.value:
            return result.fail(
                f"the intervals do not overlap ([{lower.value:g}, {upper.value:g}] is empty): "
                "the pair outputs a constant"
            )
        if reason := self.clip_type_reason(x):
            return result.fail(reason)
        return result

    def rewrite(self, op, x, inner_out, outer_out):
        (lower, upper), _reason = self._merged(inner_out, outer_out)
        return self.emit_clip(op, x, lower, upper, outer_out.name)


# ---------------------------------------------------------------------------------------------
# Hard-sigmoid and hard-swish

_SIXTH = 1.0 / 6.0


def _relu6_of_shift(op, a, b):
    """``Clip(Add(a, b), ...)``: relu6(x + 3), its bounds and the Add's operands checked later."""
    return op.Clip(
        op.Add(a, b, _outputs=["shift_out"]),
        _allow_other_inputs=True,
        _outputs=["relu6_out"],
    )


def _check_relu6_of_shift(a, b, relu6_out, x: ir.Value | None = None):
    """(x, None) for ``Clip(Add(x, 3), 0, 6)`` (``x`` given: that x), else (None, reason)."""
    if x is None:
        split = _split_constant(a, b)
        if split is None:
            return None, "the Add before the Clip has no single constant operand"
        x, three = split
    else:
        three = _other_operand(a, b, x)
        if three is None:
            return None, (
                f"the Add before the Clip does not read '{x.name}', the tensor the Mul scales"
            )
    if reason := _expect(three, 3.0, "the Add's constant", "3", like=x):
        return None, reason
    if reason := _is_relu6(relu6_out.producer()):
        return None, reason
    return x, None


def _check_scale(scale: ir.Value, by_division: bool, like: ir.Value) -> str | None:
    if by_division:
        return _expect(scale, 6.0, "the divisor", "6", like=like)
    return _expect(scale, _SIXTH, "the scale", "1/6", exact=False, like=like)


def _gate_reason(gate_op: str, x: ir.Value, gated: ir.Value) -> str:
    return (
        f"the {gate_op} reads '{gated.name}', not '{x.name}', the tensor it scales: "
        "a gate (as in squeeze-excitation), not an activation of one tensor"
    )


class HardSigmoidFusion(_OpsetRule):
    """``Div(Clip(Add(x, 3), 0, 6), 6)`` / ``Mul(..., 1/6)`` -> ``HardSigmoid(x, 1/6, 0.5)``.

    Variants: ``scale`` ("div", "mul", "mul_swapped").
    """

    def pattern(self, op, a, b, scale):
        relu6 = _relu6_of_shift(op, a, b)
        if self.variant["scale"] == "div":
            return op.Div(relu6, scale)
        if self.variant["scale"] == "mul":
            return op.Mul(relu6, scale)
        return op.Mul(scale, relu6)

    def check(self, context, a, b, scale, relu6_out, **_) -> MatchResult:
        result = MatchResult()
        x, reason = _check_relu6_of_shift(a, b, relu6_out)
        if reason:
            return result.fail(reason)
        if reason := _check_scale(scale, self.variant["scale"] == "div", x):
            return result.fail(reason)
        return result

    def rewrite(self, op, a, b, scale, relu6_out, **_):
        x, _reason = _check_relu6_of_shift(a, b, relu6_out)
        return op.HardSigmoid(x, alpha=_SIXTH, beta=0.5)


class HardSwishFusion(_OpsetRule):
    """``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))`` -> ``HardSwish(x)``.

    Variants: ``swapped`` (the HardSigmoid is the Mul's first input).
    """

    def pattern(self, op, x, gated):
        gate = op.HardSigmoid(gated, _outputs=["gate_out"])
        return op.Mul(gate, x) if self.variant["swapped"] else op.Mul(x, gate)

    def check(self, context, x, gated, gate_out) -> MatchResult:
        result = MatchResult()
        gate = gate_out.producer()
        if gated is not x:
            return result.fail(_gate_reason("HardSigmoid", x, gated))
        alpha = gate.attributes.get_float("alpha", 0.2)
        beta = gate.attributes.get_float("beta", 0.5)
        if abs(alpha - _SIXTH) > _DECIMAL_ROUNDING * _SIXTH:
            return result.fail(f"HardSigmoid '{gate.name}' alpha is {alpha:.9g}, not 1/6")
        if beta != 0.5:
            return result.fail(f"HardSigmoid '{gate.name}' beta is {beta:.9g}, not 0.5")
        if self.opset < HARD_SWISH_OPSET:
            return result.fail(_need_opset("HardSwish", HARD_SWISH_OPSET, self.opset))
        return result

    def rewrite(self, op, x, gated, gate_out):
        return op.HardSwish(x)


class HardSwishFromRelu6(_OpsetRule):
    """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` / ``Mul(Mul(...), 1/6)`` -> ``HardSwish(x)``,
    or ``Mul(x, HardSigmoid(x))`` before opset 14.

    Variants: ``scale`` ("div", "mul", "mul_swapped").
    """

    def pattern(self, op, x, a, b, scale):
        relu6 = _relu6_of_shift(op, a, b)
        product = OrValue([op.Mul(x, relu6), op.Mul(relu6, x)])
        if self.variant["scale"] == "div":
            return op.Div(product, scale)
        if self.variant["scale"] == "mul":
            return op.Mul(product, scale)
        return op.Mul(scale, product)

    def check(self, context, x, a, b, scale, relu6_out, **_) -> MatchResult:
        result = MatchResult()
        _x, reason = _check_relu6_of_shift(a, b, relu6_out, x)
        if reason:
            return result.fail(reason)
        if reason := _check_scale(scale, self.variant["scale"] == "div", x):
            return result.fail(reason)
        return result

    def rewrite(self, op, x, **_):
        if self.opset >= HARD_SWISH_OPSET:
            return op.HardSwish(x)
        return op.Mul(x, op.HardSigmoid(x, alpha=_SIXTH, beta=0.5))


# ---------------------------------------------------------------------------------------------
# GELU

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_COEFFICIENT = 0.044715


class _GeluRule(_OpsetRule):
    """The three association orders of ``x * 0.5 * core`` around a GELU core, ``1 + Erf(...)``
    or ``1 + Tanh(...)``, which binds ``x`` itself.

    Variants: ``form`` "a" ``(x * core) * 0.5``, "b" ``x * (core * 0.5)``, "c"
    ``(x * 0.5) * core``; ``swapped`` (the root Mul's operands); for form "c" with the core
    second, ``half_first`` (``Mul(0.5, x)``): there x and 0.5 are met before the core binds x.
    """

    approximate: str

    def gelu(self, op, x, half, core):
        form, swapped = self.variant["form"], self.variant["swapped"]
        if form == "a":
            product = OrValue([op.Mul(x, core), op.Mul(core, x)])
            return op.Mul(half, product) if swapped else op.Mul(product, half)
        if form == "b":
            scaled = OrValue([op.Mul(core, half), op.Mul(half, core)])
            return op.Mul(scaled, x) if swapped else op.Mul(x, scaled)
        if swapped:  # core first: it binds x, so either order of x * 0.5 is safe
            return op.Mul(core, OrValue([op.Mul(x, half), op.Mul(half, x)]))
        halved = op.Mul(half, x) if self.variant["half_first"] else op.Mul(x, half)
        return op.Mul(halved, core)

    def check_outer(self, x, one, half) -> str | None:
        if reason := _expect(one, 1.0, "the constant added to the core", "1", like=x):
            return reason
        if reason := _expect(half, 0.5, "the factor", "0.5", like=x):
            return reason
        if self.opset < GELU_OPSET:
            return _need_opset("Gelu", GELU_OPSET, self.opset)
        return None

    def rewrite(self, op, x, **_):
        return op.Gelu(x, approximate=self.approximate)


class GeluFusion(_GeluRule):
    """``x * 0.5 * (1 + Erf(x / sqrt(2)))`` -> ``Gelu(x)``."""

    approximate = "none"

    def pattern(self, op, x, scale, one, half):
        scaled = OrValue(
            [op.Div(x, scale), op.Mul(x, scale)], tag_var="scale_op", tag_values=["Div", "Mul"]
        )
        erf = op.Erf(scaled)
        core = OrValue([op.Add(erf, one), op.Add(one, erf)])
        return self.gelu(op, x, half, core)

    def check(self, context, x, scale, one, half, scale_op) -> MatchResult:
        result = MatchResult()
        if scale_op == "Div":
            reason = _expect(scale, _SQRT_2, "the divisor", "sqrt(2)", exact=False, like=x)
        else:
            reason = _expect(scale, 1 / _SQRT_2, "the scale", "1/sqrt(2)", exact=False, like=x)
        if reason or (reason := self.check_outer(x, one, half)):
            return result.fail(reason)
        return result


class GeluTanhFusion(_GeluRule):
    """``x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` -> ``Gelu(x, "tanh")``."""

    approximate = "tanh"

    def pattern(self, op, x, three, coefficient, scale, one, half):
        cube = op.Pow(x, three)
        cubic = OrValue([op.Mul(cube, coefficient), op.Mul(coefficient, cube)])
        inner = OrValue([op.Add(x, cubic), op.Add(cubic, x)])
        scaled = OrValue([op.Mul(inner, scale), op.Mul(scale, inner)])
        tanh = op.Tanh(scaled)
        core = OrValue([op.Add(tanh, one), op.Add(one, tanh)])
        return self.gelu(op, x, half, core)

    def check(self, context, x, three, coefficient, scale, one, half) -> MatchResult:
        result = MatchResult()
        reason = (
            _expect(three, 3.0, "the exponent", "3")
            or _expect(
                coefficient, _TANH_COEFFICIENT, "the cubic coefficient", "0.044715",
                exact=False, like=x,
            )
            or _expect(
                scale, _SQRT_2_OVER_PI, "the Tanh's scale", "sqrt(2/pi)", exact=False, like=x
            )
            or self.check_outer(x, one, half)
        )
        if reason:
            return result.fail(reason)
        return result


def _gelu_rules(cls: type[_GeluRule], opset: int) -> list[RewriteRule]:
    variants = [
        dict(form=form, swapped=swapped, half_first=False)
        for form in "abc"
        for swapped in (False, True)
    ]
    variants.append(dict(form="c", swapped=False, half_first=True))
    return [cls.rule(opset, **variant) for variant in variants]


# ---------------------------------------------------------------------------------------------


def _op_types(model: ir.Model) -> set[str]:
    return {
        node.op_type
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
        if node.domain in ("", "ai.onnx")
    }


@register
class FuseActivations(RewriteRulePass):
    name = "fuse_activations"
    description = (
        "rewrite hard-swish, hard-sigmoid, GELU and clamp chains into the single op the "
        "model's opset has"
    )

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        opset = default_opset(model.opset_imports)
        ops = _op_types(model)
        names = _FreshNames(model)
        # Every rule walks the whole graph each round, so rules whose ops the model lacks (and
        # that no earlier rule can create) are left out. Order matters within a round:
        # Min/Max become Clip before the relu6 rules look for Clip.
        rules: list[RewriteRule] = []
        if {"Min", "Max"} <= ops:
            rules += [
                MinMaxToClip.rule(opset, names, outer=outer, swapped=swapped)
                for outer in ("Min", "Max")
                for swapped in (False, True)
            ]
        if ops & {"Relu", "Clip", "Min", "Max"}:
            rules.append(upstream.FuseSuccessiveRelu.rule())
            rules += [
                MergeClamps.rule(opset, names, outer=outer, inner=inner)
                for outer, inner in (("Clip", "Clip"), ("Clip", "Relu"), ("Relu", "Clip"))
            ]
        if ops & {"Clip", "Min", "Max"}:
            for scale in ("div", "mul", "mul_swapped"):
                rules.append(HardSwishFromRelu6.rule(opset, scale=scale))
                rules.append(HardSigmoidFusion.rule(opset, scale=scale))
        if ops & {"Clip", "Min", "Max", "HardSigmoid"}:
            rules += [HardSwishFusion.rule(opset, swapped=swapped) for swapped in (False, True)]
        if "Erf" in ops:
            rules += _gelu_rules(GeluFusion, opset)
        if "Tanh" in ops and "Pow" in ops:
            rules += _gelu_rules(GeluTanhFusion, opset)
        if rules:
            # The rank checks on broadcast constants and the Clip bounds' type need the ranks
            # and types of intermediate tensors, which exported models often do not record.
            # It only annotates values; non-strict, so a node it cannot infer (a custom op)
            # leaves that node's outputs unannotated instead of failing the whole model.
            ShapeInferencePass(strict_mode=False)(model)
        return rules
