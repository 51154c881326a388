"""simplify_shape_ops: every chain it collapses across opsets, and the ones it must leave."""

from __future__ import annotations

import onnx
import onnx.version_converter
import pytest
from onnx import numpy_helper
from passtest import make_model, op_counts, run_pass

from hwopt.passes.pipeline import APPLIED, UNCHANGED
from hwopt.passes.simplify_shape_ops import SimplifyShapeOps

IR_VERSION = {11: 6, 13: 7, 14: 7, 15: 8, 17: 8}

CONSTANTS = """
    int64[1] a0 = {0}, int64[1] a1 = {1}, int64[1] am1 = {-1}, int64[2] a0_2 = {0, 2},
    int64 i0 = {0}, int64 i1 = {1}, int64[1] m1 = {-1}, int64[2] t2_12 = {2, 12},
    int64[3] s0_2_12 = {0, 2, 12}, int64[2] s0_24 = {0, 24}, int64[3] s0_6_4 = {0, 6, 4},
    int64[2] sm1_24 = {-1, 24}, int64[3] sm1_1_24 = {-1, 1, 24}
"""


def _unsqueeze(opset: int, x: str, axes: list[int], name: str) -> str:
    """Unsqueeze in the opset's form: axes an attribute before opset 13, an input from 13."""
    return f"Unsqueeze<axes = {axes}>({x})" if opset < 13 else f"Unsqueeze({x}, {name})"


def _squeeze(opset: int, x: str, axes: list[int], name: str) -> str:
    return f"Squeeze<axes = {axes}>({x})" if opset < 13 else f"Squeeze({x}, {name})"


def _cases(opset: int) -> dict[str, tuple[str, str, str, str, dict[str, int]]]:
    """name: (type of x, type of y, nodes from r = Relu(x) to n, the rule, ops after besides
    Relu and the final Neg)."""
    u, s = _unsqueeze, _squeeze
    return {
        "transposes_cancel": ("float[N, 4, 6]", "float[N, 4, 6]", """
            a = Transpose<perm = [0, 2, 1]>(r)
            n = Transpose<perm = [0, 2, 1]>(a)""", "CollapseTransposes", {}),
        "transposes_compose": ("float[N, 4, 6]", "float[6, N, 4]", """
            a = Transpose<perm = [0, 2, 1]>(r)
            n = Transpose<perm = [1, 0, 2]>(a)""", "CollapseTransposes", {"Transpose": 1}),
        "reshapes": ("float[N, 4, 6]", "float[N, 6, 4]", """
            a = Reshape(r, s0_2_12)
            b = Reshape(a, s0_24)
            n = Reshape(b, s0_6_4)""", "CollapseReshapes", {"Reshape": 1}),
        "flatten_reshape": ("float[N, 4, 6]", "float[N, 6, 4]", """
            a = Flatten<axis = 1>(r)
            n = Reshape(a, s0_6_4)""", "CollapseFlattenReshape", {"Reshape": 1}),
        "unsqueezes": ("float[N, 4, 6]", "float[1, N, 4, 6, 1]", f"""
            a = {u(opset, "r", [0], "a0")}
            n = {u(opset, "a", [-1], "am1")}""", "ComposeUnsqueezeUnsqueeze", {"Unsqueeze": 1}),
        "squeezes": ("float[N, 1, 4, 1]", "float[N, 4]", f"""
            a = {s(opset, "r", [1], "a1")}
            n = {s(opset, "a", [-1], "am1")}""", "ComposeSqueezeSqueeze", {"Squeeze": 1}),
        "unsqueeze_squeeze_cancel": ("float[N, 4, 6]", "float[N, 4, 6]", f"""
            a = {u(opset, "r", [1], "a1")}
            n = {s(opset, "a", [1], "a1")}""", "ComposeUnsqueezeSqueeze", {}),
        "squeeze_unsqueeze_cancel": ("float[N, 1, 4, 1]", "float[N, 1, 4, 1]", f"""
            a = {s(opset, "r", [-1], "am1")}
            n = {u(opset, "a", [-1], "am1")}""", "ComposeSqueezeUnsqueeze", {}),
        "unsqueeze_squeeze_partial": ("float[N, 4, 6]", "float[N, 1, 4, 6]", f"""
            a = {u(opset, "r", [0, 2], "a0_2")}
            n = {s(opset, "a", [0], "a0")}""", "ComposeUnsqueezeSqueeze", {"Unsqueeze": 1}),
        # A Reshape with its unit dims added or dropped is one Reshape: the new dims go into
        # (or come out of) its target; a Reshape reads only its input's size.
        "reshape_unsqueeze": ("float[N, 4, 6]", "float[N, 24, 1]", f"""
            a = Reshape(r, sm1_24)
            n = {u(opset, "a", [-1], "am1")}""", "ReshapeUnsqueeze", {"Reshape": 1}),
        "reshape_squeeze": ("float[N, 4, 6]", "float[N, 24]", f"""
            a = Reshape(r, sm1_1_24)
            n = {s(opset, "a", [1], "a1")}""", "ReshapeSqueeze", {"Reshape": 1}),
        "unsqueeze_reshape": ("float[N, 4, 6]", "float[N, 24]", f"""
            a = {u(opset, "r", [1], "a1")}
            n = Reshape(a, sm1_24)""", "UnsqueezeReshape", {"Reshape": 1}),
        "squeeze_reshape": ("float[N, 1, 4, 6]", "float[N, 24]", f"""
            a = {s(opset, "r", [1], "a1")}
            n = Reshape(a, sm1_24)""", "SqueezeReshape", {"Reshape": 1}),
        "torch_flatten": ("float[N, 4, 6]", "float[N, 24]", f"""
            shape = Shape(r)
            batch = Gather<axis = 0>(shape, i0)
            b1 = {u(opset, "batch", [0], "a0")}
            target = Concat<axis = 0>(b1, m1)
            n = Reshape(r, target)""", "ReshapeToOwnDims", {"Reshape": 1}),
        "slice_of_own_shape": ("float[N, 4, 6]", "float[N, 2, 12]", """
            shape = Shape(r)
            head = Slice(shape, a0, a1)
            target = Concat<axis = 0>(head, t2_12)
            n = Reshape(r, target)""", "ReshapeToOwnDims", {"Reshape": 1}),
        "static_dim": ("float[N, 4, 6]", "float[N, 4, 6]", """
            shape = Shape(r)
            four = Gather<axis = 0>(shape, i1)
            c = Cast<to = 1>(four)
            n = Mul(r, c)""", "FoldStaticShapeGather", {"Cast": 1, "Mul": 1}),
        # PaddlePaddle's shape arithmetic: int64 dims through int32 and back.
        "int32_shape_slice": ("float[N, 4, 6]", "int64[1]", """
            shape = Shape(r)
            narrow = Cast<to = 6>(shape)
            picked = Slice(narrow, a1, am1, a0)
            n = Cast<to = 7>(picked)""", "DropInt32ShapeCasts", {"Shape": 1, "Slice": 1}),
        "int32_shape_gather": ("float[N, 4, 6]", "int64", """
            shape = Shape(r)
            narrow = Cast<to = 6>(shape)
            picked = Gather<axis = 0>(narrow, i0)
            n = Cast<to = 7>(picked)""", "DropInt32ShapeCasts", {"Shape": 1, "Gather": 1}),
    }


def _model(opset: int, case: str, into_output: bool):
    x_type, y_type, body, _, _ = _cases(opset)[case]
    if into_output:  # the chain's last node writes the graph output
        head, _, last = body.rpartition("n = ")
        body, tail = f"{head}y = {last}", ""
    else:
        tail = "y = Neg(n)"
    return make_model(f"""<ir_version: {IR_VERSION[opset]}, opset_import: ["" : {opset}]>
        g ({x_type} x) => ({y_type} y) <{CONSTANTS}> {{
            r = Relu(x)
            {body}
            {tail}
        }}""")


def _feed_shape(type_text: str) -> tuple[int, ...]:
    dims = type_text[type_text.index("[") + 1 : -1].split(", ")
    return tuple(2 if d == "N" else int(d) for d in dims)


@pytest.mark.parametrize("into_output", [False, True], ids=["inside", "into_output"])
@pytest.mark.parametrize("opset", [11, 14])
@pytest.mark.parametrize("case", list(_cases(11)), ids=str)
def test_collapses(case: str, opset: int, into_output: bool) -> None:
    x_type, _, _, rule, ops = _cases(opset)[case]
    model = _model(opset, case, into_output)
    record, out = run_pass(SimplifyShapeOps(), model, {"x": _feed_shape(x_type)})
    assert record.status == APPLIED, record.reason
    assert record.rewrites.get(rule, 0) >= 1 and set(record.rewrites) == {rule}, record.rewrites
    expected = {"Relu": 1, **ops} if into_output else {"Relu": 1, **ops, "Neg": 1}
    assert op_counts(out) == expected
    assert record.max_rel < 1e-5
    assert not record.declined


def _initializer(model, name_part: str) -> list[int]:
    (tensor,) = [t for t in model.graph.initializer if name_part in t.name]
    return numpy_helper.to_array(tensor).tolist()


@pytest.mark.parametrize("opset", [11, 13])
def test_torch_flatten_target_copies_the_batch(opset: int) -> None:
    record, out = run_pass(SimplifyShapeOps(), _model(opset, "torch_flatten", False), {"x": (3, 4, 6)})
    assert record.status == APPLIED, record.reason
    (reshape,) = [n for n in out.graph.node if n.op_type == "Reshape"]
    assert _initializer(out, reshape.input[1]) == [0, -1]
    # Shape, Gather, Unsqueeze and Concat are gone with the old target.
    assert record.nodes_before - record.nodes_after == 4


def test_reshape_with_allowzero_one_uses_static_dims() -> None:
    """allowzero=1 makes a 0 literal: a dim of x can only become its static value."""
    model = make_model("""<ir_version: 8, opset_import: ["" : 14]>
        g (float[N, 4, 6] x) => (float[N, 6, 4] y)
          <int64 i1 = {1}, int64[1] a0 = {0}, int64[2] m = {-1, 6}> {
            r = Relu(x)
            shape = Shape(r)
            four = Gather<axis = 0>(shape, i1)
            four1 = Unsqueeze(four, a0)
            target = Concat<axis = 0>(m, four1)
            y = Reshape<allowzero = 1>(r, target)
        }""")
    record, out = run_pass(SimplifyShapeOps(), model, {"x": (2, 4, 6)})
    assert record.status == APPLIED, record.reason
    (reshape,) = [n for n in out.graph.node if n.op_type == "Reshape"]
    assert _initializer(out, reshape.input[1]) == [-1, 6, 4]
    assert [a.i for a in reshape.attribute if a.name == "allowzero"] == [1]
    assert record.max_rel < 1e-5


def _unchanged(text: str, shapes) -> tuple[list[str], dict[str, int]]:
    return _unchanged_model(make_model(text), shapes)


def _unchanged_model(model, shapes) -> tuple[list[str], dict[str, int]]:
    record, out = run_pass(SimplifyShapeOps(), model, shapes)
    assert record.status == UNCHANGED, record.reason
    assert op_counts(out) == op_counts(model)
    return [d.reason for d in record.declined], op_counts(out)


@pytest.mark.parametrize("opset", [11, 13])
def test_leaves_channel_shuffle(opset: int) -> None:
    """Reshape to [N, g, C/g, H, W], swap the group axes, Reshape back: it moves data."""
    reasons, _ = _unchanged(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[N, 8, 3, 3] x) => (float[N, 8, 3, 3] y)
          <int64[5] grouped = {{0, 2, 4, 3, 3}}, int64[4] merged = {{0, 8, 3, 3}}> {{
            r = Relu(x)
            a = Reshape(r, grouped)
            t = Transpose<perm = [0, 2, 1, 3, 4]>(a)
            y = Reshape(t, merged)
        }}""", {"x": (2, 8, 3, 3)})
    assert reasons == []


def test_declines_reshape_whose_shape_comes_from_another_tensor() -> None:
    """The merged Reshape of a dynamic channel shuffle takes its batch from the input."""
    reasons, _ = _unchanged("""<ir_version: 7, opset_import: ["" : 13]>
        g (float[N, 8, 3, 3] x) => (float[N, 8, 3, 3] y)
          <int64 i0 = {0}, int64[1] a0 = {0}, int64[4] grouped = {0, 2, 4, 9}, int64[3] tail = {8, 3, 3}> {
            r = Relu(x)
            a = Reshape(r, grouped)
            t = Transpose<perm = [0, 2, 1, 3]>(a)
            shape = Shape(r)
            batch = Gather<axis = 0>(shape, i0)
            b1 = Unsqueeze(batch, a0)
            merged = Concat<axis = 0>(b1, tail)
            [r1] y = Reshape(t, merged)
        }""", {"x": (2, 8, 3, 3)})
    assert reasons == [
        "Reshape 'r1' not simplified: its shape is computed at run time from the shape of "
        "another tensor 'r'"
    ]


def test_declines_reshape_of_a_dim_that_moves() -> None:
    reasons, _ = _unchanged("""<ir_version: 7, opset_import: ["" : 13]>
        g (float[N, M] x) => (float[M, N] y) <int64 i1 = {1}, int64 i0 = {0}, int64[1] a0 = {0}> {
            r = Relu(x)
            shape = Shape(r)
            g1 = Gather<axis = 0>(shape, i1)
            g0 = Gather<axis = 0>(shape, i0)
            d1 = Unsqueeze(g1, a0)
            d0 = Unsqueeze(g0, a0)
            target = Concat<axis = 0>(d1, d0)
            [r1] y = Reshape(r, target)
        }""", {"x": (2, 3)})
    assert reasons == [
        "Reshape 'r1' not simplified: dim 1 of 'r' lands at position 0 and is not known statically"
    ]


def test_declines_transposes_when_the_inner_one_is_shared() -> None:
    reasons, _ = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4, 6] x) => (float[N, 4, 6] y, float[N, 6, 4] z) {
            r = Relu(x)
            z = Transpose<perm = [0, 2, 1]>(r)
            [t2] y = Transpose<perm = [0, 2, 1]>(z)
        }""", {"x": (2, 4, 6)})
    assert reasons == ["Transpose 't2' not collapsed: 'z' also feeds other nodes or is a graph output"]


def test_declines_reshape_chain_with_a_runtime_target() -> None:
    reasons, _ = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4, 6] x, float[N, 6, 4] z) => (float[?, ?, ?] y) <int64[2] s0_24 = {0, 24}> {
            r = Relu(x)
            a = Reshape(r, s0_24)
            [shape_of_z] target = Shape(z)
            [r2] y = Reshape(a, target)
        }""", {"x": (2, 4, 6), "z": (2, 6, 4)})
    assert reasons == ["Reshape 'r2' not collapsed: its shape is computed at run time by Shape 'shape_of_z'"]


@pytest.mark.parametrize("opset", [11, 13])
def test_declines_squeeze_unsqueeze_that_moves_a_unit_dim(opset: int) -> None:
    """Dropping dim 1 and inserting a new one at 2 is a Reshape, not one Squeeze/Unsqueeze."""
    reasons, _ = _unchanged(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[N, 1, 4] x) => (float[N, 4, 1] y) <int64[1] a1 = {{1}}, int64[1] a2 = {{2}}> {{
            r = Relu(x)
            a = {_squeeze(opset, "r", [1], "a1")}
            [u] y = {_unsqueeze(opset, "a", [2], "a2")}
        }}""", {"x": (2, 1, 4)})
    assert reasons == [
        "Unsqueeze 'u' not merged with Squeeze 'a': together they drop dims [1] of 'r' and "
        "insert others, which no single Squeeze or Unsqueeze does"
    ]


def test_leaves_symbolic_dim_gather() -> None:
    reasons, _ = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <int64 i0 = {0}> {
            r = Relu(x)
            shape = Shape(r)
            n = Gather<axis = 0>(shape, i0)
            c = Cast<to = 1>(n)
            y = Mul(r, c)
        }""", {"x": (2, 4)})
    assert reasons == []


def test_if_branch() -> None:
    """The rewriter walks subgraphs: a cancelling Transpose pair inside a branch goes."""
    record, out = run_pass(SimplifyShapeOps(), make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4, 6] x, bool c) => (float[N, 4, 6] y) {
            r = Relu(x)
            y = If(c) <
                then_branch = then_graph () => (float[N, 4, 6] t) {
                    a = Neg(r)
                    b = Transpose<perm = [0, 2, 1]>(a)
                    t = Transpose<perm = [0, 2, 1]>(b)
                },
                else_branch = else_graph () => (float[N, 4, 6] e) {
                    d = Transpose<perm = [0, 2, 1]>(r)
                    [t2] e = Transpose<perm = [0, 2, 1]>(d)
                }>
        }"""), {"x": (2, 4, 6)})
    assert record.status == APPLIED, record.reason
    branches = {attr.name: attr.g for attr in out.graph.node[1].attribute}
    assert [n.op_type for n in branches["then_branch"].node] == ["Neg"]
    # The else pair cancels to r, a value of the outer graph: an Identity has to stay.
    assert [n.op_type for n in branches["else_branch"].node] == ["Transpose", "Transpose"]
    assert record.rewrites == {"CollapseTransposes": 1}
    assert [d.reason for d in record.declined] == [
        "Transpose 't2' not removed: it connects outer-scope value 'r' straight to graph output "
        "'e', whose name must stay"
    ]
    assert record.max_rel < 1e-5


def _coerced_softmax_model(
    op: str, flatten_axis: int, *, x_type: str = "float[N, 4, 6]", opset: int = 17
) -> onnx.ModelProto:
    """The wrapper onnx.version_converter writes for an opset-12 softmax of unknown rank. The
    inner op has no axis: its default, 1 before opset 13 and -1 from 13, is the last of 2."""
    return make_model(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g ({x_type} x) => ({x_type} y) {{
            r = Relu(x)
            shape = Shape(r)
            [flatten] flat = Flatten<axis = {flatten_axis}>(r)
            rows = {op}(flat)
            [wrap] n = Reshape(rows, shape)
            y = Neg(n)
        }}""")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [14, 17])
def test_softmax_wrapped_by_the_version_converter(op: str, opset: int) -> None:
    """Softmax<axis=2> of a tensor whose rank the converter does not see (a Reshape to a
    computed shape), taken from opset 12: the converter wraps it, the rule unwraps it. (Onnx
    infers the rank of such a Reshape's output from the target's length from opset 14 on.)"""
    model = make_model(f"""<ir_version: 7, opset_import: ["" : 12]>
        g (float[N, 4, 6] x) => (float[N, 4, 6] y) {{
            s = Shape(x)
            r = Reshape(x, s)
            y = {op}<axis = 2>(r)
        }}""")
    model = onnx.version_converter.convert_version(model, opset)
    assert op_counts(model)["Flatten"] == 1
    record, out = run_pass(SimplifyShapeOps(), model, {"x": (2, 4, 6)})
    assert record.status == APPLIED, record.reason
    # Reshape(x, Shape(x)) gets a constant target too.
    assert dict(record.rewrites) == {"UnwrapCoercedSoftmax": 1, "ReshapeToOwnDims": 1}
    (softmax,) = [n for n in out.graph.node if n.op_type == op]
    assert [a.i for a in softmax.attribute if a.name == "axis"] == [-1]
    assert op_counts(out) == {"Reshape": 1, op: 1}
    # The graph output keeps its name.
    assert softmax.output[0] == "y"
    assert record.max_rel < 1e-5


@pytest.mark.parametrize("opset", [12, 17])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("x_type", ["float[N, 4, 6]", "float[N, 2, 3, 5]", "float[6]"], ids=str)
def test_unwraps_softmax_over_the_last_axis(op: str, x_type: str, opset: int) -> None:
    """Softmax(x, axis=-1) is the last-axis softmax at opset 12 too (it coerces to the same
    rows), so the rule needs no opset."""
    rank = x_type.count(",") + 1
    model = _coerced_softmax_model(op, rank - 1, x_type=x_type, opset=opset)
    record, out = run_pass(SimplifyShapeOps(), model, {"x": _feed_shape(x_type)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"UnwrapCoercedSoftmax": 1}
    assert op_counts(out) == {"Relu": 1, op: 1, "Neg": 1}
    assert record.max_rel < 1e-5


@pytest.mark.parametrize("flatten_axis", [1, 0])
def test_declines_softmax_over_several_axes(flatten_axis: int) -> None:
    """Flatten at axis 1 of a rank-3 tensor: the softmax runs over dims 1 and 2 together."""
    reasons, _ = _unchanged_model(_coerced_softmax_model("Softmax", flatten_axis), {"x": (2, 4, 6)})
    assert reasons == [
        f"Reshape 'wrap' not unwrapped: Flatten 'flatten' folds dims {flatten_axis} to 2 of 'r' "
        "(rank 3) into one row, and the Softmax runs over all of them: that needs the wrapper"
    ]


def test_declines_softmax_of_unknown_rank() -> None:
    """Without x's rank, Flatten's axis 2 may or may not be the last one."""
    model = _coerced_softmax_model("Softmax", 2)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.ClearField("shape")
    reasons, _ = _unchanged_model(model, {"x": (2, 4, 6)})
    assert reasons == [
        "Reshape 'wrap' not unwrapped: the rank of 'r' is not known, so whether Flatten "
        "'flatten' keeps the Softmax to the last axis is not either"
    ]


def test_paddle_reshape_target_becomes_constant() -> None:
    """``Reshape(r, Concat(0, Cast64(Slice(Cast32(Shape(r)), 1, 2)), 3, 4))``: without the int32
    round trip the target is r's own dims, which ReshapeToOwnDims makes constant."""
    record, out = run_pass(SimplifyShapeOps(), make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, T, 12] x) => (float[N, T, 3, 4] y)
          <int64[1] a0 = {0}, int64[1] a1 = {1}, int64[1] a2 = {2}, int64[2] tail = {3, 4}> {
            r = Relu(x)
            shape = Shape(r)
            narrow = Cast<to = 6>(shape)
            t = Slice(narrow, a1, a2, a0)
            t64 = Cast<to = 7>(t)
            target = Concat<axis = 0>(a0, t64, tail)
            y = Reshape(r, target)
        }"""), {"x": (2, 5, 12)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"DropInt32ShapeCasts": 1, "ReshapeToOwnDims": 1}
    assert op_counts(out) == {"Relu": 1, "Reshape": 1}
    (reshape,) = [n for n in out.graph.node if n.op_type == "Reshape"]
    assert _initializer(out, reshape.input[1]) == [0, 0, 3, 4]
    assert record.max_rel < 1e-5


def test_int32_shape_slice_read_by_two_casts() -> None:
    """PP-OCRv4 rec reads one int32 Slice of a shape through two Casts: both go, and the int32
    chain with them. The Reshape of r itself then gets a constant target; the one of z keeps
    its Slice of r's shape."""
    record, out = run_pass(SimplifyShapeOps(), make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, T, 12] x, float[N, T, 6] z) => (float[N, T, 2, 6] y, float[N, T, 3, 2] w)
          <int64[1] a0 = {0}, int64[1] a1 = {1}, int64[1] a2 = {2}, int64[2] t26 = {2, 6},
           int64[2] t32 = {3, 2}> {
            r = Relu(x)
            shape = Shape(r)
            narrow = Cast<to = 6>(shape)
            t = Slice(narrow, a1, a2, a0)
            t64a = Cast<to = 7>(t)
            t64b = Cast<to = 7>(t)
            ya = Concat<axis = 0>(a0, t64a, t26)
            yb = Concat<axis = 0>(a0, t64b, t32)
            y = Reshape(r, ya)
            w = Reshape(z, yb)
        }"""), {"x": (2, 5, 12), "z": (2, 5, 6)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"DropInt32ShapeCasts": 2, "ReshapeToOwnDims": 1}
    assert op_counts(out) == {"Relu": 1, "Shape": 1, "Slice": 1, "Concat": 1, "Reshape": 2}
    assert record.max_rel < 1e-5


def test_declines_int32_round_trip_of_values_that_are_not_dims() -> None:
    """An int64 value that is not a shape may not fit in int32: its round trip can wrap."""
    reasons, _ = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (int64[4] v) => (int64[2] y) <int64[1] a0 = {0}, int64[1] a2 = {2}> {
            [narrow] c = Cast<to = 6>(v)
            t = Slice(c, a0, a2)
            [widen] y = Cast<to = 7>(t)
        }""", {"v": (4,)})
    assert reasons == [
        "Cast 'widen' not removed: the values Cast 'narrow' casts to int32 come from 'v', not "
        "from a Shape, so they may not survive the round trip"
    ]


def test_declines_int32_shape_slice_that_is_also_read_as_int32() -> None:
    reasons, _ = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (int64[1] y, int32[1] z) <int64[1] a0 = {0}, int64[1] a1 = {1}> {
            r = Relu(x)
            shape = Shape(r)
            c = Cast<to = 6>(shape)
            t = Slice(c, a0, a1)
            [widen] y = Cast<to = 7>(t)
            [add] z = Add(t, t)
        }""", {"x": (2, 4)})
    assert reasons == [
        "Cast 'widen' not removed: Add 'add' also reads the int32 value 't', so the int32 chain "
        "would stay"
    ]


@pytest.mark.parametrize("opset", [11, 14])
def test_reshape_then_unsqueeze_resolves_a_copied_dim(opset: int) -> None:
    """A 0 in the target copies x's dim at its position; with the dim known it is written out,
    since the inserted 1 would make the 0 copy another dim."""
    unsqueeze = _unsqueeze(opset, "a", [0], "a0")
    record, out = run_pass(SimplifyShapeOps(), make_model(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[3, 4, 6] x) => (float[1, 3, 24] y) <{CONSTANTS}> {{
            r = Relu(x)
            a = Reshape(r, s0_24)
            y = {unsqueeze}
        }}"""), {"x": (3, 4, 6)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"ReshapeUnsqueeze": 1}
    (reshape,) = [n for n in out.graph.node if n.op_type == "Reshape"]
    assert _initializer(out, reshape.input[1]) == [1, 3, 24]
    assert record.max_rel == 0


@pytest.mark.parametrize("opset", [11, 14])
def test_declines_unit_dims_next_to_a_reshape_it_cannot_merge(opset: int) -> None:
    """A 0 copying a symbolic dim, and a dropped dim not known to be 1, stay."""
    u, s = _unsqueeze(opset, "a", [0], "a0"), _squeeze(opset, "b", [0], "a0")
    reasons, _ = _unchanged(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[N, 4, 6] x) => (float[1, N, 24] y, float[24] z) <{CONSTANTS}> {{
            r = Relu(x)
            a = Reshape(r, s0_24)
            y = {u}
            b = Reshape(r, sm1_24)
            z = {s}
        }}""", {"x": (1, 4, 6)})
    assert sorted(reasons) == [
        "Squeeze 'z' not merged into Reshape 'b': dims [0] it drops are not known to be 1",
        "Unsqueeze 'y' not merged: Reshape 'a' copies a dim of 'r' that is not known statically",
    ]


@pytest.mark.parametrize("opset", [11, 14])
def test_declines_reshape_whose_zero_copies_a_moved_dim(opset: int) -> None:
    u = _unsqueeze(opset, "r", [0], "a0")
    reasons, _ = _unchanged(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[N, 4, 6] x) => (float[1, 24] y) <{CONSTANTS}> {{
            r = Relu(x)
            a = {u}
            y = Reshape(a, s0_24)
        }}""", {"x": (1, 4, 6)})
    assert reasons == [
        "Reshape 'y' not merged: a 0 in its target copies a dim of 'a', which Unsqueeze 'a' moved"
    ]


@pytest.mark.parametrize("target", ["shape", "constant"])
@pytest.mark.parametrize("opset", [12, 17])
def test_unwraps_classifier_head_softmax(target: str, opset: int) -> None:
    """Softmax of a [N, C, 1, 1] head flattened at 1 (opset 12's default axis, converted): it
    normalizes over C alone, so it is Softmax(x, axis=1). onnxsim writes the Reshape target
    as a constant when the shape is static."""
    x_type = "float[2, 5, 1, 1]" if target == "constant" else "float[N, 5, 1, 1]"
    shape = "shape = Shape(r)" if target == "shape" else "shape = Constant<value = int64[4] {2, 5, 1, 1}>()"
    record, out = run_pass(SimplifyShapeOps(), make_model(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g ({x_type} x) => ({x_type} y) {{
            r = Relu(x)
            {shape}
            flat = Flatten<axis = 1>(r)
            rows = Softmax(flat)
            n = Reshape(rows, shape)
            y = Neg(n)
        }}"""), {"x": (2, 5, 1, 1)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"UnwrapCoercedSoftmax": 1}
    (softmax,) = [n for n in out.graph.node if n.op_type == "Softmax"]
    assert [a.i for a in softmax.attribute if a.name == "axis"] == [1]
    assert op_counts(out) == {"Relu": 1, "Softmax": 1, "Neg": 1}
    assert record.max_rel < 1e-5
