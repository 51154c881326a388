"""fold_constants: constant subgraphs and static shape arithmetic are evaluated."""

from __future__ import annotations

from passtest import make_model, op_counts, run_pass

from hwopt.passes.fold_constants import FoldConstants
from hwopt.passes.pipeline import APPLIED


def test_folds_constant_arithmetic_and_static_shapes() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 8] x) => (float[16] y) <float[16] a, float[16] b> {
            ab = Mul (a, b)
            s = Shape (x)
            n = ReduceProd <keepdims = 1> (s)
            r = Reshape (x, n)
            y = Add (r, ab)
        }""")
    record, out = run_pass(FoldConstants(), model)
    assert record.status == APPLIED
    assert op_counts(out) == {"Reshape": 1, "Add": 1}


def test_leaves_input_dependent_nodes() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x) => (float[N, 8] y) <float[8] a> { y = Add (x, a) }""")
    record, out = run_pass(FoldConstants(), model, {"x": (2, 8)})
    assert op_counts(out) == {"Add": 1}
