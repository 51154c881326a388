"""Fold BatchNormalization into the Conv, ConvTranspose, Gemm or MatMul that feeds it.

At inference BatchNormalization is a per-channel affine map, so it can be absorbed by the
weights of a linear producer with constant weights::

    s  = gamma / sqrt(var + eps)
    W' = W * s            (along the producer's output-channel axis)
    b' = (b - mean) * s + beta

Conv, ConvTranspose (grouped too) and Gemm use onnxscript's rules. MatMul is hwopt's own:
``BatchNormalization(MatMul(X[M, K], W[K, N]))`` normalizes over N, the columns of W, and
becomes ``Gemm(X, W * s, b')``. A MatMul of higher rank is declined: BatchNormalization's
channel axis is then not W's output axis.

Declined when a producer's weights or the BatchNorm's statistics are not constants, when
the producer's output feeds other nodes too, or when the BatchNorm runs in training mode.

A weight several producers share is first copied for each producer that feeds a foldable
BatchNorm (hwopt.passes.unshare says why).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from hwopt import upstream
from hwopt.passes.base import PassContext
from hwopt.passes.registry import register
from hwopt.passes.rewrite import RewriteRulePass
from hwopt.passes.unshare import UnshareBeforeFolding


def _inference_mode(batchnorm: ir.Node) -> MatchResult:
    result = MatchResult()
    training = batchnorm.attributes.get("training_mode")
    if training is not None and training.as_int() != 0:
        return result.fail(f"BatchNorm '{batchnorm.name}' runs in training mode")
    if len(batchnorm.outputs) > 1 and any(out.uses() for out in batchnorm.outputs[1:]):
        return result.fail(f"BatchNorm '{batchnorm.name}' running statistics are used")
    # An initializer that is also a graph input is a default the caller may override
    # (drop_initializer_inputs makes such weights constants first, unless skipped).
    producer = batchnorm.inputs[0].producer() if batchnorm.inputs[0] is not None else None
    for value in [*batchnorm.inputs[1:5], *(producer.inputs[1:] if producer is not None else ())]:
        if value is not None and value.is_graph_input() and value.const_value is not None:
            return result.fail(f"'{value.name}' is a graph input: it may be fed at run time")
    return result


class _InferenceOnly:
    """Mixin: decline BatchNorms in training mode before the onnxscript rule's own check."""

    def check(self, context, x, inbound_out, batchnorm_out):
        result = _inference_mode(batchnorm_out.producer())
        if not result:
            return result
        return super().check(context, x, inbound_out, batchnorm_out)


class FoldBatchNormIntoConv(_InferenceOnly, upstream.FuseBatchNormIntoConv):
    pass


class FoldBatchNormIntoConvTranspose(_InferenceOnly, upstream.FuseBatchNormIntoConvTranspose):
    pass


class FoldBatchNormIntoGemm(_InferenceOnly, upstream.FuseBatchNormIntoGemm):
    pass


class FoldBatchNormIntoMatMul(RewriteRuleClassBase):
    """``BatchNormalization(MatMul(X, W))`` with X of rank 2 -> ``Gemm(X, W * s, b')``."""

    def pattern(self, op, x, weight):
        return op.BatchNormalization(
            op.MatMul(x, weight, _outputs=["matmul_out"]),
            _allow_other_inputs=True,
            _outputs=["batchnorm_out"],
        )

    def check(self, context, x, weight, matmul_out, batchnorm_out) -> MatchResult:
        result = _inference_mode(batchnorm_out.producer())
        if not result:
            return result
        batchnorm = batchnorm_out.producer()
        if weight.const_value is None:
            return result.fail(f"MatMul weight '{weight.name}' is not a constant")
        if len(weight.uses()) > 1:
            return result.fail(f"MatMul weight '{weight.name}' is shared with other nodes")
        if weight.const_value.shape.rank() != 2:
            return result.fail("MatMul weight is not a matrix")
        if x.shape is None or x.shape.rank() != 2:
            return result.fail(
                "MatMul input is not of rank 2: BatchNorm's channel axis is not the weight's columns"
            )
        for stat in batchnorm.inputs[1:5]:
            if stat is None or stat.const_value is None:
                return result.fail(f"BatchNorm statistic '{stat.name if stat else '?'}' is not a constant")
        return result

    def rewrite(self, op, x, weight, matmul_out, batchnorm_out):
        batchnorm = batchnorm_out.producer()
        gamma, beta, mean, var = (v.const_value.numpy() for v in batchnorm.inputs[1:5])
        eps = batchnorm.attributes.get_float("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        w = weight.const_value.numpy()
        fused_w = (w * scale[np.newaxis, :]).astype(w.dtype)
        fused_b = (beta - mean * scale).astype(w.dtype)
        return op.Gemm(
            x,
            op.initializer(ir.tensor(fused_w), name=f"{weight.name}_bn_folded"),
            op.initializer(ir.tensor(fused_b), name=f"{batchnorm.name or weight.name}_bn_bias"),
        )


def _foldable_batchnorm(node: ir.Node) -> bool:
    return (node.op_type == "BatchNormalization" and bool(_inference_mode(node))
            and all(s is not None and s.const_value is not None for s in node.inputs[1:5]))


@register
class FoldBatchNorm(UnshareBeforeFolding, RewriteRulePass):
    name = "fold_batchnorm"
    description = "fold BatchNormalization into the preceding Conv, ConvTranspose, Gemm or MatMul"

    def folds_into(self, node: ir.Node) -> bool:
        return _foldable_batchnorm(node)

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        return [
            FoldBatchNormIntoConv().rule(),
            FoldBatchNormIntoConvTranspose().rule(),
            FoldBatchNormIntoGemm().rule(),
            FoldBatchNormIntoMatMul().rule(),
        ]
