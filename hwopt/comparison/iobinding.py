"""IO binding for sessions on a device provider: inputs copied to the device once, before
timing, so ``hwopt bench`` times the model and not the host-device bus."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from hwopt.timing import Runner

# Providers whose tensors live in device memory, by the OrtValue device name. session.run with
# numpy feeds copies every input to the device and every output back on each run; IO binding
# does the input copy once, before timing, and leaves the outputs on the device.
DEVICE_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}

DeviceValue = Callable[[np.ndarray, str, int], Any]


def _ortvalue_on_device(array: np.ndarray, device: str, device_id: int) -> Any:
    return ort.OrtValue.ortvalue_from_numpy(array, device, device_id)


def session_device(session: Any) -> tuple[str, int] | None:
    """Where a session's inputs and outputs belong: ``(device, device_id)`` when its first
    active provider keeps tensors on a device, None for host memory."""
    providers = session.get_providers()
    if not providers or providers[0] not in DEVICE_PROVIDERS:
        return None
    options = session.get_provider_options().get(providers[0], {})
    return DEVICE_PROVIDERS[providers[0]], int(options.get("device_id") or 0)


class BoundRunner:
    """Runs a session through IO binding with its inputs already on the device.

    The outputs are bound to the device; after the first run the buffers onnxruntime
    allocated are bound back as the outputs, so later runs write into the same memory: no
    allocation in the timed loop, and fixed output addresses, which a session that replays a
    CUDA graph (``enable_cuda_graph``, ``trt_cuda_graph_enable``) relies on.
    """

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray], device: str, device_id: int,
                 device_value: DeviceValue = _ortvalue_on_device) -> None:
        self.session = session
        self.binding = session.io_binding()
        # Held here: the binding must not outlive the device buffers it points into.
        self.inputs = {name: device_value(np.ascontiguousarray(a), device, device_id) for name, a in feeds.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self.output_names = [output.name for output in session.get_outputs()]
        for name in self.output_names:
            self.binding.bind_output(name, device, device_id)
        self.outputs_pinned = False

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        if not self.outputs_pinned:
            for name, value in zip(self.output_names, self.binding.get_outputs()):
                self.binding.bind_ortvalue_output(name, value)
            self.outputs_pinned = True


def make_runner(session: Any, feeds: Mapping[str, np.ndarray],
                device_value: DeviceValue = _ortvalue_on_device) -> tuple[Runner, bool]:
    """The callable that times one run of ``session`` on ``feeds``, and whether it uses IO
    binding: sessions on a device provider run bound to device copies of the feeds, all others
    run ``session.run`` on the numpy arrays."""
    device = session_device(session)
    if device is None:
        feeds = dict(feeds)
        return (lambda: session.run(None, feeds)), False
    return BoundRunner(session, feeds, *device, device_value=device_value), True
