"""deduplicate_constants: Constant nodes become initializers; equal initializers merge."""

from __future__ import annotations

import numpy as np
from passtest import make_model, op_counts, run_pass

from hwopt.passes.deduplicate_constants import DeduplicateConstants
from hwopt.passes.pipeline import APPLIED


def test_lifts_constants_and_merges_equal_weights() -> None:
    same = np.arange(8, dtype=np.float32)
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x) => (float[N, 8] y) <float[8] a, float[8] b> {
            k = Constant <value = float[8] {1, 1, 1, 1, 2, 2, 2, 2}> ()
            s = Add (x, a)
            t = Add (s, b)
            y = Mul (t, k)
        }""", weights={"a": same, "b": same.copy()})
    record, out = run_pass(DeduplicateConstants(), model, {"x": (2, 8)})
    assert record.status == APPLIED
    assert op_counts(out) == {"Add": 2, "Mul": 1}
    assert len(out.graph.initializer) == 2  # a and b merged; k lifted
    adds = [n for n in out.graph.node if n.op_type == "Add"]
    assert adds[0].input[1] == adds[1].input[1]
