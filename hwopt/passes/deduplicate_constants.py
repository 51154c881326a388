"""Make every constant one initializer: lift Constant nodes into initializers, then merge
initializers with equal dtype, shape and bytes (main graph and each subgraph).

A Constant node is a node only on paper (ONNX Runtime turns it into an initializer at load),
so lifting it changes nothing at run time and leaves the graph with only nodes that compute.
Equal weights (exporters repeat small constants such as shape vectors, axes and scalars, and
sometimes whole tensors) are stored once.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnx_ir.passes import common as ir_common

from hwopt.passes.base import PassContext
from hwopt.passes.irpass import OnnxIrPass
from hwopt.passes.registry import register


@register
class DeduplicateConstants(OnnxIrPass):
    name = "deduplicate_constants"
    description = "lift Constant nodes to initializers and merge equal initializers"

    def ir_passes(self, ctx: PassContext) -> Sequence[ir.passes.PassBase]:
        return [
            ir_common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            ir_common.DeduplicateHashedInitializersPass(),
        ]
