"""The OpenVINO target: onnxruntime's OpenVINO execution provider, for Intel CPUs (and Intel
GPUs and NPUs, by ``--target-option openvino.device_type=GPU``).

OpenVINO compiles the graph it is given into its own plugin's kernels. On CPUs with VNNI it
runs INT8 convolutions and matrix products much faster than onnxruntime's CPU provider, but
only when the model carries its INT8 as QuantizeLinear/DequantizeLinear pairs (QDQ), which
OpenVINO folds into its own low-precision graph; QOperator models (QLinearConv and the like)
gain nothing there. So the precision search races QDQ variants (and dynamic INT8) on the
OpenVINO provider itself, against the FP32 model on the same provider.

FP16 is a compile setting of OpenVINO's GPU and NPU plugins (provider option ``precision``):
the model file stays float32 and the plugin converts. The CPU plugin computes in FP32, so with
``device_type=CPU`` the target builds fp32 and int8 only (``--precision fp16`` is a usage error
that says so, and ``hwopt tune`` tries no FP16 recipe).

The provider comes with the ``onnxruntime-openvino`` wheel, which replaces the
``onnxruntime`` module (``make venv-openvino`` builds a virtualenv with it). The nodes
OpenVINO does not take run on onnxruntime's CPU provider; the build reports them as fallback.
"""

from __future__ import annotations

from typing import Any

from hwopt.errors import UsageError, one_line
from hwopt.session import ORT_ERRORS, Providers, create_session, run_session
from hwopt.targets.base import Availability, BuildContext, Check, Target, TargetBuild
from hwopt.targets.cpu import COMPILED_PASSES
from hwopt.targets.providers import openvino_devices, provider_availability
from hwopt.verify import VERIFY_SESSION_OPTIONS, compare_outputs

PROVIDER = "OpenVINOExecutionProvider"
DEVICES = ("CPU", "GPU", "NPU")
# The build's own outputs on the provider, for the check: OpenVINO's kernels round differently
# from the CPU provider's (INT8 builds are judged by the precision search's budget first).
MIN_COSINE = 0.99


class OpenvinoTarget(Target):
    name = "openvino"
    description = "ONNX Runtime OpenVINO execution provider (Intel CPU; GPU/NPU by option), QDQ INT8"
    default_passes = COMPILED_PASSES
    pass_options = {"simplify": {"optimize": False}}
    precisions = ("fp32", "fp16", "int8")
    # OpenVINO folds Q/DQ pairs into its own INT8 kernels; QOperator ops gain nothing there.
    int8_formats = ("qdq",)
    option_defaults = {"device_type": "CPU", "num_of_threads": 0, "num_streams": 1}

    def __init__(self, options=None):
        super().__init__(options)
        device = str(self.options["device_type"]).upper()
        if device.split(".")[0] not in DEVICES:
            raise UsageError(f"target openvino: device_type '{device}' is not one of {', '.join(DEVICES)} "
                             "(GPU.0, GPU.1 ... pick one of several GPUs)")
        self.options["device_type"] = device
        if device.startswith("CPU"):
            # The CPU plugin computes in FP32: FP16 is a GPU/NPU compile setting.
            self.precisions = ("fp32", "int8")
            self.precision_note = "OpenVINO's CPU plugin computes in FP32; fp16 is for device_type GPU or NPU"

    @property
    def device(self) -> str:
        return self.options["device_type"]

    def provider_options(self, precision: str = "fp32") -> dict[str, str]:
        options = {"device_type": self.device, "num_streams": str(self.options["num_streams"])}
        if int(self.options["num_of_threads"]) > 0:
            options["num_of_threads"] = str(self.options["num_of_threads"])
        if precision == "fp16":
            options["precision"] = "FP16"
        elif not self.device.startswith("CPU"):
            options["precision"] = "FP32"  # the GPU plugin's own default is FP16
        return options

    def providers(self, precision: str = "fp32") -> Providers:
        return ((PROVIDER, self.provider_options(precision)), ("CPUExecutionProvider", {}))

    def availability(self) -> Availability:
        provider = provider_availability(PROVIDER)
        if not provider.available or self.device.startswith("CPU"):
            return provider
        present = openvino_devices()
        if self.device.split(".")[0] not in {d.split(".")[0] for d in present}:
            return Availability(False, f"OpenVINO device {self.device} is not on this host (OpenVINO sees: "
                                       f"{', '.join(present) or 'no device'}): not measured here")
        return provider

    def finalize(self, model, ctx: BuildContext) -> TargetBuild:
        precision = "fp16" if ctx.precision == "fp16" else "fp32"
        build = TargetBuild(model=model, precision=precision)
        if precision == "fp16":  # a GPU or NPU device: CPU devices do not list fp16
            build.providers = self.providers("fp16")
            build.notes.append(f"FP16: the {self.device} plugin compiles the float32 model in FP16 (provider "
                               "option precision=FP16); the model file stays float32")
        if self.availability().available:
            build.checks.append(check_on_provider(build.model, ctx, build.providers or self.providers()))
        return build

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "openvino_devices": openvino_devices()}


def check_on_provider(model, ctx: BuildContext, providers: Providers) -> Check:
    """The shipped model's outputs on the OpenVINO provider against the original's on the CPU
    provider: OpenVINO compiles its own kernels, so the CPU provider's check does not cover it."""
    name = "outputs on OpenVINO vs the original (CPU provider)"
    try:
        session = create_session(model, VERIFY_SESSION_OPTIONS, providers)
        diffs = [d for f, r in zip(ctx.feeds, ctx.references) for d in compare_outputs(r, run_session(session, f))]
    except ORT_ERRORS as exc:
        return Check(name, False, f"the build does not run on OpenVINO here: {one_line(exc)}")
    cosine, max_rel = min(d.cosine for d in diffs), max(d.max_rel for d in diffs)
    return Check(name, cosine >= MIN_COSINE, f"cosine {cosine:.5f} (>= {MIN_COSINE}), max rel {max_rel:.2e}")
