"""liveness: buffers, aliases and lifetimes on hand-built graphs with hand-computed peaks."""

from __future__ import annotations

import onnx
from passtest import make_model

from hwopt.feeds.inputs import resolve_input_specs
from hwopt.memory.liveness import build_memory_graph, lifetimes, live_bytes_per_step, peak_live_bytes
from hwopt.model.shapes import infer_tensor_info


def _graph(model: onnx.ModelProto, shapes=None):
    specs = resolve_input_specs(model.graph, shapes)
    return build_memory_graph(model, infer_tensor_info(model, specs).tensors)


# x[1,256] f32 (1 KiB). a = Relu(x) 1 KiB; b = Tile(a, 2) 2 KiB; c = Tile(a, 4) 4 KiB;
# d = Concat(b, c) is the graph output (accounted separately).
DIAMOND = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 256] x) => (float[1, 1536] d) <int64[2] two, int64[2] four> {
        a = Relu (x)
        b = Tile (a, two)
        c = Tile (a, four)
        d = Concat <axis = 1> (b, c)
    }"""


def test_diamond_peak_by_hand() -> None:
    import numpy as np

    model = make_model(DIAMOND, weights={"two": np.array([1, 2]), "four": np.array([1, 4])})
    g = _graph(model)
    assert g.sizes == {"a": 1024, "b": 2048, "c": 4096}
    # step 0 a: 1 KiB; step 1 b: a+b = 3 KiB; step 2 c: a+b+c = 7 KiB (a's last use);
    # step 3 d: b+c = 6 KiB (d itself is an output).
    assert live_bytes_per_step(g, [0, 1, 2, 3]) == [1024, 3072, 7168, 6144]
    assert peak_live_bytes(g) == 7168
    assert g.input_bytes == 1024 and g.output_bytes == 1536 * 4
    assert {b.name: (b.start, b.end) for b in lifetimes(g, [0, 1, 2, 3])} == {
        "a": (0, 2), "b": (1, 3), "c": (2, 3)}


def test_reshape_aliases_its_input() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 256] x) => (float[1, 256] y) <int64[2] shape> {
            a = Relu (x)
            r = Reshape (a, shape)
            s = Sigmoid (x)
            y = Mul (r, s)
        }""", weights={"shape": __import__("numpy").array([1, 256])})
    g = _graph(model)
    assert set(g.sizes) == {"a", "s"}  # r is a view of a: no buffer of its own
    assert g.aliases == {"r": "a"}
    assert {b.name: (b.start, b.end) for b in lifetimes(g, [0, 1, 2, 3])}["a"] == (0, 3)


def test_alias_of_a_graph_output_is_an_output() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 256] x) => (float[1, 256] y) {
            a = Relu (x)
            y = Flatten <axis = 0> (a)
        }""")
    g = _graph(model)
    assert g.sizes == {}  # a lives in the output's memory


def test_if_reads_outer_values_until_it_runs() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 256] x, bool c) => (float[1, 256] y) {
            a = Relu (x)
            b = Neg (x)
            y = If (c) <
                then_branch = t () => (float[1, 256] ty) { ty = Add (a, b) },
                else_branch = e () => (float[1, 256] ey) { ey = Identity (a) }
            >
        }""")
    g = _graph(model)
    assert g.preds[2] == frozenset({0, 1})
    assert {b.name: b.end for b in lifetimes(g, [0, 1, 2])} == {"a": 2, "b": 2}


def test_unknown_sizes_are_listed_not_guessed() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 256] x, int64[2] shape) => (float[1, 256] y) {
            a = Relu (x)
            u = Reshape (a, shape)
            v = Neg (u)
            y = Relu (x)
        }""")
    g = _graph(model)
    assert g.unknown == ["v"]
    assert set(g.sizes) == {"a"}
