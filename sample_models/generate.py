#!/usr/bin/env python3
"""Generate the hwopt sample ONNX models.

Writes five small, deterministic ONNX models next to this file, built with
``onnx.helper`` / ``onnx.numpy_helper`` only:

* ``mobilenetv2_tiny.onnx`` (opset 13): inverted residuals, depthwise-separable convs.
* ``resnext_tiny.onnx`` (opset 17): bottleneck blocks with grouped 3x3 convs.
* ``shufflenet_tiny.onnx`` (opset 11): channel split, concat and channel shuffle.
* ``inception_tiny.onnx`` (opset 15): multi-branch blocks whose emitted branch
  order is deliberately bad for peak activation memory.
* ``transformer_tiny.onnx`` (opset 17): two pre-LayerNorm encoder layers.

Weights are float32 with He/Kaiming-style initialisation, BatchNormalization is
left unfolded, every input/output has a symbolic ``batch`` dimension, and the
graphs carry typical exporter artifacts (Identity, Dropout, Constant nodes,
MatMul+Add classifiers, TorchScript-style flatten, explicit Pad, decomposed
hard-swish and GELU) for the optimisation passes to clean up. See README.md.

After writing, every model is checked: ``onnx.checker`` (full check), an
onnxruntime run at batch 1 and batch 2 (finite, batch-consistent outputs with a
sane standard deviation), and for the Inception model the peak live activation
bytes of the emitted node order versus the best branch order.

Usage: python sample_models/generate.py
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT_DIR = Path(__file__).resolve().parent
PRODUCER_NAME = "hwopt-sample-models"
PRODUCER_VERSION = "1"
IR_VERSION = 8  # ONNX 1.10+; covers opsets 11-17 and loads in onnxruntime 1.32
IMAGE_SHAPE = ["batch", 3, 96, 96]
NUM_CLASSES = 100
F32 = np.float32
I64 = np.int64


class GraphBuilder:
    """Accumulates the nodes, initializers and I/O of one graph.

    Node and tensor names are checked for uniqueness; weights come from a
    seeded generator so the output is reproducible. Node outputs are named
    ``<node name>_output_<i>`` unless given explicitly.
    """

    def __init__(self, opset: int, seed: int) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._node_names: set[str] = set()
        self._tensor_names: set[str] = set()

    # -- naming and raw graph elements ----------------------------------------

    def _claim_tensor(self, name: str) -> str:
        if name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {name!r}")
        self._tensor_names.add(name)
        return name

    def add_input(self, name: str, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(self._claim_tensor(name), TensorProto.FLOAT, shape))
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), self._claim_tensor(name)))
        return name

    def _add_node(self, op_type: str, inputs: list[str], name: str, outputs: list[str], attrs: dict) -> list[str]:
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        for output in outputs:
            self._claim_tensor(output)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs

    def op(self, op_type: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        """Append a single-output node; returns its output tensor name."""
        return self._add_node(op_type, inputs, name, [output or f"{name}_output_0"], attrs)[0]

    def op_multi(self, op_type: str, inputs: list[str], name: str, num_outputs: int, **attrs) -> list[str]:
        """Append a node with several outputs; returns their tensor names."""
        return self._add_node(op_type, inputs, name, [f"{name}_output_{i}" for i in range(num_outputs)], attrs)

    def constant(self, name: str, array: np.ndarray) -> str:
        """A ``Constant`` node, as the TorchScript exporter emits for literals."""
        return self.op("Constant", [], name, value=numpy_helper.from_array(np.asarray(array)))

    def finish(self, graph_name: str, outputs: list[tuple[str, list]]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            self.inputs,
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name=PRODUCER_NAME,
            producer_version=PRODUCER_VERSION,
        )
        model.ir_version = IR_VERSION
        return model

    # -- layers -----------------------------------------------------------------

    def conv(self, x: str, name: str, cin: int, cout: int, kernel: int, stride: int = 1,
             groups: int = 1, pad: int | None = None, gain: float = 2.0) -> str:
        """Bias-free Conv (a BatchNormalization follows) with Kaiming-normal weights.

        ``gain`` is 2 when a ReLU-like activation follows and 1 for a linear
        conv, which keeps the activation scale roughly constant through depth.
        """
        fan_in = cin // groups * kernel * kernel
        weight = self.rng.standard_normal((cout, cin // groups, kernel, kernel)) * np.sqrt(gain / fan_in)
        pad = kernel // 2 if pad is None else pad
        return self.op(
            "Conv", [x, self.initializer(f"{name}.weight", weight.astype(F32))], name,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
            dilations=[1, 1], group=groups,
        )

    def batch_norm(self, x: str, name: str, channels: int) -> str:
        """Inference-mode BatchNormalization with non-trivial running statistics."""
        params = {
            "weight": self.rng.uniform(0.8, 1.2, channels),
            "bias": self.rng.normal(0.0, 0.1, channels),
            "running_mean": self.rng.normal(0.0, 0.1, channels),
            "running_var": self.rng.uniform(0.5, 1.5, channels),
        }
        inputs = [x] + [self.initializer(f"{name}.{key}", value.astype(F32)) for key, value in params.items()]
        return self.op("BatchNormalization", inputs, name, epsilon=1e-5, momentum=0.9)

    def relu(self, x: str, name: str) -> str:
        return self.op("Relu", [x], name)

    def relu6(self, x: str, name: str) -> str:
        """ReLU6 as Clip whose min/max come from Constant nodes (TorchScript style)."""
        low = self.constant(f"{name}/min", np.array(0.0, F32))
        high = self.constant(f"{name}/max", np.array(6.0, F32))
        return self.op("Clip", [x, low, high], name)

    def hard_swish(self, x: str, name: str) -> str:
        """Hard-swish as ``x * HardSigmoid(x)`` (PyTorch export for opset < 14)."""
        gate = self.op("HardSigmoid", [x], f"{name}/hardsigmoid", alpha=1.0 / 6.0, beta=0.5)
        return self.op("Mul", [x, gate], f"{name}/mul")

    def paddle_hard_swish(self, x: str, name: str) -> str:
        """Hard-swish as ``x * Clip(x + 3, 0, 6) / 6`` (paddle2onnx style)."""
        shifted = self.op("Add", [x, self.initializer(f"{name}.offset", np.array(3.0, F32))], f"{name}/add")
        clipped = self.op(
            "Clip",
            [shifted, self.initializer(f"{name}.min", np.array(0.0, F32)),
             self.initializer(f"{name}.max", np.array(6.0, F32))],
            f"{name}/clip",
        )
        scaled = self.op("Div", [clipped, self.initializer(f"{name}.scale", np.array(6.0, F32))], f"{name}/div")
        return self.op("Mul", [x, scaled], f"{name}/mul")

    def conv_bn_act(self, x: str, prefix: str, cin: int, cout: int, kernel: int, stride: int = 1,
                    groups: int = 1, pad: int | None = None, act: str | None = None) -> str:
        """Conv -> BatchNormalization -> optional activation, named ``prefix/conv`` etc."""
        y = self.conv(x, f"{prefix}/conv", cin, cout, kernel, stride, groups, pad, gain=1.0 if act is None else 2.0)
        y = self.batch_norm(y, f"{prefix}/bn", cout)
        if act is None:
            return y
        activation = {
            "relu": self.relu,
            "relu6": self.relu6,
            "hardswish": self.hard_swish,
            "paddle_hardswish": self.paddle_hard_swish,
        }[act]
        return activation(y, f"{prefix}/{act}")

    def linear(self, x: str, name: str, cin: int, cout: int, output: str | None = None) -> str:
        """Fully connected layer as MatMul + Add with constant weight and bias (not Gemm)."""
        weight = self.rng.standard_normal((cin, cout)) * np.sqrt(1.0 / cin)
        bias = self.rng.normal(0.0, 0.02, cout)
        y = self.op("MatMul", [x, self.initializer(f"{name}.weight", weight.astype(F32))], f"{name}/matmul")
        return self.op("Add", [y, self.initializer(f"{name}.bias", bias.astype(F32))], f"{name}/add", output=output)

    def layer_norm(self, x: str, name: str, dim: int, output: str | None = None) -> str:
        scale = self.initializer(f"{name}.weight", (1.0 + self.rng.normal(0.0, 0.05, dim)).astype(F32))
        bias = self.initializer(f"{name}.bias", self.rng.normal(0.0, 0.02, dim).astype(F32))
        return self.op("LayerNormalization", [x, scale, bias], name, output=output, axis=-1, epsilon=1e-5)

    def dropout(self, x: str, name: str, ratio: float) -> str:
        """Dropout in the opset's form: ratio/training_mode inputs from opset 12, attribute before."""
        if self.opset >= 12:
            ratio_t = self.constant(f"{name}/ratio", np.array(ratio, F32))
            training = self.constant(f"{name}/training_mode", np.array(False))
            return self.op("Dropout", [x, ratio_t, training], name)
        return self.op("Dropout", [x], name, ratio=ratio)

    def unsqueeze(self, x: str, name: str, axes: list[int]) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.constant(f"{name}/axes", np.array(axes, I64))], name)
        return self.op("Unsqueeze", [x], name, axes=axes)

    def dynamic_batch(self, x: str, name: str) -> str:
        """1-D tensor holding x's batch size: Shape -> Gather(0) -> Unsqueeze (TorchScript style)."""
        shape = self.op("Shape", [x], f"{name}/shape")
        batch = self.op("Gather", [shape, self.constant(f"{name}/index", np.array(0, I64))], f"{name}/gather", axis=0)
        return self.unsqueeze(batch, f"{name}/unsqueeze", [0])

    def shape_with_batch(self, batch: str, name: str, tail: list[int]) -> str:
        """Concat a dynamic batch size with constant trailing dims into a Reshape target."""
        return self.op("Concat", [batch, self.constant(f"{name}/tail", np.array(tail, I64))], name, axis=0)

    def torch_flatten(self, x: str, name: str) -> str:
        """``x.view(x.size(0), -1)`` as TorchScript exports it."""
        target = self.shape_with_batch(self.dynamic_batch(x, f"{name}/batch"), f"{name}/concat", [-1])
        return self.op("Reshape", [x, target], f"{name}/reshape")


# -- 1. MobileNetV2 --------------------------------------------------------------------------


def inverted_residual(b: GraphBuilder, x: str, name: str, cin: int, cout: int,
                      expand: int, stride: int, act: str) -> str:
    hidden = cin * expand
    y = x
    if expand != 1:
        y = b.conv_bn_act(y, f"{name}/expand", cin, hidden, 1, act=act)
    y = b.conv_bn_act(y, f"{name}/depthwise", hidden, hidden, 3, stride=stride, groups=hidden, act=act)
    y = b.conv_bn_act(y, f"{name}/project", hidden, cout, 1)
    if stride == 1 and cin == cout:
        y = b.op("Add", [x, y], f"{name}/add")
    return y


def mobilenetv2_tiny() -> onnx.ModelProto:
    b = GraphBuilder(opset=13, seed=1)
    x = b.add_input("input", IMAGE_SHAPE)
    x = b.conv_bn_act(x, "stem", 3, 16, 3, stride=2, act="relu6")
    x = b.op("Identity", [x], "stem/identity")
    # (expansion, output channels, stride, activation); the last two blocks are MobileNetV3-like.
    blocks = [
        (1, 16, 1, "relu6"),
        (4, 20, 2, "relu6"),
        (4, 20, 1, "relu6"),
        (4, 36, 2, "relu6"),
        (4, 36, 1, "relu6"),
        (6, 64, 2, "relu6"),
        (6, 64, 1, "hardswish"),
        (6, 96, 1, "hardswish"),
    ]
    cin = 16
    for index, (expand, cout, stride, act) in enumerate(blocks, start=1):
        x = inverted_residual(b, x, f"block{index}", cin, cout, expand, stride, act)
        cin = cout
    x = b.conv_bn_act(x, "final", cin, 384, 1, act="relu6")
    x = b.op("GlobalAveragePool", [x], "head/pool")
    x = b.op("Flatten", [x], "head/flatten", axis=1)
    x = b.dropout(x, "head/dropout", 0.2)
    x = b.linear(x, "head/classifier", 384, NUM_CLASSES)
    b.op("Identity", [x], "head/output", output="logits")
    return b.finish("mobilenetv2_tiny", [("logits", ["batch", NUM_CLASSES])])


# -- 2. ResNeXt -------------------------------------------------------------------------------


def resnext_block(b: GraphBuilder, x: str, name: str, cin: int, width: int, cout: int,
                  stride: int, groups: int) -> str:
    y = b.conv_bn_act(x, f"{name}/reduce", cin, width, 1, act="relu")
    y = b.conv_bn_act(y, f"{name}/grouped", width, width, 3, stride=stride, groups=groups, act="relu")
    y = b.conv_bn_act(y, f"{name}/expand", width, cout, 1)
    if stride != 1 or cin != cout:
        shortcut = b.conv_bn_act(x, f"{name}/shortcut", cin, cout, 1, stride=stride)
    else:
        shortcut = b.op("Identity", [x], f"{name}/shortcut")
    y = b.op("Add", [y, shortcut], f"{name}/add")
    return b.relu(y, f"{name}/relu")


def resnext_tiny() -> onnx.ModelProto:
    b = GraphBuilder(opset=17, seed=2)
    x = b.add_input("input", IMAGE_SHAPE)
    pads = b.constant("stem/pad/pads", np.array([0, 0, 3, 3, 0, 0, 3, 3], I64))
    x = b.op("Pad", [x, pads, b.constant("stem/pad/value", np.array(0.0, F32))], "stem/pad", mode="constant")
    x = b.conv_bn_act(x, "stem", 3, 32, 7, stride=2, pad=0, act="relu")
    x = b.op("MaxPool", [x], "stem/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # (bottleneck width, output channels, first stride, groups, blocks)
    stages = [(64, 64, 1, 8, 1), (128, 128, 2, 8, 2), (256, 256, 2, 16, 1)]
    cin = 32
    for stage, (width, cout, stride, groups, depth) in enumerate(stages, start=1):
        for block in range(1, depth + 1):
            x = resnext_block(b, x, f"stage{stage}/block{block}", cin, width, cout,
                              stride if block == 1 else 1, groups)
            cin = cout
    x = b.op("GlobalAveragePool", [x], "head/pool")
    x = b.torch_flatten(x, "head/flatten")
    b.linear(x, "head/classifier", cin, NUM_CLASSES, output="logits")
    return b.finish("resnext_tiny", [("logits", ["batch", NUM_CLASSES])])


# -- 3. ShuffleNetV2 --------------------------------------------------------------------------


def channel_shuffle(b: GraphBuilder, x: str, name: str, channels: int, size: int, dynamic_batch: bool) -> str:
    """Shuffle two channel groups: Reshape [N,2,C/2,H,W] -> Transpose -> Reshape [N,C,H,W].

    The batch dim of the targets is either a 0 entry (copy the input dim) or
    computed at run time with Shape -> Gather -> Unsqueeze -> Concat.
    """
    grouped_dims = [2, channels // 2, size, size]
    merged_dims = [channels, size, size]
    if dynamic_batch:
        batch = b.dynamic_batch(x, f"{name}/batch")
        grouped = b.shape_with_batch(batch, f"{name}/grouped_shape", grouped_dims)
        merged = b.shape_with_batch(batch, f"{name}/merged_shape", merged_dims)
    else:
        grouped = b.constant(f"{name}/grouped_shape", np.array([0] + grouped_dims, I64))
        merged = b.constant(f"{name}/merged_shape", np.array([0] + merged_dims, I64))
    y = b.op("Reshape", [x, grouped], f"{name}/reshape_grouped")
    y = b.op("Transpose", [y], f"{name}/transpose", perm=[0, 2, 1, 3, 4])
    return b.op("Reshape", [y, merged], f"{name}/reshape_merged")


def shuffle_branch(b: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int) -> str:
    y = b.conv_bn_act(x, f"{name}/pointwise1", cin, cout, 1, act="relu")
    y = b.conv_bn_act(y, f"{name}/depthwise", cout, cout, 3, stride=stride, groups=cout)
    return b.conv_bn_act(y, f"{name}/pointwise2", cout, cout, 1, act="relu")


def shuffle_unit(b: GraphBuilder, x: str, name: str, channels: int, size: int) -> str:
    """Stride-1 unit: split channels, transform one half, concat, shuffle."""
    half = channels // 2
    left, right = b.op_multi("Split", [x], f"{name}/split", 2, axis=1, split=[half, half])
    right = shuffle_branch(b, right, f"{name}/branch", half, half, 1)
    y = b.op("Concat", [left, right], f"{name}/concat", axis=1)
    return channel_shuffle(b, y, f"{name}/shuffle", channels, size, dynamic_batch=False)


def shuffle_down_unit(b: GraphBuilder, x: str, name: str, cin: int, cout: int, size_out: int) -> str:
    """Stride-2 unit: both branches downsample, concat, shuffle."""
    half = cout // 2
    left = b.conv_bn_act(x, f"{name}/left/depthwise", cin, cin, 3, stride=2, groups=cin)
    left = b.conv_bn_act(left, f"{name}/left/pointwise", cin, half, 1, act="relu")
    right = shuffle_branch(b, x, f"{name}/right", cin, half, 2)
    y = b.op("Concat", [left, right], f"{name}/concat", axis=1)
    return channel_shuffle(b, y, f"{name}/shuffle", cout, size_out, dynamic_batch=True)


def shufflenet_tiny() -> onnx.ModelProto:
    b = GraphBuilder(opset=11, seed=3)
    x = b.add_input("input", IMAGE_SHAPE)
    x = b.conv_bn_act(x, "stem", 3, 24, 3, stride=2, act="relu")
    x = b.op("MaxPool", [x], "stem/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # (output channels, stride-1 units after the downsampling unit, output spatial size)
    stages = [(48, 2, 12), (96, 3, 6), (192, 1, 3)]
    cin = 24
    for stage, (cout, repeats, size) in enumerate(stages, start=2):
        x = shuffle_down_unit(b, x, f"stage{stage}/unit1", cin, cout, size)
        for unit in range(2, repeats + 2):
            x = shuffle_unit(b, x, f"stage{stage}/unit{unit}", cout, size)
        cin = cout
    x = b.conv_bn_act(x, "conv5", cin, 512, 1, act="paddle_hardswish")
    x = b.op("GlobalAveragePool", [x], "head/pool")
    x = b.op("Reshape", [x, b.constant("head/flatten/shape", np.array([0, -1], I64))], "head/flatten")
    x = b.dropout(x, "head/dropout", 0.2)
    b.linear(x, "head/classifier", 512, NUM_CLASSES, output="logits")
    return b.finish("shufflenet_tiny", [("logits", ["batch", NUM_CLASSES])])


# -- 4. Inception -----------------------------------------------------------------------------


class InceptionWidths(NamedTuple):
    a: int  # branch A: 1x1 conv, wide output
    b_reduce: int  # branch B: 1x1 reduce ...
    b: int  # ... then 3x3 conv
    c_expand: int  # branch C: 1x1 expand to a very wide intermediate ...
    c: int  # ... then 3x3 conv down to a narrow output
    d: int  # branch D: 3x3 max pool, then 1x1 conv

    @property
    def out_channels(self) -> int:
        return self.a + self.b + self.c + self.d


def inception_block(b: GraphBuilder, x: str, name: str, cin: int, w: InceptionWidths) -> str:
    """Four branches emitted in forward() order A, B, C, D, then concatenated."""
    a = b.conv_bn_act(x, f"{name}/branch_a/conv", cin, w.a, 1, act="relu")
    y = b.conv_bn_act(x, f"{name}/branch_b/reduce", cin, w.b_reduce, 1, act="relu")
    branch_b = b.conv_bn_act(y, f"{name}/branch_b/conv", w.b_reduce, w.b, 3, act="relu")
    y = b.conv_bn_act(x, f"{name}/branch_c/expand", cin, w.c_expand, 1, act="relu")
    c = b.conv_bn_act(y, f"{name}/branch_c/conv", w.c_expand, w.c, 3, act="relu")
    y = b.op("MaxPool", [x], f"{name}/branch_d/pool", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    d = b.conv_bn_act(y, f"{name}/branch_d/proj", cin, w.d, 1, act="relu")
    return b.op("Concat", [a, branch_b, c, d], f"{name}/concat", axis=1)


def inception_tiny() -> onnx.ModelProto:
    b = GraphBuilder(opset=15, seed=4)
    x = b.add_input("input", IMAGE_SHAPE)
    x = b.conv_bn_act(x, "stem/conv1", 3, 24, 3, stride=2, act="relu")
    x = b.conv_bn_act(x, "stem/conv2", 24, 48, 3, act="relu")
    x = b.op("MaxPool", [x], "stem/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = b.op("Identity", [x], "stem/identity")
    block1 = InceptionWidths(a=160, b_reduce=48, b=112, c_expand=288, c=16, d=24)  # 24x24, 48 -> 312 ch
    x = inception_block(b, x, "inception1", 48, block1)
    x = b.op("MaxPool", [x], "transition/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = b.conv_bn_act(x, "transition", block1.out_channels, 64, 1, act="relu")
    block2 = InceptionWidths(a=128, b_reduce=48, b=96, c_expand=320, c=24, d=32)  # 12x12, 64 -> 280 ch
    x = inception_block(b, x, "inception2", 64, block2)
    x = b.op("GlobalAveragePool", [x], "head/pool")
    x = b.op("Flatten", [x], "head/flatten", axis=1)
    b.linear(x, "head/classifier", block2.out_channels, NUM_CLASSES, output="logits")
    return b.finish("inception_tiny", [("logits", ["batch", NUM_CLASSES])])


# -- 5. Transformer encoder ---------------------------------------------------------------------

D_MODEL = 64
NUM_HEADS = 4
HEAD_DIM = D_MODEL // NUM_HEADS
D_FFN = 256


def split_heads(b: GraphBuilder, x: str, name: str) -> str:
    """[B, S, 64] -> [B, 4, S, 16]: Reshape [0, 0, 4, 16] then Transpose [0, 2, 1, 3]."""
    shape = b.constant(f"{name}/shape", np.array([0, 0, NUM_HEADS, HEAD_DIM], I64))
    y = b.op("Reshape", [x, shape], f"{name}/reshape")
    return b.op("Transpose", [y], f"{name}/transpose", perm=[0, 2, 1, 3])


def self_attention(b: GraphBuilder, x: str, name: str) -> str:
    q = split_heads(b, b.linear(x, f"{name}/q_proj", D_MODEL, D_MODEL), f"{name}/q_heads")
    k = split_heads(b, b.linear(x, f"{name}/k_proj", D_MODEL, D_MODEL), f"{name}/k_heads")
    v = split_heads(b, b.linear(x, f"{name}/v_proj", D_MODEL, D_MODEL), f"{name}/v_heads")
    # k.transpose(-2, -1) stays a second Transpose right after the head split, as exported.
    k_t = b.op("Transpose", [k], f"{name}/k_transpose", perm=[0, 1, 3, 2])
    scores = b.op("MatMul", [q, k_t], f"{name}/scores")
    scale = b.constant(f"{name}/scale/value", np.array(np.sqrt(HEAD_DIM), F32))
    scores = b.op("Div", [scores, scale], f"{name}/scale")
    probs = b.op("Softmax", [scores], f"{name}/softmax", axis=-1)
    context = b.op("MatMul", [probs, v], f"{name}/context")
    context = b.op("Transpose", [context], f"{name}/merge_heads/transpose", perm=[0, 2, 1, 3])
    shape = b.constant(f"{name}/merge_heads/shape", np.array([0, 0, D_MODEL], I64))
    context = b.op("Reshape", [context, shape], f"{name}/merge_heads/reshape")
    return b.linear(context, f"{name}/out_proj", D_MODEL, D_MODEL)


def torch_gelu(b: GraphBuilder, x: str, name: str) -> str:
    """Exact GELU as the TorchScript exporter emits it: x * (1 + Erf(x / sqrt(2))) * 0.5."""
    y = b.op("Div", [x, b.constant(f"{name}/sqrt2", np.array(np.sqrt(2.0), F32))], f"{name}/div")
    y = b.op("Erf", [y], f"{name}/erf")
    y = b.op("Add", [y, b.constant(f"{name}/one", np.array(1.0, F32))], f"{name}/add")
    y = b.op("Mul", [x, y], f"{name}/mul")
    return b.op("Mul", [y, b.constant(f"{name}/half", np.array(0.5, F32))], f"{name}/mul_half")


def encoder_layer(b: GraphBuilder, x: str, name: str) -> str:
    h = b.layer_norm(x, f"{name}/attn_norm", D_MODEL)
    x = b.op("Add", [x, self_attention(b, h, f"{name}/attn")], f"{name}/attn_residual")
    h = b.layer_norm(x, f"{name}/ffn_norm", D_MODEL)
    h = b.linear(h, f"{name}/ffn/fc1", D_MODEL, D_FFN)
    h = torch_gelu(b, h, f"{name}/ffn/gelu")
    h = b.linear(h, f"{name}/ffn/fc2", D_FFN, D_MODEL)
    return b.op("Add", [x, h], f"{name}/ffn_residual")


def transformer_tiny() -> onnx.ModelProto:
    b = GraphBuilder(opset=17, seed=5)
    x = b.add_input("tokens", ["batch", "seq", D_MODEL])
    for layer in range(1, 3):
        x = encoder_layer(b, x, f"layer{layer}")
    b.layer_norm(x, "final_norm", D_MODEL, output="hidden")
    return b.finish("transformer_tiny", [("hidden", ["batch", "seq", D_MODEL])])


# -- checks -----------------------------------------------------------------------------------


class SampleModel(NamedTuple):
    name: str
    build: Callable[[], onnx.ModelProto]
    concrete_input: tuple[int, ...]  # batch-1 shape of the single input used by the checks

    @property
    def path(self) -> Path:
        return OUT_DIR / f"{self.name}.onnx"


MODELS = [
    SampleModel("mobilenetv2_tiny", mobilenetv2_tiny, (1, 3, 96, 96)),
    SampleModel("resnext_tiny", resnext_tiny, (1, 3, 96, 96)),
    SampleModel("shufflenet_tiny", shufflenet_tiny, (1, 3, 96, 96)),
    SampleModel("inception_tiny", inception_tiny, (1, 3, 96, 96)),
    SampleModel("transformer_tiny", transformer_tiny, (1, 32, D_MODEL)),
]

BRANCH_NODE = re.compile(r"^(?P<block>[^/]+)/branch_(?P<branch>[a-z])/")
MIN_PEAK_REDUCTION = 0.25


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_runtime(sample: SampleModel, model: onnx.ModelProto) -> float:
    """Run batch 1 and batch 2; outputs must be finite, batch-consistent and of sane scale."""
    rng = np.random.default_rng(0)
    batch2 = rng.standard_normal((2, *sample.concrete_input[1:])).astype(F32)
    session = ort.InferenceSession(str(sample.path), providers=["CPUExecutionProvider"])
    input_name = model.graph.input[0].name
    (out1,) = session.run(None, {input_name: batch2[:1]})
    (out2,) = session.run(None, {input_name: batch2})
    assert out1.shape[0] == 1 and out2.shape[0] == 2, (out1.shape, out2.shape)
    assert np.isfinite(out1).all() and np.isfinite(out2).all(), "non-finite output"
    np.testing.assert_allclose(out2[:1], out1, rtol=1e-3, atol=1e-4, err_msg="batch 2 differs from batch 1")
    std = float(out2.std())
    assert 0.1 < std < 10.0, f"output std {std:.3g} out of range"
    return std


def activation_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of every value in the graph at batch 1, from ONNX shape inference."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    graph = onnx.shape_inference.infer_shapes(fixed, strict_mode=True).graph
    sizes = {}
    for value in itertools.chain(graph.input, graph.value_info, graph.output):
        tensor_type = value.type.tensor_type
        itemsize = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize
        sizes[value.name] = itemsize * int(np.prod([d.dim_value for d in tensor_type.shape.dim]))
    return sizes


def peak_live_bytes(order: list[onnx.NodeProto], graph: onnx.GraphProto, sizes: dict[str, int]) -> int:
    """Peak sum of live activation bytes when running ``order``.

    A tensor is live from its producer's step to its last consumer's step;
    graph inputs from the start, graph outputs until the end. Initializers and
    Constant-node outputs are weights, not activations, and are not counted.
    """
    start = {value.name: 0 for value in graph.input}
    end = dict(start)
    for step, node in enumerate(order):
        for name in node.input:
            if name in start:
                end[name] = step
        if node.op_type != "Constant":
            for name in node.output:
                start[name] = end[name] = step
    for value in graph.output:
        end[value.name] = len(order) - 1
    delta = [0] * (len(order) + 1)
    for name, first in start.items():
        delta[first] += sizes[name]
        delta[end[name] + 1] -= sizes[name]
    return max(itertools.accumulate(delta))


def branch_orders(nodes: list[onnx.NodeProto]) -> Iterator[tuple[str, list[onnx.NodeProto]]]:
    """Yield (label, order) for every permutation of the branches within each block.

    Branch nodes are recognised by their ``<block>/branch_<x>/`` name; each
    block's branches must be contiguous in ``nodes`` and stay contiguous in
    every yielded order.
    """
    template: list = []  # NodeProto, or the name of a block standing for all its branch nodes
    blocks: dict[str, dict[str, list[onnx.NodeProto]]] = {}
    for node in nodes:
        match = BRANCH_NODE.match(node.name)
        if match is None:
            template.append(node)
            continue
        block = match["block"]
        if block not in blocks:
            blocks[block] = {}
            template.append(block)
        elif template[-1] != block:
            raise AssertionError(f"branches of {block} are not contiguous")
        blocks[block].setdefault(match["branch"], []).append(node)
    names = list(blocks)
    for choice in itertools.product(*(itertools.permutations(blocks[name]) for name in names)):
        branch_order = dict(zip(names, choice))
        order = []
        for item in template:
            if isinstance(item, str):
                order.extend(node for branch in branch_order[item] for node in blocks[item][branch])
            else:
                order.append(item)
        label = ", ".join(f"{name}: {''.join(branch_order[name]).upper()}" for name in names)
        yield label, order


def check_branch_order_memory(model: onnx.ModelProto) -> None:
    graph = model.graph
    sizes = activation_bytes(model)
    emitted = peak_live_bytes(list(graph.node), graph, sizes)
    best, best_label = min(
        (peak_live_bytes(order, graph, sizes), label) for label, order in branch_orders(list(graph.node))
    )
    reduction = 1.0 - best / emitted
    print(f"  peak live activations (batch 1): emitted order {emitted} B ({emitted / 2**20:.2f} MiB), "
          f"best branch order {best} B ({best / 2**20:.2f} MiB) [{best_label}], reduction {reduction:.1%}")
    assert reduction >= MIN_PEAK_REDUCTION, f"branch reordering saves only {reduction:.1%}"


def check(sample: SampleModel) -> None:
    model = onnx.load(str(sample.path))
    onnx.checker.check_model(model, full_check=True)
    std = check_runtime(sample, model)
    print(f"{sample.path.name}: checker ok, onnxruntime batch 1/2 ok, output std {std:.3f}")
    if sample.name == "inception_tiny":
        check_branch_order_memory(model)


def summary_row(sample: SampleModel) -> str:
    model = onnx.load(str(sample.path))
    graph = model.graph
    params = sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == TensorProto.FLOAT)
    inputs = ", ".join(
        f"{v.name} [{', '.join(d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim)}]"
        for v in graph.input
    )
    size_kib = sample.path.stat().st_size / 1024
    return (f"| {sample.path.name} | {model.opset_import[0].version} | {inputs} | {len(graph.node)} "
            f"| {params:,} | {size_kib:,.0f} KiB |")


def main() -> None:
    for sample in MODELS:
        save_atomic(sample.build(), sample.path)
    for sample in MODELS:
        check(sample)
    print()
    print("| file | opset | inputs | nodes | parameters | size |")
    print("|---|---|---|---|---|---|")
    for sample in MODELS:
        print(summary_row(sample))


if __name__ == "__main__":
    main()
