"""drop_initializer_inputs: weights listed as graph inputs (IR < 4) become constants, so the
folds after it apply; the inputs a caller feeds stay as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import fp32_options
from onnx import TensorProto, helper, numpy_helper
from passtest import op_counts, run_pass

from hwopt.optimize import optimize
from hwopt.passes.drop_initializer_inputs import DropInitializerInputs
from hwopt.passes.pipeline import APPLIED, UNCHANGED

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _ir3_conv_batchnorm() -> onnx.ModelProto:
    """Conv + BatchNorm with every weight also a graph input, as IR 3 requires."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "s": rng.random(4).astype(np.float32) + 0.5, "b": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32), "var": rng.random(4).astype(np.float32) + 0.5,
    }
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in weights.items()]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(a, n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    onnx.checker.check_model(model)
    return model


def test_weight_inputs_are_dropped_and_the_ir_version_raised() -> None:
    model = _ir3_conv_batchnorm()
    record, out = run_pass(DropInitializerInputs(), model)
    assert record.status == APPLIED and record.max_abs == 0  # bit for bit
    assert [vi.name for vi in out.graph.input] == ["x"]
    assert out.ir_version == 4 and len(out.graph.initializer) == 5
    assert record.rewrites == {"initializer inputs dropped": 5}


def test_a_model_without_such_inputs_is_unchanged() -> None:
    model = _ir3_conv_batchnorm()
    del model.graph.input[1:]
    model.ir_version = 4
    record, _ = run_pass(DropInitializerInputs(), model)
    assert record.status == UNCHANGED


def test_the_batchnorm_folds_once_its_statistics_are_weights(tmp_path: Path) -> None:
    path = tmp_path / "ir3.onnx"
    onnx.save(_ir3_conv_batchnorm(), str(path))
    report = optimize(path, fp32_options(output_dir=tmp_path / "b", measure=False))
    (build,) = report.builds
    assert op_counts(onnx.load(str(tmp_path / "b" / "model.onnx"))) == {"Conv": 1}
    assert build.accuracy.max_rel < 1e-5
    # Opting out keeps the weights overridable, and the BatchNorm with them.
    report = optimize(path, fp32_options(output_dir=tmp_path / "kept", measure=False,
                                         skip_passes=["drop_initializer_inputs"]))
    assert op_counts(onnx.load(str(tmp_path / "kept" / "model.onnx")))["BatchNormalization"] == 1


@pytest.mark.skipif(not (LIGHT / "light_resnet50.onnx").is_file(), reason="this onnx wheel ships no light models")
def test_light_resnet50_folds_like_onnxslim(tmp_path: Path) -> None:
    # 168 nodes before (BatchNorms left unfolded); onnxslim leaves 123.
    report = optimize(LIGHT / "light_resnet50.onnx", fp32_options(output_dir=tmp_path / "b", measure=False))
    (build,) = report.builds
    assert build.optimized.nodes <= 123
    assert op_counts(onnx.load(str(tmp_path / "b" / "model.onnx")))["BatchNormalization"] == 0
