"""``hwopt inspect``: what a model is, what it costs, and how well it fits the hardware.

Compute is counted in multiply-accumulates (MACs) for the operators that dominate inference
time, from shapes inferred with concrete inputs (FLOPs = 2 x MACs):

* Conv:          N * M * prod(out_spatial) * (C / group) * prod(kernel)
* ConvTranspose: N * C * prod(in_spatial) * (M / group) * prod(kernel)
* Gemm:          M * N * K
* MatMul:        prod(broadcast batch dims) * M * N * K

Hardware-fit notes follow the ideas of hardware-aware design: depthwise and grouped
convolutions, channel shuffles, channel counts that do not fill SIMD lanes or tensor cores,
BatchNorm left unfolded, dynamic dimensions, and operators a provider lacks.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime.capi.onnxruntime_pybind11_state as ort_state

from hwopt.feeds.inputs import InputSpec, declared_shape, resolve_input_specs
from hwopt.model.load import load_model
from hwopt.model.shapes import TensorInfo, infer_tensor_info
from hwopt.model.stats import iter_nodes, model_stats, op_histogram
from hwopt.report.inspection import InspectReport, NodeCost, Note

# SIMD kernels and tensor cores work on channel blocks: ORT's NCHWc layout uses 8 (AVX2) or
# 16 (AVX-512) channels; FP16/INT8 tensor cores want multiples of 8.
CHANNEL_BLOCK = 8


def inspect_model(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> InspectReport:
    """Inspect the model at ``path`` with concrete input shapes (defaults: every open dim 1)."""
    loaded = load_model(path)
    model = loaded.proto
    specs = resolve_input_specs(model.graph, input_shapes)
    inference = infer_tensor_info(model, specs)
    info = inference.tensors
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return InspectReport(
        path=str(path),
        ir_version=model.ir_version,
        opsets=opsets,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=specs,
        outputs=[
            {
                "name": vi.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
                if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type else "?",
                "declared_shape": list(declared_shape(vi)),
            }
            for vi in model.graph.output
        ],
        stats=model_stats(model, loaded.file_bytes),
        histogram=dict(op_histogram(model)),
        costs=[
            NodeCost(node.name or node.output[0], node.op_type, node_macs(node, info))
            for node in model.graph.node
            if node.op_type in _MAC_COUNTERS and node.domain in ("", "ai.onnx")
        ],
        notes=hardware_fit_notes(model, specs, info),
        shape_method=inference.method,
    )


# --- MAC counting ---------------------------------------------------------------------------

def _attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default


def _shape(info: dict[str, TensorInfo], name: str) -> tuple[int, ...] | None:
    entry = info.get(name)
    return entry.shape if entry else None


def _conv_macs(node, info):
    w, y = _shape(info, node.input[1]), _shape(info, node.output[0])
    if w is None or y is None or len(w) < 3:
        return None
    return y[0] * w[0] * math.prod(y[2:]) * w[1] * math.prod(w[2:])


def _conv_transpose_macs(node, info):
    x, w = _shape(info, node.input[0]), _shape(info, node.input[1])
    if x is None or w is None or len(w) < 3:
        return None
    return x[0] * w[0] * math.prod(x[2:]) * w[1] * math.prod(w[2:])


def _gemm_macs(node, info):
    a, b = _shape(info, node.input[0]), _shape(info, node.input[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if _attr_int(node, "transA", 0) else a
    n = b[0] if _attr_int(node, "transB", 0) else b[1]
    return m * n * k


def _matmul_macs(node, info):
    a, b = _shape(info, node.input[0]), _shape(info, node.input[1])
    if a is None or b is None or not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch_a, batch_b = a2[:-2], b2[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (width - len(batch_a)) + tuple(batch_a)
    batch_b = (1,) * (width - len(batch_b)) + tuple(batch_b)
    batch = math.prod(max(x, y) for x, y in zip(batch_a, batch_b))
    return batch * a2[-2] * a2[-1] * b2[-1]


_MAC_COUNTERS = {
    "Conv": _conv_macs,
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
}


def node_macs(node: onnx.NodeProto, info: dict[str, TensorInfo]) -> int | None:
    """MACs of one Conv/ConvTranspose/Gemm/MatMul node, or None when shapes are unknown."""
    return _MAC_COUNTERS[node.op_type](node, info)


# --- hardware-fit notes ---------------------------------------------------------------------

def hardware_fit_notes(
    model: onnx.ModelProto, specs: list[InputSpec], info: dict[str, TensorInfo]
) -> list[Note]:
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    notes: list[Note] = []
    depthwise, grouped, odd_channels = [], [], []
    for node in graph.node:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        w = _shape(info, node.input[1])
        if w is None or len(w) < 3:  # a malformed model; the checks that run it report it
            continue
        group = _attr_int(node, "group", 1)
        out_channels, in_channels = w[0], w[1] * group
        name = node.name or node.output[0]
        if group > 1 and group == in_channels:
            depthwise.append(name)
        elif group > 1:
            grouped.append(name)
        if out_channels % CHANNEL_BLOCK or (in_channels % CHANNEL_BLOCK and in_channels > 4):
            odd_channels.append(f"{name} ({in_channels}->{out_channels})")
    if depthwise:
        notes.append(Note("depthwise convolutions", f"{len(depthwise)} found: few MACs per byte "
                          "moved, so they are memory-bound; INT8 often does not speed them up on CPU",
                          tuple(depthwise)))
    if grouped:
        notes.append(Note("grouped convolutions", f"{len(grouped)} found (ResNeXt style): kernels "
                          "for them are less tuned than dense ones, in INT8 especially",
                          tuple(grouped)))
    if odd_channels:
        notes.append(Note("channel counts", f"{len(odd_channels)} conv(s) with channels that are not "
                          f"multiples of {CHANNEL_BLOCK}: SIMD blocks and tensor cores run partly "
                          "empty", tuple(odd_channels)))
    shuffles = _channel_shuffles(graph, producers)
    if shuffles:
        notes.append(Note("channel shuffle", f"{len(shuffles)} Reshape-Transpose-Reshape channel "
                          "shuffle(s): pure data movement, no compute", tuple(shuffles)))
    bns = [n for n in graph.node if n.op_type == "BatchNormalization"]
    if bns:
        foldable = [n.name or n.output[0] for n in bns
                    if n.input[0] in producers
                    and producers[n.input[0]].op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
        notes.append(Note("unfolded BatchNorm", f"{len(bns)} BatchNormalization node(s), "
                          f"{len(foldable)} directly after Conv/Gemm/MatMul and foldable into its weights",
                          tuple(foldable)))
    dynamic = [f"{s.name}[{axis}]={dim}" for s in specs for axis, dim in enumerate(s.declared)
               if not (isinstance(dim, int) and dim > 0)]
    if dynamic:
        notes.append(Note("dynamic dimensions", f"{', '.join(dynamic)}: TensorRT needs optimization "
                          "profiles and CUDA graphs need fixed shapes", tuple(dynamic)))
    missing = _ops_without_cpu_kernel(model)
    if missing is None:
        notes.append(Note("operators without a kernel", "not checked: this onnxruntime build "
                          f"({', '.join(ort_state.get_available_providers())}) cannot list its kernels", ()))
    elif missing:
        notes.append(Note("operators without a kernel", "no kernel in this onnxruntime's CPU "
                          f"provider: {', '.join(missing)}", tuple(missing)))
    custom = sorted({n.domain for n in iter_nodes(graph)} - {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
    if custom:
        notes.append(Note("custom domains", f"operators from {', '.join(custom)} need custom-op "
                          "libraries that hwopt never loads", tuple(custom)))
    return notes


def _channel_shuffles(graph: onnx.GraphProto, producers: dict[str, onnx.NodeProto]) -> list[str]:
    found = []
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        mid = producers.get(node.input[0])
        if mid is None or mid.op_type != "Transpose":
            continue
        first = producers.get(mid.input[0])
        if first is not None and first.op_type == "Reshape":
            found.append(mid.name or mid.output[0])
    return found


# Providers whose onnxruntime builds list their kernels safely in this process.
_IN_PROCESS_KERNEL_LIST = {"CPUExecutionProvider", "AzureExecutionProvider"}


def kernel_ranges() -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Version ranges of this onnxruntime's CPU kernels, by (domain, operator)."""
    ranges: dict[tuple[str, str], list[tuple[int, int]]] = collections.defaultdict(list)
    for kernel in ort_state.get_all_opkernel_def():
        if kernel.provider == "CPUExecutionProvider":
            ranges[(kernel.domain or "", kernel.op_name)].append(tuple(kernel.version_range))
    return ranges


@functools.cache
def _cpu_kernels() -> dict[tuple[str, str], tuple[tuple[int, int], ...]] | None:
    """Version ranges of this onnxruntime's CPU kernels, by (domain, operator); None when
    they cannot be listed. onnxruntime-openvino 1.24 crashes the process (SIGSEGV) listing
    kernel definitions, so builds with other providers list them in a child process."""
    if set(ort_state.get_available_providers()) <= _IN_PROCESS_KERNEL_LIST:
        ranges = kernel_ranges()
    else:
        code = ("import json, hwopt.inspection as i; "
                "print(json.dumps([[d, o, r] for (d, o), r in i.kernel_ranges().items()]))")
        try:
            child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if child.returncode != 0:
            return None
        ranges = {(d, o): [tuple(v) for v in r] for d, o, r in json.loads(child.stdout)}
    return {key: tuple(value) for key, value in ranges.items()}


def _ops_without_cpu_kernel(model: onnx.ModelProto) -> list[str] | None:
    opsets = {o.domain or "": o.version for o in model.opset_import}
    kernels = _cpu_kernels()
    if kernels is None:
        return None
    missing = set()
    for node in iter_nodes(model.graph):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain not in ("", "ai.onnx.ml", "com.microsoft") or domain not in opsets:
            continue
        if node.op_type == "Constant" and not domain:
            continue  # onnxruntime turns Constant nodes into initializers; no kernel needed
        try:
            since = onnx.defs.get_schema(node.op_type, opsets[domain], domain).since_version
        except onnx.defs.SchemaError:
            since = opsets[domain]
        ranges = kernels.get((domain, node.op_type), ())
        if not any(lo <= since <= hi for lo, hi in ranges):
            missing.add(node.op_type if not domain else f"{domain}.{node.op_type}")
    return sorted(missing)
