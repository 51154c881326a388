"""Input shapes: parsing --input-shape, resolving symbolic dims, generated and given feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from hwopt.errors import InputSpecError
from hwopt.feeds.inputs import (
    generate_feeds,
    load_feeds,
    parse_shape_option,
    parse_shape_options,
    resolve_input_specs,
)

TWO_INPUTS = onnx.parser.parse_model("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, seq, 8] a, int64[batch, seq] b, float[4] w) => (float[batch, seq, 8] y) {
    y = Identity (a)
}
""")


def test_parse_shape_option() -> None:
    assert parse_shape_option("input=1x3x224x224") == ("input", (1, 3, 224, 224))
    assert parse_shape_option("odd=name=2x2") == ("odd=name", (2, 2))
    assert parse_shape_option("scalar=") == ("scalar", ())


@pytest.mark.parametrize("text", ["input", "=1x2", "input=1x", "input=a", "input=0x3", "input=-1"])
def test_parse_shape_option_rejects(text: str) -> None:
    with pytest.raises(InputSpecError):
        parse_shape_option(text)


def test_conflicting_repeats_rejected() -> None:
    with pytest.raises(InputSpecError, match="twice"):
        parse_shape_options(["a=1x2", "a=1x3"])


def test_defaults_are_recorded() -> None:
    specs = resolve_input_specs(TWO_INPUTS.graph)
    assert [s.name for s in specs] == ["a", "b", "w"]
    a = specs[0]
    assert a.shape == (1, 1, 8)
    assert a.defaulted == ("a[0] (batch)", "a[1] (seq)")


def test_initializer_inputs_are_not_fed() -> None:
    model = onnx.ModelProto()
    model.CopyFrom(TWO_INPUTS)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(4, np.float32), "w"))
    assert [s.name for s in resolve_input_specs(model.graph)] == ["a", "b"]


def test_symbolic_dims_propagate_between_inputs() -> None:
    specs = resolve_input_specs(TWO_INPUTS.graph, {"a": (2, 5, 8)})
    by_name = {s.name: s for s in specs}
    assert by_name["a"].shape == (2, 5, 8)
    assert by_name["b"].shape == (2, 5) and by_name["b"].defaulted == ()


@pytest.mark.parametrize(
    "override, message",
    [
        ({"nope": (1,)}, "unknown input"),
        ({"a": (1, 2)}, "rank"),
        ({"a": (1, 2, 9)}, "fixed to 8"),
    ],
)
def test_bad_overrides(override, message) -> None:
    with pytest.raises(InputSpecError, match=message):
        resolve_input_specs(TWO_INPUTS.graph, override)


def test_generated_feeds_are_deterministic() -> None:
    specs = resolve_input_specs(TWO_INPUTS.graph, {"a": (2, 3, 8)})
    first, second = generate_feeds(specs, seed=7), generate_feeds(specs, seed=7)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert first["a"].dtype == np.float32 and first["b"].dtype == np.int64


def test_load_feeds_checks_names_types_and_shapes(tmp_path: Path) -> None:
    specs = resolve_input_specs(TWO_INPUTS.graph)
    good = tmp_path / "good.npz"
    np.savez(good, a=np.zeros((2, 3, 8), np.float32), b=np.zeros((2, 3), np.int64),
             w=np.zeros(4, np.float32))
    feeds = load_feeds(good, specs)
    assert feeds["a"].shape == (2, 3, 8)

    wrong_type = tmp_path / "wrong_type.npz"
    np.savez(wrong_type, a=np.zeros((2, 3, 8), np.float64), b=np.zeros((2, 3), np.int64),
             w=np.zeros(4, np.float32))
    with pytest.raises(InputSpecError, match="float64"):
        load_feeds(wrong_type, specs)

    missing = tmp_path / "missing.npz"
    np.savez(missing, a=np.zeros((2, 3, 8), np.float32))
    with pytest.raises(InputSpecError, match="do not match"):
        load_feeds(missing, specs)

    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, a=np.zeros((2, 3, 7), np.float32), b=np.zeros((2, 3), np.int64),
             w=np.zeros(4, np.float32))
    with pytest.raises(InputSpecError, match="declares"):
        load_feeds(wrong_shape, specs)


def test_question_mark_dims_are_independent() -> None:
    # PaddlePaddle exports write "?" for every dynamic dimension; they are not one symbol.
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 11]>
    g (float[?, 3, ?, ?] x) => (float[?, 3, ?, ?] y) { y = Identity (x) }
    """)
    specs = resolve_input_specs(model.graph, {"x": (1, 3, 48, 192)})
    assert specs[0].shape == (1, 3, 48, 192)
