"""CI gates: which failed and by how much, exit code 3; gates that cannot be evaluated fail."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLES, invoke_cli

SAMPLE = SAMPLES / "resnext_tiny.onnx"


def _run(tmp_path: Path, *flags: str):
    return invoke_cli("optimize", "--no-memory-search", SAMPLE, "-o", tmp_path / "b", "--precision", "fp32", "--bench-seconds", "0.2",
                      "--json", *flags)


def test_gates_that_pass(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--max-latency-ms", "10000", "--max-size-mb", "100", "--max-memory-mb", "4096",
                "--max-accuracy-drop", "0.001")
    assert proc.returncode == 0, proc.stderr
    gates = {g["gate"]: g for g in json.loads(proc.stdout)["gates"]}
    assert set(gates) == {"max-latency-ms", "max-size-mb", "max-memory-mb", "max-accuracy-drop"}
    assert all(g["passed"] for g in gates.values())


def test_failed_gates_say_by_how_much_and_exit_3(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--max-size-mb", "0.01", "--min-speedup", "1000")
    assert proc.returncode == 3
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("hwopt: error: 2 gate(s) failed")
    assert "max-size-mb" in line and "MB over" in line and "min-speedup" in line and "short" in line
    assert (tmp_path / "b" / "build.json").is_file()  # the build is still written


def test_unmeasured_gate_fails(tmp_path: Path) -> None:
    proc = invoke_cli("optimize", SAMPLE, "-o", tmp_path / "b", "--precision", "fp32", "--no-bench",
                      "--max-memory-mb", "4096")
    assert proc.returncode == 3 and "not measured" in proc.stderr
