"""TOML configuration files (``--config FILE``); configs/ holds presets in this format.

Precedence: a command-line flag > the config file > hwopt's defaults. Every key is checked:
an unknown key is an error that lists the known ones, so a typo never silently does nothing.
The keys are those of hwopt.options (each field names its key), applied by hwopt.schema.

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

    [calibration.image]                    # how images become inputs (hwopt.feeds.images.ImageSpec)
    size = [224, 224]
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    channel_order = "RGB"

Relative paths are resolved from the config file's folder. (Top-level keys go before the
first table in TOML.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwopt import schema
from hwopt.errors import ConfigError
from hwopt.options import OptimizeOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def load_config(path: str | Path, options: OptimizeOptions | None = None) -> OptimizeOptions:
    """``options`` (default: hwopt's defaults) with what the config file at ``path`` sets."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, base=path.parent, where=str(path), options=options)


def parse_config(data: Mapping[str, Any], base: Path = Path("."), where: str = "config",
                 options: OptimizeOptions | None = None) -> OptimizeOptions:
    """``options`` with what the parsed TOML ``data`` sets; relative paths start at ``base``."""
    return schema.apply(options or OptimizeOptions(), data, where=where, base=base)
