"""Generated feeds that look like real ones: each integer input's kind is read from the graph
(or its name), and the values drawn follow it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwopt.feeds.inputs import generate_feeds, resolve_input_specs
from hwopt.feeds.kinds import FeedKind, plan_feed_kinds


def _model(nodes, inputs, outputs, initializers=(), domain_opsets=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, v) for d, v in domain_opsets)]
    return helper.make_model(graph, opset_imports=opsets)


def _ids(name: str, dtype=TensorProto.INT64):
    return helper.make_tensor_value_info(name, dtype, ["batch", "seq"])


def _table(name: str, rows: int, width: int = 4):
    return numpy_helper.from_array(np.zeros((rows, width), np.float32), name)


def _out(name: str):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _encoder_inputs() -> onnx.ModelProto:
    """ids -> Cast -> Gather(8000-row table); token_type_ids -> Gather(2 rows); a mask used as
    1 - mask; a float input; an integer with no use that bounds it."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["word", "ids32"], ["w"], name="word_embedding"),
        helper.make_node("Gather", ["types", "token_type_ids"], ["t"], name="type_embedding"),
        helper.make_node("Add", ["w", "t"], ["e"]),
        helper.make_node("Unsqueeze", ["attention_mask", "axes"], ["m4"]),
        helper.make_node("Cast", ["m4"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["inv"]),
        helper.make_node("Identity", ["flags"], ["flags_out"]),
        helper.make_node("Identity", ["x"], ["x_out"]),
    ]
    inits = [
        _table("word", 8000), _table("types", 2),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    inputs = [_ids("input_ids"), _ids("token_type_ids"), _ids("attention_mask"), _ids("flags", TensorProto.INT32),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    outputs = [_out("e"), _out("inv"), helper.make_tensor_value_info("flags_out", TensorProto.INT32, None),
               _out("x_out")]
    return _model(nodes, inputs, outputs, inits)


def test_kinds_read_from_the_graph_and_names() -> None:
    model = _encoder_inputs()
    kinds = plan_feed_kinds(model.graph, ["input_ids", "token_type_ids", "attention_mask", "flags", "x"])
    assert kinds["input_ids"] == FeedKind("ids", "graph", high=8000, detail="indexes the 8,000-row table of "
                                          "Gather 'word_embedding'")
    # The 2-row type table would give 0/1 ids; the name says segment ids, which are zeros.
    assert (kinds["token_type_ids"].kind, kinds["token_type_ids"].basis) == ("segment", "name")
    assert (kinds["attention_mask"].kind, kinds["attention_mask"].basis) == ("mask", "graph")
    assert "1 - x" in kinds["attention_mask"].detail
    assert kinds["flags"] == FeedKind("small")
    assert kinds["x"].kind == "noise"


def test_generated_values_follow_the_kinds() -> None:
    model = _encoder_inputs()
    specs = resolve_input_specs(model.graph, {"input_ids": (2, 128), "token_type_ids": (2, 128),
                                              "attention_mask": (2, 128), "flags": (2, 128)})
    feeds = generate_feeds(specs, seed=3)
    ids = feeds["input_ids"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 8000
    # Spread over the table, not stuck on rows 0 and 1: 256 draws cover most of the range.
    assert ids.max() > 6000 and len(np.unique(ids)) > 200
    assert (feeds["token_type_ids"] == 0).all()
    assert (feeds["attention_mask"] == 1).all()
    assert set(np.unique(feeds["flags"])) <= {0, 1}
    assert feeds["x"].dtype == np.float32
    # Deterministic.
    again = generate_feeds(specs, seed=3)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)


def test_names_decide_when_the_graph_does_not() -> None:
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in ("src_key_padding_mask", "position_ids", "lens")]
    inputs = [_ids("src_key_padding_mask", TensorProto.BOOL), _ids("position_ids"), _ids("lens")]
    outputs = [helper.make_tensor_value_info(f"{n}_out", t, None) for n, t in
               (("src_key_padding_mask", TensorProto.BOOL), ("position_ids", TensorProto.INT64),
                ("lens", TensorProto.INT64))]
    model = _model(nodes, inputs, outputs)
    specs = resolve_input_specs(model.graph, {"position_ids": (2, 5)})
    by_name = {s.name: s for s in specs}
    assert (by_name["src_key_padding_mask"].feed.kind, by_name["src_key_padding_mask"].feed.basis) == ("mask", "name")
    assert by_name["position_ids"].feed.kind == "positions"
    feeds = generate_feeds(specs)
    assert feeds["src_key_padding_mask"].all()
    assert feeds["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert "name" in by_name["position_ids"].feed.describe()


@pytest.mark.parametrize("op, extra", [("OneHot", "depth"), ("Gather", None)])
def test_integer_inputs_get_the_range_the_graph_allows(op: str, extra: str | None) -> None:
    if op == "OneHot":
        nodes = [helper.make_node("OneHot", ["k", "depth", "values"], ["y"], axis=-1)]
        inits = [numpy_helper.from_array(np.array(37, np.int64), "depth"),
                 numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "values")]
        inputs = [helper.make_tensor_value_info("k", TensorProto.INT64, [1, 64])]
        high = 37
    else:  # a Gather into a tensor computed at run time, whose axis length value_info records
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gather", ["r", "k"], ["y"], axis=1)]
        inits = []
        inputs = [helper.make_tensor_value_info("k", TensorProto.INT64, [1, 64]),
                  helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 11])]
        high = 11
    model = _model(nodes, inputs, [_out("y")], inits)
    model = onnx.shape_inference.infer_shapes(model)
    kind = plan_feed_kinds(model.graph, ["k"])["k"]
    assert (kind.kind, kind.basis, kind.high) == ("range", "graph", high)
    values = generate_feeds(resolve_input_specs(model.graph), seed=1)["k"]
    assert values.min() >= 0 and values.max() < high and values.max() >= 2


def test_onnxruntime_contrib_embedding_inputs_are_read_from_the_graph() -> None:
    node = helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids", "segment", "word", "pos", "seg", "gamma", "beta", "mask"],
        ["y", "mask_index"], domain="com.microsoft", name="emb")
    inits = [_table("word", 500), _table("pos", 128), _table("seg", 2),
             numpy_helper.from_array(np.ones(4, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(4, np.float32), "beta")]
    inputs = [_ids("input_ids", TensorProto.INT32), _ids("segment", TensorProto.INT32), _ids("mask", TensorProto.INT32)]
    model = _model([node], inputs, [_out("y")], inits, domain_opsets=[("com.microsoft", 1)])
    kinds = plan_feed_kinds(model.graph, ["input_ids", "segment", "mask"])
    assert (kinds["input_ids"].kind, kinds["input_ids"].high) == ("ids", 500)
    assert (kinds["segment"].kind, kinds["segment"].basis) == ("segment", "graph")
    assert (kinds["mask"].kind, kinds["mask"].basis) == ("mask", "graph")


def test_spec_records_how_feeds_are_made() -> None:
    spec = {s.name: s for s in resolve_input_specs(_encoder_inputs().graph)}["input_ids"]
    data = spec.to_dict()["generated_as"]
    assert data["kind"] == "ids" and data["high"] == 8000
    assert data["description"].startswith("ids uniform over 0..7999 (from the graph")


def test_an_integer_the_graph_tests_for_one_value_gets_that_value() -> None:
    # silero VAD: If(Equal(sr, 16000)) chooses the branch; 0 or 1 runs neither rate's path.
    nodes = [helper.make_node("Constant", [], ["rate"], value=numpy_helper.from_array(np.array(16000, np.int64))),
             helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="check_rate")]
    model = _model(nodes, [helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                   [helper.make_tensor_value_info("is16k", TensorProto.BOOL, None)])
    (spec,) = resolve_input_specs(model.graph)
    assert (spec.feed.kind, spec.feed.basis, spec.feed.high) == ("value", "graph", 16000)
    assert int(generate_feeds([spec])["sr"]) == 16000
    assert "compared with 16000" in spec.feed.describe()
