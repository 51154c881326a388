"""hwopt: make ONNX models fit the hardware they run on.

The library API mirrors the command line::

    import hwopt
    report = hwopt.optimize("model.onnx", hwopt.OptimizeOptions(targets=["cpu"], output_dir="build"))
    info = hwopt.inspect_model("model.onnx")
    best = hwopt.tune("model.onnx", hwopt.TuneOptions(target="cpu", budget_seconds=300)).best

Names are imported on first use, so ``import hwopt`` (and ``hwopt --help``) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HwoptError": "hwopt.errors",
    "OptimizeOptions": "hwopt.options",
    "optimize": "hwopt.optimize",
    "inspect_model": "hwopt.inspection",
    "TuneOptions": "hwopt.tune",
    "tune": "hwopt.tune",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hwopt' has no attribute {name!r}")
