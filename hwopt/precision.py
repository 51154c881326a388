"""The precision stage of ``hwopt optimize``: after the float pipeline, decide FP32 or INT8.

``--precision fp32`` skips it. ``auto`` (the cpu default) and ``int8`` gather samples (the
user's ``--calib`` folder or file, else feeds generated from the graph), hold some out for the
accuracy check, and run hwopt.quant.search. Static INT8, whose activation scales come from the
calibration samples, is a candidate only with real samples or when the user accepts generated
ones (``--calib generated``, with a loud warning); dynamic INT8 is always one. ``auto`` ships
whatever wins; ``int8`` is a request: when no INT8 variant is faster than FP32 within the
budget, the FP32 build is written and the run ends with exit code 3 (``--force-precision``
ships the fastest INT8 variant regardless, and the report says so).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from hwopt.config import Config
from hwopt.errors import UsageError
from hwopt.hostinfo import host_info
from hwopt.model.inputs import InputSpec
from hwopt.quant.accuracy import AccuracyBudget
from hwopt.quant.calibration import SampleSet, generated_samples, load_samples
from hwopt.quant.choose import PrecisionReport, SearchSettings, choose_precision
from hwopt.quant.images import ImageSpec
from hwopt.quant.variants import CALIBRATION_METHODS
from hwopt.session import Providers

PRECISIONS = ("auto", "fp32", "fp16", "int8")
# ``--calib generated``: static INT8 may calibrate on generated data (the user accepts it).
GENERATED_CALIBRATION = "generated"
DEFAULT_GENERATED_SAMPLES = 16
DEFAULT_HELD_OUT = 4


@dataclasses.dataclass
class PrecisionOptions:
    mode: str = "auto"
    force: bool = False
    budget: AccuracyBudget = AccuracyBudget()
    calib_path: Path | None = None
    # Static INT8 calibrated on generated data, at the user's request (--calib generated).
    calib_generated: bool = False
    calib_samples: int | None = None
    calib_method: str | None = None
    held_out: int = DEFAULT_HELD_OUT
    image_spec: ImageSpec | None = None
    # Keep every INT8 variant within budget in the build's int8-variants/ (hwopt tune).
    keep_variants: bool = False

    def __post_init__(self) -> None:
        # "--calib generated" (or calibration.path = "generated") names no folder.
        if self.calib_path is not None and Path(self.calib_path).name == GENERATED_CALIBRATION \
                and not Path(self.calib_path).exists():
            self.calib_path, self.calib_generated = None, True

    @property
    def static_allowed(self) -> bool:
        """Whether static INT8 may compete: real samples given, or generated ones accepted."""
        return self.calib_path is not None or self.calib_generated

    @classmethod
    def from_config(cls, config: Config) -> PrecisionOptions:
        options = cls()
        if config.precision is not None:
            options.mode = config.precision
        if config.max_accuracy_drop is not None:
            options.budget = AccuracyBudget.parse(config.max_accuracy_drop)
        if config.calib_path is not None:  # through the constructor: "generated" is the opt-in
            options = dataclasses.replace(options, calib_path=config.calib_path)
        if config.calib_samples is not None:
            options.calib_samples = config.calib_samples
        if config.calib_method is not None:
            options.calib_method = config.calib_method
        if config.held_out is not None:
            options.held_out = config.held_out
        if config.image is not None:
            options.image_spec = ImageSpec.from_dict(config.image)
        return options

    def validate(self) -> None:
        if self.mode not in PRECISIONS:
            raise UsageError(f"--precision '{self.mode}' is not one of {', '.join(PRECISIONS)}")
        if self.calib_method is not None and self.calib_method not in CALIBRATION_METHODS:
            raise UsageError(
                f"--calib-method '{self.calib_method}' is not one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.held_out < 1:
            raise UsageError("held-out samples must be at least 1: accuracy is never judged on calibration data")


def calibration_sets(options: PrecisionOptions, specs: Sequence[InputSpec], seed: int) -> tuple[SampleSet, SampleSet]:
    """(calibration samples, held-out samples), never overlapping."""
    if options.calib_path is not None:
        limit = options.calib_samples + options.held_out if options.calib_samples else None
        samples = load_samples(options.calib_path, specs, options.image_spec, limit=limit)
    else:
        count = (options.calib_samples or DEFAULT_GENERATED_SAMPLES) + options.held_out
        samples = generated_samples(specs, count, seed=seed + 1000)
    return samples.split(options.held_out)


def run_precision_stage(
    graphs: Mapping[str, onnx.ModelProto],
    specs: Sequence[InputSpec],
    options: PrecisionOptions,
    session_options: Mapping[str, Any],
    providers: Providers,
    bench_seconds: float,
    seed: int = 0,
    keep: Path | None = None,
    formats: Sequence[str] = ("qdq", "qoperator"),
    fast: bool = False,
) -> tuple[PrecisionReport, onnx.ModelProto]:
    """The report and the model to ship: the INT8 winner, or the first of ``graphs`` (the
    FP32 build; the others are float variants whose INT8 forms compete too)."""
    calib, held = calibration_sets(options, specs, seed)
    settings = SearchSettings(
        budget=options.budget,
        calibration=options.calib_method,
        force_int8=options.force,
        bench_seconds=bench_seconds,
        static=options.static_allowed,
        formats=tuple(formats),
        fast=fast,
    )
    with tempfile.TemporaryDirectory(prefix="hwopt-int8-") as tmp:
        report, chosen = choose_precision(
            graphs, calib, held, options.mode, settings, host_info(), session_options, providers, Path(tmp),
            keep=keep,
        )
        model = onnx.load(str(chosen)) if chosen is not None else next(iter(graphs.values()))
    return report, model
