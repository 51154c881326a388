"""Two runs of optimize on the same input with the same options write byte-identical model
files and the same manifest; the reports differ only in what was timed."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLES, invoke_cli, sha256

# Fields of report.json that hold measurements of this run, not facts about the build.
TIMED = {"latency", "seconds", "measured", "notes", "warnings", "host"}


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMED and k != "build_dir"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_two_runs_write_the_same_build(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = invoke_cli("optimize", SAMPLES / "inception_tiny.onnx", "-t", "cpu,cuda", "-o", out,
                          "--precision", "fp32", "--no-bench")
        assert proc.returncode == 0, proc.stderr
        runs.append(out)
    a, b = runs
    for target in ("cpu", "cuda"):
        assert sha256(a / target / "model.onnx") == sha256(b / target / "model.onnx")
        assert (a / target / "build.json").read_text() == (b / target / "build.json").read_text()
        assert (a / target / "memory_plan.json").read_text() == (b / target / "memory_plan.json").read_text()
        report_a = json.loads((a / target / "report.json").read_text())
        report_b = json.loads((b / target / "report.json").read_text())
        assert _untimed(report_a) == _untimed(report_b)
