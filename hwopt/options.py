"""What ``hwopt optimize`` (and quantize, and tune's builds) can be told: the one options schema.

``OptimizeOptions`` and the dataclasses nested in it (``PrecisionOptions`` here,
``hwopt.timing.BenchConfig``, ``hwopt.gates.Gates``) are the only place an option is declared.
Each field a config file or a flag sets names its key (``hwopt.schema.setting``); a TOML
config (hwopt.config) and the command line's flags (hwopt.cli) are both applied with
``hwopt.schema.apply``, and tune's build cache hashes the whole of it (``hwopt.schema.fingerprint``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwopt.errors import ConfigError, UsageError
from hwopt.feeds.images import ImageSpec
from hwopt.gates import Gates
from hwopt.quant.accuracy import AccuracyBudget
from hwopt.quant.variants import CALIBRATION_METHODS
from hwopt.schema import checked, setting
from hwopt.timing import BenchConfig

PRECISIONS = ("auto", "fp32", "fp16", "int8")
# What the measured choice of a build's memory settings favours (hwopt.memory.settings).
GOALS = ("balanced", "latency", "memory")
# ``--calib generated``: static INT8 may calibrate on generated data (the user accepts it).
GENERATED_CALIBRATION = "generated"
DEFAULT_HELD_OUT = 4
# --fast: seconds per variant in decision races and in the report's benchmark.
FAST_RACE_SECONDS = 0.25
FAST_BENCH_SECONDS = 0.5


def _budget(value: Any, where: str) -> AccuracyBudget:
    """``max_accuracy_drop``: a number, or "cosine=..,top1=..,abs=.."."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where} must be a str or int or float, not {type(value).__name__}")
    return AccuracyBudget.parse(str(value))


def _image_spec(value: Any, where: str) -> ImageSpec:
    """``[calibration.image]``; its errors name the table as ImageSpec's own do."""
    place, _, key = where.rpartition(": ")
    return ImageSpec.from_dict(value, where=f"{place}: [{key}]" if place else f"[{key}]")


def _targets(value: Any, where: str) -> list[str]:
    """One target name, or a list of them."""
    return [value] if isinstance(value, str) else checked(value, list[str], where)


def _input_shapes(value: Any, where: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, not {type(value).__name__}")
    shapes = {}
    for name, dims in value.items():
        if not isinstance(dims, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ConfigError(f"{where}.{name} must be a list of positive integers")
        shapes[str(name)] = tuple(dims)
    return shapes


@dataclasses.dataclass
class PrecisionOptions:
    mode: str = setting("auto", key="precision")
    force: bool = setting(False, key="force_precision", config=False)
    budget: AccuracyBudget = setting(key="max_accuracy_drop", default_factory=AccuracyBudget, parse=_budget)
    calib_path: Path | None = setting(None, key="calibration.path")
    # Static INT8 calibrated on generated data, at the user's request (--calib generated).
    calib_generated: bool = False
    calib_samples: int | None = setting(None, key="calibration.samples")
    calib_method: str | None = setting(None, key="calibration.method")
    held_out: int = setting(DEFAULT_HELD_OUT, key="calibration.held_out")
    image_spec: ImageSpec | None = setting(None, key="calibration.image", parse=_image_spec)
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

    def validate(self) -> None:
        if self.mode not in PRECISIONS:
            raise UsageError(f"--precision '{self.mode}' is not one of {', '.join(PRECISIONS)}")
        if self.calib_method is not None and self.calib_method not in CALIBRATION_METHODS:
            raise UsageError(
                f"--calib-method '{self.calib_method}' is not one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.held_out < 1:
            raise UsageError("held-out samples must be at least 1: accuracy is never judged on calibration data")


@dataclasses.dataclass
class OptimizeOptions:
    """Everything ``hwopt optimize`` can be told; the CLI and config files fill this in."""

    targets: Sequence[str] = setting(("cpu",), key="targets", parse=_targets)
    output_dir: Path | None = setting(None, key="output", config=False, output=True)
    input_shapes: Mapping[str, Sequence[int]] = setting(key="input_shapes", default_factory=dict,
                                                        parse=_input_shapes, merge=True)
    # Bake the resolved input shapes into the build (and fold what becomes constant).
    static_shapes: bool = setting(False, key="static_shapes")
    # What the measured choice of memory settings favours (GOALS); with memory_search off, the
    # target's first (onnxruntime's defaults) ships unmeasured.
    optimize_for: str = setting("balanced", key="optimize_for", choices=GOALS)
    memory_search: bool = setting(True, key="memory_search", config=False)
    # A bounded search for CI (FAST): fewer variants, shorter races; the report says what was
    # left out.
    fast: bool = setting(False, key="fast")
    inputs_file: Path | None = setting(None, key="inputs")
    passes: Sequence[str] | None = setting(None, key="pipeline.passes")
    skip_passes: Sequence[str] = setting((), key="pipeline.skip")
    strict: bool = setting(False, key="pipeline.strict")
    pass_options: Mapping[str, Mapping[str, object]] = setting(key="passes", default_factory=dict)
    precision: PrecisionOptions = dataclasses.field(default_factory=PrecisionOptions)
    target_options: Mapping[str, Mapping[str, Any]] = setting(key="target_options", default_factory=dict,
                                                              merge=True)
    require_target: bool = setting(False, key="require_target", config=False)
    no_fallback: bool = setting(False, key="no_fallback", config=False)
    gates: Gates = Gates()
    # Measure latency and memory of original and build (the report's benchmark); ``bench`` says how.
    measure: bool = setting(True, key="bench.enabled")
    bench: BenchConfig = BenchConfig()
    seed: int = 0
    # Session options over the target's (hwopt tune writes the ones it found this way).
    session_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def race_seconds(self) -> float:
        """Seconds per variant in one race behind a build-time decision."""
        return FAST_RACE_SECONDS if self.fast else max(0.5, self.bench.target_seconds / 2)

    @property
    def memory_race_seconds(self) -> float:
        """Seconds per setting in a memory-settings race (at most RACE_RUNS runs): nine settings
        race at once, up to three times."""
        return FAST_RACE_SECONDS if self.fast else max(0.25, self.bench.target_seconds / 4)

    @property
    def search_seconds(self) -> float:
        """Seconds per variant in the precision search's races that decide what ships."""
        return min(self.bench.target_seconds, FAST_BENCH_SECONDS) if self.fast else self.bench.target_seconds

    @property
    def bench_config(self) -> BenchConfig:
        """The report's benchmark of original against build."""
        if not self.fast:
            return self.bench
        return dataclasses.replace(self.bench, target_seconds=min(self.bench.target_seconds, FAST_BENCH_SECONDS))
