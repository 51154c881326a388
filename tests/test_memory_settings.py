"""Memory settings chosen by measurement (hwopt.memory.settings): the choice rules on given
figures, the settings' plumbing into sessions, and one measured build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SAMPLES, fp32_options

from hwopt.errors import UsageError
from hwopt.memory.probe import SessionMemory
from hwopt.memory.settings import (
    BALANCED_SLACK,
    CPU_SETTINGS,
    MemorySetting,
    SettingResult,
    choose,
    order_check,
)
from hwopt.optimize import optimize
from hwopt.runtime import load
from hwopt.session import ConfiguredSession, create_session, make_session_options
from hwopt.timing import BenchConfig

MiB = 1 << 20


def result(label: str, peak_mib: float, p50: float, fastest: float = 10.0) -> SettingResult:
    """A setting measured at ``peak_mib`` and ``p50`` in one race whose fastest ran ``fastest``."""
    return SettingResult(MemorySetting(label, label), SessionMemory(0, 0, int(peak_mib * MiB)), [p50], [p50 / fastest])


def test_balanced_takes_the_lowest_peak_within_the_slack_of_the_fastest() -> None:
    results = [result("defaults", 150, 10.0), result("lean", 90, 10.0 * BALANCED_SLACK * 0.999),
               result("leanest-but-slow", 60, 10.0 * BALANCED_SLACK * 1.01)]
    choice = choose(results, "balanced")
    assert choice.chosen.setting.label == "lean"
    assert choice.chosen.status == "chosen" and results[0].status == "tried"
    assert "within 3% of the fastest" in choice.reason


def test_memory_and_latency_goals() -> None:
    results = [result("defaults", 150, 10.0), result("lean", 90, 10.2), result("leanest", 60, 11.0)]
    assert choose(results, "memory").chosen.setting.label == "leanest"
    assert choose(results, "latency").chosen.setting.label == "defaults"


def test_ties_go_to_the_earlier_setting() -> None:
    results = [result("defaults", 90, 10.0), result("same", 90, 10.0)]
    for goal in ("balanced", "memory", "latency"):
        assert choose(results, goal).chosen.setting.label == "defaults"


def test_unmeasured_settings_are_not_chosen() -> None:
    failed = SettingResult(MemorySetting("broken", "broken"), status="failed", reason="probe failed")
    choice = choose([failed, result("defaults", 100, 10.0)], "memory")
    assert choice.chosen.setting.label == "defaults"
    with pytest.raises(Exception, match="broken: probe failed"):
        choose([failed], "balanced")
    with pytest.raises(ValueError):
        choose([result("defaults", 100, 10.0)], "smallest")


@pytest.mark.parametrize(("mine", "other", "kept"), [
    ((80, 10.0), (90, 9.0), True),    # lower peak pays for the time
    ((90, 10.1), (90, 10.0), True),   # no measurable cost
    ((90, 10.5), (90, 10.0), False),  # slower, and no lower peak
    ((89.5, 10.5), (90, 10.0), False),  # a peak within 1% is no lower
])
def test_reorder_order_stays_only_where_it_pays(mine, other, kept) -> None:
    check = order_check(result("a", *mine), result("a+ort-order", *other))
    assert check.kept is kept


def test_settings_merge_config_entries_into_the_targets() -> None:
    base = {"enable_mem_pattern": True, "config_entries": {"session.intra_op.allow_spinning": "0"}}
    exact = next(s for s in CPU_SETTINGS if s.label == "exact-arena-no-prepack")
    options = exact.session_options(base)
    assert options["enable_mem_pattern"] is False
    assert options["config_entries"] == {"session.intra_op.allow_spinning": "0", "session.use_env_allocators": "1",
                                         "session.disable_prepacking": "1"}
    assert options["env_allocator"] == {"arena_extend_strategy": 1}
    assert base["config_entries"] == {"session.intra_op.allow_spinning": "0"}  # not modified
    assert CPU_SETTINGS[0].session_options(base) == base


def test_sessions_apply_run_options_and_the_environment_allocator() -> None:
    options = {"run_options": {"memory.enable_memory_arena_shrinkage": "cpu:0"},
               "env_allocator": {"arena_extend_strategy": 1},
               "config_entries": {"session.use_env_allocators": "1"}}
    session = create_session(SAMPLES / "shufflenet_tiny.onnx", options)
    assert isinstance(session, ConfiguredSession) and isinstance(session, ort.InferenceSession)
    assert session.default_run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    (out,) = session.run(None, {"input": np.zeros((1, 3, 96, 96), np.float32)})
    assert out.shape == (1, 100)
    assert type(create_session(SAMPLES / "shufflenet_tiny.onnx", {})) is ort.InferenceSession
    with pytest.raises(UsageError, match="env_allocator must be a table"):
        make_session_options({"env_allocator": 1})


@pytest.fixture(scope="module")
def measured_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory") / "build"

    report = optimize(SAMPLES / "shufflenet_tiny.onnx", fp32_options(output_dir=out, memory_search=True,
                                                                       bench=BenchConfig(target_seconds=0.2)))
    return report.builds[0], out


def test_a_cpu_build_records_the_setting_it_measured(measured_build) -> None:
    build, out = measured_build
    choice = build.memory.settings
    assert [r.setting.label for r in choice.results] == [s.label for s in CPU_SETTINGS]
    assert all(r.peak_bytes and r.peak_bytes > 0 and r.p50_ms > 0 and r.vs_fastest >= 1.0 for r in choice.results)
    deployed = choice.deployed
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["session_options"] == build.session_options
    for key, value in deployed.overrides.items():
        if key != "config_entries":
            assert manifest["session_options"][key] == value
    assert build.memory.measured_build.session_bytes == choice.deployed_result.peak_bytes
    floor = build.memory.floor
    assert floor.session_bytes > 0 and floor.total > floor.weight_bytes + floor.arena_bytes
    document = build.to_dict()["memory"]
    assert document["settings"]["chosen"] == choice.chosen.setting.label
    assert len(document["settings"]["candidates"]) == len(CPU_SETTINGS)


def test_runtime_load_deploys_the_recorded_settings(measured_build) -> None:
    build, out = measured_build
    session = load(out)
    options = build.session_options
    if options.get("run_options"):
        assert isinstance(session, ConfiguredSession)
    (result_,) = session.run(None, {"input": np.zeros((1, 3, 96, 96), np.float32)})
    assert result_.shape == (1, 100)


def test_saving_weights_apart_leaves_the_model_whole(tmp_path) -> None:
    from hwopt.output import save_model_atomic

    model = onnx.load(str(SAMPLES / "resnext_tiny.onnx"))
    before = model.SerializeToString(deterministic=True)
    assert save_model_atomic(model, tmp_path / "model.onnx", external=True) == ["model.onnx", "model.onnx.data"]
    assert model.SerializeToString(deterministic=True) == before
    assert save_model_atomic(model, tmp_path / "model.onnx") == ["model.onnx"]
    assert not (tmp_path / "model.onnx.data").exists()  # the earlier weights file is gone


def test_a_build_whose_weights_measure_better_apart_ships_them_apart(tmp_path, monkeypatch) -> None:
    """The plumbing of a weights file the check chose (forced here: the sample models are too
    small for it to pay): the manifest lists it, and runtime.load verifies and runs it."""
    import hwopt.memory.settings as settings
    import hwopt.stages.memory as optimize_module

    monkeypatch.setattr(optimize_module, "WEIGHTS_FILE_MIN", 0)
    monkeypatch.setattr(settings, "WEIGHTS_TIE", -10.0)
    monkeypatch.setattr(settings, "ORDER_SLACK", 100.0)
    from hwopt.targets.cpu import CpuTarget

    monkeypatch.setattr(CpuTarget, "memory_settings", CPU_SETTINGS[:2])
    out = tmp_path / "build"
    report = optimize(SAMPLES / "shufflenet_tiny.onnx", fp32_options(output_dir=out, memory_search=True,
                                                                       bench=BenchConfig(target_seconds=0.1)))
    weights = report.builds[0].memory.settings.weights
    assert weights.external and weights.apart.peak_bytes > 0 and "model.onnx.data" in weights.reason
    manifest = json.loads((out / "build.json").read_text())
    assert set(manifest["files"]) >= {"model.onnx", "model.onnx.data"}
    (result_,) = load(out).run(None, {"input": np.zeros((1, 3, 96, 96), np.float32)})
    assert result_.shape == (1, 100)
    assert not list(out.glob(".weights-*"))


@pytest.mark.parametrize(("two_way", "expected"), [(1.01, "lean"), (1.08, "defaults")])
def test_balanced_confirms_its_pick_against_the_fastest(monkeypatch, two_way, expected) -> None:
    import hwopt.memory.settings as settings

    def fake_time(results, *args, **kwargs):  # a two-way race: the pick at ``two_way`` x the fastest
        pick, best = results
        best.p50s_ms, pick.p50s_ms = [10.0] * 3, [10.0 * two_way] * 3

    monkeypatch.setattr(settings, "time_settings", fake_time)
    results = [result("defaults", 150, 10.0), result("lean", 90, 10.2)]
    how = settings.Measuring(Path("m.onnx"), {}, (), {}, Path("feeds.npz"), seconds=0.1)
    choice = settings.confirm(results, "balanced", how)
    assert choice.chosen.setting.label == expected
    lean = results[1]
    if expected == "lean":
        assert "confirmed against defaults: 1.010x" in choice.reason
    else:
        assert lean.status == "tried" and lean.vs_fastest == pytest.approx(1.08) and "two-way race(s): out" in lean.reason
    assert [r.status for r in results].count("chosen") == 1


def test_the_median_of_three_is_bounded_by_the_races_run() -> None:
    from hwopt.memory.settings import median_range

    assert median_range([], 3) == (float("-inf"), float("inf"))
    assert median_range([1.05], 3) == (float("-inf"), float("inf"))
    assert median_range([1.05, 1.01], 3) == (1.01, 1.05)
    assert median_range([1.05, 1.01, 1.02], 3) == (1.02, 1.02)
    assert median_range([1.2], 1) == (1.2, 1.2)


def test_races_stop_once_no_later_race_can_change_the_pick() -> None:
    from hwopt.memory.settings import goal_relevant, pair_settled

    def goal_settled(results, goal):  # what time_settings stops on: fewer than two left to race
        return len(goal_relevant(results, goal)) < 2

    def raced(label, peak, *ratios):
        return SettingResult(MemorySetting(label, label), SessionMemory(0, 0, int(peak * MiB)), [10.0] * len(ratios),
                             list(ratios))

    # Balanced: "lean" is certainly within 3% (both races), and the only lower peak is certainly out.
    settled = [raced("defaults", 150, 1.0, 1.0), raced("lean", 90, 1.01, 1.02), raced("leanest", 60, 1.10, 1.08)]
    assert goal_settled(settled, "balanced")
    # A lower peak still straddling the slack keeps racing.
    open_ = [raced("defaults", 150, 1.0, 1.0), raced("lean", 90, 1.01, 1.02), raced("leanest", 60, 1.01, 1.05)]
    assert not goal_settled(open_, "balanced")
    # Only the fastest and the open lower peak race on; "lean" is decided and stops.
    assert [r.setting.label for r in goal_relevant(open_, "balanced")] == ["defaults", "leanest"]
    # ... unless its peak is above the certain pick's.
    assert goal_settled([raced("defaults", 150, 1.0, 1.0), raced("heavy", 200, 1.01, 1.05)], "balanced")
    # After one race of three nothing is certain, except for memory, whose pick ignores speed.
    assert not goal_settled([raced("defaults", 150, 1.0), raced("lean", 90, 1.01)], "balanced")
    assert goal_settled([raced("defaults", 150, 1.0), raced("lean", 90, 1.01)], "memory")
    assert goal_settled([raced("a", 1, 1.0, 1.0), raced("b", 1, 1.06, 1.04)], "latency")
    assert not goal_settled([raced("a", 1, 1.0, 1.05), raced("b", 1, 1.02, 1.0)], "latency")
    a, b = raced("a", 1, 1.0, 1.0), raced("b", 1, 1.0, 1.0)
    a.p50s_ms, b.p50s_ms = [10.0, 10.1], [10.0, 10.0]
    assert pair_settled(a, b, 1.02)
    a.p50s_ms = [10.0, 10.5]
    assert not pair_settled(a, b, 1.02)


def test_a_lower_peak_keeps_the_reorder_order_without_a_race() -> None:
    mine = SettingResult(MemorySetting("a", "a"), SessionMemory(0, 0, 80 * MiB))
    other = SettingResult(MemorySetting("a+ort-order", "a"), SessionMemory(0, 0, 90 * MiB))
    check = order_check(mine, other)
    assert check.kept and "not raced" in check.reason


def test_the_probe_server_measures_what_a_fresh_process_does(tmp_path, monkeypatch) -> None:
    from hwopt.feeds.inputs import save_npz
    from hwopt.memory.probe import SERVER_ENV, measure_session_memory

    feeds = save_npz(tmp_path / "f.npz", {"input": np.zeros((1, 3, 96, 96), np.float32)})
    providers = [{"name": "CPUExecutionProvider", "options": {}}]
    peaks = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(SERVER_ENV, mode)
        peaks[mode] = measure_session_memory(SAMPLES / "shufflenet_tiny.onnx", providers, {}, feeds).session_bytes
    # Library pages the server had mapped would count as the session's (8 MiB more) if the
    # forked child did not touch them before its baseline; run to run, peaks differ by < 1 MiB.
    assert abs(peaks["1"] - peaks["0"]) < 2 * MiB, peaks
