"""Compute each expression once: two nodes with the same operator, attributes and inputs
are merged, and the second one's consumers read the first one's outputs.

Exporters repeat shape computations (``Shape(x)`` for every Reshape of ``x``) and sometimes
whole branches. Non-deterministic operators (RandomNormal and friends) are never merged
(onnx-ir's CommonSubexpressionEliminationPass skips them), nor are nodes with subgraphs.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnx_ir.passes import common as ir_common

from hwopt.passes.base import PassContext
from hwopt.passes.irpass import OnnxIrPass
from hwopt.passes.registry import register


@register
class EliminateCommonSubexpressions(OnnxIrPass):
    name = "eliminate_common_subexpressions"
    description = "merge nodes that compute the same thing from the same inputs"

    def ir_passes(self, ctx: PassContext) -> Sequence[ir.passes.PassBase]:
        return [ir_common.CommonSubexpressionEliminationPass()]
