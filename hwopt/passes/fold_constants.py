"""Evaluate what does not depend on the inputs: onnxscript's constant folder.

Complements ``simplify`` (onnxsim): onnxscript's folder works on onnx-ir in place, folds
inside If/Loop bodies, resolves ``Shape``/``Size`` of statically known dimensions (so shape
arithmetic written by exporters collapses even with a symbolic batch), and replaces an If
whose condition is constant by the branch it takes. Large outputs (over onnxscript's size
limit) are left unfolded so the model does not grow.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common as ir_common
from onnxscript import optimizer

from hwopt.passes.base import Pass, PassContext, PassResult
from hwopt.passes.irpass import count_nodes
from hwopt.passes.registry import register


@register
class FoldConstants(Pass):
    name = "fold_constants"
    description = "fold constant subgraphs and static shape arithmetic (onnxscript)"

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        before = count_nodes(model)
        folded = optimizer.fold_constants_ir(model, onnx_shape_inference=True)
        ir_common.RemoveUnusedNodesPass()(model)
        result = PassResult(model)
        removed = before - count_nodes(model)
        if folded.modified or removed:
            result.rewrites["folded"] = max(1, removed)
            result.notes.append(f"{removed} node(s) folded away")
        return result
