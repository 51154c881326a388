"""FP16 conversion for GPU targets, and the check that it stayed accurate.

onnxruntime's own converter (``onnxruntime.transformers.float16``) does the conversion with
inputs and outputs kept in float32 (callers keep feeding float32), and with operators kept
in float32 that have no FP16 kernel or overflow FP16's range (65504): its default block
list plus exponentials, powers and squared reductions, whose intermediate values grow fast.

The converter wraps every float32 island in Cast nodes, which leaves cascades between two
adjacent islands: ``Cast(to=float32)(Cast(to=float16)(x))`` of a float32 ``x`` (a lossy
round trip: removing it keeps more precision) and ``Cast(to=float16)(Cast(to=float32)(y))``
of a float16 ``y`` (exact). Both are removed.

The FP16 model is then run on the CPU provider against the float32 model's outputs, within
:data:`FP16_TOLERANCE`; a model that drifts further ships in float32 with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from hwopt.errors import one_line
from hwopt.targets.base import Check
from hwopt.verify import VerificationFailed, compare_outputs, run_model

OVERFLOW_PRONE = ("Exp", "Pow", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softplus", "Log")
FP16_BLOCK_LIST = tuple(DEFAULT_OP_BLOCK_LIST) + OVERFLOW_PRONE
# FP16 has an 11-bit significand (~3 decimal digits): outputs move by up to ~1e-3 relative
# per layer; a model is accepted when it keeps its outputs' direction and scale.
FP16_TOLERANCE = {"min_cosine": 0.999, "max_rel": 2e-2}


def convert_to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The FP16 model with float32 inputs and outputs, and how many Cast nodes were removed."""
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_BLOCK_LIST))
    return remove_cast_round_trips(converted)


def remove_cast_round_trips(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    irm = ir.serde.deserialize_model(model)
    removed = 0
    for node in list(ir.traversal.RecursiveGraphIterator(irm.graph)):
        if node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
            continue
        inner = node.inputs[0].producer() if node.inputs[0] is not None else None
        if inner is None or inner.op_type != "Cast" or inner.graph is not node.graph:
            continue
        source = inner.inputs[0]
        outer_to = ir.DataType(node.attributes.get_int("to", 0))
        if source is None or source.dtype != outer_to or node.outputs[0].is_graph_output():
            continue
        if source.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
            continue
        node.outputs[0].replace_all_uses_with(source)
        node.graph.remove(node, safe=True)
        removed += 1
        if not inner.outputs[0].uses() and not inner.outputs[0].is_graph_output():
            inner.graph.remove(inner, safe=True)
            removed += 1
    return ir.serde.serialize_model(irm), removed


def check_fp16(
    model: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    references: Sequence[Mapping[str, np.ndarray]],
) -> Check:
    """Run the FP16 model on the CPU provider and compare with the float32 outputs."""
    name = "fp16 outputs vs float32 (CPU provider)"
    try:
        diffs = [d for f, r in zip(feeds, references) for d in compare_outputs(r, run_model(model, f))]
    except VerificationFailed as exc:
        return Check(name, False, f"the FP16 model does not run on the CPU provider here: {one_line(exc)}")
    cosine = min(d.cosine for d in diffs)
    max_rel = max(d.max_rel for d in diffs)
    passed = cosine >= FP16_TOLERANCE["min_cosine"] and max_rel <= FP16_TOLERANCE["max_rel"]
    detail = (
        f"cosine {cosine:.5f} (>= {FP16_TOLERANCE['min_cosine']}), max rel {max_rel:.2e} "
        f"(<= {FP16_TOLERANCE['max_rel']:g})"
    )
    return Check(name, passed, detail)
