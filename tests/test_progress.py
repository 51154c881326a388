"""Progress: phase times for the report, phases and steps for a listener, nothing without one."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SAMPLES, fp32_options

from hwopt import progress
from hwopt.optimize import optimize
from hwopt.report.render import render_markdown


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def begin(self, name, target, depth):
        self.events.append(("begin", name, target, depth))

    def step(self, label, done, total):
        self.events.append(("step", label, done, total))

    def end(self, name, target, depth, seconds):
        self.events.append(("end", name, target, depth))


def test_top_level_phases_are_timed_nested_ones_only_shown() -> None:
    recorder = Recorder()
    with progress.Tracker(recorder) as tracker:
        with progress.phase("outer"):
            progress.step("work", 1, 2)
            with progress.for_target("cpu"), progress.phase("inner"):
                pass
        with progress.for_target("cpu"), progress.phase("second"):
            pass
    assert [(p.name, p.target) for p in tracker.phases] == [("outer", None), ("second", "cpu")]
    assert all(p.seconds >= 0 for p in tracker.phases)
    assert recorder.events == [
        ("begin", "outer", None, 0), ("step", "work", 1, 2), ("begin", "inner", "cpu", 1),
        ("end", "inner", "cpu", 1), ("end", "outer", None, 0), ("begin", "second", "cpu", 0),
        ("end", "second", "cpu", 0),
    ]
    assert progress.active() is None


def test_without_a_tracker_phase_and_step_do_nothing() -> None:
    assert progress.active() is None
    with progress.phase("anything"):
        progress.step("nothing listens")
    assert progress.active() is None


def test_a_phase_that_raises_is_still_timed() -> None:
    with progress.Tracker() as tracker:
        try:
            with progress.phase("fails"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert [p.name for p in tracker.phases] == ["fails"]


def test_optimize_reports_its_phases(tmp_path: Path) -> None:
    recorder = Recorder()
    report = optimize(SAMPLES / "mobilenetv2_tiny.onnx", fp32_options(output_dir=tmp_path / "b"), listener=recorder)
    names = [t.name for t in report.timings]
    assert names[:2] == ["load", "reference outputs"]
    assert {"passes", "finalize", "benchmark", "memory report"} <= set(names)
    assert all(t.target == "cpu" for t in report.timings[2:])
    steps = [e for e in recorder.events if e[0] == "step" and e[1].startswith("pass ")]
    total = steps[0][3]
    assert total > 1 and [e[2] for e in steps[:total]] == list(range(1, total + 1))
    document = report.to_dict()
    assert [t["name"] for t in document["timings"]] == names
    assert "## Time" in render_markdown(report.document())


def _cli(args: list[str], terminal: bool) -> str:
    """stderr of ``python -m hwopt ARGS``, on a pseudo-terminal or a pipe."""
    if not terminal:
        return subprocess.run([sys.executable, "-m", "hwopt", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=300).stderr
    controller, worker = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hwopt", *args], stdout=subprocess.DEVNULL, stderr=worker,
                            cwd=ROOT, env={**os.environ, "COLUMNS": "160"})
    os.close(worker)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    os.close(controller)
    return b"".join(chunks).decode("utf-8", "replace")


def test_cli_shows_phases_on_a_terminal_and_nothing_off_one(tmp_path: Path) -> None:
    args = ["optimize", str(SAMPLES / "mobilenetv2_tiny.onnx"), "-o", str(tmp_path / "b"), "--precision", "fp32",
            "--no-memory-search", "--bench-seconds", "0.2"]
    shown = _cli(args, terminal=True)
    assert "done" in shown and "load" in shown and "[cpu] passes" in shown and "finished in" in shown
    assert _cli([*args, "--quiet"], terminal=True).strip() == ""
    assert "done" not in _cli(args, terminal=False)


def test_fast_bounds_the_search_and_says_what_it_left_out(tmp_path: Path) -> None:
    from hwopt.options import OptimizeOptions
    from hwopt.stages.memory import FAST_MEMORY_SETTINGS
    from hwopt.timing import BenchConfig

    options = OptimizeOptions(output_dir=tmp_path / "b", fast=True, bench=BenchConfig(target_seconds=2.0))
    assert options.race_seconds < 0.5 and options.bench_config.target_seconds == 0.5
    report = optimize(SAMPLES / "resnext_tiny.onnx", options)
    (build,) = report.builds
    assert [r.setting.label for r in build.memory.settings.results] == list(FAST_MEMORY_SETTINGS)
    variants = build.precision.variants
    assert {(v.config.fmt, v.config.per_channel) for v in variants} == {("dynamic", True)}
    assert build.precision.static_note == "" and "the static INT8 probe" in build.precision.fast_skips
    (note,) = [n for n in report.notes if n.startswith("--fast")]
    assert "the static INT8 probe" in note and "4 candidates" in note


def test_a_run_cap_does_not_make_a_race_shorter_than_its_floor(monkeypatch) -> None:
    import types

    from hwopt import timing
    from hwopt.timing import BenchConfig, measure_latency

    # The run counts follow from the warm-up's time, so the test keeps its own clock: each run
    # takes exactly one step of it (about 1 ms; a power of two, so differences of the clock
    # are exact). With time.sleep(0.001) on a loaded host, one warm-up run delayed past 8.3 ms
    # made the floor's estimate int(0.05 / 0.0083) = 5 runs (13 failures in 300 repeats),
    # though the code did what it should with the time it measured.
    step = 2.0**-10
    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def run() -> None:
        clock[0] += step

    capped = measure_latency({"a": run, "b": run}, BenchConfig(warmup_runs=1, min_runs=2, max_runs=5,
                                                               target_seconds=1.0))
    floored = measure_latency({"a": run, "b": run}, BenchConfig(warmup_runs=1, min_runs=2, max_runs=5,
                                                                target_seconds=1.0, min_seconds=50 * step))
    assert capped["a"].runs == 5
    assert floored["a"].runs == floored["b"].runs == 50  # the floor's 50 steps, past the cap of 5
