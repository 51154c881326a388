"""Constant folding and shape simplification with onnxsim.

onnxsim runs ONNX Runtime on every constant subgraph and replaces it by its value, simplifies
shape computations it can resolve, and applies onnxoptimizer's fusions (BatchNorm into Conv,
Pad into Conv, transpose merging, dead-code elimination). It keeps symbolic input dimensions.
Its own output check is off (``check_n=0``): the pipeline verifies every pass the same way.

Graph inputs that are also initializers (weights a caller may override) stay inputs, and are
not folded (onnxsim's ``mutable_initializer``): drop_initializer_inputs, earlier in the
pipeline, is where a build decides to make them constants, and skipping it keeps them.

Option ``optimize`` (default true) runs onnxsim's graph optimizer too; hwopt's cpu pipeline
turns it off and does the fusions with its own passes, because onnxsim's optimizer rewrites
rank-3 MatMul+Add into Reshape-Gemm-Reshape with shape arithmetic (the transformer sample went
from 85 to 93 nodes and 8% slower under ORT).
"""

from __future__ import annotations

import onnx_ir as ir
import onnxsim

from hwopt.feeds.inputs import graph_inputs
from hwopt.guard import phase
from hwopt.passes.base import Pass, PassContext, PassResult
from hwopt.passes.registry import register


@register
class Simplify(Pass):
    name = "simplify"
    description = "constant folding and shape simplification (onnxsim)"
    option_defaults = {"optimize": True}

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        proto = ir.serde.serialize_model(model)
        with phase("onnxsim", "simplify"):
            simplified, _ = onnxsim.simplify(
                proto, check_n=0, perform_optimization=bool(ctx.options.get("optimize", True)),
                mutable_initializer=len(graph_inputs(proto.graph)) < len(proto.graph.input),
            )
        result = PassResult(model)
        if simplified.graph.SerializeToString() == proto.graph.SerializeToString():
            return result
        result.model = ir.serde.deserialize_model(simplified)
        result.rewrites["onnxsim"] = 1
        result.notes.append(
            f"onnxsim: {len(proto.graph.node)} -> {len(simplified.graph.node)} top-level nodes"
        )
        return result

