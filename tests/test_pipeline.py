"""The pipeline verifies every pass and rolls back the ones that break the model."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from conftest import tiny_conv_model
from passtest import make_model

from hwopt.errors import UsageError
from hwopt.feeds.inputs import generate_feeds, resolve_input_specs, second_batch
from hwopt.passes.base import BIT_EXACT, Pass, PassContext, PassResult
from hwopt.passes.pipeline import APPLIED, ROLLED_BACK, SKIPPED, UNCHANGED, Pipeline
from hwopt.passes.registry import resolve
from hwopt.verify import run_model


class ScaleWeights(Pass):
    """Changes the numbers: multiplies the conv weight by (1 + factor)."""

    name = "scale_weights"
    description = "test pass"

    def __init__(self, factor: float):
        self.factor = factor

    def run(self, model, ctx):
        weight = model.graph.initializers["w"]
        weight.const_value = ir.tensor(weight.const_value.numpy() * (1 + self.factor))
        result = PassResult(model)
        result.rewrites["scaled"] = 1
        return result


class Raises(Pass):
    name = "raises"
    description = "test pass"

    def run(self, model, ctx):
        raise ValueError("boom")


class Dangles(Pass):
    """Produces an invalid graph: the Relu reads a value nothing produces."""

    name = "dangles"
    description = "test pass"

    def run(self, model, ctx):
        relu = next(n for n in model.graph if n.op_type == "Relu")
        relu.replace_input_with(0, ir.Value(name="ghost", type=ir.TensorType(ir.DataType.FLOAT)))
        result = PassResult(model)
        result.rewrites["dangled"] = 1
        return result


class DoesNothing(Pass):
    name = "does_nothing"
    description = "test pass"

    def run(self, model, ctx):
        return PassResult(model)


class AliasesAWeight(Pass):
    """Registers the conv weight's own tensor under a second name and reports no change: onnx-ir
    serializes such a tensor by renaming the proto it was read from."""

    name = "aliases_a_weight"
    description = "test pass"

    def run(self, model, ctx):
        weight = model.graph.initializers["w"]
        alias = ir.Value(name="w_alias", shape=weight.shape, type=weight.type, const_value=weight.const_value)
        model.graph.register_initializer(alias)
        return PassResult(model)


class NeedsNewOpset(Pass):
    name = "needs_new_opset"
    description = "test pass"
    min_opset = 99

    def run(self, model, ctx):  # pragma: no cover - must be skipped
        raise AssertionError("should not run")


class ExactScale(ScaleWeights):
    tolerance = BIT_EXACT


def _run(passes):
    model = tiny_conv_model()
    specs = resolve_input_specs(model.graph, {"x": (2, 3, 8, 8)})
    feeds = generate_feeds(specs)
    reference = run_model(model, feeds)
    return model, Pipeline(passes).run(model, PassContext(input_specs=specs), [feeds], [reference])


def test_numeric_break_is_rolled_back():
    model, result = _run([ScaleWeights(0.01)])
    (record,) = result.records
    assert record.status == ROLLED_BACK
    assert "over the pass's limit" in record.reason
    assert record.max_rel > 1e-3
    assert result.model is model  # rolled back to the input, untouched


def test_a_pass_that_touches_what_it_reads_leaves_the_input_model_intact():
    model, result = _run([AliasesAWeight(), DoesNothing()])
    assert [r.status for r in result.records] == [UNCHANGED, UNCHANGED]
    assert result.model is model
    assert model.SerializeToString() == tiny_conv_model().SerializeToString()


def test_change_within_tolerance_is_kept():
    _, result = _run([ScaleWeights(1e-7)])
    assert result.records[0].status == APPLIED
    assert result.records[0].max_rel < 1e-5


def test_bit_exact_tolerance_rejects_any_change():
    _, result = _run([ExactScale(1e-6)])
    assert result.records[0].status == ROLLED_BACK


def test_exception_is_rolled_back_and_reported():
    _, result = _run([Raises()])
    assert result.records[0].status == ROLLED_BACK
    assert result.records[0].reason == "the pass raised ValueError: boom"


def test_invalid_graph_is_rolled_back_and_pipeline_goes_on():
    _, result = _run([Dangles(), ScaleWeights(1e-7)])
    assert [r.status for r in result.records] == [ROLLED_BACK, APPLIED]
    assert result.records[0].reason.startswith("checker:")


def test_unchanged_and_skipped():
    model, result = _run([DoesNothing(), NeedsNewOpset()])
    assert [r.status for r in result.records] == [UNCHANGED, SKIPPED]
    assert "opset 17" in result.records[1].reason
    assert result.model is model


def test_outputs_follow_the_last_kept_pass():
    model, result = _run([ScaleWeights(1e-7)])
    specs = resolve_input_specs(model.graph, {"x": (2, 3, 8, 8)})
    fresh = run_model(result.model, generate_feeds(specs))
    np.testing.assert_array_equal(fresh["y"], result.outputs[0]["y"])


def test_unknown_pass_names_list_the_known_ones():
    with pytest.raises(UsageError, match="known passes: .*simplify"):
        resolve(["simplify", "no_such_pass"])


class BakeBatchOne(Pass):
    """Wrong for any batch but 1: replaces a [0, -1] flatten target by the constant [1, -1]."""

    name = "bake_batch_one"
    description = "test pass"

    def run(self, model, ctx):
        target = model.graph.initializers["target"]
        target.const_value = ir.tensor(np.array([1, -1], dtype=np.int64))
        result = PassResult(model)
        result.rewrites["baked"] = 1
        return result


def test_second_batch_size_catches_a_batch_baked_in():
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 2, 3] x) => (float[N, 6] y) <int64[2] target> { y = Reshape (x, target) }""",
        weights={"target": np.array([0, -1], dtype=np.int64)})
    specs = resolve_input_specs(model.graph)
    one = generate_feeds(specs)
    two = second_batch(specs, one)
    assert two is not None and two["x"].shape == (2, 2, 3)
    ctx = PassContext(specs)
    alone = Pipeline([BakeBatchOne()]).run(model, ctx, [one], [run_model(model, one)])
    assert alone.records[0].status == APPLIED  # batch 1 alone cannot tell
    both = Pipeline([BakeBatchOne()]).run(
        model, ctx, [one, two], [run_model(model, one), run_model(model, two)]
    )
    assert both.records[0].status == ROLLED_BACK
    assert "shape" in both.records[0].reason
