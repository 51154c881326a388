"""INT8: the format space per host, layer groups, sensitivity ranking, and the decisions of
the search that do not depend on timing (the budget, forcing, exit codes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SAMPLES, invoke_cli
from passtest import make_model

from hwopt.hostinfo import host_info
from hwopt.quant.choose import format_candidates, layer_groups
from hwopt.quant.sensitivity import rank_nodes

SAMPLE = SAMPLES / "mobilenetv2_tiny.onnx"


def test_reduce_range_only_on_x86_without_vnni() -> None:
    host = host_info()
    avx2_only = dataclasses.replace(host, machine="x86_64", isa=("AVX", "AVX2", "FMA"))
    vnni = dataclasses.replace(host, machine="x86_64", isa=("AVX2", "AVX-512 VNNI"))
    arm = dataclasses.replace(host, machine="aarch64", isa=("NEON",))
    assert all(c.reduce_range for c in format_candidates(avx2_only))
    assert not any(c.reduce_range for c in format_candidates(vnni))
    assert not any(c.reduce_range for c in format_candidates(arm))
    assert {(c.fmt, c.activations, c.per_channel) for c in format_candidates(vnni)} == {
        (f, a, p) for f in ("qdq", "qoperator") for a in ("u8", "s8") for p in (True, False)}


def test_layer_groups() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 3, 8, 8] x) => (float[1, 8, 8, 8] y) <float[8, 3, 3, 3] w0, float[8, 1, 3, 3] w1,
            float[8, 2, 3, 3] w2> {
            a = Conv <pads = [1, 1, 1, 1]> (x, w0)
            b = Conv <pads = [1, 1, 1, 1], group = 8> (a, w1)
            c = Conv <pads = [1, 1, 1, 1], group = 4> (b, w2)
            y = Add (c, a)
        }""")
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    assert layer_groups(model) == {
        "first convolution": ["n0"], "depthwise convolutions": ["n1"], "grouped convolutions": ["n2"],
        "elementwise Add/Mul": ["n3"], "MatMul/Gemm": [],
    }


def test_nodes_that_add_noise_rank_first() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) { a = Relu (x)  b = Neg (a)  y = Sigmoid (b) }""")
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    # a: 40 dB (noise 1e-4, added by n0); b: 39 dB (n1 adds little); y: 20 dB (n2 adds 1e-2).
    ranked = rank_nodes(model, {"a": 40.0, "b": 39.0, "y": 20.0})
    assert [unit for unit, _ in ranked] == [("n2",), ("n0",), ("n1",)]


def test_a_node_behind_an_unmeasured_tensor_ranks_with_its_producer() -> None:
    # The quantizer puts no Q/DQ pair between a Conv-like n1 and the Relu n2 it absorbs:
    # b is never measured, so the noise n1 makes first shows at c, after n2.
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) { a = Neg (x)  b = Sigmoid (a)  c = Relu (b)  y = Neg (c) }""")
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    ranked = rank_nodes(model, {"a": 40.0, "c": 10.0, "y": 9.9})
    assert ranked[0][0] == ("n2", "n1")
    # n2's added noise is measured from a's level, not from silence before the unmeasured b.
    assert abs(ranked[0][1] - (0.1 - 1e-4)) < 1e-9


def test_impossible_budget_keeps_fp32_and_exits_3(tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = invoke_cli("quantize", SAMPLE, "-o", out, "--max-accuracy-drop", "abs=0", "--calib", "generated",
                      "--calib-samples", "4", "--bench-seconds", "0.2", "--json")
    assert proc.returncode == 3, proc.stderr
    assert "no INT8 variant met the accuracy budget" in proc.stderr
    report = json.loads(proc.stdout)
    precision = report["builds"][0]["precision"]
    assert precision["chosen"] == "fp32" and precision["requested"] == "int8"
    assert precision["calibration"]["generated"] is True
    assert any("GENERATED" in w for w in report["builds"][0]["warnings"])
    statuses = {v["status"] for v in precision["variants"]}
    assert "over budget" in statuses
    # Accuracy is only ever judged on held-out samples, never the calibration ones.
    assert precision["calibration"]["held_out_samples"] == 4
    assert (out / "build.json").is_file()  # the FP32 build is written
    built = onnx.load(str(out / "model.onnx"))
    assert not any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in built.graph.node)


def test_calibrator_progress_stays_off_the_report(tmp_path: Path) -> None:
    # onnxruntime's histogram calibrators print progress with print(); stdout is the report's.
    proc = invoke_cli("quantize", SAMPLE, "-o", tmp_path / "b", "--calib-method", "entropy", "--calib", "generated",
                      "--calib-samples", "4", "--bench-seconds", "0.1", "--quiet")
    assert proc.returncode in (0, 3), proc.stderr
    assert "histogram" not in proc.stdout + proc.stderr and "Collecting tensor data" not in proc.stdout


def test_forced_int8_ships_even_over_budget(tmp_path: Path, monkeypatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # onnxruntime's tools write temporaries to the working directory
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((10, 1, 3, 96, 96)).astype(np.float32))
    proc = invoke_cli("optimize", "--no-memory-search", SAMPLE, "-o", tmp_path / "b", "--precision", "int8", "--force-precision",
                      "--calib", calib, "--max-accuracy-drop", "abs=0", "--bench-seconds", "0.2", "--no-bench",
                      "--json")
    # Forced INT8 ships; --max-accuracy-drop is also a CI gate, which the forced build fails.
    assert proc.returncode == 3 and "max-accuracy-drop: FAILED" in proc.stderr
    precision = json.loads(proc.stdout)["builds"][0]["precision"]
    assert precision["chosen"] == "int8" and "forced" in precision["reason"]
    assert precision["calibration"]["generated"] is False
    assert precision["calibration"]["samples"] == 6 and precision["calibration"]["held_out_samples"] == 4
    built = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv", "DequantizeLinear") for n in built.graph.node)
    assert list(cwd.iterdir()) == []  # nothing written outside the output and temp folders


def test_calibration_sample_stands_in_for_generated_feeds(tmp_path: Path, monkeypatch) -> None:
    # Reflect padding needs a length of at least 2, so the generated default (symbolic dims = 1)
    # cannot run this model; the calibration samples show the real shape.
    model = make_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, T] x) => (float[1, U] y)
        <int64[4] pads = {0, 1, 0, 1}, float[1, 1] w>
        { p = Pad <mode = "reflect"> (x, pads)
          y = Mul (p, w) }
    """)
    path = tmp_path / "pad.onnx"
    onnx.save(model, str(path))
    monkeypatch.chdir(tmp_path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((8, 1, 16)).astype(np.float32))
    generated = invoke_cli("optimize", path, "-o", tmp_path / "g", "--no-bench", "--json")
    assert generated.returncode == 2 and "the model does not run" in generated.stderr
    proc = invoke_cli("optimize", "--no-memory-search", path, "-o", tmp_path / "b", "--precision", "auto", "--calib", calib,
                      "--no-bench", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["feeds"]["source"].startswith("calibration sample")
    assert report["inputs"][0]["shape"] == [1, 16]


def test_a_layer_group_goes_back_to_float_only_when_every_race_agrees() -> None:
    from types import SimpleNamespace

    from hwopt.quant.choose import GROUP_RACES, SearchSettings, VariantRecord, _Search
    from hwopt.quant.variants import QuantConfig

    def decide(races: list[tuple[float, float]]) -> tuple[bool, int]:
        """(decision, races run) when race i gives (base ratio, candidate ratio) = races[i]."""
        base, candidate = VariantRecord("base", QuantConfig()), VariantRecord("cand", QuantConfig(exclude=("n",)))
        script = iter(races)

        def time(records, seconds):
            base.latency_ratio, candidate.latency_ratio = next(script)
            ran.append(seconds)

        ran: list[float] = []
        search = SimpleNamespace(time=time, settings=SearchSettings())
        return _Search.faster_in_float(search, base, candidate), len(ran)

    assert GROUP_RACES == 2
    assert decide([(0.90, 0.85), (0.91, 0.86)]) == (True, 2)
    # One race's gain that the next race does not confirm is noise: INT8 stays.
    assert decide([(0.90, 0.85), (0.90, 0.89)]) == (False, 2)
    # A first race without a clear gain ends it.
    assert decide([(0.90, 0.89), (0.90, 0.80)]) == (False, 1)
    assert decide([(0.90, None)]) == (False, 1)


def test_a_model_the_quantizer_cannot_touch_is_never_called_int8(tmp_path: Path) -> None:
    # Every operator of this model is one onnxruntime's quantizer leaves in float (silero VAD
    # is like it: its Convs and LSTMs sit inside If branches). Its "INT8" variants would be
    # the float model under another name.
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8] x) => (float[1, 8] y) { a = Neg (x)  b = Abs (a)  y = Neg (b) }""")
    path = tmp_path / "float_only.onnx"
    onnx.save(model, str(path))
    proc = invoke_cli("quantize", path, "-o", tmp_path / "b", "--calib-samples", "4", "--bench-seconds", "0.1",
                      "--json")
    assert proc.returncode == 3, proc.stderr
    precision = json.loads(proc.stdout)["builds"][0]["precision"]
    assert precision["chosen"] == "fp32"
    assert "left every operator in float" in precision["reason"]
    assert {v["status"] for v in precision["variants"]} == {"failed"}


def test_int8_ships_only_when_most_races_beat_fp32() -> None:
    from types import SimpleNamespace

    from hwopt.quant.choose import SHIP_RACES, SearchSettings, VariantRecord, _Search
    from hwopt.quant.variants import QuantConfig

    def decide(races: list[float | None]) -> tuple[bool, float | None, int]:
        record = VariantRecord("int8", QuantConfig())
        script = iter(races)

        def time(records, seconds, twin=False):
            record.latency_ratio = next(script)
            ran.append(seconds)
            return 1.0 if twin else None

        ran: list[float] = []
        search = SimpleNamespace(time=time, settings=SearchSettings(), ship_seconds=1.0)
        return _Search.beats_fp32(search, record), record.latency_ratio, len(ran)

    assert SHIP_RACES == 5
    # A majority of up to five races decides; the reported ratio is their median.
    assert decide([0.90, 0.95, 0.92]) == (True, 0.92, 3)
    # Two races both clear of the margin by 5%, on one side, decide alone.
    assert decide([0.80, 0.85, 0.82]) == (True, 0.825, 2)
    assert decide([1.10, 1.08, 0.90]) == (False, 1.09, 2)
    assert decide([0.80, 0.95, 0.82]) == (True, 0.82, 3)
    # One race that lands 10% off is an outlier, not a verdict (resnext_tiny flipped on one).
    assert decide([0.85, 1.05, 0.86, 0.84]) == (True, 0.855, 4)
    assert decide([0.99, 0.97, 1.01, 0.99]) == (False, 0.99, 4)
    assert decide([0.99, 1.0, 1.02]) == (False, 1.0, 3)
    assert decide([0.80, None]) == (False, None, 2)
    # The first race's noise (a second FP32 session against the first) is recorded for the report.
    record = VariantRecord("int8", QuantConfig())
    script = iter([(0.95, 1.03), (0.96, 0.99), (0.94, 1.0)])
    twins = []

    def time(records, seconds, twin=False):
        record.latency_ratio, twin_ratio = next(script)
        twins.append(twin)
        return twin_ratio if twin else None

    assert _Search.beats_fp32(SimpleNamespace(time=time, settings=SearchSettings(), ship_seconds=1.0), record)
    assert record.race_ratios == [0.95, 0.96, 0.94] and record.race_noise == pytest.approx([0.03])
    assert twins == [True, False, False]


def test_without_real_data_static_int8_is_timed_but_never_a_candidate(tmp_path: Path) -> None:
    # Static INT8 takes its activation scales from the calibration data; generated data would
    # decide them. Without --calib only dynamic INT8 (scales computed at run time) competes.
    proc = invoke_cli("optimize", SAMPLE, "-o", tmp_path / "b", "--bench-seconds", "0.1", "--no-bench", "--json")
    assert proc.returncode == 0, proc.stderr
    build = json.loads(proc.stdout)["builds"][0]
    precision = build["precision"]
    static = [v for v in precision["variants"] if v["config"]["fmt"] != "dynamic"]
    dynamic = [v for v in precision["variants"] if v["config"]["fmt"] == "dynamic"]
    assert static and {v["status"] for v in static} <= {"not a candidate", "failed"}
    assert all(v["accuracy"] is None for v in static)
    assert dynamic, "dynamic INT8 is the INT8 that may compete without real data"
    note = precision["static_note"]
    assert "measured" in note and "--calib DIR" in note and "--calib generated" in note
    if precision["chosen"] == "int8":
        chosen = next(v for v in precision["variants"] if v["status"].startswith("chosen"))
        assert chosen["config"]["fmt"] == "dynamic"
    assert not any("GENERATED" in w for w in build["warnings"])


def test_calib_generated_lets_static_int8_compete_with_a_loud_warning(tmp_path: Path) -> None:
    proc = invoke_cli("optimize", "--no-memory-search", SAMPLE, "-o", tmp_path / "b", "--calib", "generated", "--calib-samples", "4",
                      "--bench-seconds", "0.1", "--no-bench", "--force-precision", "--precision", "int8",
                      "--max-accuracy-drop", "abs=0", "--json")
    assert proc.returncode == 3, proc.stderr  # nothing meets abs=0; forced INT8 ships
    build = json.loads(proc.stdout)["builds"][0]
    precision = build["precision"]
    assert precision["calibration"]["generated"] is True and precision["static_note"] == ""
    assert any(v["config"]["fmt"] != "dynamic" and v["accuracy"] is not None for v in precision["variants"])


def test_dynamic_variants_quantize_every_float_graph() -> None:
    from hwopt.quant.choose import dynamic_candidates

    host = dataclasses.replace(host_info(), machine="x86_64", isa=("AVX2", "AVX-512 VNNI"))
    configs = dynamic_candidates(host, ["", "transformer-fused graph"])
    assert {(c.graph, c.per_channel) for c in configs} == {
        ("", True), ("", False), ("transformer-fused graph", True), ("transformer-fused graph", False)}
    assert all(c.dynamic and not c.calibrated and not c.reduce_range for c in configs)
    assert "scales at run time" in configs[0].label() and "minmax" not in configs[0].label()


def test_calib_generated_is_an_option_not_a_folder(tmp_path: Path, monkeypatch) -> None:
    from hwopt.options import PrecisionOptions

    assert PrecisionOptions(calib_path=Path("generated")).calib_generated
    assert not PrecisionOptions().static_allowed
    assert PrecisionOptions(calib_path=Path("generated")).static_allowed
    # A real folder of that name is data, not the option.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "generated").mkdir()
    options = PrecisionOptions(calib_path=Path("generated"))
    assert options.calib_path == Path("generated") and not options.calib_generated


def test_formats_within_the_noise_rank_in_a_fixed_order() -> None:
    from hwopt.quant.choose import VariantRecord as Record
    from hwopt.quant.choose import stable_ranking
    from hwopt.quant.variants import QuantConfig

    qdq, qop, dyn = QuantConfig(fmt="qdq"), QuantConfig(fmt="qoperator"), QuantConfig(fmt="dynamic")
    preference = [qdq, qop, dyn]

    def labels(ratios: dict) -> list[str]:
        records = [Record(c.fmt, c, latency_ratio=r) for c, r in ratios.items()]
        return [r.label for r in stable_ranking(records, preference)]

    # 2% apart is a tie: the preferred format first, whichever measured faster this time.
    assert labels({qop: 0.80, qdq: 0.816, dyn: 0.95}) == ["qdq", "qoperator", "dynamic"]
    assert labels({qdq: 0.80, qop: 0.816, dyn: 0.95}) == ["qdq", "qoperator", "dynamic"]
    # Clearly faster wins.
    assert labels({qop: 0.70, qdq: 0.80, dyn: 0.95}) == ["qoperator", "qdq", "dynamic"]
