"""Which inputs a run uses, by its options, and a label saying where they came from.

Check feeds: the user's ``--inputs`` file; else, when INT8 calibration data is given, its first
sample (real data beats generated, and some models run only on data of the right shape); else
feeds generated from the seed. Calibration and held-out samples: the ``--calib`` source, or
samples generated from the seed (plus 1000, so they differ from the check feeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from hwopt.feeds.images import ImageSpec
from hwopt.feeds.inputs import InputSpec, generate_feeds, load_feeds, resolve_input_specs, specs_from_feeds
from hwopt.feeds.samples import SampleSet, generated_samples, load_samples

DEFAULT_GENERATED_SAMPLES = 16


class SampleOptions(Protocol):
    """What decides the calibration and held-out samples (hwopt.options.PrecisionOptions)."""

    mode: str
    calib_path: Path | None
    calib_samples: int | None
    held_out: int
    image_spec: ImageSpec | None


class RunInputOptions(Protocol):
    """What decides a run's check feeds (hwopt.options.OptimizeOptions)."""

    input_shapes: Mapping[str, Sequence[int]]
    inputs_file: Path | None
    seed: int

    @property
    def precision(self) -> SampleOptions: ...


def check_inputs(graph: onnx.GraphProto, options: RunInputOptions) -> tuple[list[InputSpec], dict[str, np.ndarray], str]:
    """(input specs, the batch-1 check feeds, where the feeds came from)."""
    specs = resolve_input_specs(graph, options.input_shapes)
    if options.inputs_file is not None:
        feeds = load_feeds(options.inputs_file, specs)
        return specs_from_feeds(specs, feeds), feeds, f"user: {options.inputs_file}"
    precision = options.precision
    if precision.calib_path is not None and precision.mode in ("auto", "int8"):
        # Real samples beat generated ones, and models whose symbolic dims have a minimum size
        # (an STFT's reflect pad) only run on data of the right shape.
        feeds = load_samples(precision.calib_path, specs, precision.image_spec, limit=1).samples[0]
        return specs_from_feeds(specs, feeds), feeds, f"calibration sample: {precision.calib_path}"
    return specs, generate_feeds(specs, options.seed), f"generated (seed {options.seed})"


def calibration_sets(options: SampleOptions, specs: Sequence[InputSpec], seed: int) -> tuple[SampleSet, SampleSet]:
    """(calibration samples, held-out samples), never overlapping."""
    if options.calib_path is not None:
        limit = options.calib_samples + options.held_out if options.calib_samples else None
        samples = load_samples(options.calib_path, specs, options.image_spec, limit=limit)
    else:
        count = (options.calib_samples or DEFAULT_GENERATED_SAMPLES) + options.held_out
        samples = generated_samples(specs, count, seed=seed + 1000)
    return samples.split(options.held_out)
