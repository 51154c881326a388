"""fold_pad: Pad into Conv, AveragePool and MaxPool across Pad's three signatures, and every
reason to decline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from passtest import make_model, op_counts, run_pass

from hwopt.passes.fold_pad import FoldPad
from hwopt.passes.pipeline import APPLIED, UNCHANGED

# Pad-2 (pads and value as attributes), Pad-11/13 (pads and constant_value as inputs), Pad-18
# and later (an axes input too).
OPSETS = [10, 11, 13, 18, 21]
SHAPES = {"x": (2, 3, 8, 8)}


def _header(opset: int) -> str:
    return f'<ir_version: {10 if opset >= 21 else 8}, opset_import: ["" : {opset}]>\n'


def _pad(
    opset: int,
    src: str,
    top_left: int = 1,
    bottom_right: int = 1,
    value: str | None = "0.0",
    mode: str = "constant",
) -> tuple[str, str]:
    """A Pad of ``src`` on H and W written for ``opset``: (node line, initializers it needs).
    From opset 11 the value is an initializer ``pv``; ``value=None`` leaves it to ``weights``."""
    a, b = top_left, bottom_right
    pv = "float pv" if value is None else f"float pv = {{{value}}}"
    mode_attr = f'mode = "{mode}"'
    if opset < 11:
        attrs = f"pads = [0, 0, {a}, {a}, 0, 0, {b}, {b}], value = {value}, {mode_attr}"
        return f"p = Pad <{attrs}> ({src})", ""
    if opset >= 18:
        inits = f"int64[4] pads = {{{a}, {a}, {b}, {b}}}, {pv}, int64[2] axes = {{-2, -1}}"
        return f"p = Pad <{mode_attr}> ({src}, pads, pv, axes)", inits
    inits = f"int64[8] pads = {{0, 0, {a}, {a}, 0, 0, {b}, {b}}}, {pv}"
    return f"p = Pad <{mode_attr}> ({src}, pads, pv)", inits


def _model(opset: int, out_shape: str, body: str, inits: str, extra: str = "", weights=None):
    decls = ", ".join(part for part in (inits, extra) if part)
    text = _header(opset) + f"""
        g (float[N, 3, 8, 8] x) => (float{out_shape} y) <{decls}> {{
            {body}
        }}"""
    return make_model(text, weights)


# name: (producer of the Pad's input or "", Pad args, consumer line, output shape, extra inits)
FOLDS = {
    "conv": ("", {}, "y = Conv (p, w)", "[N, 4, 8, 8]", "float[4, 3, 3, 3] w"),
    "conv_with_own_pads_and_bias": (
        "", {"top_left": 1, "bottom_right": 2},
        "y = Conv <pads = [1, 0, 0, 1], strides = [2, 2]> (p, w, b)", "[N, 4, 5, 5]",
        "float[4, 3, 3, 3] w, float[4] b",
    ),
    "average_pool": ("", {}, "y = AveragePool <kernel_shape = [3, 3]> (p)", "[N, 3, 8, 8]", ""),
    "average_pool_counting_its_pads": (
        "", {"top_left": 1, "bottom_right": 0},
        "y = AveragePool <kernel_shape = [3, 3], pads = [0, 0, 1, 1], count_include_pad = 1> (p)",
        "[N, 3, 8, 8]", "",
    ),
    "average_pool_ceil_without_partial_window": (
        "", {},
        "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (p)",
        "[N, 3, 5, 5]", "",
    ),
    "max_pool_after_relu": (
        "r = Relu (x)", {}, "y = MaxPool <kernel_shape = [3, 3]> (p)", "[N, 3, 8, 8]", "",
    ),
    "max_pool_after_sigmoid": (
        "r = Sigmoid (x)", {}, "y = MaxPool <kernel_shape = [3, 3], strides = [2, 2]> (p)",
        "[N, 3, 4, 4]", "",
    ),
    "max_pool_after_clip_below_its_min": (
        "clip", {"value": "-1.0"}, "y = MaxPool <kernel_shape = [3, 3]> (p)", "[N, 3, 8, 8]", "",
    ),
}


def _clip(opset: int) -> tuple[str, str]:
    if opset < 11:
        return "r = Clip <min = 0.0, max = 6.0> (x)", ""
    return "r = Clip (x, lo, hi)", "float lo = {0.0}, float hi = {6.0}"


@pytest.mark.parametrize("opset", OPSETS, ids=lambda o: f"opset{o}")
@pytest.mark.parametrize("case", FOLDS, ids=str)
def test_folds(case: str, opset: int) -> None:
    producer, pad_args, consumer, out_shape, extra = FOLDS[case]
    lines, src = [], "x"
    if producer == "clip":
        producer, clip_inits = _clip(opset)
        extra = ", ".join(part for part in (extra, clip_inits) if part)
    if producer:
        lines.append(producer)
        src = "r"
    pad_line, inits = _pad(opset, src, **pad_args)
    body = "\n            ".join([*lines, pad_line, consumer])
    model = _model(opset, out_shape, body, inits, extra)
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == APPLIED, record.reason
    assert sum(record.rewrites.values()) == 1
    assert "Pad" not in op_counts(out)
    assert op_counts(out) == op_counts(model) - Counter({"Pad": 1})
    assert record.max_rel < 1e-5
    if "AveragePool" in consumer:
        (pool,) = out.graph.node
        assert {a.name: a.i for a in pool.attribute}["count_include_pad"] == 1


@pytest.mark.parametrize("opset", [10, 13, 18], ids=lambda o: f"opset{o}")
def test_max_pool_absorbs_a_pad_of_minus_infinity_on_any_input(opset: int) -> None:
    pad_line, inits = _pad(opset, "x", value="-inf" if opset < 11 else None)
    model = _model(opset, "[N, 3, 8, 8]", f"{pad_line}\n y = MaxPool <kernel_shape = [3, 3]> (p)",
                   inits, weights=None if opset < 11 else {"pv": np.float32(-np.inf)})
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"MaxPool": 1}


@pytest.mark.parametrize(
    "opset, pad_line, inits",
    [
        (13, "p = Pad (x, pads)", "int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}"),
        (18, "p = Pad (x, pads, , axes)", "int64[4] pads = {1, 1, 1, 1}, int64[2] axes = {2, 3}"),
    ],
    ids=["no_constant_value", "axes_without_constant_value"],
)
def test_folds_pad_without_constant_value_input(opset: int, pad_line: str, inits: str) -> None:
    model = _model(opset, "[N, 4, 8, 8]", f"{pad_line}\n y = Conv (p, w)", inits,
                   "float[4, 3, 3, 3] w")
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Conv": 1}
    assert record.max_rel < 1e-5


def test_a_pad_shared_by_two_consumers_goes_once_both_absorb_it() -> None:
    model = make_model(_header(13) + """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 3, 8, 8] z)
          <float[4, 3, 3, 3] w, int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}> {
            r = Relu (x)
            p = Pad (r, pads)
            y = Conv (p, w)
            z = MaxPool <kernel_shape = [3, 3]> (p)
        }""")
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == APPLIED, record.reason
    assert record.rewrites == {"FoldPadIntoConv": 1, "FoldPadIntoMaxPool": 1}
    assert op_counts(out) == {"Relu": 1, "Conv": 1, "MaxPool": 1}
    assert record.max_rel < 1e-5


def test_a_pad_with_another_consumer_stays() -> None:
    model = make_model(_header(13) + """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y, float[N, 3, 10, 10] z)
          <float[4, 3, 3, 3] w, int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}> {
            p = Pad (x, pads)
            y = Conv (p, w)
            z = Sigmoid (p)
        }""")
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == APPLIED, record.reason
    assert op_counts(out) == {"Pad": 1, "Conv": 1, "Sigmoid": 1}


def _declined(opset: int, body: str, out_shape: str, inits: str = "", extra: str = "") -> list[str]:
    model = _model(opset, out_shape, body, inits, extra)
    record, out = run_pass(FoldPad(), model, SHAPES)
    assert record.status == UNCHANGED, record.rewrites
    assert op_counts(out) == op_counts(model)
    return [d.reason for d in record.declined]


@pytest.mark.parametrize("opset", OPSETS, ids=lambda o: f"opset{o}")
def test_declines_nonzero_value_into_conv(opset: int) -> None:
    pad_line, inits = _pad(opset, "x", value="1.0")
    body = f"{pad_line}\n y = Conv (p, w)"
    reasons = _declined(opset, body, "[N, 4, 8, 8]", inits, "float[4, 3, 3, 3] w")
    assert any("Conv pads with zeros; the Pad's value 1 is not 0" in r for r in reasons), reasons


@pytest.mark.parametrize("opset", OPSETS, ids=lambda o: f"opset{o}")
def test_declines_reflect_mode(opset: int) -> None:
    pad_line, inits = _pad(opset, "x", mode="reflect")
    body = f"{pad_line}\n y = Conv (p, w)"
    reasons = _declined(opset, body, "[N, 4, 8, 8]", inits, "float[4, 3, 3, 3] w")
    assert any("mode 'reflect'" in r for r in reasons), reasons


@pytest.mark.parametrize("opset", OPSETS, ids=lambda o: f"opset{o}")
@pytest.mark.parametrize("producer", ["", "r = Tanh (x)", "clip_negative"])
def test_declines_max_pool_after_possibly_negative_input(opset: int, producer: str) -> None:
    extra, src = "", "x"
    if producer == "clip_negative":
        producer = "r = Clip <min = -1.0> (x)" if opset < 11 else "r = Clip (x, lo)"
        extra = "" if opset < 11 else "float lo = {-1.0}"
    if producer:
        src = "r"
    pad_line, inits = _pad(opset, src)
    body = f"{producer}\n {pad_line}\n y = MaxPool <kernel_shape = [3, 3]> (p)"
    reasons = _declined(opset, body, "[N, 3, 8, 8]", inits, extra)
    expected = (
        "MaxPool pads with -inf; the Pad's value 0 is only equivalent when the input is "
        "known non-negative"
    )
    assert any(expected in r for r in reasons), reasons


@pytest.mark.parametrize(
    "pad_args, consumer, out_shape, expected",
    [
        ({}, "y = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (p)", "[N, 3, 10, 10]",
         "count_include_pad=0"),
        ({"value": "1.0"}, "y = AveragePool <kernel_shape = [3, 3]> (p)", "[N, 3, 8, 8]",
         "the Pad's value 1 is not 0"),
        ({"top_left": 2, "bottom_right": 2},
         "y = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = 1> (p)",
         "[N, 3, 12, 12]", "smaller than the kernel"),
        ({}, "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1> (p)",
         "[N, 3, 5, 5]", "partial last window"),
        ({}, "y = MaxPool <kernel_shape = [3, 3], dilations = [2, 2]> (p)", "[N, 3, 6, 6]",
         "dilated"),
        ({}, 'y = Conv <auto_pad = "SAME_UPPER"> (p, w)', "[N, 4, 10, 10]", "auto_pad=SAME_UPPER"),
        ({"top_left": -1}, "y = Conv (p, w)", "[N, 4, 6, 6]", "crops"),
    ],
    ids=["avgpool_excluding_own_pads", "avgpool_nonzero_value", "pool_pads_reach_kernel",
         "ceil_mode_partial_window", "dilated_pool", "conv_auto_pad", "negative_pads"],
)
def test_declines(pad_args, consumer, out_shape, expected) -> None:
    pad_line, inits = _pad(13, "r", **pad_args)
    body = f"r = Relu (x)\n {pad_line}\n {consumer}"
    weight = "float[4, 3, 3, 3] w" if "Conv" in consumer else ""
    reasons = _declined(13, body, out_shape, inits, weight)
    assert any(expected in r for r in reasons), reasons


def test_declines_padding_the_channel_axis() -> None:
    model = make_model(_header(13) + """
        g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
          <float[4, 4, 1, 1] w, int64[8] pads = {0, 1, 0, 0, 0, 0, 0, 0}> {
            p = Pad (x, pads)
            y = Conv (p, w)
        }""")
    record, _ = run_pass(FoldPad(), model, SHAPES)
    assert record.status == UNCHANGED
    assert any("batch or channel axis" in d.reason for d in record.declined), record.declined


def test_declines_pads_that_a_caller_can_override() -> None:
    # An initializer that is also a graph input is only a default: callers may feed other pads.
    model = make_model(_header(13) + """
        g (float[N, 3, 8, 8] x, int64[8] pads) => (float[N, 4, 8, 8] y)
          <float[4, 3, 3, 3] w, int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}> {
            p = Pad (x, pads)
            y = Conv (p, w)
        }""")
    record, _ = run_pass(FoldPad(), model, SHAPES)
    assert record.status == UNCHANGED
    assert any("pads are not a constant" in d.reason for d in record.declined), record.declined
