"""Fuse transformer blocks into onnxruntime's contrib operators, with onnxruntime's own fusion code.

onnxruntime.transformers ships the pattern matchers that its BERT-family optimizer runs
(``onnxruntime.transformers.optimizer.optimize_model``); this pass calls them as a library
(python fusions only, ``opt_level=0``: onnxruntime's graph optimizer still runs when the
session is created) and rewrites, where the patterns match:

* the scaled dot-product attention block (Q/K/V MatMul+Add, Reshape/Transpose per head,
  ``softmax(Q K^T / sqrt(d) + mask) V``, the output projection's input) into one
  ``com.microsoft.Attention`` node, whose kernel packs the Q/K/V weights into one GEMM;
* ``LayerNormalization(x + residual (+ bias))`` into ``SkipLayerNormalization``;
* the erf form of GELU, ``0.5 x (1 + erf(x / sqrt 2))``, into ``Gelu``, and ``Gelu(x + b)``
  into ``BiasGelu``; word, position and segment embeddings with their LayerNorm into
  ``EmbedLayerNormalization`` where the graph has them.

Each fused kernel computes the same function as the nodes it replaces, with its own order of
float operations (softmax and LayerNorm in one loop), so outputs move by float rounding:
the tolerance is a little looser than a structural pass's.

Whether the fused graph is *faster* depends on the model and the host: on our 2-core hosts
onnxruntime's fused FP32 graphs ran at 1.02x and 1.15x the latency of the unfused ones at
sequence 128. So the cpu target runs this pass in a *measured variant* of its pipeline
(Target.measured_variants): first, on the exporter's graph, then the whole pipeline, every pass
verified; the build keeps the variant only when it races faster (hwopt.graph_choice), and the
INT8 search quantizes both graphs.

Options: ``model_type`` (default ``bert``; any type onnxruntime's optimizer knows, such as
``bert``, ``gpt2``, ``vit``), ``num_heads`` and ``hidden_size`` (default 0: detected here).
onnxruntime's own detection reads one Reshape's constant shape and gives up on exports that
build that shape at run time (every BertModel export from transformers 5 we tried), leaving
attention unfused; so hwopt reads them itself: ``hidden_size`` is the width most
LayerNormalizations normalize, and ``num_heads`` the ``H`` of the 4-D Reshapes to
``[batch, seq, H, hidden / H]``, from constant shapes or the constant parts of a Concat that
builds one.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from hwopt.guard import phase
from hwopt.output import quiet_logger
from hwopt.passes.base import Pass, PassContext, PassResult, Tolerance
from hwopt.passes.registry import register

# The contrib operators the fusions write; a graph that gains none of them is unchanged.
FUSED_OPS = (
    "Attention", "MultiHeadAttention", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
    "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "BiasSplitGelu", "LayerNormalization",
)


# Every fusion starts from one of these: attention from Softmax, (Skip)LayerNorm from a
# LayerNormalization or the ReduceMean chain it fuses first, GELU from Erf, Tanh or Gelu. A
# graph with none of them (a CNN) is left alone without running onnxruntime's optimizer, whose
# symbolic shape inference took 57 s on PP-OCRv4 det's Resize nodes to find nothing.
ANCHOR_OPS = frozenset({"Softmax", "LayerNormalization", "SimplifiedLayerNormalization", "ReduceMean", "Erf",
                        "Tanh", "Gelu"})


@register
class FuseTransformer(Pass):
    name = "fuse_transformer"
    description = "attention, SkipLayerNorm, GELU and bias fusions into onnxruntime contrib ops"
    # Fused softmax and LayerNorm kernels round differently from the unfused chain.
    tolerance = Tolerance(rtol=1e-4, atol=1e-5, noise_factor=4.0)
    option_defaults = {"model_type": "bert", "num_heads": 0, "hidden_size": 0}

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers.optimizer import optimize_model

        if not any(node.op_type in ANCHOR_OPS for node in model.graph):
            result = PassResult(model)
            result.notes.append("no transformer pattern can match: no Softmax, LayerNorm, ReduceMean or GELU op")
            return result
        proto = ir.serde.serialize_model(model)
        before = Counter(node.op_type for node in proto.graph.node)
        nodes_before = len(proto.graph.node)
        heads, hidden = int(ctx.options.get("num_heads", 0)), int(ctx.options.get("hidden_size", 0))
        if not heads or not hidden:
            heads, hidden = detect_attention_shape(proto.graph)
        with (
            phase("onnxruntime transformer fusions", "pass"),
            quiet_logger(),
            quiet_logger("onnxruntime.transformers"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            fused = optimize_model(
                proto,
                model_type=str(ctx.options.get("model_type", "bert")),
                num_heads=heads,
                hidden_size=hidden,
                opt_level=0,
            ).model  # (optimize_model rewrites ``proto`` in place and returns it)
        after = Counter(node.op_type for node in fused.graph.node)
        gained = {op: after[op] - before[op] for op in FUSED_OPS if after[op] > before[op]}
        result = PassResult(model)
        if not gained:
            result.notes.append("no transformer pattern matched (no attention, SkipLayerNorm or GELU block found)")
            return result
        if not any(o.domain == "com.microsoft" for o in fused.opset_import):
            fused.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
        result.model = ir.serde.deserialize_model(fused)
        result.rewrites.update(gained)
        result.notes.append(f"{nodes_before} -> {len(fused.graph.node)} nodes"
                            + (f"; attention: {heads} heads, hidden size {hidden}" if heads else ""))
        return result


def detect_attention_shape(graph: onnx.GraphProto) -> tuple[int, int]:
    """(num_heads, hidden_size) read from the graph (see the module docstring), (0, 0) where
    it shows none."""
    constants = {init.name: init for init in graph.initializer}
    constants.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                      if a.name == "value"})
    widths = Counter(
        int(np.prod(constants[n.input[1]].dims)) for n in graph.node
        if n.op_type == "LayerNormalization" and len(n.input) > 1 and n.input[1] in constants
    )
    if not widths:
        return 0, 0
    hidden = widths.most_common(1)[0][0]
    producers = {out: n for n in graph.node for out in n.output}
    votes: Counter[int] = Counter()
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = _constant_parts(node.input[1], constants, producers)
        if shape is None or len(shape) != 4:
            continue
        heads, size = shape[2], shape[3]
        if heads > 0 and size > 0 and heads * size == hidden:
            votes[heads] += 1
        elif heads > 0 and size == -1 and hidden % heads == 0:
            votes[heads] += 1
        elif heads == -1 and size > 0 and hidden % size == 0:
            votes[hidden // size] += 1
    return (votes.most_common(1)[0][0], hidden) if votes else (0, 0)


def _constant_parts(value: str, constants, producers) -> list[int] | None:
    """The values of a shape tensor, with -2 for the parts computed at run time."""
    if value in constants:
        return [int(v) for v in numpy_helper.to_array(constants[value]).reshape(-1)]
    node = producers.get(value)
    if node is None or node.op_type != "Concat":
        return None
    parts: list[int] = []
    for part in node.input:
        if part in constants:
            parts += [int(v) for v in numpy_helper.to_array(constants[part]).reshape(-1)]
        else:
            source = producers.get(part)
            # A dynamic dim is one element: Unsqueeze of a scalar Gather from Shape.
            if source is None or source.op_type not in ("Unsqueeze", "Reshape", "Gather", "Slice"):
                return None
            parts.append(-2)
    return parts
