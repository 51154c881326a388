"""simplify (onnxsim): folds constants and BatchNorm, and stays within tolerance."""

from __future__ import annotations

from conftest import tiny_conv_model

from hwopt.feeds.inputs import generate_feeds, resolve_input_specs
from hwopt.passes.base import PassContext
from hwopt.passes.pipeline import APPLIED, Pipeline
from hwopt.passes.registry import resolve
from hwopt.verify import run_model


def test_simplify_folds_batchnorm_and_verifies():
    model = tiny_conv_model()
    specs = resolve_input_specs(model.graph, {"x": (2, 3, 8, 8)})
    feeds = generate_feeds(specs)
    result = Pipeline(resolve(["simplify"])).run(
        model, PassContext(specs), [feeds], [run_model(model, feeds)]
    )
    (record,) = result.records
    assert record.status == APPLIED
    assert record.nodes_before == 3 and record.nodes_after == 2
    assert [n.op_type for n in result.model.graph.node] == ["Conv", "Relu"]
    assert record.max_rel < 1e-5
    # The dynamic batch dimension survives.
    assert result.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
