"""The memory stage of a build: where the weights live and which onnxruntime memory settings
deploy, both chosen by measuring fresh processes (hwopt.memory.settings), and the memory
report: planned against measured peaks."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx

from hwopt.memory.analysis import MemoryAnalysis
from hwopt.memory.probe import MeasurementFailed
from hwopt.memory.settings import RACES, MemoryChoice, MemorySetting, WeightsCheck, choose_settings, weights_check
from hwopt.model.stats import weight_bytes
from hwopt.options import OptimizeOptions
from hwopt.output import save_model_atomic
from hwopt.passes.base import PassRecord
from hwopt.stages.context import RunContext
from hwopt.stages.files import MODEL_FILE
from hwopt.targets import Target

# Weights from which a build measures keeping them in a file beside model.onnx.
WEIGHTS_FILE_MIN = 1 << 20
# --fast: the memory settings it measures (onnxruntime's defaults first; the ones that won most
# often in benchmarks/results/memory_settings.md), one race each.
FAST_MEMORY_SETTINGS = ("pattern+arena", "no-pattern", "exact-arena", "exact-arena-no-prepack")
FAST_RACES = 1


def memory_stage(run: RunContext, target: Target, build_dir: Path, model: onnx.ModelProto, model_files: list[str],
                 providers, session_options, records, analysis: MemoryAnalysis, availability):
    """Where the weights live and which memory settings deploy, both measured (or why not);
    returns the choice, the note, and the build's model files."""
    skipped = _memory_search_skipped(run, target, providers, availability)
    weights = None if skipped else _weights_file_check(run, target, model, build_dir, providers, session_options)
    if weights is not None and weights.external:
        model_files = save_model_atomic(model, build_dir / MODEL_FILE, external=True)
    memory_choice, memory_note = _choose_memory_settings(run, target, build_dir, providers, session_options,
                                                         records, analysis, skipped)
    if memory_choice is not None:
        memory_choice.weights = weights
    return memory_choice, memory_note, model_files


def _memory_search_skipped(run: RunContext, target: Target, providers, availability) -> str:
    """Why this build measures no memory settings; empty where it does."""
    if not target.memory_settings:
        return f"{providers[0][0]} manages its own memory: the target's settings ship unmeasured"
    if not availability.available:
        return availability.reason
    if not run.options.measure:
        return "not chosen: measurement skipped (--no-bench); the target's defaults ship"
    if not run.options.memory_search:
        return "not chosen: --no-memory-search; the target's defaults ship"
    if run.options.session_overrides:
        return "not chosen: the session options given (hwopt tune's) ship as they are"
    return ""


def _weights_file_check(run: RunContext, target: Target, model: onnx.ModelProto, build_dir: Path, providers,
                        session_options) -> WeightsCheck | None:
    """Whether the build's weights ship in a file beside model.onnx (hwopt.memory.settings),
    measured with onnxruntime's defaults; None for a model with little to gain."""
    if weight_bytes(model) < WEIGHTS_FILE_MIN:
        return None
    with tempfile.TemporaryDirectory(prefix=".weights-", dir=build_dir) as tmp:
        external = Path(tmp) / MODEL_FILE
        save_model_atomic(model, external, external=True)
        return weights_check(target.memory_settings[0], build_dir / MODEL_FILE, external, session_options,
                             providers, run.feeds[0], base_dir=build_dir)


def _memory_races(options: OptimizeOptions) -> int:
    return FAST_RACES if options.fast else RACES


def _memory_candidates(target: Target, options: OptimizeOptions) -> list[MemorySetting]:
    candidates = list(target.memory_settings)
    if options.fast:
        candidates = [s for s in candidates if s.label in FAST_MEMORY_SETTINGS] or candidates[:1]
    return candidates


def _choose_memory_settings(run: RunContext, target: Target, build_dir: Path, providers, session_options,
                            records: Sequence[PassRecord], analysis: MemoryAnalysis,
                            skipped: str) -> tuple[MemoryChoice | None, str]:
    """The target's memory settings measured on the build as it ships (hwopt.memory.settings),
    or why not."""
    if skipped:
        return None, skipped
    reordered = (session_options.get("execution_order") == "priority_based"
                 and any(r.name == "reorder" and r.status == "applied" for r in records))
    try:
        choice = choose_settings(build_dir / MODEL_FILE, session_options, providers, run.feeds[0],
                                 _memory_candidates(target, run.options), run.options.optimize_for,
                                 seconds=run.options.memory_race_seconds, check_order=reordered,
                                 planned_arena_bytes=analysis.planned_arena_bytes, base_dir=build_dir,
                                 races=_memory_races(run.options))
    except MeasurementFailed as exc:
        return None, f"not chosen: {exc}"
    return choice, ""


