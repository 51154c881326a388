"""eliminate_common_subexpressions: repeated computations are done once."""

from __future__ import annotations

from passtest import make_model, op_counts, run_pass

from hwopt.passes.eliminate_common_subexpressions import EliminateCommonSubexpressions
from hwopt.passes.pipeline import APPLIED, UNCHANGED


def test_merges_repeated_shape_computations() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x) => (float[N, 8] y, float[N, 8] z) {
            s1 = Shape (x)
            s2 = Shape (x)
            r1 = Relu (x)
            r2 = Relu (x)
            y = Reshape (r1, s1)
            z = Reshape (r2, s2)
        }""")
    record, out = run_pass(EliminateCommonSubexpressions(), model, {"x": (2, 8)})
    assert record.status == APPLIED
    # y and z are now one value; an Identity keeps both output names.
    assert op_counts(out) == {"Shape": 1, "Relu": 1, "Reshape": 1, "Identity": 1}


def test_never_merges_random_ops() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 8] x) => (float[2, 8] y) {
            a = RandomUniformLike <seed = 1.0> (x)
            b = RandomUniformLike <seed = 1.0> (x)
            y = Sub (a, b)
        }""")
    record, _ = run_pass(EliminateCommonSubexpressions(), model)
    assert record.status == UNCHANGED
