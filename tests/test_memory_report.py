"""The memory section of the report, memory_plan.json, and the RSS probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from conftest import SAMPLES, fp32_options, save, tiny_conv_model
from onnx import TensorProto, helper

from hwopt.feeds.inputs import resolve_input_specs
from hwopt.memory.analysis import analyze_memory
from hwopt.memory.buffers import Buffer
from hwopt.memory.planner import MemoryPlan, Placement, check_plan
from hwopt.memory.probe import measure_session_memory
from hwopt.optimize import optimize


def test_memory_section_and_plan_file(tmp_path: Path) -> None:
    report = optimize(SAMPLES / "inception_tiny.onnx",
                      fp32_options(output_dir=tmp_path / "b", measure=False))
    memory = report.builds[0].memory
    before, after = memory.original, memory.build
    assert before.peak_live_bytes == 896 * 24 * 24 * 4
    assert after.peak_live_bytes == 624 * 24 * 24 * 4
    assert memory.reorder["peak_live_bytes_after"] == after.peak_live_bytes
    for analysis in (before, after):
        assert analysis.lower_bound_bytes <= analysis.planned_arena_bytes <= 1.05 * analysis.lower_bound_bytes
        assert analysis.planned_arena_bytes <= analysis.naive_activation_bytes
        assert analysis.unknown_size_tensors == []
    assert memory.not_measured == "measurement skipped (--no-bench)"

    plan = json.loads((tmp_path / "b" / "memory_plan.json").read_text())
    assert plan["schema"] == "hwopt.memory_plan/1" and plan["arena_bytes"] == after.planned_arena_bytes
    buffers = [Buffer(t["tensor"], t["size"], t["first_use"], t["last_use"]) for t in plan["tensors"]]
    placements = tuple(Placement(t["tensor"], t["offset"], t["size"], t["first_use"], t["last_use"])
                       for t in plan["tensors"])
    check_plan(buffers, MemoryPlan(plan["strategy"], plan["arena_bytes"], placements))
    manifest = json.loads((tmp_path / "b" / "build.json").read_text())
    assert "memory_plan.json" in manifest["files"]
    assert manifest["session_options"]["execution_order"] == "priority_based"


def test_probe_measures_a_session_in_its_own_process(tmp_path: Path) -> None:
    model = save(tiny_conv_model(), tmp_path / "m.onnx")
    feeds = tmp_path / "f.npz"
    np.savez(feeds, x=np.zeros((64, 3, 8, 8), np.float32))
    measured = measure_session_memory(
        model, [{"name": "CPUExecutionProvider", "options": {}}],
        {"graph_optimization_level": "all"}, feeds, runs=2,
    )
    assert 0 < measured.baseline_bytes <= measured.after_load_bytes <= measured.peak_bytes
    assert measured.session_bytes == measured.peak_bytes - measured.baseline_bytes


def _qlinear_model() -> onnx.ModelProto:
    # onnx's shape inference knows nothing of com.microsoft's QLinear* ops (an INT8 build's).
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("QLinearSigmoid", ["q", "s", "z", "s", "z"], ["qs"], domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["qs", "s", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("z", TensorProto.UINT8, [], [128])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_sizes_shape_inference_cannot_give_are_observed() -> None:
    model = _qlinear_model()
    specs = resolve_input_specs(model.graph)
    assert analyze_memory(model, specs).unknown_size_tensors == ["qs"]
    observed = analyze_memory(model, specs, feeds={"x": np.zeros((1, 4, 8), np.float32)})
    assert observed.unknown_size_tensors == []
    assert observed.output_bytes == 4 * 8 * 4
    assert observed.naive_activation_bytes == 2 * 64  # q and qs: 32 uint8 each, 64-byte aligned


def test_observation_of_a_model_that_does_not_run_leaves_sizes_unknown() -> None:
    model = _qlinear_model()
    specs = resolve_input_specs(model.graph)
    wrong = analyze_memory(model, specs, feeds={"x": np.zeros((2, 3), np.float32)})
    assert wrong.unknown_size_tensors == ["qs"]
