"""The CPU target: ONNX Runtime's CPU execution provider, available everywhere."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from hwopt.memory.settings import CPU_SETTINGS
from hwopt.session import Providers, default_session_options
from hwopt.targets.base import Availability, Target

TRANSFORMER_FUSED = "transformer-fused graph"

# Weights first (initializers listed as inputs become constants), clean-up (so fusions see
# plain graphs), then the fusions, then clean-up again for what the fusions left.
# fold_constants runs twice: removing no-ops and shape chains exposes more constant subgraphs
# (in If bodies especially: silero VAD 180 -> 116 nodes). The GPU targets run the same graph
# passes.
CPU_PASSES = (
    "drop_initializer_inputs",
    "upgrade_opset",
    "simplify",
    "fold_constants",
    "eliminate_dead_code",
    "deduplicate_constants",
    "remove_noops",
    "simplify_shape_ops",
    "fold_constants",
    "fold_pad",
    # Before fold_batchnorm: folding a shift into a ConvTranspose's bias can bring a
    # BatchNorm next to it (PP-OCRv4 det).
    "fold_scale_shift",
    "fold_batchnorm",
    # And after it: a BatchNorm between a Conv and a scale layer (Caffe2's SpatialBN followed
    # by Mul and Add, as in light_inception_v2) hides the scale until it is folded.
    "fold_scale_shift",
    "matmul_add_to_gemm",
    "fuse_activations",
    "fuse_layernorm",
    # Folds write new weights (and copy shared ones to fold them): equal ones become one
    # again, so that the layers reading them can be merged.
    "deduplicate_constants",
    "eliminate_common_subexpressions",
    "remove_noops",
    # Folding and no-op removal bring data-movement ops next to each other (a Transpose, an
    # identity Reshape folded away, a Transpose: the torch encoder's attention).
    "simplify_shape_ops",
    "eliminate_dead_code",
    "localize_initializers",
    "reorder",
)
# For providers that compile the whole graph and schedule it themselves (TensorRT's engine,
# OpenVINO's plugin): onnxruntime's node order, which the reorder pass sets, does not reach them.
COMPILED_PASSES = tuple(p for p in CPU_PASSES if p != "reorder")


class CpuTarget(Target):
    name = "cpu"
    description = "ONNX Runtime CPU execution provider (MLAS kernels)"
    default_passes = CPU_PASSES
    # onnxsim's own optimizer is off: hwopt's passes do the fusions (see passes/simplify.py).
    pass_options = {"simplify": {"optimize": False}}
    precisions = ("fp32", "int8")
    int8_formats = ("qdq", "qoperator")
    memory_settings = CPU_SETTINGS
    cpu_provider = True
    # onnxruntime's fused transformer kernels are not faster on every model and host: the build
    # keeps them only where they measure faster. The fusions run first, on the exporter's
    # graph, whose patterns onnxruntime's matchers know: after remove_noops has dropped a
    # zero bias (x + 0, as in every freshly initialized BertModel) they no longer match.
    measured_variants = {TRANSFORMER_FUSED: ("fuse_transformer",)}

    def session_options(self) -> dict[str, Any]:
        # onnxruntime runs nodes in the file's order only with priority-based ordering; its
        # default reverse depth-first order would undo the reorder pass (session.py).
        return {**default_session_options(level="all"), "execution_order": "priority_based"}

    def providers(self) -> Providers:
        return (("CPUExecutionProvider", {}),)

    def availability(self) -> Availability:
        if "CPUExecutionProvider" in ort.get_available_providers():
            return Availability(True)
        return Availability(False, "this onnxruntime build has no CPUExecutionProvider")
