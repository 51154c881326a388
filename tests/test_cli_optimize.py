"""End to end through the real command line, on every sample model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SAMPLE_MODELS, SAMPLE_SHAPES, SAMPLES, invoke_cli, run_cli, sha256

from hwopt.targets import get_target

BUILD_FILES = {"model.onnx", "build.json", "report.json", "report.md", "memory_plan.json"}


@pytest.mark.parametrize("sample", SAMPLE_MODELS, ids=lambda p: p.stem)
def test_optimize_json_builds_every_sample(sample: Path, tmp_path: Path) -> None:
    before = sha256(sample)
    out = tmp_path / "build"
    shapes = [arg for s in SAMPLE_SHAPES.get(sample.stem, []) for arg in ("--input-shape", s)]
    proc = run_cli("optimize", sample, "--target", "cpu", "--json", "-o", out,
                   "--bench-seconds", "0.2", "--precision", "fp32", *shapes)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout is the JSON document and nothing else

    assert sha256(sample) == before
    assert BUILD_FILES <= {p.name for p in out.iterdir()}
    assert report["schema"] == "hwopt.report/1"
    assert report == json.loads((out / "report.json").read_text())
    (build,) = report["builds"]
    assert build["target"] == "cpu" and build["build_dir"] == str(out)
    assert build["accuracy"]["max_rel"] <= 1e-4
    assert build["optimized"]["nodes"] < build["original"]["nodes"]
    assert build["latency"]["measured"] and build["latency"]["speedup_p50"] > 0
    assert build["latency"]["optimized"]["runs"] >= 10
    memory = build["memory"]
    assert memory["measured"]["original"]["session_bytes"] > 0
    assert memory["measured"]["build"]["session_bytes"] > 0
    assert memory["build"]["planned_arena_bytes"] <= 1.05 * memory["build"]["lower_bound_bytes"]
    assert memory["build"]["peak_live_bytes"] <= memory["original"]["peak_live_bytes"]
    # The pipeline's passes; a measured variant's rewrite (the transformer fusions) goes in
    # front of them where that variant raced faster, and after them, marked not kept, where not.
    names = [p["name"] for p in build["passes"]]
    choice = build["graph_choice"]
    if choice is not None and choice["chosen"] != "pipeline":
        assert names == ["fuse_transformer", *get_target("cpu").default_passes]
    else:
        pipeline = list(get_target("cpu").default_passes)
        assert names[:len(pipeline)] == pipeline
        assert all(p["status"] == "not_kept" for p in build["passes"][len(pipeline):])
    assert all(p["status"] != "rolled_back" for p in build["passes"]), build["passes"]

    manifest = json.loads((out / "build.json").read_text())
    assert manifest["schema"] == "hwopt.build/1"
    assert manifest["providers"] == [{"name": "CPUExecutionProvider", "options": {}}]
    assert manifest["files"]["model.onnx"] == sha256(out / "model.onnx")
    assert manifest["source"]["sha256"] == before
    # The memory setting the build measured and chose, over the target's session options.
    settings = memory["settings"]
    deployed = next(c["setting"] for c in settings["candidates"] if c["setting"]["label"] == settings["chosen"])
    target_options = get_target("cpu").session_options()
    expected = {**target_options, **deployed["overrides"]}
    if "config_entries" in deployed["overrides"]:
        expected["config_entries"] = {**target_options.get("config_entries", {}),
                                      **deployed["overrides"]["config_entries"]}
    if settings["execution_order"] and not settings["execution_order"]["kept"]:
        expected["execution_order"] = "default"
    assert manifest["session_options"] == build["session_options"] == expected

    built = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(built, full_check=True)
    # The build keeps the dynamic batch dimension: it runs at batch 2.
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [2 if not isinstance(d, int) else d for d in inp.shape]
    if sample.stem == "transformer_tiny":
        shape = [2, 16, 64]
    (result,) = session.run(None, {inp.name: np.zeros(shape, np.float32)})
    assert result.shape[0] == 2


def test_optimize_prints_rich_report(tmp_path: Path) -> None:
    sample = next(p for p in SAMPLE_MODELS if p.stem == "mobilenetv2_tiny")
    proc = run_cli("optimize", sample, "-o", tmp_path / "b", "--no-bench", "--explain", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    for text in ("Model", "nodes", "Latency", "not measured here", "Passes", "simplify",
                 "Outputs against the original", "defaulted"):
        assert text in proc.stdout
    assert "\x1b[" not in proc.stdout  # no colour codes when stdout is not a terminal


def test_rerun_into_same_build_folder(tmp_path: Path) -> None:
    sample = next(p for p in SAMPLE_MODELS if p.stem == "resnext_tiny")
    for _ in range(2):
        proc = invoke_cli("optimize", sample, "-o", tmp_path / "b", "--no-bench", "--json", "--precision", "fp32")
        assert proc.returncode == 0, proc.stderr


def test_inspect_json() -> None:
    sample = next(p for p in SAMPLE_MODELS if p.stem == "inception_tiny")
    proc = invoke_cli("inspect", sample, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "hwopt.inspect/1"
    assert data["macs"] > 0 and data["nodes_with_unknown_cost"] == []


def test_passes_and_targets_list() -> None:
    passes = json.loads(invoke_cli("passes", "--json").stdout)
    assert any(p["name"] == "simplify" for p in passes["passes"])
    targets = json.loads(invoke_cli("targets", "--json").stdout)
    cpu = next(t for t in targets["targets"] if t["name"] == "cpu")
    assert cpu["availability"]["available"] is True


def test_static_shapes_bake_the_given_shapes_into_the_build(tmp_path: Path) -> None:
    sample = SAMPLES / "transformer_tiny.onnx"
    runs = {}
    for flag in ([], ["--static-shapes"]):
        out = tmp_path / ("static" if flag else "dynamic")
        # Without the fused variant: whether it races faster is timing, and would decide the count.
        proc = invoke_cli("optimize", sample, "-o", out, "-s", "tokens=1x32x64", "--precision", "fp32", "--no-bench",
                          "--skip-pass", "fuse_transformer", "--json", *flag)
        assert proc.returncode == 0, proc.stderr
        runs[bool(flag)] = (json.loads(proc.stdout), onnx.load(str(out / "model.onnx")))
    (report, built), (dynamic_report, _) = runs[True], runs[False]
    dims = [[d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
            for vi in built.graph.input]
    assert dims == [[1, 32, 64]]
    assert any("--static-shapes" in note and "tokens=1x32x64" in note for note in report["notes"])
    build = report["builds"][0]
    # Checked at exactly the baked shape (no second batch size), within the usual tolerance.
    assert build["accuracy"]["samples"] == 1 and build["accuracy"]["max_rel"] <= 1e-4
    assert build["optimized"]["nodes"] <= dynamic_report["builds"][0]["optimized"]["nodes"]
