"""localize_initializers: weights move into the body that alone reads them."""

from __future__ import annotations

import onnx
from passtest import make_model, run_pass

from hwopt.passes.localize_initializers import LocalizeInitializers
from hwopt.passes.pipeline import APPLIED, UNCHANGED

BRANCHES = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x, bool c) => (float[N, 4] y) <float[4] a, float[4] b, float[4] shared> {
        s = Add (x, shared)
        y = If (c) <
            then_branch = t () => (float[N, 4] ty) { ty = Mul (s, a) },
            else_branch = e () => (float[N, 4] ey) { inner = Add (s, b)  ey = Mul (inner, shared) }
        >
    }"""


def _inits(graph: onnx.GraphProto) -> list[str]:
    return sorted(i.name for i in graph.initializer)


def test_moves_weights_into_their_branch() -> None:
    record, out = run_pass(LocalizeInitializers(), make_model(BRANCHES), {"x": (2, 4)})
    assert record.status == APPLIED and record.rewrites == {"moved": 2}
    then_branch, else_branch = (a.g for a in out.graph.node[1].attribute)
    assert _inits(out.graph) == ["shared"]  # read by the main graph too
    assert _inits(then_branch) == ["a"] and _inits(else_branch) == ["b"]


def test_nothing_to_move_without_subgraphs() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <float[4] a> { y = Add (x, a) }""")
    record, _ = run_pass(LocalizeInitializers(), model, {"x": (2, 4)})
    assert record.status == UNCHANGED
