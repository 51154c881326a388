"""INT8 variants of a float model: one configuration, one quantized model file.

A :class:`QuantConfig` is one point of the space the search explores: the format (QDQ,
where Quantize/DequantizeLinear pairs wrap float operators and onnxruntime fuses them into
integer kernels; QOperator, where the quantizer writes QLinearConv and friends itself; or
dynamic, where only the weights are quantized offline and each activation's scale is computed
at run time, so that no calibration data decides the model's accuracy),
the activation and weight types, per-channel or per-tensor weight scales, 7-bit weights
(``reduce_range``, for CPUs without VNNI whose 8-bit multiply-adds can saturate), the
calibration method, the nodes kept in float, and which float graph it quantizes (the
pipeline's, or a measured variant of it such as the transformer-fused graph).

:class:`Quantizer` owns a working folder: the pre-processed float model (onnxruntime's
``quant_pre_process`` shape inference) and one calibration cache per method, so that the
many variants of one search calibrate once (calibration runs the float model over every
sample with all intermediate tensors as outputs; quantizing from cached ranges is cheap).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from hwopt.errors import one_line
from hwopt.feeds.samples import SampleSet
from hwopt.guard import phase
from hwopt.output import inside, quiet_logger
from hwopt.quant.calibration import SampleReader

_CALIBRATION_CACHE = "calibration_cache_path" in inspect.signature(quantize_static).parameters

log = logging.getLogger(__name__)

_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIBRATION_METHODS = tuple(_METHODS)
_TYPES = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
# Percentile keeps the 99.999th percentile of |x|: outliers stop stretching the scale.
_PERCENTILE = 99.999
# What dynamic quantization quantizes: the matrix products (and onnxruntime's fused Attention
# and LSTM), which it runs as DynamicQuantizeMatMul / QAttention / DynamicQuantizeLSTM. Not
# Conv: its dynamic kernel (ConvInteger) ran 4x to 9x slower than float on every sample CNN.
# Not Gather: a quantized embedding table saves size but no time, and adds its rounding to
# every token.
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    fmt: str = "qdq"  # "qdq" | "qoperator" | "dynamic"
    activations: str = "u8"  # "u8" | "s8"
    weights: str = "s8"
    per_channel: bool = True
    reduce_range: bool = False
    calibration: str = "minmax"
    exclude: tuple[str, ...] = ()  # nodes kept in float
    op_types: tuple[str, ...] | None = None  # operators to quantize (None: onnxruntime's default set)
    graph: str = ""  # the float graph quantized ("": the pipeline's)

    @property
    def dynamic(self) -> bool:
        return self.fmt == "dynamic"

    @property
    def calibrated(self) -> bool:
        """Whether activation scales come from calibration data (static formats)."""
        return not self.dynamic

    def label(self) -> str:
        text = (
            f"{self.fmt.upper()} {self.activations.upper()}/{self.weights.upper()} "
            f"{'per-channel' if self.per_channel else 'per-tensor'}"
        )
        text += " (scales at run time)" if self.dynamic else f" {self.calibration}"
        if self.graph:
            text += f", {self.graph}"
        if self.reduce_range:
            text += " 7-bit"
        if self.op_types is not None:
            text += f", only {'/'.join(self.op_types)}"
        if self.exclude:
            text += f", {len(self.exclude)} node(s) in float"
        return text

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["exclude"] = list(self.exclude)
        data["op_types"] = list(self.op_types) if self.op_types is not None else None
        return data


class QuantizationFailed(Exception):
    """onnxruntime's quantizer rejected the model or configuration; the message says why."""


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name: nodes are kept in float by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


class Quantizer:
    """Quantizes one float model into many configurations from shared calibration."""

    def __init__(self, model: onnx.ModelProto, calibration: SampleSet, workdir: Path):
        self.workdir = workdir
        self.calibration = calibration
        self.float_path = workdir / "float.onnx"
        self.prepared = workdir / "prepared.onnx"
        onnx.save(name_nodes(_copy(model)), str(self.float_path))
        # Symbolic shape inference is skipped: hwopt's passes already resolved what it would,
        # and when it fails onnxruntime leaves its temporary model in the working directory.
        with inside(workdir):
            quant_pre_process(str(self.float_path), str(self.prepared), skip_symbolic_shape=True)
        self._count = 0

    def quantize(self, config: QuantConfig, calibration: SampleSet | None = None) -> Path:
        """The quantized model file for ``config``; ``calibration`` replaces the shared samples
        (and then neither reads nor writes the shared calibration cache)."""
        self._count += 1
        out = self.workdir / f"variant_{self._count}.onnx"
        if config.dynamic:
            return self._quantize_dynamic(config, out)
        extra = {"CalibPercentile": _PERCENTILE} if config.calibration == "percentile" else {}
        try:
            # Its histogram calibrators print progress on stdout, which is hwopt's report's.
            with (
                phase("INT8 quantization (onnxruntime)", "pass"),
                inside(self.workdir),
                quiet_logger(),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                quantize_static(
                    str(self.prepared),
                    str(out),
                    SampleReader(calibration or self.calibration),
                    quant_format=QuantFormat.QDQ if config.fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=config.per_channel,
                    reduce_range=config.reduce_range,
                    activation_type=_TYPES[config.activations],
                    weight_type=_TYPES[config.weights],
                    nodes_to_exclude=list(config.exclude),
                    op_types_to_quantize=list(config.op_types) if config.op_types is not None else None,
                    calibrate_method=_METHODS[config.calibration],
                    extra_options=extra,
                    **(self._cache_option(config) if calibration is None else {}),
                )
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything; reported per variant
            raise QuantizationFailed(f"{type(exc).__name__}: {one_line(exc)}") from exc
        return out

    def _cache_option(self, config: QuantConfig) -> dict[str, Path]:
        """Calibrate once per method for all variants: onnxruntime 1.25 and later keep the
        ranges in a file (onnxruntime-openvino 1.24 has no such option and recalibrates)."""
        if not _CALIBRATION_CACHE:
            return {}
        return {"calibration_cache_path": self.workdir / f"calibration_{config.calibration}.json"}

    def _quantize_dynamic(self, config: QuantConfig, out: Path) -> Path:
        try:
            with phase("INT8 quantization (onnxruntime)", "pass"), inside(self.workdir), quiet_logger():
                quantize_dynamic(
                    str(self.prepared),
                    str(out),
                    per_channel=config.per_channel,
                    reduce_range=config.reduce_range,
                    weight_type=_TYPES[config.weights],
                    nodes_to_exclude=list(config.exclude),
                    op_types_to_quantize=list(config.op_types or DYNAMIC_OPS),
                    # onnx shape inference cannot type the outputs of onnxruntime's contrib
                    # operators (Attention, SkipLayerNormalization ...), and the quantizer
                    # refuses an untyped tensor unless given this fallback.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything; reported per variant
            raise QuantizationFailed(f"{type(exc).__name__}: {one_line(exc)}") from exc
        return out

    def node_names(self, op_types: Sequence[str] | None = None) -> list[str]:
        model = onnx.load(str(self.prepared), load_external_data=False)
        return [n.name for n in model.graph.node if op_types is None or n.op_type in op_types]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
