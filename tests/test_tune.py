"""hwopt tune: the search, its outputs, the cache, interruption and --resume.

The searches here are small (a tiny model, two recipes, a few session variants, seconds of
budget): they check what the search does, not how fast the result is; benchmarks/tune.py measures
that on the sample and real models.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import invoke_cli, sha256

from hwopt.options import OptimizeOptions, PrecisionOptions
from hwopt.tune import TuneOptions, tune
from hwopt.tune.outcome import pareto
from hwopt.tune.results import RESULTS_FILE
from hwopt.tune.search import ANCHOR


def _options(out: Path, **kwargs) -> TuneOptions:
    settings = {
        "output_dir": out,
        "budget_seconds": 12.0,
        "recipes": ["original", "hwopt"],
        "variants": ["opt-basic", "no-arena", "threads-1"],
        "memory": False,
        "base": OptimizeOptions(precision=PrecisionOptions(mode="fp32")),
    }
    settings.update(kwargs)
    return TuneOptions(**settings)


@pytest.fixture
def budget_clock_stopped(monkeypatch) -> None:
    """tune's budget clock stands still, so every stage of the search runs whatever the host's
    speed: for tests of what a stage yields, not of when the budget cuts the search short.
    (The races still time with their own clock.) On a loaded host the real clock decided these
    tests: the INT8 recipe is skipped when under 35% of the budget is left after the cheap builds
    (a cold first build took 9.4 s of 12), and Ray's start and its workers' imports used up the
    budget before the last candidates raced ('not run' against 'measured' in-process)."""
    import hwopt.tune.search as search

    monkeypatch.setattr(search, "time", types.SimpleNamespace(monotonic=lambda: 0.0))


def test_pareto_front_keeps_only_points_nothing_beats_on_both_axes() -> None:
    points = [("a", 1.0, 0.5), ("b", 2.0, 0.1), ("c", 2.5, 0.4), ("d", 0.9, 0.9), ("e", 1.0, 0.5)]
    front = pareto(points)
    assert front == ["d", "a", "e", "b"]  # c is beaten by b on both; a and e tie and both stay
    assert pareto([]) == []


def test_tune_writes_a_loadable_build_with_the_options_it_found(tiny_model_path: Path, tmp_path: Path) -> None:
    from hwopt.runtime import load, read_build

    before = sha256(tiny_model_path)
    report = tune(tiny_model_path, _options(tmp_path / "out"))
    out = tmp_path / "out"
    assert sha256(tiny_model_path) == before

    assert report.best is not None and report.best.final
    ids = {c.id for c in report.candidates}
    assert ANCHOR in ids and "hwopt/target-defaults" in ids
    assert {c.status for c in report.candidates} <= {"measured", "stopped", "rejected", "failed", "not run"}
    assert all(c.ratio is not None for c in report.candidates if c.final)
    anchor = next(c for c in report.candidates if c.id == ANCHOR)
    assert anchor.ratio == pytest.approx(1.0)

    manifest = json.loads((out / "build.json").read_text())
    assert manifest["tune"]["candidate"] == report.best.id
    assert manifest["session_options"] == report.best.session_options
    build = read_build(out)  # every file's hash checks out
    assert build.manifest["session_options"] == report.best.session_options
    session = load(out)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    reference = onnx.reference.ReferenceEvaluator(str(tiny_model_path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], reference, rtol=1e-4, atol=1e-5)

    saved = json.loads((out / "tune.json").read_text())
    assert saved["schema"] == "hwopt.tune/1" and saved["best"] == report.best.id
    assert len(saved["candidates"]) == len(report.candidates)
    markdown = (out / "report.md").read_text()
    assert report.best.id in markdown
    if report.plot:
        assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "(pareto.png)" in markdown
    lines = (out / RESULTS_FILE).read_text().splitlines()
    assert json.loads(lines[0])["header"]["schema"] == "hwopt.tune-results/1"
    assert len(lines) > len(ids) // 2


def test_interrupted_search_keeps_its_best_and_resume_reuses_the_cache(
    tiny_model_path: Path, tmp_path: Path, monkeypatch
) -> None:
    import hwopt.tune.builds as builds_module

    out = tmp_path / "out"
    races = []

    def stop_after_first_race(progress) -> None:
        if progress.step.startswith("race") and progress.step.endswith("done"):
            races.append(progress.step)
            raise KeyboardInterrupt

    first = tune(tiny_model_path, _options(out), stop_after_first_race)
    assert first.interrupted.startswith("interrupted") and len(races) == 1
    assert first.best is not None
    assert (out / "build.json").is_file(), "the best build measured before Ctrl-C was written"
    measured = {c.id for c in first.candidates if c.ratio is not None}

    builds = []
    real_optimize = builds_module.optimize
    monkeypatch.setattr(builds_module, "optimize", lambda *a, **k: builds.append(a) or real_optimize(*a, **k))
    second = tune(tiny_model_path, _options(out, resume=True))
    assert builds == [], "every recipe came from the build cache"
    assert not second.interrupted and second.best is not None
    restored = {c.id for c in second.candidates if c.found_at_s is not None}
    assert measured <= restored
    assert second.elapsed_seconds >= first.elapsed_seconds  # the earlier run's time counts


@pytest.mark.usefixtures("budget_clock_stopped")
def test_int8_variants_within_budget_are_candidates_of_their_own(tiny_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Static INT8 competes only on real data or when generated data is accepted.
    base = OptimizeOptions(precision=PrecisionOptions(calib_path=Path("generated")))
    report = tune(tiny_model_path, _options(out, recipes=["original", "hwopt-int8"], variants=[], base=base))
    listing = next((out / ".tune-cache").glob("*/int8-variants/variants.json"))
    kept = json.loads(listing.read_text())
    assert kept, "the INT8 search kept its variants within budget"
    assert all(entry["accuracy"]["cosine"] >= 0.99 for entry in kept)
    variants = [name for name in report.recipes if name.startswith("hwopt-int8-v")]
    # Every kept variant is a candidate, except the one the search shipped (the same model).
    assert len(variants) >= len(kept) - 1 and variants
    for name in variants:
        candidate = next(c for c in report.candidates if c.id == f"{name}/target-defaults")
        assert candidate.status in ("measured", "stopped", "rejected")
    derived = [f for f in (out / ".tune-cache").iterdir() if f.is_dir() and (f / "build.json").is_file()
               and json.loads((f / "build.json").read_text()).get("int8_variant")]
    assert len(derived) == len(kept)
    quantized = [f for f in derived if any(n.op_type in ("QuantizeLinear", "QLinearConv")
                                           for n in onnx.load(str(f / "model.onnx")).graph.node)]
    assert quantized, "at least one variant quantizes something (others may keep layers in float)"


def test_resume_refuses_results_for_another_model(tiny_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tune(tiny_model_path, _options(out, variants=[]))
    other = onnx.load(str(tiny_model_path))
    other.graph.initializer[0].raw_data = bytes(len(other.graph.initializer[0].raw_data))
    other_path = tmp_path / "other.onnx"
    onnx.save(other, str(other_path))
    result = invoke_cli("tune", other_path, "-o", out, "--resume", "--budget-minutes", "0.1")
    assert result.returncode == 2
    assert "written for another source sha256" in result.stderr


def test_cli_tune_errors_are_one_line(tiny_model_path: Path, tmp_path: Path) -> None:
    result = invoke_cli("tune", tiny_model_path, "--target", "cuda", "-o", tmp_path / "gpu")
    if result.returncode == 4:  # the usual host: no GPU provider
        assert result.stderr.startswith("hwopt: error: hwopt tune times every candidate on this host")
    result = invoke_cli("tune", tiny_model_path, "--recipes", "nope", "-o", tmp_path / "x")
    assert result.returncode == 2 and "unknown recipe(s) nope" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.usefixtures("budget_clock_stopped")
def test_ray_workers_give_the_in_process_results(tiny_model_path: Path, tmp_path: Path, monkeypatch) -> None:
    """The same candidates, builds, checks and statuses with --workers local:2 as in-process
    (the timings differ, as any two runs' do)."""
    pytest.importorskip("ray")
    from hwopt.tune.workers import Workers

    calls = []
    for method in ("build_many", "race"):
        real = getattr(Workers, method)
        monkeypatch.setattr(Workers, method, lambda self, *a, _real=real, _name=method, **k: calls.append(_name)
                            or _real(self, *a, **k))
    settings = {"budget_seconds": 20.0, "variants": ["opt-basic"]}
    here = tune(tiny_model_path, _options(tmp_path / "here", **settings))
    assert calls == []
    there = tune(tiny_model_path, _options(tmp_path / "ray", workers="local:2", **settings))
    assert calls.count("build_many") == 1 and calls.count("race") >= 2  # the first race and the final one

    assert {c.id: c.status for c in here.candidates} == {c.id: c.status for c in there.candidates}
    assert there.best is not None and all(c.ratio is not None for c in there.candidates if c.status == "measured")
    for a in here.candidates:
        b = next(c for c in there.candidates if c.id == a.id)
        if a.accuracy is not None:
            assert b.accuracy.cosine == pytest.approx(a.accuracy.cosine, abs=1e-9)
            assert b.accuracy.max_abs == pytest.approx(a.accuracy.max_abs, abs=1e-9)

    def builds(out: Path) -> dict[str, dict]:
        return {p.parent.name: json.loads(p.read_text())["files"] for p in (out / ".tune-cache").glob("*/build.json")}

    assert builds(tmp_path / "here") == builds(tmp_path / "ray")  # byte-identical models, same cache keys
    assert json.loads((tmp_path / "ray" / "build.json").read_text())["tune"]["candidate"] == there.best.id


@pytest.mark.parametrize("change", [
    {"precision": {"calibration.held_out": 6}},
    {"precision": {"calibration.image": {"size": [8, 8]}}},
    {"bench": {"bench.seconds": 0.7}},
], ids=["held_out", "image_spec", "bench_seconds"])
def test_a_changed_option_is_not_served_a_cached_build(tiny_model_path: Path, tmp_path: Path, change) -> None:
    """The build cache's key hashes every option a build is made with: a config that differs in
    any of them gets a build of its own, never the cached one (these three were once left out)."""
    from hwopt import schema

    out = tmp_path / "out"
    quick = {"recipes": ["original"], "variants": []}
    tune(tiny_model_path, _options(out, **quick))
    first = {p.name for p in (out / ".tune-cache").iterdir()}
    base = schema.apply(OptimizeOptions(precision=PrecisionOptions(mode="fp32")), next(iter(change.values())))
    tune(tiny_model_path, _options(out, base=base, **quick))
    second = {p.name for p in (out / ".tune-cache").iterdir()}
    assert second - first, "the changed options were served the cached build"
