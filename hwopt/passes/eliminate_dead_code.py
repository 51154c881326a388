"""Remove what no output depends on: dead nodes, unused initializers, functions and opsets,
and weights that old exporters also list as graph inputs.

Before IR version 4 every initializer had to be a graph input too; such "overridable"
initializers stop ONNX Runtime from treating weights as constants (no BatchNorm folding, no
constant folding on them). Removing them from the input list leaves the values and every
real input untouched; the only thing lost is the option to feed a weight at run time, which
an inference build does not need.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnx_ir.passes import common as ir_common

from hwopt.passes.base import PassContext
from hwopt.passes.irpass import OnnxIrPass
from hwopt.passes.registry import register


@register
class EliminateDeadCode(OnnxIrPass):
    name = "eliminate_dead_code"
    description = "remove dead nodes, unused initializers and opsets, and weights listed as inputs"

    def ir_passes(self, ctx: PassContext) -> Sequence[ir.passes.PassBase]:
        return [
            ir_common.RemoveInitializersFromInputsPass(),
            ir_common.RemoveUnusedNodesPass(),
            ir_common.RemoveUnusedFunctionsPass(),
            ir_common.RemoveUnusedOpsetsPass(),
        ]
