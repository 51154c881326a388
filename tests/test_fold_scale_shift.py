"""fold_scale_shift: every foldable scale and shift, and every reason to decline."""

from __future__ import annotations

import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.fold_scale_shift import FoldScaleShift
from hwopt.passes.pipeline import APPLIED, UNCHANGED

HEADER = '<ir_version: 8, opset_import: ["" : {opset}]>\n'

# name: (graph text, rewrites, op histogram after)
FOLDS = {
    "conv_mul_per_channel": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w, float[4] b, float[4, 1, 1] a> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            y = Mul (c, a)
        }""", 1, {"Conv": 1}),
    "conv_mul_scalar_first_no_bias": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 6, 6] y) <float[4, 3, 3, 3] w, float a> {
            c = Conv (x, w)
            y = Mul (a, c)
        }""", 1, {"Conv": 1}),
    "conv_add_no_bias": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w, float[1, 4, 1, 1] d> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Add (c, d)
        }""", 1, {"Conv": 1}),
    "conv_mul_then_add": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w, float[4] b, float[1] a, float[1, 4, 1, 1] d> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            m = Mul (c, a)
            y = Add (d, m)
        }""", 2, {"Conv": 1}),
    "conv_add_then_mul": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w, float[4] b, float[4, 1, 1] a, float[4, 1, 1] d> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            s = Add (c, d)
            y = Mul (s, a)
        }""", 2, {"Conv": 1}),
    "grouped_conv_mul_add": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y)
          <float[6, 2, 3, 3] w, float[6] b, float[6, 1, 1] a, float[6, 1, 1] d> {
            c = Conv <pads = [1, 1, 1, 1], group = 2> (x, w, b)
            m = Mul (c, a)
            y = Add (m, d)
        }""", 2, {"Conv": 1}),
    "conv1d_mul": ("""
        g (float[N, 3, 16] x) => (float[N, 4, 16] y) <float[4, 3, 3] w, float[4, 1] a> {
            c = Conv <pads = [1, 1]> (x, w)
            y = Mul (c, a)
        }""", 1, {"Conv": 1}),
    "grouped_conv_transpose_mul_add": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 16, 16] y)
          <float[4, 3, 2, 2] w, float[6] b, float[1, 6, 1, 1] a, float[6, 1, 1] d> {
            c = ConvTranspose <strides = [2, 2], group = 2> (x, w, b)
            m = Mul (c, a)
            y = Add (m, d)
        }""", 2, {"ConvTranspose": 1}),
    "gemm_transposed_mul_add": ("""
        g (float[N, 4] x) => (float[N, 6] y)
          <float[6, 4] w, float[6] c, float[6] a, float[1, 6] d> {
            z = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (x, w, c)
            m = Mul (z, a)
            y = Add (m, d)
        }""", 2, {"Gemm": 1}),
    "gemm_full_c_mul": ("""
        g (float[2, 4] x) => (float[2, 6] y) <float[4, 6] w, float[2, 6] c, float[1, 6] a> {
            z = Gemm <beta = 0.5> (x, w, c)
            y = Mul (z, a)
        }""", 1, {"Gemm": 1}),
    "gemm_no_c_add": ("""
        g (float[N, 4] x) => (float[N, 6] y) <float[4, 6] w, float d> {
            z = Gemm (x, w)
            y = Add (z, d)
        }""", 1, {"Gemm": 1}),
    "input_mul_before_padded_grouped_conv": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y)
          <float[6, 2, 3, 3] w, float[6] b, float[1, 4, 1, 1] a> {
            s = Mul (x, a)
            y = Conv <pads = [1, 1, 1, 1], group = 2> (s, w, b)
        }""", 1, {"Conv": 1}),
    "input_add_before_unpadded_grouped_conv": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 2, 2] y)
          <float[6, 2, 3, 3] w, float[6] b, float[4, 1, 1] d> {
            s = Add (d, x)
            y = Conv <group = 2, strides = [2, 2], dilations = [2, 2]> (s, w, b)
        }""", 1, {"Conv": 1}),
    "input_mul_add_before_pointwise_conv": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y)
          <float[6, 4, 1, 1] w, float[1] a, float[1] d> {
            m = Mul (x, a)
            s = Add (m, d)
            y = Conv <pads = [0, 0, 0, 0]> (s, w)
        }""", 2, {"Conv": 1}),
    "weights_in_constant_nodes": ("""
        g (float[N, 2, 8, 8] x) => (float[N, 2, 8, 8] y) {
            w = Constant <value = float[2, 2, 1, 1] {0.5, -1.0, 2.0, 0.25}> ()
            a = Constant <value = float[2, 1, 1] {3.0, -2.0}> ()
            d = Constant <value = float[1, 2, 1, 1] {0.1, 0.2}> ()
            c = Conv (x, w)
            m = Mul (c, a)
            y = Add (m, d)
        }""", 2, {"Conv": 1}),
    "shared_weight_shift_only": ("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 4, 8, 8] z)
          <float[4, 3, 3, 3] w, float[4, 1, 1] d, float[4, 1, 1] e> {
            c1 = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Add (c1, d)
            c2 = Conv <pads = [1, 1, 1, 1]> (x, w)
            z = Add (c2, e)
        }""", 2, {"Conv": 2}),
}


def _shapes(model) -> dict[str, tuple[int, ...]]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return {"x": tuple(d.dim_value or 2 for d in dims)}


@pytest.mark.parametrize("opset", [11, 17], ids=lambda o: f"opset{o}")
@pytest.mark.parametrize("case", FOLDS, ids=str)
def test_folds(case: str, opset: int) -> None:
    body, rewrites, ops = FOLDS[case]
    model = make_model(HEADER.format(opset=opset) + body)
    record, out = run_pass(FoldScaleShift(), model, _shapes(model))
    assert record.status == APPLIED, record.reason
    assert sum(record.rewrites.values()) == rewrites
    assert op_counts(out) == ops
    assert record.max_rel < 1e-5
    used = {name for node in out.graph.node for name in node.input}
    assert all(init.name in used for init in out.graph.initializer), "replaced weights linger"


def test_removes_only_what_it_replaced() -> None:
    model = make_model(HEADER.format(opset=17) + """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 3, 3, 3] w, float[7] spare> {
            unused = Constant <value = float[2] {1.0, 2.0}> ()
            d = Constant <value = float[4, 1, 1] {0.1, 0.2, 0.3, 0.4}> ()
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Add (c, d)
        }""")
    record, out = run_pass(FoldScaleShift(), model, {"x": (1, 3, 8, 8)})
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Constant": 1, "Conv": 1}
    assert {init.name for init in out.graph.initializer} >= {"w", "spare"}


def _declined(text: str, shapes=None) -> list[str]:
    model = make_model(HEADER.format(opset=17) + text)
    record, out = run_pass(FoldScaleShift(), model, shapes or _shapes(model))
    assert record.status == UNCHANGED, record.rewrites
    assert op_counts(out) == op_counts(model)
    return [d.reason for d in record.declined]


@pytest.mark.parametrize(
    "shape, axis",
    [
        ("[1, 4, 8, 8]", "spatial positions"),
        ("[8]", "spatial positions"),
        ("[2, 4, 1, 1]", "batch"),
    ],
    ids=["per_position", "along_width", "per_batch"],
)
def test_declines_constant_that_is_not_per_channel(shape: str, axis: str) -> None:
    reasons = _declined(f"""
        g (float[2, 3, 8, 8] x) => (float[2, 4, 8, 8] y) <float[4, 3, 3, 3] w, float{shape} a> {{
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (c, a)
        }}""")
    assert any(f"of shape {shape}" in r and axis in r for r in reasons), reasons


def test_declines_gemm_scale_that_varies_along_rows() -> None:
    reasons = _declined("""
        g (float[2, 4] x) => (float[2, 6] y) <float[4, 6] w, float[2, 1] a> {
            z = Gemm (x, w)
            y = Mul (z, a)
        }""")
    assert any("varies along the rows" in r for r in reasons), reasons


def test_declines_shift_before_padded_conv() -> None:
    reasons = _declined("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 3, 3, 3] w, float[3, 1, 1] d> {
            s = Add (x, d)
            y = Conv <pads = [1, 1, 1, 1]> (s, w)
        }""")
    assert any("pads=[1, 1, 1, 1]" in r and "does not fold" in r for r in reasons), reasons


def test_a_shared_weight_is_copied_so_the_scale_folds() -> None:
    # Folding the scale into w would change the other Conv too: the Mul's Conv gets its own
    # copy first (hwopt.passes.unshare), and the other keeps w.
    model = make_model(HEADER.format(opset=17) + """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 4, 8, 8] z)
          <float[4, 3, 3, 3] w, float[4, 1, 1] a> {
            c1 = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (c1, a)
            z = Conv <pads = [1, 1, 1, 1]> (x, w)
        }""")
    record, out = run_pass(FoldScaleShift(), model, {"x": (2, 3, 8, 8)})
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Conv": 2}
    assert any("shared weight(s) copied" in note for note in record.notes)
    weights = [node.input[1] for node in out.graph.node]
    assert weights[1] == "w" and weights[0] != "w"


def test_declines_conv_output_with_other_consumers() -> None:
    reasons = _declined("""
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 4, 8, 8] z)
          <float[4, 3, 3, 3] w, float[4, 1, 1] a> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (c, a)
            z = Relu (c)
        }""")
    assert any("other uses" in r for r in reasons), reasons


def test_declines_scale_that_is_not_constant() -> None:
    reasons = _declined("""
        g (float[N, 3, 8, 8] x, float[1, 4, 1, 1] a) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (c, a)
        }""", {"x": (1, 3, 8, 8), "a": (1, 4, 1, 1)})
    assert any("operand 'a' is not a constant" in r for r in reasons), reasons


def test_declines_input_scale_that_broadcasts_channels_up() -> None:
    reasons = _declined("""
        g (float[N, 1, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 4, 3, 3] w, float[1, 4, 1, 1] a> {
            s = Mul (x, a)
            y = Conv <pads = [1, 1, 1, 1]> (s, w)
        }""")
    assert any("with 4 channels" in r for r in reasons), reasons
