"""Shared fixtures: the sample models, tiny inline models, and a way to run the real CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SAMPLE_MODELS = sorted(SAMPLES.glob("*.onnx"))
# Symbolic dimensions besides the batch that the samples need fixed to be meaningful.
SAMPLE_SHAPES = {"transformer_tiny": ["tokens=1x16x64"]}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hwopt ARGS`` as a user would, capturing stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "hwopt", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str) -> CliResult:
    """Run the CLI in this process (typer's test runner): the same code path as the console
    script, without the cost of starting Python and importing onnxruntime again."""
    from typer.testing import CliRunner

    from hwopt.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return CliResult(result.exit_code, result.stdout, result.stderr)


def fp32_options(**kwargs):
    """OptimizeOptions that skip the INT8 search and the memory-settings search: most tests
    are about other stages, and the searches measure latency and memory (seconds per model)."""
    from hwopt.options import OptimizeOptions, PrecisionOptions

    return OptimizeOptions(precision=PrecisionOptions(mode="fp32"), **{"memory_search": False, **kwargs})


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


TINY_CONV_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
tiny (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 3, 3, 3] w, float[4] b,
    float[4] scale, float[4] bias, float[4] mean, float[4] var> {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    n = BatchNormalization (c, scale, bias, mean, var)
    y = Relu (n)
}
"""


def tiny_conv_model() -> onnx.ModelProto:
    """Conv + BatchNorm + Relu with random weights and a symbolic batch dimension."""
    import numpy as np
    from onnx import numpy_helper

    model = onnx.parser.parse_model(TINY_CONV_TEXT)
    rng = np.random.default_rng(0)
    values = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "b": rng.standard_normal(4).astype(np.float32) * 0.1,
        "scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "bias": rng.standard_normal(4).astype(np.float32) * 0.1,
        "mean": rng.standard_normal(4).astype(np.float32) * 0.1,
        "var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
    }
    del model.graph.initializer[:]
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items())
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    return save(tiny_conv_model(), tmp_path / "tiny.onnx")
