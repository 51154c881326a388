"""The CUDA target: onnxruntime's CUDA execution provider, in FP16 by default.

The build converts the model to FP16 (targets/fp16.py: float32 inputs and outputs,
overflow-prone operators kept in float32, cascaded Casts removed) and checks it against the
float32 outputs on the CPU provider, so an FP16 build is checked even on a machine without a
GPU. Provider options are recorded in build.json: exhaustive cuDNN convolution algorithm
search (measured once per shape, then cached by cuDNN), the next-power-of-two arena, and
CUDA graphs when asked for (``--target-option cuda.cuda_graph=true``), which need every input
shape fixed: a graph is captured once and replayed.
"""

from __future__ import annotations

from typing import Any

from hwopt.session import Providers, default_session_options
from hwopt.targets.base import Availability, BuildContext, Check, Target, TargetBuild
from hwopt.targets.cpu import CPU_PASSES
from hwopt.targets.fp16 import FP16_TOLERANCE, check_fp16, convert_to_fp16
from hwopt.targets.providers import provider_availability


def static_inputs(ctx: BuildContext) -> bool:
    return all(all(isinstance(d, int) and d > 0 for d in spec.declared) for spec in ctx.specs)


def cuda_provider_options(options: dict[str, Any]) -> dict[str, str]:
    return {
        "device_id": str(options["device_id"]),
        "cudnn_conv_algo_search": str(options["conv_algo_search"]),
        "arena_extend_strategy": "kNextPowerOfTwo",
        "do_copy_in_default_stream": "1",
        "enable_cuda_graph": "1" if options["cuda_graph"] else "0",
    }


def fp16_finalize(model, ctx: BuildContext, precision: str) -> TargetBuild:
    """FP16 conversion plus its CPU check; float32 ships when the check fails."""
    if precision == "fp32":
        return TargetBuild(model=model, precision="fp32")
    fp16, casts = convert_to_fp16(model)
    check = check_fp16(fp16, ctx.feeds, ctx.references)
    build = TargetBuild(model=fp16, precision="fp16", checks=[check])
    build.notes.append(f"FP16 conversion: float32 I/O kept, {casts} cascaded Cast node(s) removed")
    if not check.passed:
        build.model, build.precision = model, "fp32"
        build.notes.append(
            f"FP16 outside tolerance (cosine >= {FP16_TOLERANCE['min_cosine']}, max rel <= "
            f"{FP16_TOLERANCE['max_rel']:g}): the float32 model ships instead"
        )
    return build


class CudaTarget(Target):
    name = "cuda"
    description = "ONNX Runtime CUDA execution provider (cuDNN), FP16"
    default_passes = CPU_PASSES
    pass_options = {"simplify": {"optimize": False}}
    precisions = ("fp32", "fp16")
    option_defaults = {"device_id": 0, "conv_algo_search": "EXHAUSTIVE", "cuda_graph": False}
    tuning_variants = (
        ("cudnn-heuristic", "cuDNN picks conv algorithms by heuristic, not by timing",
         {"cudnn_conv_algo_search": "HEURISTIC"}),
        ("cuda-nhwc", "NHWC layout for the CUDA kernels that have it", {"prefer_nhwc": "1"}),
    )

    def session_options(self) -> dict[str, Any]:
        # The reorder pass's order runs only with priority-based ordering (see CpuTarget).
        return {**default_session_options(level="all"), "execution_order": "priority_based"}

    def providers(self) -> Providers:
        return self._providers(self.options)

    @staticmethod
    def _providers(options: dict[str, Any]) -> Providers:
        return (("CUDAExecutionProvider", cuda_provider_options(options)), ("CPUExecutionProvider", {}))

    def availability(self) -> Availability:
        return provider_availability("CUDAExecutionProvider")

    def finalize(self, model, ctx: BuildContext) -> TargetBuild:
        build = fp16_finalize(model, ctx, "fp32" if ctx.precision == "fp32" else "fp16")
        if self.options["cuda_graph"] and not static_inputs(ctx):
            build.providers = self._providers({**self.options, "cuda_graph": False})
            build.checks.append(Check("CUDA graphs", False, "inputs have dynamic dimensions: CUDA graphs turned off"))
        return build
