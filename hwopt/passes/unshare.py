"""Give a layer its own copy of a shared constant weight before a fold rewrites it.

A fold (a BatchNorm, or a per-channel scale or shift, absorbed into the Conv, ConvTranspose,
Gemm or MatMul before it) rewrites that layer's weight and bias; when other layers read the
same tensor, the rules decline, because the rewrite would change them too. Exporters rarely
share weights, but deduplication makes equal tensors one: the onnx package's ``light_*`` models
build every weight with ConstantOfShape, so after constant folding all weights of one shape are
the same tensor, and 45 of light_resnet50's 53 BatchNorms stayed unfolded. Copying the shared
tensor for each layer whose only consumer will fold costs the bytes the fold would have
written anyway (a folded weight is a new tensor) and lets the rules apply.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from hwopt.passes.values import fresh_name

LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def unshare_weights(graph: ir.Graph, folds_into: Callable[[ir.Node], bool]) -> int:
    """For every layer whose output has one consumer and ``folds_into(consumer)``, replace each
    shared constant initializer it reads (weight, bias) by a private copy; returns the count."""
    copied = 0
    taken = {*graph.initializers, *(v.name for node in graph for v in node.outputs)}
    for layer in list(graph):
        if layer.op_type not in LAYERS or layer.domain not in ("", "ai.onnx") or not layer.outputs:
            continue
        uses = list(layer.outputs[0].uses())
        if len(uses) != 1 or not folds_into(uses[0].node):
            continue
        for slot in range(1, len(layer.inputs)):
            value = layer.inputs[slot]
            if value is None or value.const_value is None or not value.is_initializer() or len(value.uses()) < 2:
                continue
            name = fresh_name(taken, f"{value.name}_{layer.name or layer.op_type}")
            taken.add(name)
            # A new tensor, not the shared one: onnx-ir serializes a tensor read from a proto by
            # renaming that proto, which would rename the caller's initializer too.
            private = ir.Value(name=name, shape=value.shape, type=value.type,
                               const_value=ir.tensor(value.const_value.numpy().copy(), name=name))
            graph.register_initializer(private)
            layer.replace_input_with(slot, private)
            copied += 1
    return copied


def constant_operand(node: ir.Node) -> bool:
    """Whether a binary node has a constant operand (the scale or shift of a fold)."""
    return len(node.inputs) == 2 and any(v is not None and v.const_value is not None for v in node.inputs)


class UnshareBeforeFolding:
    """Mixin for a fold's RewriteRulePass: copy shared weights where ``folds_into`` says the
    layer's consumer will fold, then run the rules. When no rule fires the pass reports no
    change, and the pipeline keeps the model as it was (copies included in nothing)."""

    def folds_into(self, node: ir.Node) -> bool:
        raise NotImplementedError

    def run(self, model: ir.Model, ctx):
        copied = unshare_weights(model.graph, self.folds_into)
        result = super().run(model, ctx)
        if copied and result.changed:
            result.notes.append(f"{copied} shared weight(s) copied so that the layers reading them could fold")
        return result
