"""fuse_layernorm: every spelling of a written-out LayerNorm, with and without its affine part,
at both ReduceMean forms, and every reason to decline."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from passtest import make_model, op_counts, run_pass

from hwopt.passes.fuse_layernorm import FuseLayerNormPass
from hwopt.passes.pipeline import APPLIED, UNCHANGED

IR_VERSION = {16: 8, 17: 8, 18: 8}
D = 8


def _reduce_mean(opset: int, src: str, dst: str, axes: list[int]) -> str:
    """ReduceMean in the opset's form: axes an attribute before opset 18, an input from 18."""
    if opset < 18:
        return f"{dst} = ReduceMean<axes = {axes}>({src})"
    return f"{dst} = ReduceMean({src}, axes_{'_'.join(str(a).replace('-', 'm') for a in axes)})"


def _layernorm(
    opset: int = 17,
    *,
    square: str = "pow",
    normalize: str = "div",
    scale: str | None = "w",
    bias: str | None = "b",
    axes: tuple[int, ...] = (-1,),
    eps: str = "eps",
    eps_first: bool = False,
    affine_first: bool = False,
) -> str:
    """The written-out LayerNorm of r = Relu(x), ending in y."""
    lines = [_reduce_mean(opset, "r", "mean", list(axes)), "d = Sub(r, mean)"]
    lines.append("sq = Pow(d, two)" if square == "pow" else "sq = Mul(d, d)")
    lines.append(_reduce_mean(opset, "sq", "var", list(axes)))
    lines.append("ve = Add(eps, var)" if eps_first else f"ve = Add(var, {eps})")
    lines.append("std = Sqrt(ve)")
    steps = []
    if normalize == "div":
        steps.append("Div(d, std)")
    else:
        lines.append("inv = Reciprocal(std)")
        steps.append("Mul(d, inv)" if normalize == "reciprocal" else "Mul(inv, d)")
    if scale:
        steps.append(f"Mul({scale}, {{}})" if affine_first else f"Mul({{}}, {scale})")
    if bias:
        steps.append(f"Add({bias}, {{}})" if affine_first else f"Add({{}}, {bias})")
    previous = "d"
    for i, step in enumerate(steps):
        out = "y" if i == len(steps) - 1 else f"s{i}"
        lines.append(f"{out} = {step.format(previous) if '{}' in step else step}")
        previous = out
    return "\n".join(lines)


def _model(
    body: str,
    opset: int = 17,
    x_type: str = f"float[N, T, {D}]",
    constants: str = f"float[{D}] w, float[{D}] b",
    inputs: str = "",
    outputs: str = "",
    weights: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    axes_inputs = "int64[1] axes_m1 = {-1}, int64[2] axes_m2_m1 = {-2, -1}, int64[1] axes_1 = {1}"
    head = f'<ir_version: {IR_VERSION[opset]}, opset_import: ["" : {opset}]>'
    return make_model(f"""{head}
        g ({x_type} x{inputs}) => ({x_type.split(" ")[0].split("[")[0]}[N, T, {D}] y{outputs})
          <float two = {{2.0}}, float eps = {{1e-5}}, {axes_inputs}, {constants}> {{
            r = Relu(x)
            {body}
        }}""", weights)


def _layernorm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "LayerNormalization"]


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _fused(model: onnx.ModelProto, shapes=None, rewrites=None):
    record, out = run_pass(FuseLayerNormPass(), model, shapes or {"x": (2, 3, D)})
    assert record.status == APPLIED, record.reason
    if rewrites is not None:
        assert dict(record.rewrites) == rewrites
    assert record.max_rel < 1e-5
    assert not record.declined, [str(d) for d in record.declined]
    onnx.checker.check_model(out, full_check=True)
    return record, out


FULL = {"FuseLayerNorm": 1, "FoldScaleIntoLayerNorm": 1, "FoldBiasIntoLayerNorm": 1}


@pytest.mark.parametrize("normalize", ["div", "reciprocal", "reciprocal_first"])
@pytest.mark.parametrize("square", ["pow", "mul"])
def test_spellings(square: str, normalize: str) -> None:
    _, out = _fused(_model(_layernorm(square=square, normalize=normalize)), rewrites=FULL)
    assert op_counts(out) == {"Relu": 1, "LayerNormalization": 1}
    (node,) = _layernorm_nodes(out)
    # The model's weights are used as they are, under their own names.
    assert list(node.input) == ["r", "w", "b"]
    attributes = _attributes(node)
    assert attributes["axis"] == -1 and attributes["stash_type"] == 1
    assert attributes["epsilon"] == pytest.approx(1e-5)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize(
    "scale, bias",
    [(None, None), ("w", None), (None, "b"), ("w", "b")],
    ids=["plain", "scale", "bias", "both"],
)
def test_affine_parts_and_reduce_mean_forms(
    opset: int, scale: str | None, bias: str | None
) -> None:
    body = _layernorm(opset, scale=scale, bias=bias)
    rewrites = {"FuseLayerNorm": 1}
    if scale:
        rewrites["FoldScaleIntoLayerNorm"] = 1
    if bias:
        rewrites["FoldBiasIntoLayerNorm"] = 1
    _, out = _fused(_model(body, opset), rewrites=rewrites)
    assert op_counts(out) == {"Relu": 1, "LayerNormalization": 1}
    (node,) = _layernorm_nodes(out)
    assert len(node.input) == (3 if bias else 2)
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    if not scale:  # a ones scale of the normalized shape
        np.testing.assert_array_equal(weights[node.input[1]], np.ones(D, np.float32))


def test_operands_in_the_other_order() -> None:
    """Add(eps, var), Mul(scale, y) and Add(bias, y): the commuted forms match too."""
    _, out = _fused(_model(_layernorm(eps_first=True, affine_first=True)), rewrites=FULL)
    assert op_counts(out) == {"Relu": 1, "LayerNormalization": 1}


@pytest.mark.parametrize(
    "scale_shape",
    [f"[1, 1, {D}]", "[1]", "[]"],
    ids=["leading_ones", "one_element", "scalar"],
)
def test_scale_and_bias_that_broadcast_like_the_normalized_shape(scale_shape: str) -> None:
    constants = f"float{scale_shape} w, float{scale_shape} b"
    _, out = _fused(_model(_layernorm(), constants=constants), rewrites=FULL)
    (node,) = _layernorm_nodes(out)
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert weights[node.input[1]].shape == (D,) and weights[node.input[2]].shape == (D,)


@pytest.mark.parametrize("opset", [17, 18])
def test_two_trailing_axes(opset: int) -> None:
    """ReduceMean over [-2, -1] is LayerNormalization(axis=-2) with a [T, D] scale."""
    body = _layernorm(opset, axes=(-2, -1))
    constants = f"float[3, {D}] w, float[{D}] b"
    model = _model(body, opset, x_type=f"float[N, 3, {D}]", constants=constants)
    _, out = _fused(model, rewrites=FULL)
    (node,) = _layernorm_nodes(out)
    assert _attributes(node)["axis"] == -2
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert weights[node.input[2]].shape == (3, D)


def test_positive_last_axis() -> None:
    body = _layernorm().replace("axes = [-1]", "axes = [2]")
    _fused(_model(body), rewrites=FULL)


def _declined(model: onnx.ModelProto, shapes=None) -> tuple[list[str], onnx.ModelProto]:
    record, out = run_pass(FuseLayerNormPass(), model, shapes or {"x": (2, 3, D)})
    assert record.status == UNCHANGED, record.reason
    assert op_counts(out) == op_counts(model)
    return [d.reason for d in record.declined], out


def test_declined_below_opset_17() -> None:
    reasons, _ = _declined(_model(_layernorm(16), 16))
    assert reasons == [
        "LayerNormalization needs opset 17; the model imports opset 16 (upgrade_opset with "
        "target_opset=17 raises it)"
    ]


def test_declines_a_mean_over_another_axis() -> None:
    """Averaging over T is a normalization, but not one LayerNormalization does."""
    reasons, _ = _declined(_model(_layernorm(axes=(1,), scale=None, bias=None)))
    assert reasons == [
        "ReduceMean 'mean' averages over axes [1] of 'r' (rank 3), not its last axes: "
        "LayerNormalization normalizes the trailing axes only"
    ]


def test_declines_axes_that_are_not_contiguous() -> None:
    model = _model(_layernorm(axes=(0, 2), scale=None, bias=None))
    reasons, _ = _declined(model)
    assert reasons == [
        "ReduceMean 'mean' averages over axes [0, 2] of 'r' (rank 3), not its last axes: "
        "LayerNormalization normalizes the trailing axes only"
    ]


def test_scale_of_another_shape_stays_after_the_fused_normalization() -> None:
    """A per-position [T, D] scale is no LayerNormalization scale: the normalization is fused,
    the Mul stays, and the decline says why."""
    body = _layernorm(bias=None).replace("y = Mul(s0, w)", "[scale_mul] y = Mul(s0, w)")
    model = _model(body, x_type=f"float[N, 3, {D}]", constants=f"float[3, {D}] w")
    record, out = run_pass(FuseLayerNormPass(), model, {"x": (2, 3, D)})
    assert record.status == APPLIED, record.reason
    assert dict(record.rewrites) == {"FuseLayerNorm": 1}
    assert op_counts(out) == {"Relu": 1, "LayerNormalization": 1, "Mul": 1}
    assert [d.reason for d in record.declined] == [
        f"Mul 'scale_mul' not folded into the LayerNormalization of 'r': scale 'w' has shape "
        f"[3, {D}], which does not broadcast to the normalized shape [{D}] of 'r' (rank 3) alone; "
        f"LayerNormalization takes a scale of shape [{D}]"
    ]
    assert record.max_rel < 1e-5


def test_declines_a_shared_intermediate() -> None:
    """d = x - mean is also a graph output: the chain cannot go."""
    reasons, _ = _declined(_model(_layernorm(), outputs=f", float[N, T, {D}] d"))
    assert reasons and all("other uses" in reason for reason in reasons)


def test_declines_an_epsilon_fed_at_run_time() -> None:
    model = _model(_layernorm(eps="e"), inputs=", float e")
    reasons, _ = _declined(model, {"x": (2, 3, D), "e": ()})
    assert reasons == ["epsilon 'e' is a graph input, not a constant"]


def test_declines_an_exponent_other_than_two() -> None:
    body = _layernorm(scale=None, bias=None).replace("Pow(d, two)", "Pow(d, eps)")
    reasons, _ = _declined(_model(body))
    assert reasons == ["the exponent 'eps' is 1e-05, not 2"]


def test_declines_a_last_dim_not_known_statically() -> None:
    model = _model(_layernorm(scale=None, bias=None), x_type="float[N, T, C]")
    reasons, _ = _declined(model)
    assert reasons == [
        "the normalized dims [None] of 'r' are not all known statically: LayerNormalization "
        "needs a scale of that shape (simplify_shape_ops or static input shapes may make them "
        "known)"
    ]


def test_declines_float16() -> None:
    """LayerNormalization would compute in float32 what the written form computes in float16."""
    model = _model(
        _layernorm(scale=None, bias=None).replace("two", "two16").replace("eps)", "eps16)"),
        x_type=f"float16[N, T, {D}]",
        constants="float16 two16, float16 eps16",
        weights={"two16": np.float16(2.0), "eps16": np.float16(1e-3)},
    )
    reasons, _ = _declined(model)
    assert reasons == [
        "'r' is of type FLOAT16, not float: LayerNormalization computes in float "
        "(stash_type=1), which for another type is not the written arithmetic"
    ]


def test_declines_keepdims_zero() -> None:
    body = _layernorm(scale=None, bias=None).replace(
        "mean = ReduceMean<axes = [-1]>(r)", "mean = ReduceMean<axes = [-1], keepdims = 0>(r)"
    )
    # Sub then broadcasts the [N, T] mean against [N, T, D] along other axes: only valid for
    # T == D, and no LayerNorm.
    model = _model(body, x_type=f"float[N, {D}, {D}]")
    reasons, _ = _declined(model, {"x": (1, D, D)})
    assert reasons == [
        "ReduceMean 'mean' has keepdims=0: the Sub after it then broadcasts the mean against "
        "other axes than LayerNorm does"
    ]


def test_leaves_a_residual_add() -> None:
    """Add(LayerNorm(x), x) is a residual connection, not a bias: fused, nothing declined."""
    body = _layernorm(bias=None).replace("y = Mul(s0, w)", "s1 = Mul(s0, w)\ny = Add(s1, r)")
    record, out = run_pass(FuseLayerNormPass(), _model(body), {"x": (2, 3, D)})
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Relu": 1, "LayerNormalization": 1, "Add": 1}
    assert not record.declined
