"""Drop graph inputs that are initializers, so that the weights they name are constants.

Before IR version 4 every initializer had to be listed as a graph input too (the onnx
package's own ``light_*`` models, Caffe2 and early exports); from IR 4 on, an initializer that
is also an input is a *default* the caller may override at run time. Either way no rewrite
may treat it as a constant: a BatchNorm whose scale could be fed stays unfolded (light_resnet50
kept 168 nodes where onnxslim left 123). A build is a deployment artefact whose weights are
fixed, so the cpu and GPU pipelines drop such inputs first, as onnxruntime's
``remove_initializer_from_input`` tool does (onnx-ir's ``RemoveInitializersFromInputsPass``),
raise the IR version to 4 where it was lower (the first version that allows an initializer that
is not an input), and let the folds that follow treat the weights as constants. Feeds never
included them (hwopt.feeds.inputs.graph_inputs), so the outputs are unchanged bit for bit.

Opt out with ``--skip-pass drop_initializer_inputs`` when a build must keep the weights
overridable.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common as ir_common

from hwopt.passes.base import BIT_EXACT, Pass, PassContext, PassResult
from hwopt.passes.registry import register

# The first IR version in which an initializer need not be a graph input.
MIN_IR_VERSION = 4


@register
class DropInitializerInputs(Pass):
    name = "drop_initializer_inputs"
    description = "graph inputs that name initializers become plain weights (foldable)"
    tolerance = BIT_EXACT

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        result = PassResult(model)
        names = [v.name for v in model.graph.inputs if v.name in model.graph.initializers]
        if not names:
            return result
        outcome = ir_common.RemoveInitializersFromInputsPass()(model)
        result.model = outcome.model
        if result.model.ir_version < MIN_IR_VERSION:
            result.notes.append(f"IR version {result.model.ir_version} -> {MIN_IR_VERSION}")
            result.model.ir_version = MIN_IR_VERSION
        result.rewrites["initializer inputs dropped"] = len(names)
        result.notes.append(
            f"{len(names)} graph input(s) that were initializers are weights now "
            f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); "
            "--skip-pass drop_initializer_inputs keeps them overridable"
        )
        return result
