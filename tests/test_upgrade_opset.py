"""upgrade_opset: conversions that verify, subgraphs, other domains, and every way to decline."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.errors import UsageError
from hwopt.passes.base import PassContext
from hwopt.passes.pipeline import APPLIED, UNCHANGED
from hwopt.passes.upgrade_opset import DEFAULT_TARGET_OPSET, UpgradeOpset

HEADER = '<ir_version: {ir}, opset_import: ["" : {opset}{extra}]>\n'

# Each graph's ops, before and after; ops whose signature changed between the source opset
# and 17 gain a Constant for the attribute that became an input.
CASES = {
    "conv_relu_add": (11, """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 3, 3, 3] w, float[4] b> {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            r = Relu (c)
            y = Add (r, c)
        }""", {"Conv": 1, "Relu": 1, "Add": 1}),
    "clip_with_inputs": (11, """
        g (float[N, 4] x) => (float[N, 4] y) <float lo = {0.0}, float hi = {6.0}> {
            y = Clip (x, lo, hi)
        }""", {"Clip": 1}),
    "squeeze_unsqueeze_axes": (11, """
        g (float[N, 1, 4] x) => (float[N, 4, 1] y) {
            s = Squeeze <axes = [1]> (x)
            y = Unsqueeze <axes = [2]> (s)
        }""", {"Squeeze": 1, "Unsqueeze": 1, "Constant": 2}),
    "split_sizes": (11, """
        g (float[N, 6] x) => (float[N, 2] a, float[N, 4] b) {
            a, b = Split <axis = 1, split = [2, 4]> (x)
        }""", {"Split": 1, "Constant": 1}),
    "reduce_sum_axes": (11, """
        g (float[N, 6] x) => (float[N, 1] y) {
            y = ReduceSum <axes = [1], keepdims = 1> (x)
        }""", {"ReduceSum": 1, "Constant": 1}),
    "pad_and_resize": (11, """
        g (float[N, 2, 4, 4] x) => (float[N, 2, 12, 12] y)
          <int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}, float[0] roi = {}, float[4] scales = {1.0, 1.0, 2.0, 2.0}> {
            p = Pad <mode = "reflect"> (x, pads)
            y = Resize <mode = "nearest"> (p, roi, scales)
        }""", {"Pad": 1, "Resize": 1}),
    "upsample_at_opset_9": (9, """
        g (float[N, 2, 4, 4] x) => (float[N, 2, 8, 8] y) <float[4] scales = {1.0, 1.0, 2.0, 2.0}> {
            y = Upsample <mode = "nearest"> (x, scales)
        }""", {"Resize": 1, "Constant": 1}),
    "hard_swish_parts_at_opset_12": (12, """
        g (float[N, 8] x) => (float[N, 8] y) {
            h = HardSigmoid <alpha = 0.16666667, beta = 0.5> (x)
            y = Mul (x, h)
        }""", {"HardSigmoid": 1, "Mul": 1}),
}


def _text(opset: int, body: str, extra: str = "") -> str:
    ir_version = 7 if opset > 8 else 4
    return HEADER.format(ir=ir_version, opset=opset, extra=extra) + body


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {o.domain: o.version for o in model.opset_import}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_upgrades_to_the_default_target(case: str) -> None:
    opset, body, ops_after = CASES[case]
    model = make_model(_text(opset, body))
    shape = [2 if d.dim_param else d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    record, out = run_pass(UpgradeOpset(), model, {model.graph.input[0].name: shape})
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {f"opset_{opset}_to_{DEFAULT_TARGET_OPSET}": 1}
    assert _opsets(out) == {"": DEFAULT_TARGET_OPSET}
    assert out.ir_version >= 8  # opset 17 needs IR version 8
    assert op_counts(out) == ops_after
    assert record.max_rel < 1e-5


def test_other_domains_keep_their_versions() -> None:
    model = make_model(_text(12, """
        g (float[N, 8] x) => (float[N, 8] y) <float[8] bias> {
            g = com.microsoft.BiasGelu (x, bias)
            y = Relu (g)
        }""", extra=', "com.microsoft" : 1'))
    record, out = run_pass(UpgradeOpset(), model, {"x": (2, 8)})
    assert record.status == APPLIED, record.reason
    assert _opsets(out) == {"": 17, "com.microsoft": 1}
    assert op_counts(out) == {"BiasGelu": 1, "Relu": 1}
    assert record.max_rel < 1e-5


IF_MODEL = """
    g (bool c, float[N, 1, 4] x) => (float[N, 4] y, float[N, 4] z) {
        y = If (c) <
            then_branch = t1 () => (float[N, 4] a) { a = Squeeze <axes = [1]> (x) },
            else_branch = e1 () => (float[N, 4] b) {
                n = Neg (x)
                b = Squeeze <axes = [1]> (n)
            }>
        nc = Not (c)
        z = If (nc) <
            then_branch = t2 () => (float[N, 4] a2) { a2 = ReduceSum <axes = [1], keepdims = 0> (x) },
            else_branch = e2 () => (float[N, 4] b2) {
                s = Split <axis = 1, split = [1]> (x)
                b2 = Squeeze <axes = [1]> (s)
            }>
    }"""


def test_converts_if_bodies() -> None:
    # Two Ifs on c and Not(c): whichever value c is fed, one then- and one else-branch run.
    model = make_model(_text(11, IF_MODEL))
    record, out = run_pass(UpgradeOpset(), model, {"x": (2, 1, 4)})
    assert record.status == APPLIED, record.reason
    assert record.max_rel < 1e-5
    bodies = [attr.g for node in out.graph.node for attr in node.attribute if attr.type == attr.GRAPH]
    assert len(bodies) == 4
    for body in bodies:
        for node in body.node:
            if node.op_type in ("Squeeze", "ReduceSum", "Split"):
                assert len(node.input) == 2, f"{node.op_type} in {body.name} kept its opset-11 form"


def test_converts_loop_bodies() -> None:
    model = make_model(_text(11, """
        g (float[N, 4] x) => (float[N, 4] last, float[2, N, 1, 4] y) <int64 trips = {2}, bool go = {1}> {
            last, y = Loop (trips, go, x) <
                body = b (int64 i, bool cond, float[N, 4] acc) => (bool c2, float[N, 4] acc2, float[N, 1, 4] u) {
                    c2 = Identity (cond)
                    acc2 = Add (acc, acc)
                    u = Unsqueeze <axes = [1]> (acc)
                }>
        }"""))
    record, out = run_pass(UpgradeOpset(), model, {"x": (2, 4)})
    assert record.status == APPLIED, record.reason
    assert record.max_rel < 1e-5
    (body,) = [attr.g for node in out.graph.node for attr in node.attribute if attr.type == attr.GRAPH]
    (unsqueeze,) = [n for n in body.node if n.op_type == "Unsqueeze"]
    assert len(unsqueeze.input) == 2


def test_leaves_a_model_at_or_above_the_target() -> None:
    model = make_model(_text(18, """
        g (float[N, 4] x) => (float[N, 4] y) { y = Relu (x) }"""))
    record, out = run_pass(UpgradeOpset(), model, {"x": (2, 4)})
    assert record.status == UNCHANGED
    assert _opsets(out) == {"": 18}
    assert any("at or above the target 17" in note for note in record.notes)


def _run_directly(model: onnx.ModelProto, **options):
    return UpgradeOpset().run(ir.serde.deserialize_model(model), PassContext(options=options))


def test_never_downgrades() -> None:
    model = make_model(_text(13, """
        g (float[N, 4] x) => (float[N, 4] y) { y = Relu (x) }"""))
    result = _run_directly(model, target_opset=11)
    assert not result.changed
    assert result.model.opset_imports[""] == 13
    assert any("at or above the target 11" in note for note in result.notes)


def test_records_why_the_converter_failed() -> None:
    # BatchNormalization before opset 9 could normalize per activation (spatial=0); the
    # converter has no adapter for that and raises.
    model = make_model(_text(7, """
        g (float[N, 3, 4, 4] x) => (float[N, 3, 4, 4] y)
          <float[3, 4, 4] s, float[3, 4, 4] b, float[3, 4, 4] mean, float[3, 4, 4] var> {
            y = BatchNormalization <spatial = 0> (x, s, b, mean, var)
        }"""))
    record, out = run_pass(UpgradeOpset(), model, {"x": (1, 3, 4, 4)})
    assert record.status == UNCHANGED
    assert _opsets(out) == {"": 7}
    (note,) = record.notes
    assert "cannot take the model from opset 7 to 17" in note and "spatial" in note


def test_leaves_a_model_with_local_functions() -> None:
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 11, "local" : 1]>
        g (float[N, 1] x) => (float[N] y) { y = local.squeeze1 (x) }
        <domain: "local", opset_import: ["" : 11]>
        squeeze1 (a) => (b) { b = Squeeze <axes = [1]> (a) }""")
    record, out = run_pass(UpgradeOpset(), model, {"x": (2, 1)})
    assert record.status == UNCHANGED
    assert len(out.functions) == 1
    assert any("local function" in note for note in record.notes)


@pytest.mark.parametrize("bad", ["17", 17.0, True, 0, 10_000])
def test_rejects_a_target_that_is_not_an_opset(bad) -> None:
    model = make_model(_text(11, """
        g (float[N, 4] x) => (float[N, 4] y) { y = Relu (x) }"""))
    with pytest.raises(UsageError, match="target_opset"):
        _run_directly(model, target_opset=bad)
