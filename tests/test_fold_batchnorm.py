"""fold_batchnorm: every foldable producer, and every reason to decline."""

from __future__ import annotations

import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.fold_batchnorm import FoldBatchNorm
from hwopt.passes.pipeline import APPLIED, UNCHANGED

BN = "float[{c}] s, float[{c}] b, float[{c}] mean, float[{c}] var"

CASES = {
    "conv_with_bias": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y) <float[6, 4, 3, 3] w, float[6] cb, {bn}> {{
            c = Conv <pads = [1, 1, 1, 1]> (x, w, cb)
            y = BatchNormalization <epsilon = 0.001> (c, s, b, mean, var)
        }}""", 6, "Conv"),
    "conv_no_bias": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y) <float[6, 4, 3, 3] w, {bn}> {{
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }}""", 6, "Conv"),
    "depthwise_conv": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 1, 3, 3] w, {bn}> {{
            c = Conv <pads = [1, 1, 1, 1], group = 4> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }}""", 4, "Conv"),
    "grouped_conv_transpose": ("""
        g (float[N, 4, 8, 8] x) => (float[N, 6, 16, 16] y) <float[4, 3, 2, 2] w, {bn}> {{
            c = ConvTranspose <strides = [2, 2], group = 2> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }}""", 6, "ConvTranspose"),
    "gemm_transposed": ("""
        g (float[N, 4] x) => (float[N, 6] y) <float[6, 4] w, float[6] gb, {bn}> {{
            c = Gemm <transB = 1, beta = 0.5> (x, w, gb)
            y = BatchNormalization (c, s, b, mean, var)
        }}""", 6, "Gemm"),
    "matmul_rank2": ("""
        g (float[N, 4] x) => (float[N, 6] y) <float[4, 6] w, {bn}> {{
            c = MatMul (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }}""", 6, "Gemm"),
}


def _text(body: str, channels: int) -> str:
    return '<ir_version: 8, opset_import: ["" : 15]>\n' + body.format(bn=BN.format(c=channels))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_folds(case: str) -> None:
    body, channels, producer = CASES[case]
    model = make_model(_text(body, channels))
    record, out = run_pass(FoldBatchNorm(), model, {"x": (2, *[int(d) for d in _input_dims(model)])})
    assert record.status == APPLIED, record.reason
    assert sum(record.rewrites.values()) == 1
    assert op_counts(out) == {producer: 1}
    assert record.max_rel < 1e-5


def _input_dims(model):
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]


def _declined(model, shapes):
    record, out = run_pass(FoldBatchNorm(), model, shapes)
    assert record.status == UNCHANGED
    assert op_counts(out)["BatchNormalization"] == 1
    return [d.reason for d in record.declined]


def test_declines_when_statistics_are_inputs() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 15]>
        g (float[N, 4, 8, 8] x, float[6] s) => (float[N, 6, 8, 8] y)
          <float[6, 4, 3, 3] w, float[6] b, float[6] mean, float[6] var> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }""")
    reasons = _declined(model, {"x": (1, 4, 8, 8)})
    assert any("s is not a constant initializer" in r for r in reasons)


def test_declines_when_conv_output_is_shared() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 15]>
        g (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y, float[N, 6, 8, 8] z)
          <float[6, 4, 3, 3] w, float[6] s, float[6] b, float[6] mean, float[6] var> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
            z = Relu (c)
        }""")
    reasons = _declined(model, {"x": (1, 4, 8, 8)})
    assert any("other uses" in r for r in reasons)


def test_declines_matmul_of_rank_three() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 15]>
        g (float[N, 6, 4] x) => (float[N, 6, 6] y)
          <float[4, 6] w, float[6] s, float[6] b, float[6] mean, float[6] var> {
            c = MatMul (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }""")
    reasons = _declined(model, {"x": (1, 6, 4)})
    assert any("rank 2" in r for r in reasons)


def test_a_shared_weight_is_copied_so_each_batchnorm_folds() -> None:
    # Deduplication makes equal weights one tensor (the light_* models build every weight with
    # ConstantOfShape); each Conv feeding a BatchNorm then gets its own copy to fold into.
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 4, 8, 8] z)
          <float[4, 4, 3, 3] w, float[4] s, float[4] b, float[4] mean, float[4] var,
           float[4] s2, float[4] b2, float[4] mean2, float[4] var2> {
            c1 = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = BatchNormalization (c1, s, b, mean, var)
            c2 = Conv <pads = [1, 1, 1, 1]> (x, w)
            z = BatchNormalization (c2, s2, b2, mean2, var2)
        }""")
    record, out = run_pass(FoldBatchNorm(), model, {"x": (2, 4, 8, 8)})
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Conv": 2}
    assert any("shared weight(s) copied" in note for note in record.notes)
