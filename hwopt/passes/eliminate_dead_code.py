"""Remove what no output depends on: dead nodes, unused initializers, functions and opsets.

Weights that old exporters also list as graph inputs are drop_initializer_inputs' to remove
(first in the pipeline, with a report line and an opt-out), not this pass's.
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
    description = "remove dead nodes, unused initializers, functions and opsets"

    def ir_passes(self, ctx: PassContext) -> Sequence[ir.passes.PassBase]:
        return [
            ir_common.RemoveUnusedNodesPass(),
            ir_common.RemoveUnusedFunctionsPass(),
            ir_common.RemoveUnusedOpsetsPass(),
        ]
