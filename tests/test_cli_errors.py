"""Bad input never shows a traceback: a one-line message on stderr and a documented exit code.

Most cases run the CLI in-process; the first two go through a real subprocess too, so the
console entry point and the process exit code are covered end to end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE_MODELS, invoke_cli, run_cli, sha256, tiny_conv_model

SAMPLE = next(p for p in SAMPLE_MODELS if p.stem == "mobilenetv2_tiny")


def _assert_one_line_error(proc, code: int, fragment: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hwopt: error: ")
    assert fragment in lines[0]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = tmp_path / "empty.onnx"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "text.onnx"
    files["text"].write_text("this is not an onnx model\n")
    data = SAMPLE.read_bytes()
    files["truncated"] = tmp_path / "truncated.onnx"
    files["truncated"].write_bytes(data[: len(data) // 3])
    model = tiny_conv_model()
    model.graph.node[1].input[0] = "undefined_tensor"
    files["invalid_graph"] = tmp_path / "invalid.onnx"
    files["invalid_graph"].write_bytes(model.SerializeToString())
    return files


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "invalid_graph"])
@pytest.mark.parametrize("command", ["optimize", "inspect"])
def test_bad_model_files(tmp_path: Path, kind: str, command: str) -> None:
    path = _bad_files(tmp_path)[kind]
    before = sha256(path)
    args = [command, path] + (["-o", tmp_path / "out"] if command == "optimize" else [])
    proc = (run_cli if kind in ("empty", "text") and command == "optimize" else invoke_cli)(*args)
    _assert_one_line_error(proc, 2, str(path))
    assert sha256(path) == before
    assert not (tmp_path / "out" / "build.json").exists()


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(invoke_cli("optimize", tmp_path / "missing.onnx"), 2, "no such file")


def test_output_equal_to_input(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(SAMPLE, model)
    before = sha256(model)
    _assert_one_line_error(invoke_cli("optimize", model, "-o", model), 2, "overwrite the input")
    _assert_one_line_error(invoke_cli("optimize", model, "-o", tmp_path), 2, "input model's folder")
    assert sha256(model) == before


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _assert_one_line_error(
        invoke_cli("optimize", SAMPLE, "-o", blocker / "sub", "--no-bench"), 2, "cannot write"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_read_only_output(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        _assert_one_line_error(invoke_cli("optimize", SAMPLE, "-o", folder / "b"), 2, "cannot write")
    finally:
        folder.chmod(0o755)


def test_non_empty_foreign_output_folder_refused(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    _assert_one_line_error(invoke_cli("optimize", SAMPLE, "-o", tmp_path), 2, "not empty")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--input-shape", "input=1x3"], "rank"),
        (["--input-shape", "nope=1x3x96x96"], "unknown input"),
        (["--input-shape", "input=axb"], "positive integers"),
        (["--target", "tpu"], "unknown target 'tpu'"),
        (["--passes", "simplify,warp_drive"], "known passes"),
        (["--skip-pass", "warp_drive"], "known passes"),
    ],
)
def test_bad_options(tmp_path: Path, args, fragment) -> None:
    _assert_one_line_error(
        invoke_cli("optimize", SAMPLE, "-o", tmp_path / "b", "--no-bench", "--precision", "fp32", *args), 2, fragment
    )


def test_usage_error_exit_code() -> None:
    proc = run_cli("optimize")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
