"""Targets on a CPU-only host: availability with reasons, the gpu alias, FP16 builds checked on
the CPU provider, TensorRT's options and calibration table, --require-target, --no-fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SAMPLES, invoke_cli
from passtest import make_model

from hwopt.errors import UsageError
from hwopt.targets import get_target, resolve_alias, target_names
from hwopt.targets.fp16 import FP16_TOLERANCE, check_fp16, convert_to_fp16, remove_cast_round_trips
from hwopt.targets.tensorrt import CALIBRATION_TABLE, ENGINE_CACHE, has_qdq
from hwopt.verify import run_model

SAMPLE = SAMPLES / "mobilenetv2_tiny.onnx"
GPU_HERE = "CUDAExecutionProvider" in ort.get_available_providers()


def test_registry_lists_every_target_and_the_alias() -> None:
    assert target_names() == ["cpu", "cuda", "tensorrt", "openvino", "gpu"]
    assert get_target("cpu").availability().available


@pytest.mark.skipif(GPU_HERE, reason="this host has the CUDA provider")
def test_unavailable_gpu_targets_say_why() -> None:
    for name in ("cuda", "tensorrt"):
        availability = get_target(name).availability()
        assert not availability.available
        assert "onnxruntime-gpu" in availability.reason or "does not start" in availability.reason
    concrete, note = resolve_alias("gpu")
    assert concrete == "cuda" and note.startswith("gpu resolved to cuda")


def test_unknown_target_options_are_errors() -> None:
    with pytest.raises(UsageError, match="unknown option.*warp.*known: device_id"):
        get_target("cuda", {"warp": 9})


def test_fp16_conversion_keeps_io_types_and_passes_its_check() -> None:
    model = onnx.load(str(SAMPLE))
    fp16, _ = convert_to_fp16(model)
    assert [i.type.tensor_type.elem_type for i in fp16.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in fp16.graph.output] == [onnx.TensorProto.FLOAT]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    feeds = [{"input": np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)}]
    check = check_fp16(fp16, feeds, [run_model(model, feeds[0])])
    assert check.passed, check.detail
    assert f">= {FP16_TOLERANCE['min_cosine']}" in check.detail


def test_cast_round_trips_are_removed() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) {
            h = Cast <to = 10> (x)
            f = Cast <to = 1> (h)
            y = Relu (f)
        }""")
    cleaned, removed = remove_cast_round_trips(model)
    assert removed == 2 and [n.op_type for n in cleaned.graph.node] == ["Relu"]


def test_qdq_models_are_recognised() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) <float s, uint8 z> {
            q = QuantizeLinear (x, s, z)
            y = DequantizeLinear (q, s, z)
        }""", weights={"s": np.array(0.1, np.float32), "z": np.array(0, np.uint8)})
    assert has_qdq(model) and not has_qdq(onnx.load(str(SAMPLE)))


def _json(proc):
    assert proc.returncode in (0, 3, 4), proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(GPU_HERE, reason="this host has the CUDA provider")
def test_cuda_build_without_a_gpu_is_built_checked_and_honest(tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = invoke_cli("optimize", SAMPLE, "--target", "cuda", "-o", out, "--json", "--bench-seconds", "0.2")
    assert proc.returncode == 0, proc.stderr
    build = json.loads(proc.stdout)["builds"][0]
    assert build["precision_label"] == "fp16" and not build["available"]
    assert build["latency"]["measured"] is False and "onnxruntime-gpu" in build["latency"]["not_measured_reason"]
    assert build["partition"]["measured"] is False
    assert build["checks"][0]["passed"] and build["checks"][0]["name"].startswith("fp16 outputs")
    assert build["providers"][0]["options"]["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert build["accuracy"]["min_cosine"] > 0.999
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["target"] == "cuda"
    proc = invoke_cli("optimize", SAMPLE, "--target", "cuda", "-o", out, "--require-target", "--no-bench")
    assert proc.returncode == 4 and "target cuda is not available" in proc.stderr


@pytest.mark.skipif(GPU_HERE, reason="this host has the CUDA provider")
def test_tensorrt_int8_writes_a_calibration_table(tmp_path: Path) -> None:
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((8, 1, 3, 96, 96)).astype(np.float32))
    out = tmp_path / "b"
    proc = invoke_cli("optimize", SAMPLE, "--target", "tensorrt", "--precision", "int8", "--calib", calib,
                      "-o", out, "--json", "--no-bench")
    build = _json(proc)["builds"][0]
    assert build["precision_label"] == "int8"
    options = build["providers"][0]["options"]
    assert options["trt_int8_enable"] == "True" and options["trt_int8_calibration_table_name"] == CALIBRATION_TABLE
    assert options["trt_engine_cache_path"] == ENGINE_CACHE  # relative: resolved inside the build
    assert (out / ENGINE_CACHE / CALIBRATION_TABLE).is_file() and (out / "trt_timing").is_dir()
    # In a fixed order, so the same build is the same bytes (the calibrator's order varies by run).
    ranges = list(json.loads((out / ENGINE_CACHE / "calibration.json").read_text()))
    assert ranges == sorted(ranges) and len(ranges) > 10
    assert not has_qdq(onnx.load(str(out / "model.onnx")))  # a calibration table, never Q/DQ too
    manifest = json.loads((out / "build.json").read_text())
    assert f"{ENGINE_CACHE}/{CALIBRATION_TABLE}" in manifest["files"]


def test_cpu_partition_has_no_fallback_and_no_fallback_passes(tmp_path: Path) -> None:
    proc = invoke_cli("optimize", SAMPLE, "-o", tmp_path / "b", "--precision", "fp32", "--no-bench",
                      "--no-fallback", "--json")
    assert proc.returncode == 0, proc.stderr
    build = json.loads(proc.stdout)["builds"][0]
    assert list(build["partition"]["nodes_per_provider"]) == ["CPUExecutionProvider"]
    assert build["partition"]["fallback_nodes"] == []
    # The CPU provider is the cpu target's own: nothing to disable.
    assert "config_entries" not in build["session_options"]


@pytest.mark.skipif(GPU_HERE, reason="this host has the CUDA provider")
def test_no_fallback_drops_the_cpu_provider_from_gpu_builds(tmp_path: Path) -> None:
    proc = invoke_cli("optimize", SAMPLE, "--target", "cuda", "-o", tmp_path / "b", "--no-bench",
                      "--no-fallback", "--json")
    build = _json(proc)["builds"][0]
    assert [p["name"] for p in build["providers"]] == ["CUDAExecutionProvider"]
    assert build["session_options"]["config_entries"]["session.disable_cpu_ep_fallback"] == "1"


def test_target_option_flag(tmp_path: Path) -> None:
    proc = invoke_cli("optimize", SAMPLE, "--target", "cuda", "-o", tmp_path / "b", "--no-bench", "--json",
                      "--target-option", "cuda.conv_algo_search=HEURISTIC")
    build = _json(proc)["builds"][0]
    assert build["providers"][0]["options"]["cudnn_conv_algo_search"] == "HEURISTIC"
    proc = invoke_cli("optimize", SAMPLE, "-o", tmp_path / "c", "--target-option", "cuda_graph")
    assert proc.returncode == 2 and "TARGET.KEY=VALUE" in proc.stderr


def test_several_targets_one_run_one_comparing_report(tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = invoke_cli("optimize", "--no-memory-search", SAMPLE, "--target", "cpu,cuda,tensorrt,gpu", "-o", out, "--precision", "fp32",
                      "--no-bench", "--json")
    report = _json(proc)
    assert [b["target"] for b in report["builds"]] == ["cpu", "cuda", "tensorrt"]  # gpu is cuda or tensorrt
    for target in ("cpu", "cuda", "tensorrt"):
        assert (out / target / "build.json").is_file()
        per_target = json.loads((out / target / "report.json").read_text())
        assert [b["target"] for b in per_target["builds"]] == [target]
    assert json.loads((out / "report.json").read_text())["builds"] == report["builds"]
    assert "Targets compared" in (out / "report.md").read_text()


@pytest.mark.parametrize("name, options, precision, expect", [
    ("cuda", {"cuda_graph": True}, "fp16", {"enable_cuda_graph": "0"}),  # dynamic batch: graphs turned off
    ("tensorrt", {}, "fp32", {"trt_fp16_enable": "False", "trt_int8_enable": "False"}),
])
def test_finalize_returns_what_it_decides_and_leaves_the_target_alone(tmp_path: Path, name, options, precision,
                                                                       expect) -> None:
    from hwopt.feeds.inputs import resolve_input_specs
    from hwopt.targets import BuildContext

    target = get_target(name, options)
    before = (dict(target.options), target.providers())
    model = onnx.load(str(SAMPLE))
    specs = resolve_input_specs(model.graph, {})
    feeds = [{"input": np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)}]
    ctx = BuildContext(build_dir=tmp_path, specs=specs, feeds=feeds, references=[run_model(model, feeds[0])],
                       precision=precision)
    build = target.finalize(model, ctx)
    assert build.providers is not None
    assert expect.items() <= build.providers[0][1].items()
    assert (dict(target.options), target.providers()) == before


def test_capabilities_are_attributes_not_names() -> None:
    assert get_target("cpu").cpu_provider and not get_target("cpu").tuning_variants
    for name in ("cuda", "tensorrt", "openvino"):
        assert not get_target(name).cpu_provider
    assert {label for label, _, _ in get_target("cuda").tuning_variants} == {"cudnn-heuristic", "cuda-nhwc"}
