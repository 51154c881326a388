"""eliminate_dead_code: dead nodes and unused initializers (weights listed as inputs are
drop_initializer_inputs' to remove)."""

from __future__ import annotations

import onnx
from passtest import make_model, op_counts, run_pass

from hwopt.passes.eliminate_dead_code import EliminateDeadCode
from hwopt.passes.pipeline import APPLIED, UNCHANGED


def test_removes_dead_nodes_and_unused_initializers() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <float[4] used, float[4] unused, float[4] dead_w> {
            y = Add (x, used)
            dead = Mul (x, dead_w)
            deader = Relu (dead)
        }""")
    record, out = run_pass(EliminateDeadCode(), model, {"x": (2, 4)})
    assert record.status == APPLIED
    assert op_counts(out) == {"Add": 1}
    assert [i.name for i in out.graph.initializer] == ["used"]


def test_weights_listed_as_inputs_stay_inputs() -> None:
    # IR version 3 style: every initializer is also a graph input. Whether it stays
    # overridable is drop_initializer_inputs' decision (which --skip-pass can turn off).
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 4] y) <float[4] w> { y = Mul (x, w) }""")
    model.graph.input.append(onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [4]))
    record, out = run_pass(EliminateDeadCode(), model, {"x": (2, 4)})
    assert record.status == UNCHANGED
    assert [i.name for i in out.graph.input] == ["x", "w"]


def test_dead_nodes_inside_if_branches() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x, bool c) => (float[N, 4] y) {
            y = If (c) <
                then_branch = t () => (float[N, 4] a) { a = Relu (x)  unused = Neg (x) },
                else_branch = e () => (float[N, 4] b) { b = Neg (x) }
            >
        }""")
    record, out = run_pass(EliminateDeadCode(), model, {"x": (2, 4)})
    assert record.status == APPLIED
    then_branch = out.graph.node[0].attribute[0].g
    assert [n.op_type for n in then_branch.node] == ["Relu"]
