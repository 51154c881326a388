#!/usr/bin/env python3
"""Generate ONNX replicas of two densely branched ImageNet networks for the memory benchmarks.

* ``densenet121.onnx``: DenseNet-121 (Huang et al. 2017) as ``torchvision.models.densenet121``:
  stem Conv 7x7/2 + BN + ReLU + MaxPool 3x3/2, dense blocks of (6, 12, 24, 16) layers with
  growth rate 32 and bottleneck 4 (BN-ReLU-Conv1x1(128)-BN-ReLU-Conv3x3(32)), transitions
  BN-ReLU-Conv1x1(half)-AvgPool 2x2/2, final BN + ReLU, GlobalAveragePool, Flatten, Gemm.
  Every dense layer starts with the Concat of all earlier feature maps of its block
  (``torch.cat(prev_features, 1)``, a one-input Concat for the first layer) and every block
  ends with the Concat of all of them, in the order the PyTorch exporter emits them.
* ``googlenet.onnx``: GoogLeNet / Inception v1 (Szegedy et al. 2015) as
  ``torchvision.models.googlenet`` in eval mode (no aux heads, ``transform_input=False``):
  every conv is torchvision's BasicConv2d (Conv + BN(eps 1e-3) + ReLU), branch 3 uses a 3x3
  conv as torchvision does, max pools use ``ceil_mode``, nodes follow forward():
  branch 1, 2, 3, 4, then Concat. Head: GlobalAveragePool, Flatten, Dropout(0.2), Gemm.

The architecture is what matters here (activation memory), not the weights: they are float32
from a fixed seed (Kaiming-normal convs, random but sane BatchNormalization statistics), so the
output is byte-for-byte reproducible. BatchNormalization is left unfolded, as in
sample_models/generate.py (the real TorchScript exporter folds a BN that directly follows a
Conv in eval mode). Opset 17, input ``input`` [batch, 3, 224, 224], output ``logits``
[batch, 1000]. Initializers carry the torchvision state_dict names; nodes are named
``/<module path>/<op type>`` like the exporter's.

The files (~32 and ~27 MB) are not committed. This script writes them to a folder (default
benchmarks/models/, git-ignored, or $HWOPT_BENCH_MODELS as benchmarks/common.py), skipping a model that
already exists unless --force, checks each (onnx.checker full check, one onnxruntime run at
batch 1 with finite outputs), and prints the peak of simultaneously live activation bytes in
the emitted node order at batch 1: the baseline a memory-aware scheduler has to beat.

    python benchmarks/branchy_models.py [FOLDER] [--force]

Other bench scripts call ``ensure_branchy_models(folder)`` to get the paths.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(os.environ.get("HWOPT_BENCH_MODELS", ROOT / "benchmarks" / "models"))
PRODUCER_NAME = "hwopt-branchy-models"
PRODUCER_VERSION = "1"
OPSET = 17
IR_VERSION = 8  # loads in onnxruntime 1.32 and any onnx >= 1.10
INPUT_SHAPE = ["batch", 3, 224, 224]
NUM_CLASSES = 1000
F32 = np.float32


class GraphBuilder:
    """Accumulates the nodes and initializers of one graph (the style of sample_models/generate.py).

    ``scope`` is the torchvision module path with ``/`` separators: a node is named
    ``/<scope>/<op type>``, its output ``<node name>_output_0``, and its parameters
    ``<scope with dots>.<param>``, which are torchvision's state_dict keys.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"duplicate name {name!r}")
        self._names.add(name)
        return name

    def add_input(self, name: str, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(self._claim(name), TensorProto.FLOAT, shape))
        return name

    def param(self, scope: str, key: str, array: np.ndarray) -> str:
        name = self._claim(f"{scope.replace('/', '.')}.{key}")
        self.initializers.append(numpy_helper.from_array(np.asarray(array, F32), name))
        return name

    def op(self, op_type: str, inputs: list[str], scope: str, output: str | None = None, **attrs) -> str:
        name = self._claim(f"/{scope}/{op_type}" if scope else f"/{op_type}")
        output = self._claim(output or f"{name}_output_0")
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def finish(self, graph_name: str, output: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", NUM_CLASSES])],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name=PRODUCER_NAME, producer_version=PRODUCER_VERSION)
        model.ir_version = IR_VERSION
        return model

    # -- layers -----------------------------------------------------------------

    def conv(self, x: str, scope: str, cin: int, cout: int, kernel: int, stride: int = 1) -> str:
        """Bias-free Conv with Kaiming-normal (fan-in, ReLU gain) weights and 'same' padding."""
        weight = self.rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / (cin * kernel * kernel))
        return self.op("Conv", [x, self.param(scope, "weight", weight)], scope,
                       dilations=[1, 1], group=1, kernel_shape=[kernel, kernel],
                       pads=[kernel // 2] * 4, strides=[stride, stride])

    def batch_norm(self, x: str, scope: str, channels: int, epsilon: float) -> str:
        """Inference-mode BatchNormalization with random, well-conditioned statistics."""
        params = {
            "weight": self.rng.uniform(0.8, 1.2, channels),
            "bias": self.rng.normal(0.0, 0.1, channels),
            "running_mean": self.rng.normal(0.0, 0.1, channels),
            "running_var": self.rng.uniform(0.5, 1.5, channels),
        }
        inputs = [x] + [self.param(scope, key, value) for key, value in params.items()]
        return self.op("BatchNormalization", inputs, scope, epsilon=epsilon, momentum=0.9)

    def relu(self, x: str, scope: str) -> str:
        return self.op("Relu", [x], scope)

    def max_pool(self, x: str, scope: str, kernel: int, stride: int, pad: int, ceil_mode: bool) -> str:
        return self.op("MaxPool", [x], scope, ceil_mode=int(ceil_mode), dilations=[1, 1],
                       kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[stride, stride])

    def head(self, x: str, cin: int, scope: str, dropout: float | None = None) -> str:
        """adaptive_avg_pool2d(1) -> flatten(1) [-> dropout] -> Linear, as exported."""
        x = self.op("GlobalAveragePool", [x], "" if dropout is None else "avgpool")
        x = self.op("Flatten", [x], "", axis=1)
        if dropout is not None:
            x = self.op("Dropout", [x, self.param("dropout", "ratio", np.array(dropout))], "dropout")
        weight = self.rng.standard_normal((NUM_CLASSES, cin)) * np.sqrt(1.0 / cin)
        bias = self.rng.normal(0.0, 0.02, NUM_CLASSES)
        return self.op("Gemm", [x, self.param(scope, "weight", weight), self.param(scope, "bias", bias)],
                       scope, output="logits", alpha=1.0, beta=1.0, transB=1)


# -- DenseNet-121 -----------------------------------------------------------------------------

DENSENET_BLOCKS = (6, 12, 24, 16)
GROWTH_RATE = 32
BN_SIZE = 4
DENSENET_STEM = 64
DENSENET_BN_EPS = 1e-5


def dense_layer(b: GraphBuilder, features: list[str], scope: str, cin: int) -> str:
    """torchvision _DenseLayer: cat(prev_features) -> norm1-relu1-conv1 (1x1) -> norm2-relu2-conv2 (3x3)."""
    x = b.op("Concat", features, scope, axis=1)
    x = b.batch_norm(x, f"{scope}/norm1", cin, DENSENET_BN_EPS)
    x = b.relu(x, f"{scope}/relu1")
    x = b.conv(x, f"{scope}/conv1", cin, BN_SIZE * GROWTH_RATE, 1)
    x = b.batch_norm(x, f"{scope}/norm2", BN_SIZE * GROWTH_RATE, DENSENET_BN_EPS)
    x = b.relu(x, f"{scope}/relu2")
    return b.conv(x, f"{scope}/conv2", BN_SIZE * GROWTH_RATE, GROWTH_RATE, 3)


def densenet121() -> onnx.ModelProto:
    b = GraphBuilder(seed=121)
    x = b.add_input("input", INPUT_SHAPE)
    x = b.conv(x, "features/conv0", 3, DENSENET_STEM, 7, stride=2)
    x = b.batch_norm(x, "features/norm0", DENSENET_STEM, DENSENET_BN_EPS)
    x = b.relu(x, "features/relu0")
    x = b.max_pool(x, "features/pool0", 3, 2, 1, ceil_mode=False)
    channels = DENSENET_STEM
    for index, depth in enumerate(DENSENET_BLOCKS, start=1):
        block = f"features/denseblock{index}"
        features = [x]
        for layer in range(1, depth + 1):
            cin = channels + (layer - 1) * GROWTH_RATE
            features.append(dense_layer(b, features, f"{block}/denselayer{layer}", cin))
        x = b.op("Concat", features, block, axis=1)
        channels += depth * GROWTH_RATE
        if index < len(DENSENET_BLOCKS):
            scope = f"features/transition{index}"
            x = b.batch_norm(x, f"{scope}/norm", channels, DENSENET_BN_EPS)
            x = b.relu(x, f"{scope}/relu")
            x = b.conv(x, f"{scope}/conv", channels, channels // 2, 1)
            x = b.op("AveragePool", [x], f"{scope}/pool", ceil_mode=0, count_include_pad=1,
                     kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
            channels //= 2
    x = b.batch_norm(x, "features/norm5", channels, DENSENET_BN_EPS)
    x = b.relu(x, "")  # F.relu(features) in DenseNet.forward
    b.head(x, channels, "classifier")
    return b.finish("densenet121", "logits")


# -- GoogLeNet ----------------------------------------------------------------------------------


class Inception(NamedTuple):
    """torchvision Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)."""
    cin: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int  # a 3x3 conv in torchvision, despite the name
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


GOOGLENET_BN_EPS = 1e-3
# (name, config); "maxpool3"/"maxpool4" entries are the pools between stages: (kernel, stride).
GOOGLENET_BODY: list[tuple[str, Inception | tuple[int, int]]] = [
    ("inception3a", Inception(192, 64, 96, 128, 16, 32, 32)),
    ("inception3b", Inception(256, 128, 128, 192, 32, 96, 64)),
    ("maxpool3", (3, 2)),
    ("inception4a", Inception(480, 192, 96, 208, 16, 48, 64)),
    ("inception4b", Inception(512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", Inception(512, 128, 128, 256, 24, 64, 64)),
    ("inception4d", Inception(512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", Inception(528, 256, 160, 320, 32, 128, 128)),
    ("maxpool4", (2, 2)),
    ("inception5a", Inception(832, 256, 160, 320, 32, 128, 128)),
    ("inception5b", Inception(832, 384, 192, 384, 48, 128, 128)),
]


def basic_conv(b: GraphBuilder, x: str, scope: str, cin: int, cout: int, kernel: int, stride: int = 1) -> str:
    """torchvision BasicConv2d: conv (no bias) -> bn (eps 1e-3) -> F.relu."""
    x = b.conv(x, f"{scope}/conv", cin, cout, kernel, stride)
    x = b.batch_norm(x, f"{scope}/bn", cout, GOOGLENET_BN_EPS)
    return b.relu(x, scope)


def inception(b: GraphBuilder, x: str, scope: str, c: Inception) -> str:
    branch1 = basic_conv(b, x, f"{scope}/branch1", c.cin, c.ch1x1, 1)
    y = basic_conv(b, x, f"{scope}/branch2/0", c.cin, c.ch3x3red, 1)
    branch2 = basic_conv(b, y, f"{scope}/branch2/1", c.ch3x3red, c.ch3x3, 3)
    y = basic_conv(b, x, f"{scope}/branch3/0", c.cin, c.ch5x5red, 1)
    branch3 = basic_conv(b, y, f"{scope}/branch3/1", c.ch5x5red, c.ch5x5, 3)
    y = b.max_pool(x, f"{scope}/branch4/0", 3, 1, 1, ceil_mode=True)
    branch4 = basic_conv(b, y, f"{scope}/branch4/1", c.cin, c.pool_proj, 1)
    return b.op("Concat", [branch1, branch2, branch3, branch4], scope, axis=1)


def googlenet() -> onnx.ModelProto:
    b = GraphBuilder(seed=1000)
    x = b.add_input("input", INPUT_SHAPE)
    x = basic_conv(b, x, "conv1", 3, 64, 7, stride=2)
    x = b.max_pool(x, "maxpool1", 3, 2, 0, ceil_mode=True)
    x = basic_conv(b, x, "conv2", 64, 64, 1)
    x = basic_conv(b, x, "conv3", 64, 192, 3)
    x = b.max_pool(x, "maxpool2", 3, 2, 0, ceil_mode=True)
    channels = 192
    for name, config in GOOGLENET_BODY:
        if isinstance(config, Inception):
            assert config.cin == channels, (name, config.cin, channels)
            x = inception(b, x, name, config)
            channels = config.out_channels
        else:
            x = b.max_pool(x, name, *config, 0, ceil_mode=True)
    b.head(x, channels, "fc", dropout=0.2)
    return b.finish("googlenet", "logits")


BRANCHY_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "densenet121": densenet121,
    "googlenet": googlenet,
}


# -- peak live activation bytes -------------------------------------------------------------------


class Peak(NamedTuple):
    bytes: int
    step: int  # index in the order of the first step at which the peak is reached
    node: str  # that node's name


def activation_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of every graph input and node output at batch 1 (every input's first dim set to 1)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    graph = onnx.shape_inference.infer_shapes(fixed, strict_mode=True).graph
    sizes = {}
    for value in itertools.chain(graph.input, graph.value_info, graph.output):
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if None in dims:
            raise ValueError(f"{value.name}: shape not fully inferred at batch 1: {dims}")
        itemsize = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize
        sizes[value.name] = itemsize * int(np.prod(dims, dtype=np.int64))
    return sizes


def peak_live_bytes(model: onnx.ModelProto, order: Sequence[onnx.NodeProto] | None = None,
                    sizes: dict[str, int] | None = None) -> Peak:
    """Peak sum of simultaneously live activation bytes when running ``order`` at batch 1.

    ``order`` defaults to the graph's own node order. A node output is live from its
    producer's step to its last consumer's step (inclusive; just its producer's step if
    unused); a graph input from step 0, a graph output until the last step. Initializers
    (and Constant-node outputs, also weights) are not counted. No in-place reuse is assumed.
    """
    graph = model.graph
    order = list(graph.node) if order is None else list(order)
    sizes = activation_bytes(model) if sizes is None else sizes
    weights = {init.name for init in graph.initializer}
    start = {v.name: 0 for v in graph.input if v.name not in weights}
    end = dict(start)
    for step, node in enumerate(order):
        for name in node.input:
            if name in start:
                end[name] = step
        if node.op_type != "Constant":
            for name in node.output:
                if name:
                    start[name] = end[name] = step
    for value in graph.output:
        end[value.name] = len(order) - 1
    delta = [0] * (len(order) + 1)
    for name, first in start.items():
        delta[first] += sizes[name]
        delta[end[name] + 1] -= sizes[name]
    live = list(itertools.accumulate(delta[:-1]))
    step = int(np.argmax(live))
    return Peak(live[step], step, order[step].name)


def single_node_bound(model: onnx.ModelProto, sizes: dict[str, int]) -> int:
    """Largest inputs + outputs of one node: a lower bound on the peak of any order."""
    weights = {init.name for init in model.graph.initializer}
    return max(
        sum(sizes[n] for n in set(node.input) | set(node.output) if n and n not in weights)
        for node in model.graph.node
    )


# -- generation and checks ------------------------------------------------------------------------


def model_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.onnx"


def check_model(path: Path) -> float:
    """onnx.checker (full check) and one onnxruntime run at batch 1; returns the logits' std."""
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(F32)
    (logits,) = session.run(None, {"input": image})
    if logits.shape != (1, NUM_CLASSES):
        raise AssertionError(f"{path.name}: logits shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise AssertionError(f"{path.name}: non-finite logits")
    return float(logits.std())


def save_atomic(model: onnx.ModelProto, path: Path, check: bool = True) -> None:
    """Write to a temporary name, check it there, then rename into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save(model, str(tmp))
        if check:
            check_model(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_branchy_models(folder: Path | str = DEFAULT_DIR, force: bool = False,
                          check: bool = True) -> dict[str, Path]:
    """Generate the models missing from ``folder`` (all of them if ``force``); return name -> path.

    A newly generated model is checked (``check_model``) before it is renamed into place, so a
    file under its final name has passed the checks once.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in BRANCHY_MODELS.items():
        path = model_path(folder, name)
        if force or not path.is_file():
            save_atomic(build(), path, check=check)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR,
                        help=f"where to write the models (default {DEFAULT_DIR})")
    parser.add_argument("--force", action="store_true", help="regenerate models that already exist")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)

    rows = []
    for name, build in BRANCHY_MODELS.items():
        path = model_path(args.folder, name)
        if path.is_file() and not args.force:
            status, seconds = "existing", 0.0
        else:
            began = time.perf_counter()
            save_atomic(build(), path, check=False)
            status, seconds = "generated", time.perf_counter() - began
        began = time.perf_counter()
        std = check_model(path)
        check_seconds = time.perf_counter() - began
        model = onnx.load(str(path))
        sizes = activation_bytes(model)
        peak = peak_live_bytes(model, sizes=sizes)
        bound = single_node_bound(model, sizes)
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        print(f"{path}: {status}" + (f" in {seconds:.1f} s" if seconds else "")
              + f"; checker + onnxruntime batch 1 ok in {check_seconds:.1f} s (logits std {std:.3f})")
        print(f"  peak live activations, emitted order, batch 1: {peak.bytes:,} B "
              f"({peak.bytes / 2**20:.2f} MiB) at step {peak.step} ({peak.node}); "
              f"largest single node (a bound for any order) {bound / 2**20:.2f} MiB")
        rows.append(f"| {path.name} | {len(model.graph.node)} | {params:,} | "
                    f"{path.stat().st_size / 2**20:.1f} MiB | {peak.bytes / 2**20:.2f} MiB |")
    print()
    print("| file | nodes | parameters | size | peak live (emitted order, batch 1) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
