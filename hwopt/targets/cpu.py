"""The CPU target: ONNX Runtime's CPU execution provider, available everywhere."""

from __future__ import annotations

import onnxruntime as ort

from hwopt.session import Providers
from hwopt.targets.base import Availability, Target


class CpuTarget(Target):
    name = "cpu"
    description = "ONNX Runtime CPU execution provider (MLAS kernels)"
    default_passes = ("simplify",)

    def providers(self) -> Providers:
        return (("CPUExecutionProvider", {}),)

    def availability(self) -> Availability:
        if "CPUExecutionProvider" in ort.get_available_providers():
            return Availability(True)
        return Availability(False, "this onnxruntime build has no CPUExecutionProvider")
