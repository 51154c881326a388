"""Can an execution provider run here? Asked once per process, answered with the reason.

A provider is usable when this onnxruntime build has it compiled in *and* it starts: the
package may be the CPU-only one (``onnxruntime`` instead of ``onnxruntime-gpu``), the machine
may have no NVIDIA driver or device, or TensorRT's libraries may be missing. The last two
only show when a session is created, so a one-node session is created with CPU fallback
disabled, and its error is the reason given.
"""

from __future__ import annotations

import functools
from importlib import metadata

import onnxruntime as ort
from onnx import TensorProto, helper

from hwopt.errors import one_line
from hwopt.session import ORT_ERRORS
from hwopt.targets.base import Availability


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _probe_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


# Where each provider comes from: every one of these wheels installs the same ``onnxruntime``
# module, so each needs its own virtualenv.
_INSTALL_HINT = {
    "OpenVINOExecutionProvider": "the OpenVINO provider comes with onnxruntime-openvino, which replaces "
    "onnxruntime: `make venv-openvino` builds a virtualenv with it (.venv-openvino)",
}
_GPU_HINT = ("the GPU providers come with onnxruntime-gpu: pip install 'hwopt[gpu]' and uninstall "
             "onnxruntime")


def onnxruntime_packages() -> str:
    """The onnxruntime wheels installed here, with versions."""
    dists = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")
    return ", ".join(f"{d} {v}" for d in dists if (v := _installed(d))) or "none"


def openvino_devices() -> list[str]:
    """The devices OpenVINO sees on this host (empty without the OpenVINO provider)."""
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        return []
    from hwopt.upstream import openvino_device_ids  # onnxruntime's private binding, behind one module

    return openvino_device_ids()


@functools.cache
def provider_availability(provider: str) -> Availability:
    if provider not in ort.get_available_providers():
        return Availability(
            False,
            f"{provider} is not in this onnxruntime build (installed: {onnxruntime_packages()}); "
            f"{_INSTALL_HINT.get(provider, _GPU_HINT)}",
        )
    if provider == "CPUExecutionProvider":
        return Availability(True)  # compiled in means it runs (and it cannot be probed without fallback)
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        ort.InferenceSession(_probe_model(), so, providers=[provider])
    except ORT_ERRORS as exc:
        return Availability(False, f"{provider} is installed but does not start here: {one_line(exc)}")
    return Availability(True)

