"""Which nodes lose the most accuracy to quantization: the ones to keep in float first.

onnxruntime's ``qdq_loss_debug`` runs the float model and a QDQ model on the same samples
with every intermediate tensor exposed, and gives for each tensor its signal-to-noise ratio
(SQNR, dB) against the float model's. In linear terms a tensor carries relative noise power
``10^(-SQNR/10)``; a node adds the difference between its output's and its noisiest input's
(graph inputs and weights carry none). Where that added noise is largest, the error is made
rather than passed on: those nodes' weights or output ranges do not fit 8 bits, and they go
back to float first.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from hwopt.feeds.samples import SampleSet
from hwopt.output import inside
from hwopt.quant.calibration import SampleReader

# How many unmeasured nodes back a unit reaches for the tensors its node reads.
UNMEASURED_DEPTH = 3


def tensor_sqnr(float_model: Path, qdq_model: Path, samples: SampleSet, workdir: Path) -> dict[str, float]:
    """SQNR (dB) of each activation of ``qdq_model`` against the float model's."""
    float_aug, qdq_aug = workdir / "float_debug.onnx", workdir / "qdq_debug.onnx"
    with inside(workdir):
        modify_model_output_intermediate_tensors(str(float_model), str(float_aug))
        modify_model_output_intermediate_tensors(str(qdq_model), str(qdq_aug))
        float_acts = collect_activations(str(float_aug), SampleReader(samples))
        qdq_acts = collect_activations(str(qdq_aug), SampleReader(samples))
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    return {name: err["xmodel_err"] for name, err in errors.items() if "xmodel_err" in err}


def rank_nodes(model: onnx.ModelProto, sqnr: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """Units of nodes by the relative noise power they add, largest first.

    A unit is a node whose output was measured, with the unmeasured nodes between it and the
    measured tensors it reads: the quantizer writes no Q/DQ pair between a Conv and the Relu
    it absorbs, so the Conv's noise shows only after the Relu, and keeping the Relu alone in
    float changes nothing (on PP-OCRv4 det such Relus ranked first, and the first steps of the
    fallback left the model exactly as it was)."""

    def noise(db: float) -> float:
        return 10.0 ** (-db / 10.0)

    producer = {out: node for node in model.graph.node for out in node.output}

    def reads(node: onnx.NodeProto, depth: int) -> tuple[float, tuple[str, ...]]:
        """Noise reaching ``node``'s inputs, and the unmeasured nodes it passed through."""
        level, chain = 0.0, ()
        for name in node.input:
            if name:
                upstream, nodes = source(name, depth)
                level, chain = max(level, upstream), chain + nodes
        return level, chain

    def source(tensor: str, depth: int) -> tuple[float, tuple[str, ...]]:
        if tensor in sqnr:
            return noise(sqnr[tensor]), ()
        node = producer.get(tensor)
        if node is None or depth >= UNMEASURED_DEPTH:
            return 0.0, ()
        level, chain = reads(node, depth + 1)
        return level, (node.name, *chain)

    ranked = []
    for node in model.graph.node:
        outputs = [noise(sqnr[o]) for o in node.output if o in sqnr]
        if not outputs:
            continue
        level, chain = reads(node, 0)
        ranked.append((tuple(dict.fromkeys((node.name, *chain))), max(outputs) - level))
    return sorted(ranked, key=lambda item: -item[1])
