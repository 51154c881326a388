"""A corpus of hostile and broken ONNX inputs for the robustness tests, generated rather than stored.

Every case is built by code from fixed seeds, so the repository holds no binary blobs and two runs write the same bytes.
``build_corpus(root)`` writes each case into its own folder ``root/<name>/`` and returns the list of cases; the
robustness tests run every hwopt command on every case. A case's ``path`` is what to pass on the command line: a model
file, or for the "path is a directory" cases a folder.

The corpus covers files that are not models at all (empty, random, truncated, other formats, other protobuf messages),
models that break the ONNX spec (cycles, duplicate or dangling names, bad opsets and IR versions, wrong attribute
types, negative or absurd dimensions, mismatched tensor data, invalid UTF-8), external data that escapes the model's
folder or lies about its size, resource bombs that are small on disk but huge once loaded, folded or run, and a few
awkward but valid models (a 10,000-node chain, a registered contrib op, a unicode path) that hwopt may accept.

``Case.loads`` is True only where the model really runs: each such case was checked to create an onnxruntime
``InferenceSession`` on the CPU provider and run on small inputs within a couple of seconds. For those, hwopt may
succeed (or refuse cleanly); for every other case it must refuse with exit code 2. A few cases that onnxruntime does run
are still marked False because they break the spec or the sandbox (invalid UTF-8 names, negative dims, IR version 0,
hard-linked external data); their descriptions say so. Sizes of 2**40 elements and the like are declared in metadata
only: every file written is tiny, and building the whole corpus takes a fraction of a second.

Escape cases put the victim at ``root/<name>/outside/secret.bin`` and the model at ``root/<name>/model/model.onnx``, so
a traversal reaches a file inside the corpus tree, never a real system file. Link cases are skipped where the file
system refuses to create links.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
MODEL_FILE = "model.onnx"
# Far more elements than any machine can hold (4 TiB of float32), yet only a few bytes of metadata.
HUGE = 2**40


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # snake_case, unique
    path: Path  # the file (or folder) to pass to the command
    description: str  # one line: what is wrong with it
    loads: bool  # True: valid enough that hwopt may succeed; False: hwopt must refuse it with exit code 2


# A builder writes one case into its (empty) folder and returns the path to hand to hwopt, or None to skip the case.
Builder = Callable[[Path], Path | None]


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    build: Builder
    loads: bool = False


def build_corpus(root: Path) -> list[Case]:
    """Write every case under root (each case in its own subfolder root/<name>/) and return them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for spec in _SPECS:
        folder = root / spec.name
        folder.mkdir()
        path = spec.build(folder)
        if path is None:
            shutil.rmtree(folder)
            continue
        cases.append(Case(spec.name, path, spec.description, spec.loads))
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks


def _f32(name: str, shape: Sequence[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    *,
    opsets: dict[str, int] | None = None,
    ir_version: int = IR_VERSION,
    functions: Sequence[onnx.FunctionProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    opset_imports = [helper.make_opsetid(domain, version) for domain, version in (opsets or {"": OPSET}).items()]
    model = helper.make_model(graph, opset_imports=opset_imports, functions=list(functions))
    # Set after make_model, which otherwise stamps the installed onnx's IR version and so varies between machines.
    model.ir_version = ir_version
    return model


def _relu_model(*, opsets: dict[str, int] | None = None, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    """The smallest valid model: Y = Relu(X) on a [1, 4] float input."""
    nodes = [helper.make_node("Relu", ["X"], ["Y"])]
    return _model(nodes, [_f32("X", [1, 4])], [_f32("Y", [1, 4])], opsets=opsets, ir_version=ir_version)


def _weighted_model() -> onnx.ModelProto:
    """Y = X + W with 64 float weights, so that its serialized form has a long initializer to cut through."""
    weights = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    return _model(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        [_f32("X", [1, 64])],
        [_f32("Y", [1, 64])],
        [numpy_helper.from_array(weights, "W")],
    )


def _add_model(weight: onnx.TensorProto) -> onnx.ModelProto:
    """Y = X + W for a [4] float weight the caller has made wrong in some way."""
    return _model([helper.make_node("Add", ["X", "W"], ["Y"])], [_f32("X", [4])], [_f32("Y", [4])], [weight])


def _raw_tensor(name: str, dims: Sequence[int], raw: bytes = b"") -> TensorProto:
    """A float tensor with exactly these dims and raw bytes, however little they agree."""
    # Built by hand: helper.make_tensor checks the data against the dims, which is exactly what these cases violate.
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, raw_data=raw)
    tensor.dims.extend(dims)
    return tensor


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save(folder: Path, model: onnx.ModelProto, name: str = MODEL_FILE) -> Path:
    # SerializeToString rather than onnx.save, which would resolve or rewrite external data.
    return _write(folder / name, model.SerializeToString())


def _saver(make: Callable[[], onnx.ModelProto]) -> Builder:
    return lambda folder: _save(folder, make())


def _bytes_case(data: bytes) -> Builder:
    return lambda folder: _write(folder / MODEL_FILE, data)


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _truncated(fraction: float) -> bytes:
    data = _weighted_model().SerializeToString()
    return data[: max(1, min(len(data) - 1, int(len(data) * fraction)))]


def _with_bytes_replaced(model: onnx.ModelProto, placeholder: str, replacement: bytes) -> bytes:
    """Serialize, then swap an ASCII placeholder for same-length raw bytes the protobuf API would refuse to set."""
    data = model.SerializeToString()
    needle = placeholder.encode()
    assert len(replacement) == len(needle) and needle in data
    return data.replace(needle, replacement)


# Not valid UTF-8 in several ways at once: bytes that never occur (0xff, 0xfe), a lone continuation byte (0x80), an
# overlong encoding of "/" (0xc0 0xaf) and a truncated three-byte sequence (0xe2 0x82).
_BAD_UTF8 = b"\xff\xfe\x80\xc0\xaf\xe2\x82("


# ---------------------------------------------------------------------------------------------------------------------
# Files that are not ONNX models


def _json_file() -> bytes:
    # What a model "looks like" to someone who confuses the JSON dump of a ModelProto with the model itself.
    doc = {"irVersion": "8", "opsetImport": [{"version": "17"}], "graph": {"node": [{"opType": "Relu"}]}}
    return json.dumps(doc, sort_keys=True).encode()


def _zip_file() -> bytes:
    # A real archive holding a valid model (the shape of a PyTorch .pt file): fixed timestamp, so the bytes are stable.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo(MODEL_FILE, date_time=(1980, 1, 1, 0, 0, 0)), _relu_model().SerializeToString()
        )
    return buffer.getvalue()


_ONNX_TEXT = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] X) => (float[1, 4] Y) {
    Y = Relu (X)
}
"""


def _graph_only() -> bytes:
    return _relu_model().graph.SerializeToString()


def _node_only() -> bytes:
    return helper.make_node("Relu", ["X"], ["Y"], name="lonely").SerializeToString()


def _tensor_only() -> bytes:
    return numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "W").SerializeToString()


# ---------------------------------------------------------------------------------------------------------------------
# Models that break the spec


def _no_graph() -> onnx.ModelProto:
    return onnx.ModelProto(ir_version=IR_VERSION, opset_import=[helper.make_opsetid("", OPSET)])


def _empty_graph() -> onnx.ModelProto:
    return _model([], [], [])


def _cyclic() -> onnx.ModelProto:
    # a = X + b and b = Relu(a): neither node can run first.
    nodes = [helper.make_node("Add", ["X", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    return _model(nodes, [_f32("X", [1, 4])], [_f32("a", [1, 4])])


def _duplicate_output() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["X"], ["Y"]), helper.make_node("Neg", ["X"], ["Y"])]
    return _model(nodes, [_f32("X", [1, 4])], [_f32("Y", [1, 4])])


def _dangling_input() -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["X", "ghost"], ["Y"])], [_f32("X", [1, 4])], [_f32("Y", [1, 4])])


def _single_op(op_type: str, domain: str = "") -> onnx.ModelProto:
    """Y = op_type(X), importing version 1 of the op's domain when it is not the default one."""
    node = helper.make_node(op_type, ["X"], ["Y"], domain=domain)
    opsets = {"": OPSET, domain: 1} if domain else {"": OPSET}
    return _model([node], [_f32("X", [1, 4])], [_f32("Y", [1, 4])], opsets=opsets)


def _wrong_attribute_type() -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.ones((1, 1, 3, 3), dtype=np.float32), "W")
    # kernel_shape must be INTS; a string attribute of the same name is what a sloppy exporter might write.
    conv = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape="3x3")
    return _model([conv], [_f32("X", [1, 1, 4, 4])], [_f32("Y", [1, 1, 2, 2])], [weights])


def _recursive_function() -> onnx.ModelProto:
    # local.Rec's body calls local.Rec: inlining it never terminates.
    opsets = {"": OPSET, "local": 1}
    body = [helper.make_node("Rec", ["x"], ["y"], domain="local")]
    function = helper.make_function(
        "local", "Rec", ["x"], ["y"], body, [helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    node = helper.make_node("Rec", ["X"], ["Y"], domain="local")
    return _model([node], [_f32("X", [1, 4])], [_f32("Y", [1, 4])], opsets=opsets, functions=[function])


def _if_model(then_branch: onnx.GraphProto) -> onnx.ModelProto:
    else_branch = helper.make_graph([helper.make_node("Identity", ["X"], ["e"])], "else", [], [_f32("e", [1, 4])])
    node = helper.make_node("If", ["C"], ["Y"], then_branch=then_branch, else_branch=else_branch)
    inputs = [_f32("X", [1, 4]), helper.make_tensor_value_info("C", TensorProto.BOOL, [])]
    return _model([node], inputs, [_f32("Y", [1, 4])])


def _empty_subgraph() -> onnx.ModelProto:
    return _if_model(onnx.GraphProto())


def _non_utf8_node_name() -> bytes:
    model = _relu_model()
    model.graph.node[0].name = "NODENAME"
    return _with_bytes_replaced(model, "NODENAME", _BAD_UTF8)


def _non_utf8_tensor_name() -> bytes:
    # The intermediate tensor keeps the same (invalid) bytes everywhere it appears, so the graph still links up.
    nodes = [helper.make_node("Relu", ["X"], ["TENSORNM"]), helper.make_node("Neg", ["TENSORNM"], ["Y"])]
    return _with_bytes_replaced(_model(nodes, [_f32("X", [1, 4])], [_f32("Y", [1, 4])]), "TENSORNM", _BAD_UTF8)


# ---------------------------------------------------------------------------------------------------------------------
# Bad tensors and shapes (all declared, none allocated)


def _huge_initializer() -> onnx.ModelProto:
    return _add_model(_raw_tensor("W", [HUGE]))


def _negative_dims_initializer() -> onnx.ModelProto:
    return _add_model(_raw_tensor("W", [-4], np.ones(4, dtype=np.float32).tobytes()))


def _raw_data_mismatch() -> onnx.ModelProto:
    # Six bytes for four floats: not even a whole number of elements.
    return _add_model(_raw_tensor("W", [4], b"\x00\x00\x80?\x00\x00"))


def _float_data_mismatch() -> onnx.ModelProto:
    weight = _raw_tensor("W", [4])
    weight.float_data.extend([1.0, 2.0, 3.0])
    return _add_model(weight)


def _input_dims(dims: Sequence[int]) -> onnx.ModelProto:
    # make_tensor_value_info rejects negative dims, so the shape is written into the proto directly.
    model = _relu_model()
    for graph_value in (model.graph.input[0], model.graph.output[0]):
        shape = graph_value.type.tensor_type.shape
        del shape.dim[:]
        for size in dims:
            shape.dim.add().dim_value = size
    return model


def _huge_constant_value() -> onnx.ModelProto:
    node = helper.make_node("Constant", [], ["C"], value=_raw_tensor("value", [HUGE]))
    return _model([node, helper.make_node("Add", ["X", "C"], ["Y"])], [_f32("X", [1])], [_f32("Y", [HUGE])])


def _huge_sparse_value() -> onnx.ModelProto:
    # One stored value, but densifying it (as Constant must) needs 2**40 floats.
    values = helper.make_tensor("values", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("indices", TensorProto.INT64, [1], [0])
    node = helper.make_node("Constant", [], ["C"], sparse_value=helper.make_sparse_tensor(values, indices, [HUGE]))
    return _model([node, helper.make_node("Add", ["X", "C"], ["Y"])], [_f32("X", [1])], [_f32("Y", [HUGE])])


def _int64s(name: str, values: int | Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _huge_reshape() -> onnx.ModelProto:
    node = helper.make_node("Reshape", ["X", "shape"], ["Y"])
    return _model([node], [_f32("X", [1, 4])], [_f32("Y", [2**20, 2**20])], [_int64s("shape", [2**20, 2**20])])


def _huge_expand_constant() -> onnx.ModelProto:
    # Both Expand inputs are constants, so a constant-folding pass would try to materialise 2**38 floats (1 TiB).
    nodes = [helper.make_node("Expand", ["one", "shape"], ["E"]), helper.make_node("Mul", ["X", "E"], ["Y"])]
    initializers = [numpy_helper.from_array(np.ones(1, dtype=np.float32), "one"), _int64s("shape", [2**19, 2**19])]
    return _model(nodes, [_f32("X", [1, 1])], [_f32("Y", [2**19, 2**19])], initializers)


def _huge_resize() -> onnx.ModelProto:
    # Only running it allocates: a [1, 1, 2, 2] input upscaled 2**18 times on each side is 2**38 floats.
    scales = numpy_helper.from_array(np.array([1, 1, 2**18, 2**18], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["X", "", "scales"], ["Y"])
    return _model([node], [_f32("X", [1, 1, 2, 2])], [_f32("Y", [1, 1, 2**19, 2**19])], [scales])


# ---------------------------------------------------------------------------------------------------------------------
# Awkward graphs: deep, long, looping, or with unusual inputs and outputs


def _long_chain(length: int = 10_000) -> onnx.ModelProto:
    # Alternating Relu and Add keeps values bounded; a pass that recurses per node would overflow the stack.
    bias = numpy_helper.from_array(np.full((1, 4), 0.001, dtype=np.float32), "B")
    names = ["X"] + [f"t{i}" for i in range(1, length)] + ["Y"]
    nodes = [
        helper.make_node("Relu", [src], [dst]) if i % 2 == 0 else helper.make_node("Add", [src, "B"], [dst])
        for i, (src, dst) in enumerate(zip(names, names[1:]))
    ]
    return _model(nodes, [_f32("X", [1, 4])], [_f32("Y", [1, 4])], [bias])


def _nested_if(depth: int) -> onnx.ModelProto:
    # Each level's then-branch holds the next If. The nesting is written in place, level by level: make_node copies
    # attributes through a protobuf parse, which refuses messages nested this deep (which is the point of the case).
    inputs = [_f32("X", [1, 4]), helper.make_tensor_value_info("C", TensorProto.BOOL, [])]
    model = _model([], inputs, [_f32("Y", [1, 4])])
    graph = model.graph
    result = "Y"
    for level in range(depth):
        else_branch = helper.make_graph(
            [helper.make_node("Identity", ["X"], [f"e{level}"])], f"else{level}", [], [_f32(f"e{level}", [1, 4])]
        )
        node = graph.node.add(op_type="If", input=["C"], output=[result])
        node.attribute.add(name="else_branch", type=onnx.AttributeProto.GRAPH, g=else_branch)
        graph = node.attribute.add(name="then_branch", type=onnx.AttributeProto.GRAPH).g
        # Every name is unique across all the nested scopes, as the spec requires.
        result = f"r{level}"
        graph.name = f"then{level}"
        graph.output.append(_f32(result, [1, 4]))
    graph.node.append(helper.make_node("Identity", ["X"], [result]))
    return model


def _endless_loop() -> onnx.ModelProto:
    # 2**62 iterations with a condition that stays true: running it never finishes.
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
            _f32("v_in", [1, 4]),
        ],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), _f32("v_out", [1, 4])],
    )
    initializers = [_int64s("M", 2**62), numpy_helper.from_array(np.array(True), "cond")]
    node = helper.make_node("Loop", ["M", "cond", "X"], ["Y"], body=body)
    return _model([node], [_f32("X", [1, 4])], [_f32("Y", [1, 4])], initializers)


def _sequence_input() -> onnx.ModelProto:
    node = helper.make_node("SequenceLength", ["S"], ["Y"])
    inputs = [helper.make_tensor_sequence_value_info("S", TensorProto.FLOAT, [1, 4])]
    return _model([node], inputs, [helper.make_tensor_value_info("Y", TensorProto.INT64, [])])


def _map_input() -> onnx.ModelProto:
    # Maps exist only for the ai.onnx.ml operators; DictVectorizer turns one into a dense tensor.
    map_type = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    node = helper.make_node("DictVectorizer", ["M"], ["Y"], domain="ai.onnx.ml", string_vocabulary=["a", "b"])
    return _model(
        [node],
        [helper.make_value_info("M", map_type)],
        [_f32("Y", [1, 2])],
        opsets={"": OPSET, "ai.onnx.ml": 3},
    )


def _optional_input() -> onnx.ModelProto:
    optional_type = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 4]))
    node = helper.make_node("OptionalHasElement", ["O"], ["Y"])
    # OptionalHasElement accepts a plain optional tensor from opset 18.
    return _model(
        [node],
        [helper.make_value_info("O", optional_type)],
        [helper.make_tensor_value_info("Y", TensorProto.BOOL, [])],
        opsets={"": 18},
    )


def _string_input() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Identity", ["S"], ["Y"])],
        [helper.make_tensor_value_info("S", TensorProto.STRING, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.STRING, [1, 2])],
    )


def _constant_model() -> onnx.ModelProto:
    value = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "value")
    return _model([helper.make_node("Constant", [], ["Y"], value=value)], [], [_f32("Y", [1, 4])])


def _passthrough() -> onnx.ModelProto:
    return _model([], [_f32("X", [1, 4])], [_f32("X", [1, 4])])


def _shadowed_input() -> onnx.ModelProto:
    # Since IR 4 an initializer named like an input is only that input's default: legal, but easy to mistake for a
    # weight and fold away.
    default = numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "X")
    return _model([helper.make_node("Relu", ["X"], ["Y"])], [_f32("X", [1, 4])], [_f32("Y", [1, 4])], [default])


# ---------------------------------------------------------------------------------------------------------------------
# Paths: directories, links, unicode


def _directory(folder: Path) -> Path:
    path = folder / MODEL_FILE
    path.mkdir()
    return path


def _unicode_path(folder: Path) -> Path:
    return _save(folder, _relu_model(), "my modèl ünïcode 模型 ✓.onnx")


def _symlink_loop(folder: Path) -> Path | None:
    path = folder / MODEL_FILE
    try:
        path.symlink_to(MODEL_FILE)
    except OSError:
        return None
    return path


# ---------------------------------------------------------------------------------------------------------------------
# External data: escapes, links, and sizes that lie

_SECRET = np.arange(4, dtype=np.float32).tobytes()


def _external_model(
    location: str, *, dims: Sequence[int] = (4,), offset: int | None = None, length: int | None = None
) -> onnx.ModelProto:
    weight = _raw_tensor("W", dims)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": offset, "length": length}
    for key, value in entries.items():
        if value is not None:
            weight.external_data.add(key=key, value=str(value))
    return _add_model(weight)


def _secret(folder: Path) -> Path:
    return _write(folder / "outside" / "secret.bin", _SECRET)


def _external_case(location: str, **kwargs: int) -> Builder:
    """A model in folder/model/ whose weight W lives at location, beside a genuine model/weights.bin."""

    def build(folder: Path) -> Path:
        _secret(folder)
        _write(folder / "model" / "weights.bin", _SECRET)
        return _save(folder / "model", _external_model(location, **kwargs))

    return build


def _external_absolute(folder: Path) -> Path:
    # Absolute, but inside the corpus tree: the file exists and is readable, only the location form is forbidden.
    secret = _secret(folder).resolve()
    return _save(folder / "model", _external_model(str(secret)))


def _external_linked(link: Callable[[Path, Path], None]) -> Builder:
    """weights.bin beside the model is a link (made by link(target, link_path)) to the secret outside its folder."""

    def build(folder: Path) -> Path | None:
        _secret(folder)
        (folder / "model").mkdir()
        try:
            link(folder / "outside" / "secret.bin", folder / "model" / "weights.bin")
        except OSError:
            return None
        return _save(folder / "model", _external_model("weights.bin"))

    return build


def _relative_symlink(target: Path, link_path: Path) -> None:
    # Relative, so the link reads the same wherever the corpus is built.
    link_path.symlink_to(os.path.relpath(target, link_path.parent))


# ---------------------------------------------------------------------------------------------------------------------
# The corpus

_SPECS: tuple[_Spec, ...] = (
    # Not a model at all.
    _Spec("empty_file", "zero-byte file", _bytes_case(b"")),
    _Spec("random_bytes_16", "16 random bytes", _bytes_case(_random_bytes(0, 16))),
    _Spec("random_bytes_1k", "1 KiB of random bytes", _bytes_case(_random_bytes(1, 1024))),
    _Spec("random_bytes_64k", "64 KiB of random bytes", _bytes_case(_random_bytes(2, 65536))),
    _Spec("truncated_first_byte", "valid model cut to its first byte", _bytes_case(_truncated(0.0))),
    _Spec("truncated_half", "valid model cut in the middle of its initializer", _bytes_case(_truncated(0.5))),
    _Spec("truncated_last_byte", "valid model missing its last byte", _bytes_case(_truncated(1.0))),
    _Spec("png_magic", "PNG header and junk, named .onnx", _bytes_case(b"\x89PNG\r\n\x1a\n" + _random_bytes(3, 256))),
    _Spec("text_file", "plain English text, named .onnx", _bytes_case(b"This is not an ONNX model.\n" * 8)),
    _Spec("onnx_text_format", "ONNX textual syntax of a valid model, not protobuf", _bytes_case(_ONNX_TEXT.encode())),
    _Spec("json_file", "a JSON rendering of a model", _bytes_case(_json_file())),
    _Spec("zip_archive", "a zip archive (as a PyTorch .pt is) holding a valid model", _bytes_case(_zip_file())),
    _Spec("tensor_proto", "a serialized TensorProto, not a ModelProto", _bytes_case(_tensor_only())),
    _Spec("graph_proto", "a serialized GraphProto without the ModelProto around it", _bytes_case(_graph_only())),
    _Spec("node_proto", "a serialized NodeProto, not a ModelProto", _bytes_case(_node_only())),
    # Models that break the spec.
    _Spec("no_graph", "ModelProto with IR version and opset but no graph", _saver(_no_graph)),
    _Spec("empty_graph", "graph with no nodes, inputs or outputs", _saver(_empty_graph)),
    _Spec("cyclic_graph", "two nodes that feed each other (a -> b -> a)", _saver(_cyclic)),
    _Spec("duplicate_output_name", "two nodes produce the same tensor name", _saver(_duplicate_output)),
    _Spec("dangling_input", "a node reads a tensor nothing defines", _saver(_dangling_input)),
    _Spec(
        "unknown_op_default_domain",
        "op NotARealOp in the default domain",
        _saver(lambda: _single_op("NotARealOp")),
    ),
    _Spec(
        "unknown_custom_domain",
        "op Exploit in unregistered domain com.evil",
        _saver(lambda: _single_op("Exploit", "com.evil")),
    ),
    _Spec(
        "contrib_op_com_microsoft",
        "com.microsoft Gelu: not an ONNX standard op, but onnxruntime runs it",
        _saver(lambda: _single_op("Gelu", "com.microsoft")),
        loads=True,
    ),
    _Spec("opset_99", "default-domain opset 99, from the future", _saver(lambda: _relu_model(opsets={"": 99}))),
    _Spec(
        "opset_1",
        "default-domain opset 1, older than onnxruntime supports",
        _saver(lambda: _relu_model(opsets={"": 1})),
    ),
    _Spec(
        "ir_version_0",
        "IR version 0, which no spec defines (onnxruntime runs it)",
        _saver(lambda: _relu_model(ir_version=0)),
    ),
    _Spec("ir_version_99", "IR version 99, from the future", _saver(lambda: _relu_model(ir_version=99))),
    _Spec("wrong_attribute_type", "Conv kernel_shape given as a string instead of ints", _saver(_wrong_attribute_type)),
    _Spec("recursive_function", "a model-local FunctionProto that calls itself", _saver(_recursive_function)),
    _Spec("empty_subgraph", "If whose then_branch is an empty GraphProto", _saver(_empty_subgraph)),
    _Spec("non_utf8_node_name", "node name not valid UTF-8 (onnxruntime runs it)", _bytes_case(_non_utf8_node_name())),
    _Spec(
        "non_utf8_tensor_name",
        "tensor name not valid UTF-8 (onnxruntime runs it)",
        _bytes_case(_non_utf8_tensor_name()),
    ),
    # Bad tensors and shapes.
    _Spec("huge_initializer", "initializer declaring 2**40 floats with no data", _saver(_huge_initializer)),
    _Spec(
        "huge_input_dims", "input shape [2**40]: no feed for it can be allocated", _saver(lambda: _input_dims([HUGE]))
    ),
    _Spec("negative_dims_initializer", "initializer with dims [-4]", _saver(_negative_dims_initializer)),
    _Spec(
        "negative_dims_input",
        "input shape [-5, 4]: a negative size reads as dynamic (Paddle's exporter writes -1 so)",
        _saver(lambda: _input_dims([-5, 4])),
        loads=True,
    ),
    _Spec("raw_data_length_mismatch", "inline raw_data of 6 bytes for 4 floats", _saver(_raw_data_mismatch)),
    _Spec("float_data_count_mismatch", "3 float_data values for dims [4]", _saver(_float_data_mismatch)),
    _Spec("huge_constant_value", "Constant node whose value declares 2**40 floats", _saver(_huge_constant_value)),
    _Spec(
        "huge_constant_sparse_value",
        "Constant whose sparse_value densifies to 2**40 floats",
        _saver(_huge_sparse_value),
    ),
    _Spec("huge_reshape", "Reshape of 4 elements to a constant shape of 2**40", _saver(_huge_reshape)),
    _Spec("huge_expand_constant", "Expand of constants to 2**38 floats: a folding bomb", _saver(_huge_expand_constant)),
    _Spec("huge_resize", "Resize that upscales a 2x2 input to 2**38 floats at run time", _saver(_huge_resize)),
    # Awkward graphs.
    _Spec("chain_10000_nodes", "10,000 alternating Relu/Add nodes in one chain", _saver(_long_chain), loads=True),
    _Spec("nested_if_30", "If subgraphs nested 30 deep", _saver(lambda: _nested_if(30)), loads=True),
    _Spec("nested_if_60", "If subgraphs nested 60 deep, past protobuf's nesting limit", _saver(lambda: _nested_if(60))),
    _Spec("loop_huge_trip_count", "Loop with trip count 2**62 whose condition stays true", _saver(_endless_loop)),
    _Spec("sequence_input", "graph input is a sequence of tensors", _saver(_sequence_input), loads=True),
    _Spec("map_input", "graph input is a map (string -> float) fed to DictVectorizer", _saver(_map_input), loads=True),
    _Spec("optional_input", "graph input is an optional tensor", _saver(_optional_input), loads=True),
    _Spec("string_input", "graph input of string dtype", _saver(_string_input), loads=True),
    _Spec("zero_inputs", "no inputs: a Constant is the whole model", _saver(_constant_model), loads=True),
    _Spec("output_is_input", "no nodes: the graph output is its input", _saver(_passthrough), loads=True),
    _Spec("initializer_shadows_input", "an initializer named like a graph input", _saver(_shadowed_input), loads=True),
    # Paths.
    _Spec("model_is_directory", "the model path is a directory", _directory),
    _Spec("unicode_path", "valid model whose file name has spaces and non-ASCII letters", _unicode_path, loads=True),
    _Spec("symlink_loop", "the model path is a symlink to itself", _symlink_loop),
    # External data.
    _Spec(
        "external_parent_escape",
        "external data location ../outside/secret.bin",
        _external_case("../outside/secret.bin"),
    ),
    _Spec("external_absolute_path", "external data location is an absolute path", _external_absolute),
    _Spec("external_symlink", "external data file is a symlink to a file outside", _external_linked(_relative_symlink)),
    _Spec(
        "external_hardlink",
        "external data file is a hard link to a file outside (onnxruntime reads it)",
        _external_linked(os.link),
    ),
    _Spec("external_missing_file", "external data file does not exist", _external_case("missing.bin")),
    _Spec(
        "external_offset_past_eof",
        "external data offset 4096 in a 16-byte file",
        _external_case("weights.bin", offset=4096, length=16),
    ),
    _Spec(
        "external_length_mismatch",
        "external data length 8 for 4 floats",
        _external_case("weights.bin", offset=0, length=8),
    ),
    _Spec(
        "external_nul_in_location",
        "external data location weights.bin<NUL>.txt (onnxruntime reads weights.bin)",
        _external_case("weights.bin\0.txt"),
    ),
    _Spec("external_empty_location", "external data location is the empty string", _external_case("")),
    _Spec("external_location_is_directory", "external data location names a directory", _external_case(".")),
    _Spec(
        "external_huge_declared_length",
        "external data declares 2**31 + 8 bytes in a 16-byte file",
        _external_case("weights.bin", dims=(2**29 + 2,), offset=0, length=(2**29 + 2) * 4),
    ),
)
