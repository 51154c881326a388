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

from hwopt.output import inside
from hwopt.quant.calibration import SampleReader, SampleSet


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


def rank_nodes(model: onnx.ModelProto, sqnr: dict[str, float]) -> list[tuple[str, float]]:
    """Nodes by the relative noise power they add, largest first."""

    def noise(db: float) -> float:
        return 10.0 ** (-db / 10.0)

    ranked = []
    for node in model.graph.node:
        outputs = [noise(sqnr[o]) for o in node.output if o in sqnr]
        if not outputs:
            continue
        inputs = [noise(sqnr[i]) for i in node.input if i in sqnr]
        ranked.append((node.name, max(outputs) - max(inputs, default=0.0)))
    return sorted(ranked, key=lambda item: -item[1])
