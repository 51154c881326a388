"""The supervisor: phase time limits, the memory ceiling, crashes and signals end as one-line
errors with documented exit codes, and never leave a build that looks complete.

These run the real console script (a child under its supervisor), so each costs a Python
start-up; they are the few cases the in-process tests cannot show."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SAMPLES, invoke_cli
from onnx import TensorProto, helper

from hwopt import guard

HWOPT = [sys.executable, "-m", "hwopt"]


def endless_loop_model() -> onnx.ModelProto:
    """A valid model whose one run never ends: a Loop of 2^62 iterations."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("trips", TensorProto.INT64, [], [2**62]), helper.make_tensor("cond", TensorProto.BOOL, [], [True])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [*HWOPT, *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def assert_one_line_error(stderr: str, fragment: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("hwopt:")]
    assert len(lines) == 1 and fragment in lines[0], stderr
    assert "Traceback" not in stderr


def test_a_phase_that_hangs_is_stopped(tmp_path: Path) -> None:
    model = tmp_path / "loop.onnx"
    onnx.save(endless_loop_model(), str(model))
    start = time.monotonic()
    proc = run_cli(["optimize", model, "-o", tmp_path / "out", "--no-bench"], tmp_path, {guard.TIME_LIMITS_ENV: "run=2"})
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "onnxruntime run did not finish within 2 s")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out" / "build.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.onnx", "out"] or not (tmp_path / "out").exists()


def test_memory_ceiling(tmp_path: Path) -> None:
    # Importing onnxruntime alone takes more than 60 MiB.
    proc = run_cli(["inspect", SAMPLES / "mobilenetv2_tiny.onnx"], tmp_path, {guard.MAX_MEMORY_ENV: "60"})
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "over the 60 MiB limit")


def test_sigterm_stops_cleanly_without_a_complete_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*HWOPT, "optimize", str(SAMPLES / "inception_tiny.onnx"), "-o", str(out), "--bench-seconds", "5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(4)  # well inside the passes or the INT8 search; the run takes far longer
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == guard.EXIT_SIGTERM, stderr
    assert "Traceback" not in stderr
    assert not (out / "build.json").exists()
    leftovers = [p.name for p in out.rglob("*")] if out.exists() else []
    assert not [name for name in leftovers if ".tmp" in name], leftovers


def test_a_native_crash_message(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", f"import os, signal; os.write({write_fd}, b'begin 60.0 run onnxruntime run\\n'); "
         "os.kill(os.getpid(), signal.SIGSEGV)"],
        pass_fds=(write_fd,), start_new_session=True,
    )
    os.close(write_fd)
    stop = guard.Supervisor(child, read_fd, None).watch()
    os.close(read_fd)
    assert stop.code == 2
    assert_one_line_error(stop.message, "onnxruntime run: the process died of SIGSEGV")


def test_exit_codes_pass_through(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    proc = run_cli(["inspect", bad], tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "not an ONNX model")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", guard.TIME_LIMITS),
        ("30", dict.fromkeys(guard.TIME_LIMITS, 30.0)),
        ("run=5,simplify=7", {**guard.TIME_LIMITS, "run": 5.0, "simplify": 7.0}),
    ],
)
def test_time_limits_from_the_environment(monkeypatch, text: str, expected: dict) -> None:
    monkeypatch.setenv(guard.TIME_LIMITS_ENV, text)
    assert guard.time_limits() == expected


@pytest.mark.parametrize("text, message", [("soon", "not SECONDS"), ("run=0", "above 0"), ("walk=3", "unknown phase")])
def test_bad_time_limits(monkeypatch, text: str, message: str) -> None:
    monkeypatch.setenv(guard.TIME_LIMITS_ENV, text)
    with pytest.raises(guard.LimitError, match=message):
        guard.time_limits()


def test_bad_limit_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(["passes"], tmp_path, {guard.MAX_MEMORY_ENV: "lots"})
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "HWOPT_MAX_MEMORY_MB")


def test_feeds_are_bounded_before_allocation(tmp_path: Path, monkeypatch) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 20, 1 << 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 20, 1 << 20])],
    )
    path = tmp_path / "huge_input.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    for command in (["optimize", path, "-o", tmp_path / "o"], ["bench", path], ["quantize", path, "-o", tmp_path / "q"]):
        proc = invoke_cli(*command)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "of input data is over the 4,096 MiB limit" in proc.stderr
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.zeros((4, 4), np.float32))
    monkeypatch.setenv("HWOPT_MAX_FEED_MB", "0.00001")
    proc = invoke_cli("optimize", "--no-memory-search", SAMPLES / "mobilenetv2_tiny.onnx", "-o", tmp_path / "p", "--inputs", feeds)
    assert proc.returncode == 2 and "over the 0 MiB limit" in proc.stderr
