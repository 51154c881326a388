"""The precision stage of ``hwopt optimize``: after the float pipeline, decide FP32 or INT8.

``--precision fp32`` skips it. ``auto`` (the cpu default) and ``int8`` gather samples (the
user's ``--calib`` folder or file, else feeds generated from the graph), hold some out for the
accuracy check, and run hwopt.quant.choose. Static INT8, whose activation scales come from the
calibration samples, is a candidate only with real samples or when the user accepts generated
ones (``--calib generated``, with a loud warning); dynamic INT8 is always one. ``auto`` ships
whatever wins; ``int8`` is a request: when no INT8 variant is faster than FP32 within the
budget, the FP32 build is written and the run ends with exit code 3 (``--force-precision``
ships the fastest INT8 variant regardless, and the report says so).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from hwopt.feeds.inputs import InputSpec
from hwopt.feeds.sources import calibration_sets
from hwopt.hostinfo import host_info
from hwopt.options import PrecisionOptions
from hwopt.quant.choose import PrecisionReport, SearchSettings, choose_precision
from hwopt.session import Providers


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
