"""TOML configuration files (``--config FILE``); configs/ holds presets in this format.

Precedence: a command-line flag > the config file > hwopt's defaults. Every key is checked:
an unknown key is an error that lists the known ones, so a typo never silently does nothing.

    targets = ["cpu"]                      # or "cpu"; "gpu", "cuda", "tensorrt"
    inputs = "calib/sample.npz"            # feeds for checks and benchmarks
    precision = "auto"                     # auto | fp32 | fp16 | int8
    max_accuracy_drop = "cosine=0.99,top1=0.99"

    [input_shapes]
    x = [1, 3, 640, 640]

    [pipeline]
    passes = ["simplify", "fold_batchnorm"] # exactly these passes (default: the target's)
    skip = ["upgrade_opset"]                # or the default without these
    strict = true

    [passes.upgrade_opset]                  # options of one pass
    target_opset = 17

    [bench]
    seconds = 2.0
    enabled = true

    [calibration]
    path = "calib/"                        # .npy/.npz files, one stacked .npz, or images
    samples = 64
    method = "minmax"                      # minmax | entropy | percentile
    held_out = 8

    [gates]                                # CI gates (exit 3 when one fails)
    max_latency_ms = 20.0
    min_speedup = 1.1
    max_size_mb = 50
    max_memory_mb = 512

    [target_options.cuda]                  # options of one target
    cuda_graph = true

    [calibration.image]                    # how images become inputs (hwopt.quant.images.ImageSpec)
    size = [224, 224]
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    channel_order = "RGB"

Relative paths are resolved from the config file's folder. (Top-level keys go before the
first table in TOML.)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwopt.errors import ConfigError
from hwopt.gates import Gates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_TOP_KEYS = {
    "targets", "inputs", "input_shapes", "pipeline", "passes", "bench", "precision",
    "max_accuracy_drop", "calibration", "target_options", "gates", "static_shapes", "optimize_for",
    "fast",
}
# What the measured choice of a build's memory settings favours (hwopt.memory.settings).
GOALS = ("balanced", "latency", "memory")
_GATE_KEYS = {"max_latency_ms", "min_speedup", "max_size_mb", "max_memory_mb"}
_CALIBRATION_KEYS = {"path", "samples", "method", "held_out", "image"}
_PIPELINE_KEYS = {"passes", "skip", "strict"}
_BENCH_KEYS = {"seconds", "enabled"}


@dataclasses.dataclass
class Config:
    """What a config file sets; None means "not set here"."""

    targets: list[str] | None = None
    inputs: Path | None = None
    input_shapes: dict[str, tuple[int, ...]] | None = None
    static_shapes: bool | None = None
    optimize_for: str | None = None
    fast: bool | None = None
    passes: list[str] | None = None
    skip_passes: list[str] | None = None
    strict: bool | None = None
    pass_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    bench_seconds: float | None = None
    bench_enabled: bool | None = None
    precision: str | None = None
    max_accuracy_drop: str | None = None
    calib_path: Path | None = None
    calib_samples: int | None = None
    calib_method: str | None = None
    held_out: int | None = None
    image: dict[str, Any] | None = None
    target_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    gates: Gates = Gates()


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, base=path.parent, where=str(path))


def parse_config(data: Mapping[str, Any], base: Path = Path("."), where: str = "config") -> Config:
    _known(data, _TOP_KEYS, where)
    config = Config()
    if "targets" in data:
        targets = data["targets"]
        config.targets = [targets] if isinstance(targets, str) else _str_list(targets, f"{where}: targets")
    if "inputs" in data:
        config.inputs = base / _typed(data["inputs"], str, f"{where}: inputs")
    if "input_shapes" in data:
        shapes = _typed(data["input_shapes"], dict, f"{where}: input_shapes")
        config.input_shapes = {}
        for name, dims in shapes.items():
            if not isinstance(dims, list) or not all(isinstance(d, int) and d > 0 for d in dims):
                raise ConfigError(f"{where}: input_shapes.{name} must be a list of positive integers")
            config.input_shapes[name] = tuple(dims)
    if "static_shapes" in data:
        config.static_shapes = _typed(data["static_shapes"], bool, f"{where}: static_shapes")
    if "optimize_for" in data:
        config.optimize_for = _typed(data["optimize_for"], str, f"{where}: optimize_for")
        if config.optimize_for not in GOALS:
            raise ConfigError(f"{where}: optimize_for must be one of {', '.join(GOALS)}, not '{config.optimize_for}'")
    if "fast" in data:
        config.fast = _typed(data["fast"], bool, f"{where}: fast")
    if "pipeline" in data:
        pipeline = _typed(data["pipeline"], dict, f"{where}: pipeline")
        _known(pipeline, _PIPELINE_KEYS, f"{where}: [pipeline]")
        if "passes" in pipeline:
            config.passes = _str_list(pipeline["passes"], f"{where}: pipeline.passes")
        if "skip" in pipeline:
            config.skip_passes = _str_list(pipeline["skip"], f"{where}: pipeline.skip")
        if "strict" in pipeline:
            config.strict = _typed(pipeline["strict"], bool, f"{where}: pipeline.strict")
    if "passes" in data:
        for name, options in _typed(data["passes"], dict, f"{where}: passes").items():
            config.pass_options[name] = dict(_typed(options, dict, f"{where}: passes.{name}"))
    if "precision" in data:
        config.precision = _typed(data["precision"], str, f"{where}: precision")
    if "max_accuracy_drop" in data:
        value = _typed(data["max_accuracy_drop"], (str, int, float), f"{where}: max_accuracy_drop")
        config.max_accuracy_drop = str(value)
    if "calibration" in data:
        calib = _typed(data["calibration"], dict, f"{where}: calibration")
        _known(calib, _CALIBRATION_KEYS, f"{where}: [calibration]")
        if "path" in calib:
            config.calib_path = base / _typed(calib["path"], str, f"{where}: calibration.path")
        if "samples" in calib:
            config.calib_samples = _typed(calib["samples"], int, f"{where}: calibration.samples")
        if "method" in calib:
            config.calib_method = _typed(calib["method"], str, f"{where}: calibration.method")
        if "held_out" in calib:
            config.held_out = _typed(calib["held_out"], int, f"{where}: calibration.held_out")
        if "image" in calib:
            config.image = dict(_typed(calib["image"], dict, f"{where}: calibration.image"))
    if "target_options" in data:
        for name, values in _typed(data["target_options"], dict, f"{where}: target_options").items():
            config.target_options[name] = dict(_typed(values, dict, f"{where}: target_options.{name}"))
    if "gates" in data:
        gates = _typed(data["gates"], dict, f"{where}: gates")
        _known(gates, _GATE_KEYS, f"{where}: [gates]")
        config.gates = Gates(**{
            key: float(_typed(value, (int, float), f"{where}: gates.{key}")) for key, value in gates.items()
        })
    if "bench" in data:
        bench = _typed(data["bench"], dict, f"{where}: bench")
        _known(bench, _BENCH_KEYS, f"{where}: [bench]")
        if "seconds" in bench:
            config.bench_seconds = float(_typed(bench["seconds"], (int, float), f"{where}: bench.seconds"))
        if "enabled" in bench:
            config.bench_enabled = _typed(bench["enabled"], bool, f"{where}: bench.enabled")
    return config


def _known(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python; a number where a bool is wanted (or the reverse) is a mistake.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where} must be a {names}, not {type(value).__name__}")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return list(value)
