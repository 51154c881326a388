"""matmul_add_to_gemm: every 2-D MatMul + Add that becomes a Gemm, and every reason not to."""

from __future__ import annotations

import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.matmul_add_to_gemm import MatMulAddToGemm
from hwopt.passes.pipeline import APPLIED, UNCHANGED

HEADER = '<ir_version: 8, opset_import: ["" : {opset}]>\n'
SHAPES = {"a": (2, 4), "b": (4, 6), "r": (2, 6)}

# name: (graph text, rule that fires, Gemm attributes expected)
FUSES = {
    "constant_b_vector_bias": ("""
        g (float[M, 4] a) => (float[M, 6] y) <float[4, 6] w, float[6] c> {
            m = MatMul (a, w)
            y = Add (m, c)
        }""", "FuseMatMulAdd", {}),
    "bias_first_row_bias": ("""
        g (float[M, 4] a) => (float[M, 6] y) <float[4, 6] w, float[1, 6] c> {
            m = MatMul (a, w)
            y = Add (c, m)
        }""", "FuseMatMulAdd", {}),
    "scalar_bias": ("""
        g (float[M, 4] a) => (float[M, 6] y) <float[4, 6] w, float c> {
            m = MatMul (a, w)
            y = Add (m, c)
        }""", "FuseMatMulAdd", {}),
    "column_bias_static_rows": ("""
        g (float[2, 4] a) => (float[2, 6] y) <float[4, 6] w, float[2, 1] c> {
            m = MatMul (a, w)
            y = Add (m, c)
        }""", "FuseMatMulAdd", {}),
    "both_operands_and_residual_are_inputs": ("""
        g (float[2, 4] a, float[4, 6] b, float[2, 6] r) => (float[2, 6] y) {
            m = MatMul (a, b)
            y = Add (m, r)
        }""", "FuseMatMulAdd", {}),
    "a_is_intermediate": ("""
        g (float[M, 4] a) => (float[M, 6] y) <float[4, 6] w, float[6] c> {
            h = Relu (a)
            m = MatMul (h, w)
            y = Add (m, c)
        }""", "FuseMatMulAdd", {}),
    "transposed_a": ("""
        g (float[4, M] a) => (float[M, 6] y) <float[4, 6] w, float[6] c> {
            t = Transpose <perm = [1, 0]> (a)
            m = MatMul (t, w)
            y = Add (m, c)
        }""", "FuseTransposeAMatMulAdd", {"transA": 1}),
    "transposed_b": ("""
        g (float[M, 4] a) => (float[M, 6] y) <float[6, 4] w, float[6] c> {
            t = Transpose <perm = [1, 0]> (w)
            m = MatMul (a, t)
            y = Add (m, c)
        }""", "FuseTransposeBMatMulAdd", {"transB": 1}),
    "transposed_a_and_b": ("""
        g (float[4, M] a) => (float[M, 6] y) <float[6, 4] w, float[6] c> {
            ta = Transpose <perm = [1, 0]> (a)
            tb = Transpose <perm = [1, 0]> (w)
            m = MatMul (ta, tb)
            y = Add (c, m)
        }""", "FuseTransposeABMatMulAdd", {"transA": 1, "transB": 1}),
}


def _shapes(model) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value or 2 for d in dims)
    return shapes


@pytest.mark.parametrize("opset", [9, 11, 13, 17], ids=lambda o: f"opset{o}")
@pytest.mark.parametrize("case", FUSES, ids=str)
def test_fuses(case: str, opset: int) -> None:
    body, rule, attributes = FUSES[case]
    model = make_model(HEADER.format(opset=opset) + body)
    record, out = run_pass(MatMulAddToGemm(), model, _shapes(model))
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {rule: 1}
    rest = {op: n for op, n in op_counts(model).items() if op not in ("MatMul", "Add", "Transpose")}
    assert op_counts(out) == {**rest, "Gemm": 1}
    (gemm,) = [node for node in out.graph.node if node.op_type == "Gemm"]
    assert {a.name: a.i for a in gemm.attribute} == attributes
    assert record.max_rel < 1e-5


def _declined(text: str, opset: int = 17) -> list[str]:
    model = make_model(HEADER.format(opset=opset) + text)
    record, out = run_pass(MatMulAddToGemm(), model, _shapes(model))
    assert record.status == UNCHANGED, record.rewrites
    assert op_counts(out) == op_counts(model)
    return [d.reason for d in record.declined]


def test_declines_rank_three_matmul() -> None:
    reasons = _declined("""
        g (float[1, 16, 64] tokens) => (float[1, 16, 32] y) <float[64, 32] w, float[32] c> {
            m = MatMul (tokens, w)
            y = Add (m, c)
        }""")
    assert any(
        "has rank 3" in r and "Gemm is 2-D only and reshaping around it would add nodes" in r
        for r in reasons
    ), reasons


@pytest.mark.parametrize(
    "weight, bias, out",
    [("[4, 6]", "[1, 2, 6]", "[1, 2, 6]"), ("[4, 1]", "[2, 6]", "[2, 6]")],
    ids=["bias_of_rank_three", "bias_widening_the_product"],
)
def test_declines_bias_gemm_cannot_broadcast(weight: str, bias: str, out: str) -> None:
    reasons = _declined(f"""
        g (float[2, 4] a) => (float{out} y) <float{weight} w, float{bias} c> {{
            m = MatMul (a, w)
            y = Add (m, c)
        }}""")
    assert any("without widening it; Gemm's C must" in r for r in reasons), reasons


SHARED_PRODUCT = """
        g (float[M, 4] a) => (float[M, 6] y, float[M, 6] z) <float[4, 6] w, float[6] c> {
            m = MatMul (a, w)
            y = Add (m, c)
            z = Relu (m)
        }"""


def test_declines_matmul_output_with_other_consumers_saying_why() -> None:
    reasons = _declined(SHARED_PRODUCT)
    assert any("other uses" in r for r in reasons), reasons


def test_declines_adding_the_product_to_itself() -> None:
    reasons = _declined("""
        g (float[2, 4] a) => (float[2, 6] y) <float[4, 6] w> {
            m = MatMul (a, w)
            y = Add (m, m)
        }""")
    assert any("computed by the MatMul it would be fused with" in r for r in reasons), reasons


def test_declines_integer_gemm_before_opset_11() -> None:
    reasons = _declined("""
        g (int64[M, 4] a) => (int64[M, 6] y) <int64[4, 6] w, int64[6] c> {
            m = MatMul (a, w)
            y = Add (m, c)
        }""", opset=10)
    assert any("Gemm before opset 11" in r for r in reasons), reasons
