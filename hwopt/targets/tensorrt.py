"""The TensorRT target: onnxruntime's TensorRT execution provider, with CUDA and then the
CPU provider for the nodes TensorRT does not take.

TensorRT builds its own engine from the float32 ONNX model, in FP16 (``trt_fp16_enable``) or
INT8 (``trt_int8_enable``). For INT8 without Q/DQ nodes, TensorRT needs each tensor's
dynamic range: hwopt calibrates the float model on its calibration samples with
onnxruntime's calibrator and writes the table TensorRT's provider reads
(``calibration.flatbuffers``, from ``write_calibration_table``) into the engine cache folder.
A model that already has Q/DQ nodes is never given a table: TensorRT refuses to load one
for a Q/DQ model, whose scales are in the graph.

The engine and timing caches live inside the build folder (``trt_engines/``, ``trt_timing/``),
so a deployed build loads its engine instead of rebuilding it; the build folder's paths are
recorded relative and resolved when the session is created.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from hwopt.errors import UsageError, one_line
from hwopt.session import Providers
from hwopt.targets.base import Availability, BuildContext, Check, Target, TargetBuild
from hwopt.targets.cpu import COMPILED_PASSES
from hwopt.targets.cuda import cuda_provider_options
from hwopt.targets.providers import provider_availability

ENGINE_CACHE = "trt_engines"
TIMING_CACHE = "trt_timing"
CALIBRATION_TABLE = "calibration.flatbuffers"
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(node.op_type in _QDQ_OPS for node in model.graph.node)


def write_trt_calibration_table(model: onnx.ModelProto, samples, folder: Path) -> Path:
    """Per-tensor dynamic ranges of ``model`` over ``samples``, as TensorRT's provider reads them."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.quant_utils import write_calibration_table

    from hwopt.output import inside
    from hwopt.quant.calibration import SampleReader

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwopt-trt-calib-") as tmp:
        source = Path(tmp) / "model.onnx"
        onnx.save(model, str(source))
        with inside(Path(tmp)):
            calibrator = create_calibrator(
                source, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=CalibrationMethod.MinMax,
            )
            calibrator.collect_data(SampleReader(samples))
            ranges = calibrator.compute_data()
    # In tensor-name order: the calibrator's own order changes from run to run, and so did
    # calibration.json's bytes (the flatbuffers table onnxruntime already sorts).
    write_calibration_table(dict(sorted(ranges.data.items())), dir=str(folder))
    return folder / CALIBRATION_TABLE


class TensorrtTarget(Target):
    name = "tensorrt"
    description = "ONNX Runtime TensorRT execution provider (FP16 or INT8 engines), CUDA fallback"
    default_passes = COMPILED_PASSES
    pass_options = {"simplify": {"optimize": False}}
    precisions = ("fp32", "fp16", "int8")
    option_defaults = {
        "device_id": 0,
        "workspace_gb": 2.0,
        "min_subgraph_size": 1,
        "builder_optimization_level": 3,
        "conv_algo_search": "EXHAUSTIVE",
        "cuda_graph": False,
    }
    tuning_variants = (
        ("trt-opt-level-5", "TensorRT builder optimization level 5 (slower builds)",
         {"trt_builder_optimization_level": "5"}),
    )

    def providers(self, precision: str = "fp16") -> Providers:
        """The providers of an engine built in ``precision`` (fp16 unless a build says so)."""
        trt = {
            "device_id": str(self.options["device_id"]),
            "trt_fp16_enable": "True" if precision in ("fp16", "int8") else "False",
            "trt_int8_enable": "True" if precision == "int8" else "False",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": ENGINE_CACHE,
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": TIMING_CACHE,
            "trt_max_workspace_size": str(int(float(self.options["workspace_gb"]) * (1 << 30))),
            "trt_min_subgraph_size": str(self.options["min_subgraph_size"]),
            "trt_builder_optimization_level": str(self.options["builder_optimization_level"]),
        }
        if precision == "int8":
            trt["trt_int8_calibration_table_name"] = CALIBRATION_TABLE
            trt["trt_int8_use_native_calibration_table"] = "False"
        return (
            ("TensorrtExecutionProvider", trt),
            ("CUDAExecutionProvider", cuda_provider_options(self.options)),
            ("CPUExecutionProvider", {}),
        )

    def availability(self) -> Availability:
        return provider_availability("TensorrtExecutionProvider")

    def finalize(self, model, ctx: BuildContext) -> TargetBuild:
        precision = "fp32" if ctx.precision == "fp32" else ("int8" if ctx.precision == "int8" else "fp16")
        for folder in (ENGINE_CACHE, TIMING_CACHE):
            (ctx.build_dir / folder).mkdir(exist_ok=True)
        if precision != "int8":
            build = TargetBuild(model=model, precision=precision, providers=self.providers(precision))
            build.notes.append(f"TensorRT builds a {precision.upper()} engine from the float32 model at first load")
            return build
        if has_qdq(model):
            raise UsageError("tensorrt int8: the model already has Q/DQ nodes; TensorRT takes no calibration table for it")
        if ctx.calibration is None:
            raise UsageError("tensorrt int8 needs calibration samples (--calib)")
        try:
            table = write_trt_calibration_table(model, ctx.calibration, ctx.build_dir / ENGINE_CACHE)
        except Exception as exc:  # noqa: BLE001 - ORT's calibrator; reported as a failed check
            build = TargetBuild(model=model, precision="fp16", providers=self.providers("fp16"))
            build.checks.append(Check("INT8 calibration table", False, f"{type(exc).__name__}: {one_line(exc)}"))
            build.notes.append("INT8 calibration failed: the engine is built in FP16 instead")
            return build
        build = TargetBuild(model=model, precision="int8", providers=self.providers("int8"))
        build.files += [str(p.relative_to(ctx.build_dir)) for p in sorted(table.parent.glob("calibration.*"))]
        build.checks.append(Check("INT8 calibration table", True,
                                  f"{len(ctx.calibration)} samples, written to {ENGINE_CACHE}/{CALIBRATION_TABLE}"))
        return build
