"""Turn a 2-D MatMul followed by Add into one Gemm, folding a 2-D Transpose of either operand
into ``transA``/``transB``::

    Add(MatMul(A, B), C)                          = Gemm(A, B, C)
    Add(MatMul(Transpose(A, perm=[1, 0]), B), C)  = Gemm(A, B, C, transA=1)
    Add(MatMul(A, Transpose(B, perm=[1, 0])), C)  = Gemm(A, B, C, transB=1)
    Add(MatMul(Transpose(A), Transpose(B)), C)    = Gemm(A, B, C, transA=1, transB=1)

Gemm computes ``alpha * A' B' + beta * C`` (``A'`` is A or its transpose), here with
``alpha = beta = 1``: the same product and the same sum, so the rewrite is exact up to float
rounding. It holds when

* A and B are matrices: Gemm is 2-D only. A MatMul of rank 3 (a transformer's [B, S, D]
  activations) is declined: reshaping it to 2-D and back around a Gemm would add two nodes
  for the one it saves;
* C broadcasts to the product's [M, N] *unidirectionally*: Add broadcasts both ways, so
  ``Add(MatMul(...) [4, 1], C [4, 6])`` is [4, 6], but Gemm's C may not widen the product.
  C may be any tensor (a bias or a residual) whose shape is known to fit.

The rules are onnxscript's ``_matmul_add_to_gemm`` rules with hwopt's check in front: theirs
only asks for rank-2 A and B, and rewrites ``Add(MatMul [M, N], C)`` with a C of rank 3, or
one that widens the product, into a Gemm that fails shape inference. The Add may take the
MatMul on either side. An intermediate MatMul or Transpose output with other consumers is
declined by the matcher ("other uses"). ``Add(m, m)`` is declined too: onnxscript's rules
would rewrite it into a Gemm that reads the MatMul it removes, and the rewriter raises.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule

from hwopt import upstream
from hwopt.passes.base import PassContext, default_opset
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass

# Gemm before opset 11 is defined for these element types only; MatMul also takes integers.
_GEMM_TYPES_BEFORE_11 = (ir.DataType.FLOAT16, ir.DataType.FLOAT, ir.DataType.DOUBLE)


def _same_dim(a: int | ir.SymbolicDim, b: int | ir.SymbolicDim) -> bool:
    """Whether two dimensions are known to be equal (two unknown dimensions are not)."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a.value is not None and a.value == b.value


class _GemmShapesFit:
    """Mixin: hwopt's shape checks before the onnxscript rule's own rank check."""

    trans_a: bool
    trans_b: bool

    def check(self, context, input_a, input_b, input_c, **kwargs) -> MatchResult:
        result = MatchResult()
        for role, value in (("A", input_a), ("B", input_b)):
            if value.shape is None:
                return result.fail(
                    f"the shape of MatMul input {role} '{value.name}' is unknown (shape "
                    "inference could not resolve it; fixed input shapes may help)"
                )
            if value.shape.rank() != 2:
                return result.fail(
                    f"MatMul input {role} '{value.name}' has rank {value.shape.rank()} "
                    f"({value.shape}); Gemm is 2-D only and reshaping around it would add nodes"
                )
        opset = default_opset(context.model.opset_imports)
        if opset < 11 and input_a.dtype not in _GEMM_TYPES_BEFORE_11:
            return result.fail(
                f"Gemm before opset 11 does not take {input_a.dtype} (model opset {opset})"
            )
        if input_c.producer() in context.nodes:
            # Add(m, m): the Gemm would read the product it replaces.
            return result.fail(
                f"Add operand '{input_c.name}' is computed by the MatMul it would be fused with"
            )
        rows = input_a.shape[1 if self.trans_a else 0]
        cols = input_b.shape[0 if self.trans_b else 1]
        bias = input_c.shape
        if bias is None:
            return result.fail(f"the shape of Add operand '{input_c.name}' is unknown")
        fits = bias.rank() <= 2 and all(
            dim == 1 or _same_dim(dim, product_dim)
            for dim, product_dim in zip(reversed(list(bias)), (cols, rows))
        )
        if not fits:
            return result.fail(
                f"Add operand '{input_c.name}' of shape {bias} does not broadcast to the "
                f"product's [{rows}, {cols}] without widening it; Gemm's C must"
            )
        return super().check(context, input_a=input_a, input_b=input_b, input_c=input_c, **kwargs)


class FuseMatMulAdd(_GemmShapesFit, upstream.MatMulAddToGemm):
    """``Add(MatMul(A, B), C)`` -> ``Gemm(A, B, C)``."""


class FuseTransposeAMatMulAdd(_GemmShapesFit, upstream.TransAMatMulAddToGemm):
    """``Add(MatMul(Transpose(A), B), C)`` -> ``Gemm(A, B, C, transA=1)``."""


class FuseTransposeBMatMulAdd(_GemmShapesFit, upstream.TransBMatMulAddToGemm):
    """``Add(MatMul(A, Transpose(B)), C)`` -> ``Gemm(A, B, C, transB=1)``."""


class FuseTransposeABMatMulAdd(_GemmShapesFit, upstream.TransABMatMulAddToGemm):
    """``Add(MatMul(Transpose(A), Transpose(B)), C)`` -> ``Gemm(A, B, C, transA=1, transB=1)``."""


@register
class MatMulAddToGemm(RewriteRulePass):
    # The checks need the ranks and shapes of intermediate values.
    needs_shapes = True
    name = "matmul_add_to_gemm"
    description = "turn a 2-D MatMul + Add into Gemm, folding 2-D Transposes into transA/transB"

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        # The most specific pattern first, so that a Transpose is folded rather than left.
        rules = [
            FuseTransposeABMatMulAdd(),
            FuseTransposeAMatMulAdd(),
            FuseTransposeBMatMulAdd(),
            FuseMatMulAdd(),
        ]
        # Add takes the MatMul on either side.
        return [variant for rule in rules for variant in rule.rule().commute()]
