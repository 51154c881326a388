"""remove_noops: every no-op form across opsets, and every case that must stay."""

from __future__ import annotations

import numpy as np
import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.pipeline import APPLIED, UNCHANGED
from hwopt.passes.remove_noops import RemoveNoOps

INT64_MAX = np.iinfo(np.int64).max

# Each body computes ``r = Relu(x)`` and feeds it through the no-op into ``y = Neg(...)`` or
# straight into the graph output ``y`` (then the no-op's input is renamed to ``y``).
# name: (opset, body, the rewrite the pass must count)
CASES = {
    "identity": (17, "n = Identity(r)", "RemoveIdentity"),
    "dropout_ratio_attribute": (11, "n = Dropout<ratio = 0.5>(r)", "RemoveInferenceDropout"),
    "dropout_unused_mask": (11, "n, mask = Dropout<ratio = 0.5>(r)", "RemoveInferenceDropout"),
    "dropout_training_false": (13, "n = Dropout(r, ratio, no)", "RemoveInferenceDropout"),
    "dropout_no_training_input": (17, "n = Dropout(r, ratio)", "RemoveInferenceDropout"),
    "dropout_plain": (13, "n = Dropout(r)", "RemoveInferenceDropout"),
    "cast_same_type": (17, "n = Cast<to = 1>(r)", "RemoveIdentityCast"),
    "castlike_same_type": (17, "n = CastLike(r, like)", "RemoveIdentityCastLike"),
    "reshape_copy_and_infer": (11, "n = Reshape(r, s0_4_m1)", "RemoveIdentityReshape"),
    "reshape_static": (13, "n = Reshape(r, s0_4_6)", "RemoveIdentityReshape"),
    "reshape_allowzero_0": (14, "n = Reshape<allowzero = 0>(r, s0_4_6)", "RemoveIdentityReshape"),
    "expand_broadcast_ones": (13, "n = Expand(r, s1_6)", "RemoveIdentityExpand"),
    "slice_attributes": (
        9, f"n = Slice<starts = [0], ends = [{INT64_MAX}], axes = [0]>(r)", "RemoveWholeSlice"
    ),
    "slice_inputs": (11, "n = Slice(r, i0, i6, im1)", "RemoveWholeSlice"),
    "slice_inputs_steps": (13, "n = Slice(r, i0, i6, im1, i1)", "RemoveWholeSlice"),
    "slice_dynamic_axis_int64_max": (13, "n = Slice(r, i0, imax, i0)", "RemoveWholeSlice"),
    "transpose_identity": (13, "n = Transpose<perm = [0, 1, 2]>(r)", "RemoveIdentityTranspose"),
    "add_zero": (13, "n = Add(r, zero_4_1)", "RemoveAddZero"),
    "zero_add": (13, "n = Add(zero, r)", "RemoveAddZero"),
    "sub_zero": (13, "n = Sub(r, zero)", "RemoveSubZero"),
    "mul_one": (13, "n = Mul(r, one_1)", "RemoveMulOne"),
    "one_mul": (13, "n = Mul(one_1, r)", "RemoveMulOne"),
    "div_one": (13, "n = Div(r, one_1)", "RemoveDivOne"),
    "pad_attribute": (10, "n = Pad<pads = [0, 0, 0, 0, 0, 0]>(r)", "RemoveZeroPad"),
    "pad_input": (13, "n = Pad(r, pads0)", "RemoveZeroPad"),
    "pad_axes": (18, "n = Pad<mode = \"reflect\">(r, pads0_2, , axes1_2)", "RemoveZeroPad"),
    "concat_single": (13, "n = Concat<axis = 1>(r)", "RemoveSingleInputConcat"),
    "sum_single": (13, "n = Sum(r)", "RemoveSingleInputSum"),
    "split_single": (13, "n = Split<axis = 1>(r)", "RemoveSingleSplit"),
    "tile_ones": (13, "n = Tile(r, ones3)", "RemoveUnitTile"),
}

CONSTANTS = """
    float ratio = {0.25}, bool no = {0}, float[1] like = {0.0},
    int64[3] s0_4_m1 = {0, 4, -1}, int64[3] s0_4_6 = {0, 4, 6}, int64[2] s1_6 = {1, 6},
    int64[1] i0 = {0}, int64[1] i1 = {1}, int64[1] i6 = {6}, int64[1] im1 = {-1},
    int64[1] imax = {9223372036854775807},
    float[4, 1] zero_4_1 = {0, 0, 0, 0}, float zero = {0.0}, float[1] one_1 = {1.0},
    int64[6] pads0 = {0, 0, 0, 0, 0, 0}, int64[4] pads0_2 = {0, 0, 0, 0}, int64[2] axes1_2 = {1, 2},
    int64[3] ones3 = {1, 1, 1}
"""

IR_VERSION = {9: 4, 10: 5, 11: 6, 13: 7, 14: 7, 17: 8, 18: 8}


def _model(opset: int, body: str, into_output: bool):
    if into_output:
        body, tail = body.replace("n = ", "y = ", 1).replace("n, ", "y, ", 1), ""
    else:
        tail = "y = Neg(n)"
    return make_model(f"""<ir_version: {IR_VERSION[opset]}, opset_import: ["" : {opset}]>
        g (float[N, 4, 6] x) => (float[N, 4, 6] y) <{CONSTANTS}> {{
            r = Relu(x)
            {body}
            {tail}
        }}""")


@pytest.mark.parametrize("into_output", [False, True], ids=["inside", "into_output"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_removes(case: str, into_output: bool) -> None:
    opset, body, rule = CASES[case]
    record, out = run_pass(RemoveNoOps(), _model(opset, body, into_output), {"x": (2, 4, 6)})
    assert record.status == APPLIED, record.reason
    assert record.rewrites.get(rule) == 1, record.rewrites
    expected = {"Relu": 1} if into_output else {"Relu": 1, "Neg": 1}
    assert op_counts(out) == expected
    assert record.max_rel < 1e-5
    assert not record.declined


def _unchanged(text: str, shapes, op: str, count: int = 1) -> list[str]:
    record, out = run_pass(RemoveNoOps(), make_model(text), shapes)
    assert record.status == UNCHANGED, record.reason
    assert op_counts(out)[op] == count
    return [d.reason for d in record.declined]


def test_keeps_dropout_in_training_mode() -> None:
    reasons = _unchanged("""<ir_version: 7, opset_import: ["" : 13]>
        g (float[N, 4] x) => (float[N, 4] y) <float ratio = {0.5}, bool yes = {1}> {
            [drop] y = Dropout(x, ratio, yes)
        }""", {"x": (2, 4)}, "Dropout")
    assert reasons == ["Dropout 'drop' kept: it runs in training mode"]


def test_keeps_dropout_whose_training_mode_is_an_input() -> None:
    reasons = _unchanged("""<ir_version: 7, opset_import: ["" : 13]>
        g (float[N, 4] x, bool training) => (float[N, 4] y) {
            r = Relu(x)
            [drop] y = Dropout(r, , training)
        }""", {"x": (2, 4)}, "Dropout")
    assert reasons == ["Dropout 'drop' kept: training_mode 'training' is computed at run time"]


@pytest.mark.parametrize("opset", [11, 13])
def test_keeps_dropout_whose_mask_is_used(opset: int) -> None:
    reasons = _unchanged(f"""<ir_version: 7, opset_import: ["" : {opset}]>
        g (float[N, 4] x) => (float[N, 4] y, bool[N, 4] mask) {{
            r = Relu(x)
            [drop] y, mask = Dropout(r)
        }}""", {"x": (2, 4)}, "Dropout")
    assert reasons == ["Dropout 'drop' kept: its mask output 'mask' is used"]


def test_keeps_identity_between_graph_input_and_output() -> None:
    reasons = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) {
            [id] y = Identity(x)
        }""", {"x": (2, 4)}, "Identity")
    assert reasons == [
        "Identity 'id' kept: it connects graph input 'x' straight to graph output 'y', whose "
        "name must stay"
    ]


def test_keeps_identity_between_two_graph_outputs() -> None:
    # onnx_ir's IdentityEliminationPass would rename r to y: two outputs named y.
    reasons = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] r, float[N, 4] y) {
            r = Relu(x)
            [id] y = Identity(r)
        }""", {"x": (2, 4)}, "Identity")
    assert reasons == [
        "Identity 'id' kept: it connects graph output 'r' straight to graph output 'y', whose "
        "name must stay"
    ]


def test_keeps_cast_between_graph_input_and_output() -> None:
    reasons = _unchanged("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) {
            [cast] y = Cast<to = 1>(x)
        }""", {"x": (2, 4)}, "Cast")
    assert reasons == [
        "Cast 'cast' kept: it connects graph input 'x' straight to graph output 'y', whose name "
        "must stay"
    ]


@pytest.mark.parametrize("operands", ["r, zeros", "zeros, r"])
def test_keeps_add_of_zero_that_broadcasts(operands: str) -> None:
    reasons = _unchanged(f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[4] x) => (float[3, 4] y) <float[3, 4] zeros = {{0,0,0,0,0,0,0,0,0,0,0,0}}> {{
            r = Relu(x)
            [add] y = Add({operands})
        }}""", {"x": (4,)}, "Add")
    assert reasons == [
        "Add 'add' kept: its constant of shape [3, 4] broadcasts 'r' of shape [4] to a bigger shape"
    ]


# name: (body, type of y, op left in place)
REAL = {
    "cast_to_half": ("y = Cast<to = 10>(r)", "float16[N, 4]", "Cast"),
    "reshape_transposed": ("y = Reshape(r, s4_m1)", "float[4, N]", "Reshape"),
    # onnxscript's ``x * 1`` and ``x + 0`` patterns would match these (tolerance 1e-5, 1e-8).
    "mul_nearly_one": ("y = Mul(r, nearly_one)", "float[N, 4]", "Mul"),
    "add_tiny": ("y = Add(r, tiny)", "float[N, 4]", "Add"),
    "expand_bigger": ("y = Expand(r, s3_1_4)", "float[3, N, 4]", "Expand"),
    "slice_part": ("y = Slice(r, i1, imax, i1)", "float[N, 3]", "Slice"),
    "transpose_swap": ("y = Transpose<perm = [1, 0]>(r)", "float[4, N]", "Transpose"),
    "pad_one": ("y = Pad(r, pads1)", "float[N, 5]", "Pad"),
    "split_two": ("y, unused = Split<axis = 1>(r)", "float[N, 2]", "Split"),
}


@pytest.mark.parametrize("case", REAL, ids=str)
def test_leaves_real_computations_alone(case: str) -> None:
    body, output, op = REAL[case]
    reasons = _unchanged(f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => ({output} y)
          <int64[2] s4_m1 = {{4, -1}}, float nearly_one = {{1.000001}}, float tiny = {{1e-9}},
           int64[3] s3_1_4 = {{3, 1, 4}}, int64[1] i1 = {{1}}, int64[1] imax = {{{INT64_MAX}}},
           int64[4] pads1 = {{0, 1, 0, 0}}> {{
            r = Relu(x)
            {body}
        }}""", {"x": (2, 4)}, op)
    assert reasons == []


def test_if_branches() -> None:
    """No-ops inside a branch go; an Identity that returns an outer value from a branch stays
    (onnx_ir's IdentityEliminationPass would rename the outer value or raise)."""
    record, out = run_pass(RemoveNoOps(), make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x, bool c) => (float[N, 4] y) <float zero = {0.0}> {
            r = Relu(x)
            y = If(c) <
                then_branch = then_graph () => (float[N, 4] t) {
                    a = Neg(r)
                    b = Add(a, zero)
                    t = Identity(b)
                },
                else_branch = else_graph () => (float[N, 4] e) {
                    [outer] e = Identity(r)
                }>
        }"""), {"x": (2, 4)})
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {"RemoveAddZero": 1, "RemoveIdentity": 1}
    branches = {attr.name: attr.g for attr in out.graph.node[1].attribute}
    assert [n.op_type for n in branches["then_branch"].node] == ["Neg"]
    assert [n.op_type for n in branches["else_branch"].node] == ["Identity"]
    assert [d.reason for d in record.declined] == [
        "Identity 'outer' kept: it connects outer-scope value 'r' straight to graph output 'e', "
        "whose name must stay"
    ]
    assert record.max_rel < 1e-5


def test_removes_dead_nodes_and_counts_them() -> None:
    """onnxsim leaves shape computations nothing reads; they compute nothing either."""
    record, out = run_pass(RemoveNoOps(), make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <int64 i0 = {0}> {
            y = Relu(x)
            shape = Shape(y)
            batch = Gather<axis = 0>(shape, i0)
        }"""), {"x": (2, 4)})
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {"RemoveUnusedNodes": 2}
    assert op_counts(out) == {"Relu": 1}
