"""fuse_activations: every spelling of each activation, at the opsets that change the result,
and every reason to decline."""

from __future__ import annotations

import math
import re

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.base import PassContext
from hwopt.passes.fuse_activations import FuseActivations
from hwopt.passes.pipeline import APPLIED, UNCHANGED

CONSTANTS = {
    "zero": "float zero = {0.0}",
    "one": "float one = {1.0}",
    "half": "float half = {0.5}",
    "three": "float three = {3.0}",
    "six": "float six = {6.0}",
    "sixth": f"float sixth = {{{float(np.float32(1 / 6))!r}}}",
    "sixth_paddle": "float sixth_paddle = {0.1666667}",
    "sqrt2": f"float sqrt2 = {{{float(np.float32(math.sqrt(2)))!r}}}",
    "inv_sqrt2": f"float inv_sqrt2 = {{{float(np.float32(1 / math.sqrt(2)))!r}}}",
    "sqrt_2_pi": f"float sqrt_2_pi = {{{float(np.float32(math.sqrt(2 / math.pi)))!r}}}",
    "coef": "float coef = {0.044715}",
    "three_1d": "float[1] three_1d = {3.0}",
    "six_1d": "float[1] six_1d = {6.0}",
    "lo": "float lo = {-1.0}",
    "hi": "float hi = {2.0}",
    "lo_1d": "float[1] lo_1d = {-1.0}",
    "hi_1d": "float[1] hi_1d = {2.0}",
    "neg2": "float neg2 = {-2.0}",
    "four": "float four = {4.0}",
}


def _model(opset: int, body: str, outputs: str = "float[N, 8] y", extra_constants: str = "") -> onnx.ModelProto:
    """A graph of ``body`` over ``float[N, 8] x`` with the named constants it mentions."""
    used = [decl for name, decl in CONSTANTS.items() if re.search(rf"\b{name}\b", body)]
    if extra_constants:
        used.append(extra_constants)
    text = (
        f'<ir_version: 8, opset_import: ["" : {opset}]>\n'
        f"g (float[N, 8] x) => ({outputs}) <{', '.join(used)}> {{\n{body}\n}}"
    )
    return make_model(text)


def _relu6(opset: int, src: str, dst: str) -> str:
    """relu6 as Clip, in the form the opset requires (bounds as attributes before 11)."""
    if opset < 11:
        return f"{dst} = Clip <min = 0.0, max = 6.0> ({src})"
    return f"{dst} = Clip ({src}, zero, six)"


def _run(model: onnx.ModelProto):
    return run_pass(FuseActivations(), model, {"x": (2, 8)})


def _assert_applied(model, rewrites: dict[str, int], ops: dict[str, int]) -> None:
    record, out = _run(model)
    assert record.status == APPLIED, record.reason
    assert record.rewrites == rewrites
    assert op_counts(out) == ops
    assert record.max_rel < 1e-5


def _declined(model) -> list[str]:
    record, out = _run(model)
    assert record.status == UNCHANGED, record.rewrites
    return [d.reason for d in record.declined]


# ---------------------------------------------------------------------------------------------
# Hard-swish and hard-sigmoid

OPSETS = [9, 11, 12, 13, 14, 17, 20]

# body(opset) -> the model text; the rewrites and ops expected at opset >= 14 and below.
HARD_SWISH = {
    "paddle_div": (
        lambda o: f"s = Add (x, three)\n{_relu6(o, 's', 'r')}\nh = Div (r, six)\ny = Mul (x, h)",
        ({"HardSigmoidFusion": 1, "HardSwishFusion": 1}, {"HardSwish": 1}),
        ({"HardSigmoidFusion": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "paddle_mul_sixth_commuted": (
        lambda o: f"s = Add (three, x)\n{_relu6(o, 's', 'r')}\nh = Mul (sixth, r)\ny = Mul (h, x)",
        ({"HardSigmoidFusion": 1, "HardSwishFusion": 1}, {"HardSwish": 1}),
        ({"HardSigmoidFusion": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "ppocr_product_div": (
        lambda o: f"s = Add (x, three)\n{_relu6(o, 's', 'r')}\nm = Mul (x, r)\ny = Div (m, six)",
        ({"HardSwishFromRelu6": 1}, {"HardSwish": 1}),
        ({"HardSwishFromRelu6": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "product_mul_sixth_commuted": (
        lambda o: f"s = Add (three, x)\n{_relu6(o, 's', 'r')}\nm = Mul (r, x)\ny = Mul (sixth_paddle, m)",
        ({"HardSwishFromRelu6": 1}, {"HardSwish": 1}),
        ({"HardSwishFromRelu6": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "paddle_shapes_1d": (
        lambda o: f"s = Add (x, three_1d)\n{_relu6(o, 's', 'r')}\nm = Mul (x, r)\ny = Div (m, six_1d)",
        ({"HardSwishFromRelu6": 1}, {"HardSwish": 1}),
        ({"HardSwishFromRelu6": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "relu6_as_min_max": (
        lambda o: "s = Add (x, three)\na = Max (s, zero)\nr = Min (a, six)\nm = Mul (x, r)\ny = Div (m, six)",
        ({"MinMaxToClip": 1, "HardSwishFromRelu6": 1}, {"HardSwish": 1}),
        ({"MinMaxToClip": 1, "HardSwishFromRelu6": 1}, {"HardSigmoid": 1, "Mul": 1}),
    ),
    "hard_sigmoid_written_out": (
        lambda o: f"s = Add (x, three)\n{_relu6(o, 's', 'r')}\ny = Div (r, six)",
        ({"HardSigmoidFusion": 1}, {"HardSigmoid": 1}),
        ({"HardSigmoidFusion": 1}, {"HardSigmoid": 1}),
    ),
}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", HARD_SWISH, ids=str)
def test_hard_swish_spellings(case: str, opset: int) -> None:
    body, new, old = HARD_SWISH[case]
    rewrites, ops = new if opset >= 14 else old
    _assert_applied(_model(opset, body(opset)), rewrites, ops)


@pytest.mark.parametrize("alpha", ["0.16666667", "0.1666667"], ids=["float32", "paddle"])
@pytest.mark.parametrize("opset", OPSETS)
def test_x_times_hard_sigmoid(alpha: str, opset: int) -> None:
    model = _model(opset, f"h = HardSigmoid <alpha = {alpha}, beta = 0.5> (x)\ny = Mul (h, x)")
    if opset >= 14:
        _assert_applied(model, {"HardSwishFusion": 1}, {"HardSwish": 1})
    else:
        reasons = _declined(model)
        assert any("HardSwish needs opset 14; the model imports opset" in r for r in reasons)


def test_hard_swish_inside_an_if_body() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[N, 8] x) => (float[N, 8] y) <float three = {3.0}, float zero = {0.0}, float six = {6.0}> {
            y = If (c) <
                then_branch = t () => (float[N, 8] a) {
                    s = Add (x, three)
                    r = Clip (s, zero, six)
                    m = Mul (x, r)
                    a = Div (m, six)
                },
                else_branch = e () => (float[N, 8] b) { b = Neg (x) }>
        }""")
    record, out = run_pass(FuseActivations(), model, {"x": (2, 8)})
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {"HardSwishFromRelu6": 1}
    (then_branch,) = [a.g for a in out.graph.node[0].attribute if a.name == "then_branch"]
    assert [n.op_type for n in then_branch.node] == ["HardSwish"]


HARD_SWISH_DECLINES = {
    "add_not_3": ("s = Add (x, c)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Div (m, six)",
                  "float c = {2.5}", "the Add's constant 'c' is 2.5, not 3"),
    "clip_not_relu6": ("s = Add (x, three)\nr = Clip (s, zero, c)\nm = Mul (x, r)\ny = Div (m, six)",
                       "float c = {5.0}", "clamps to [0.0, 5.0], not [0, 6]"),
    "divisor_not_6": ("s = Add (x, three)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Div (m, c)",
                      "float c = {5.0}", "the divisor 'c' is 5, not 6"),
    "sixth_too_rough": ("s = Add (x, three)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Mul (m, c)",
                        "float c = {0.1667}", "the scale 'c' is 0.166700006, not 1/6"),
    "add_reads_another_tensor": ("z = Neg (x)\ns = Add (z, three)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Div (m, six)",
                                 "", "the Add before the Clip does not read 'x'"),
    "constant_of_higher_rank": ("s = Add (x, c)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Div (m, six)",
                                "float[1, 1, 1] c = {3.0}", "has rank 3, which may broadcast 'x' (rank 2)"),
    "hard_sigmoid_beta": ("h = HardSigmoid <alpha = 0.16666667, beta = 0.4> (x)\ny = Mul (x, h)",
                          "", "beta is 0.400000006, not 0.5"),
    "squeeze_excitation_gate": ("z = Neg (x)\nh = HardSigmoid <alpha = 0.16666667, beta = 0.5> (z)\ny = Mul (x, h)",
                                "", "the HardSigmoid reads 'z', not 'x'"),
}


@pytest.mark.parametrize("case", HARD_SWISH_DECLINES, ids=str)
def test_hard_swish_declines(case: str) -> None:
    body, constant, reason = HARD_SWISH_DECLINES[case]
    outputs = "float[1, N, 8] y" if "[1, 1, 1]" in constant else "float[N, 8] y"
    reasons = _declined(_model(17, body, outputs=outputs, extra_constants=constant))
    assert any(reason in r for r in reasons), reasons


def test_hard_swish_declines_a_shared_relu6() -> None:
    body = "s = Add (x, three)\nr = Clip (s, zero, six)\nm = Mul (x, r)\ny = Div (m, six)\nz = Neg (r)"
    reasons = _declined(_model(17, body, outputs="float[N, 8] y, float[N, 8] z"))
    assert any("other uses" in r for r in reasons), reasons


# ---------------------------------------------------------------------------------------------
# GELU

GELU = {
    "torchscript": "d = Div (x, sqrt2)\ne = Erf (d)\np = Add (e, one)\nm = Mul (x, p)\ny = Mul (m, half)",
    "torchscript_commuted": "d = Div (x, sqrt2)\ne = Erf (d)\np = Add (one, e)\nm = Mul (p, x)\ny = Mul (half, m)",
    "dynamo": "d = Div (x, sqrt2)\ne = Erf (d)\np = Add (e, one)\nh = Mul (half, p)\ny = Mul (x, h)",
    "dynamo_commuted": "d = Div (x, sqrt2)\ne = Erf (d)\np = Add (e, one)\nh = Mul (p, half)\ny = Mul (h, x)",
    "huggingface": "h = Mul (x, half)\nd = Div (x, sqrt2)\ne = Erf (d)\np = Add (one, e)\ny = Mul (h, p)",
    "half_first": "h = Mul (half, x)\nd = Div (x, sqrt2)\ne = Erf (d)\np = Add (e, one)\ny = Mul (h, p)",
    "core_first": "h = Mul (half, x)\nd = Div (x, sqrt2)\ne = Erf (d)\np = Add (e, one)\ny = Mul (p, h)",
    "times_inverse_sqrt2": "d = Mul (x, inv_sqrt2)\ne = Erf (d)\np = Add (e, one)\nm = Mul (x, p)\ny = Mul (m, half)",
}
GELU_TANH = {
    "dynamo": ("c = Pow (x, three)\nk = Mul (coef, c)\ni = Add (x, k)\ns = Mul (sqrt_2_pi, i)\n"
               "t = Tanh (s)\np = Add (t, one)\nh = Mul (half, p)\ny = Mul (x, h)"),
    "huggingface_new_gelu": ("h = Mul (half, x)\nc = Pow (x, three)\nk = Mul (coef, c)\ni = Add (x, k)\n"
                             "s = Mul (sqrt_2_pi, i)\nt = Tanh (s)\np = Add (one, t)\ny = Mul (h, p)"),
    "commuted": ("c = Pow (x, three)\nk = Mul (c, coef)\ni = Add (k, x)\ns = Mul (i, sqrt_2_pi)\n"
                 "t = Tanh (s)\np = Add (one, t)\nm = Mul (p, x)\ny = Mul (half, m)"),
}
GELU_CASES = {**{f"erf_{k}": (v, "none") for k, v in GELU.items()},
              **{f"tanh_{k}": (v, "tanh") for k, v in GELU_TANH.items()}}


@pytest.mark.parametrize("case", GELU_CASES, ids=str)
def test_gelu_at_opset_20(case: str) -> None:
    body, approximate = GELU_CASES[case]
    record, out = _run(_model(20, body))
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {"GeluFusion" if approximate == "none" else "GeluTanhFusion": 1}
    assert op_counts(out) == {"Gelu": 1}
    (gelu,) = out.graph.node
    assert onnx.helper.get_attribute_value(gelu.attribute[0]) == approximate.encode()
    assert record.max_rel < 1e-5


@pytest.mark.parametrize("opset", [11, 12, 13, 14, 17])
@pytest.mark.parametrize("case", ["erf_torchscript", "erf_huggingface", "tanh_dynamo"])
def test_gelu_declined_below_opset_20(case: str, opset: int) -> None:
    reasons = _declined(_model(opset, GELU_CASES[case][0]))
    assert any(f"Gelu needs opset 20; the model imports opset {opset}" in r for r in reasons), reasons


GELU_DECLINES = {
    "rough_sqrt2": (GELU["torchscript"].replace("sqrt2", "wrong"), "float wrong = {1.4142}",
                    "the divisor 'wrong' is 1.41419995, not sqrt(2)"),
    "half_is_not_half": (GELU["torchscript"].replace("half", "wrong"), "float wrong = {0.6}",
                         "the factor 'wrong' is 0.600000024, not 0.5"),
    "coefficient": (GELU_TANH["dynamo"].replace("coef", "wrong"), "float wrong = {0.05}",
                    "the cubic coefficient 'wrong' is 0.0500000007, not 0.044715"),
}


@pytest.mark.parametrize("case", GELU_DECLINES, ids=str)
def test_gelu_declines_wrong_constants(case: str) -> None:
    body, constant, reason = GELU_DECLINES[case]
    reasons = _declined(_model(20, body, extra_constants=constant))
    assert any(reason in r for r in reasons), reasons


def test_gelu_declines_a_shared_erf() -> None:
    body = GELU["torchscript"] + "\nz = Neg (e)"
    reasons = _declined(_model(20, body, outputs="float[N, 8] y, float[N, 8] z"))
    assert any("other uses" in r for r in reasons), reasons


def test_sample_transformer_gelu_form() -> None:
    """transformer_tiny's exporter spelling: Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5),
    with every constant a Constant node."""
    body = """
        sqrt2 = Constant <value = float {1.4142135}> ()
        one = Constant <value = float {1.0}> ()
        half = Constant <value = float {0.5}> ()
        d = Div (x, sqrt2)
        e = Erf (d)
        p = Add (e, one)
        m = Mul (x, p)
        y = Mul (m, half)"""
    model = make_model(f'<ir_version: 8, opset_import: ["" : 20]>\ng (float[N, 8] x) => (float[N, 8] y) {{{body}\n}}')
    record, out = _run(model)
    assert record.status == APPLIED, record.reason
    assert op_counts(out)["Gelu"] == 1 and op_counts(out)["Erf"] == 0


# ---------------------------------------------------------------------------------------------
# SiLU


@pytest.mark.parametrize("body", ["g = Sigmoid (x)\ny = Mul (x, g)", "s = Mul (x, one)\ng = Sigmoid (s)\ny = Mul (g, x)"])
def test_silu_is_left_for_onnxruntime_to_fuse(body: str) -> None:
    record, out = _run(_model(17, body))
    assert record.status == UNCHANGED
    assert record.rewrites == {} and record.declined == []


# ---------------------------------------------------------------------------------------------
# Clamps

CLAMPS = {
    # name: (body, opset-independent result ops, rewrites, expected bounds of the Clip)
    "relu_relu": ("r = Relu (x)\ny = Relu (r)", {"Relu": 1}, {"FuseSuccessiveRelu": 1}, None),
    "clip_clip": ("{c1}\n{c2}", {"Clip": 1}, {"MergeClamps": 1}, (0.0, 4.0)),
    "clip_relu": ("r = Relu (x)\n{c_of_r}", {"Clip": 1}, {"MergeClamps": 1}, (0.0, 6.0)),
    "relu_clip": ("{c_of_x}\ny = Relu (c)", {"Clip": 1}, {"MergeClamps": 1}, (0.0, 6.0)),
    "min_max": ("a = Max (x, lo)\ny = Min (a, hi)", {"Clip": 1}, {"MinMaxToClip": 1}, (-1.0, 2.0)),
    "max_min_commuted": ("a = Min (hi, x)\ny = Max (lo, a)", {"Clip": 1}, {"MinMaxToClip": 1}, (-1.0, 2.0)),
    "min_max_1d_constants": ("a = Max (x, lo_1d)\ny = Min (hi_1d, a)", {"Clip": 1}, {"MinMaxToClip": 1}, (-1.0, 2.0)),
}


def _clamp_body(opset: int, template: str) -> str:
    if opset < 11:
        pieces = {
            "c1": "c = Clip <min = -1.0, max = 4.0> (x)",
            "c2": "y = Clip <min = 0.0, max = 6.0> (c)",
            "c_of_r": "y = Clip <min = -2.0, max = 6.0> (r)",
            "c_of_x": "c = Clip <min = -2.0, max = 6.0> (x)",
        }
    else:
        pieces = {
            "c1": "c = Clip (x, lo, four)",
            "c2": "y = Clip (c, zero, six)",
            "c_of_r": "y = Clip (r, neg2, six)",
            "c_of_x": "c = Clip (x, neg2, six)",
        }
    return template.format(**pieces)


def _clip_bounds(model: onnx.ModelProto) -> tuple[float, float]:
    (clip,) = [n for n in model.graph.node if n.op_type == "Clip"]
    attrs = {a.name: a.f for a in clip.attribute}
    if attrs:
        return attrs["min"], attrs["max"]
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    lower, upper = (values[name] for name in clip.input[1:])
    assert lower.shape == upper.shape == ()
    return float(lower), float(upper)


@pytest.mark.parametrize("opset", [9, 11, 12, 13, 17])
@pytest.mark.parametrize("case", CLAMPS, ids=str)
def test_clamps(case: str, opset: int) -> None:
    template, ops, rewrites, bounds = CLAMPS[case]
    record, out = _run(_model(opset, _clamp_body(opset, template)))
    assert record.status == APPLIED, record.reason
    assert record.rewrites == rewrites
    assert op_counts(out) == ops
    assert record.max_rel < 1e-5
    if bounds is not None:
        assert _clip_bounds(out) == bounds


def test_clip_with_constant_node_bounds_merges() -> None:
    # TorchScript writes Clip bounds as Constant nodes; onnxscript's own merge rule fails on those.
    body = """
        lo = Constant <value = float {0.0}> ()
        hi = Constant <value = float {6.0}> ()
        r = Relu (x)
        y = Clip (r, lo, hi)"""
    model = make_model(f'<ir_version: 8, opset_import: ["" : 13]>\ng (float[N, 8] x) => (float[N, 8] y) {{{body}\n}}')
    record, out = _run(model)
    assert record.status == APPLIED, record.reason
    assert op_counts(out)["Clip"] == 1 and op_counts(out)["Relu"] == 0


def test_integer_min_max_becomes_clip_from_opset_12() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 13]>
        g (int32[N, 8] x) => (int32[N, 8] y) <int32 lo = {-1}, int32 hi = {2}> {
            a = Max (x, lo)
            y = Min (a, hi)
        }""")
    record, out = _run(model)
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Clip": 1}


CLAMP_DECLINES = {
    "disjoint_clips": ("c = Clip (x, zero, one)\ny = Clip (c, three, six)", "do not overlap"),
    "relu_of_negative_clip": ("c = Clip (x, neg2, lo)\ny = Relu (c)", "do not overlap"),
    "crossed_min_max": ("a = Max (x, hi)\ny = Min (a, lo)", "lower bound 2 is above upper bound -1"),
    "bound_not_constant": ("n = Neg (x)\na = Max (x, n)\ny = Min (a, hi)",
                           "the inner Max has no single constant operand"),
}


@pytest.mark.parametrize("case", CLAMP_DECLINES, ids=str)
def test_clamp_declines(case: str) -> None:
    body, reason = CLAMP_DECLINES[case]
    reasons = _declined(_model(13, body))
    assert any(reason in r for r in reasons), reasons


def test_clip_bound_fed_at_run_time_is_declined() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 8] x, float hi) => (float[N, 8] y) {
            r = Relu (x)
            y = Clip (r, , hi)
        }""")
    record, out = run_pass(FuseActivations(), model, {"x": (2, 8), "hi": ()})
    assert record.status == UNCHANGED
    assert any("'hi' is a graph input" in d.reason for d in record.declined)


def test_no_rules_for_a_model_without_activations() -> None:
    model = ir.serde.deserialize_model(_model(17, "y = Add (x, x)"))
    assert FuseActivations().rewrite_rules(model, PassContext()) == []
