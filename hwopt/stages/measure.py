"""Measuring a written build where its provider runs here: which provider runs each node,
latency against the original, interleaved, and the report's warnings."""

from __future__ import annotations

import concurrent.futures
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwopt import progress
from hwopt.feeds.inputs import save_npz
from hwopt.memory.analysis import MemoryAnalysis, analyze_memory
from hwopt.memory.probe import measure_session_memory
from hwopt.memory.settings import Floor, MemoryChoice, empty_session_bytes
from hwopt.model.load import LoadedModel
from hwopt.output import write_json_atomic
from hwopt.partition import RECORD_ASSIGNMENT, fallback_nodes, provider_assignment
from hwopt.passes.base import PassRecord
from hwopt.report.optimize import BuildReport, Latency, MemoryReport, Partition
from hwopt.session import ORT_ERRORS, create_session, default_session_options
from hwopt.stages.context import RunContext
from hwopt.stages.files import MEMORY_PLAN, MODEL_FILE
from hwopt.timing import BenchConfig, bench_session_options, measure_latency

# The onnxruntime settings that decide how much memory a session takes, recorded beside the
# measurement.
MEMORY_SETTINGS = ("graph_optimization_level", "enable_mem_pattern", "enable_cpu_mem_arena", "execution_order")
# And these, where a build sets them (hwopt.memory.settings).
MEMORY_EXTRAS = ("config_entries", "env_allocator", "run_options")


def measure_build(run: RunContext, build: BuildReport, build_dir: Path, providers, availability,
                   analysis: MemoryAnalysis, records, memory_choice: MemoryChoice | None, memory_note: str) -> None:
    """Warnings, then (where the target runs here) partition, latency and memory, into ``build``."""
    build.warnings += _precision_warnings(build.precision)
    build.warnings += [f"check failed: {c.name}: {c.detail}" for c in build.checks if not c.passed]
    for record in (r for r in records if r.status == "rolled_back"):
        build.warnings.append(f"pass '{record.name}' was rolled back: {record.reason}")
    if not availability.available:
        build.latency.not_measured = availability.reason
        build.partition = Partition(not_measured=availability.reason)
    else:
        build.partition = _partition(build_dir, build)
        if build.partition.fallback:
            build.warnings.append(
                f"{len(build.partition.fallback)} node(s) run on a provider other than "
                f"{providers[0][0]}: {', '.join(build.partition.fallback[:5])} (--no-fallback makes this an error)"
            )
        if not run.options.measure:
            build.latency.not_measured = "benchmark skipped (--no-bench)"
        else:
            with progress.phase("benchmark"):
                build.latency = _benchmark(run.loaded, build_dir, build, run.feeds[0], run.options.bench_config)
    with progress.phase("memory report"):
        build.memory = memory_report(run, analysis, records, build_dir, build, availability, memory_choice)
    build.memory.settings_note = memory_note
    write_json_atomic(build_dir / MEMORY_PLAN, build.memory.build.plan_document(run.specs))


def _precision_warnings(report) -> list[str]:
    """What a reader must know about the data an INT8 decision rests on."""
    if report is None or not report.generated_data:
        return []
    if report.static_candidates:  # static INT8 competed on generated data: --calib generated
        return ["static INT8 was calibrated and judged on GENERATED inputs (--calib generated): its activation "
                "scales and accuracy figures say nothing about real data; pass --calib with samples of real inputs"]
    if report.chosen == "int8":
        return ["dynamic INT8 (activation scales computed at run time) was judged on generated inputs (see "
                "'generated feeds'); pass --calib with real samples to judge it on real data"]
    return []


def build_providers(build: BuildReport) -> list[tuple[str, dict[str, Any]]]:
    return [(p["name"], dict(p["options"])) for p in build.providers]


def _partition(build_dir: Path, build: BuildReport) -> Partition:
    """Which provider runs each node of the build, from onnxruntime's own assignment."""
    options = dict(build.session_options)
    options["config_entries"] = {**options.get("config_entries", {}), **RECORD_ASSIGNMENT}
    providers = build_providers(build)
    try:
        session = create_session(build_dir / MODEL_FILE, options, providers, base_dir=build_dir)
    except ORT_ERRORS as exc:
        return Partition(not_measured=f"the session could not be created: {exc}")
    assignment = provider_assignment(session)
    primary = providers[0][0]
    return Partition(
        nodes={ep: len(nodes) for ep, nodes in assignment.items()},
        fallback=fallback_nodes(assignment, primary),
    )


def _benchmark(loaded: LoadedModel, build_dir: Path, build: BuildReport,
               feeds: Mapping[str, np.ndarray], config: BenchConfig) -> Latency:
    """The original and the build, interleaved, both under the build's settings."""
    options, providers = bench_session_options(build.session_options), build_providers(build)
    original = create_session(loaded.path, options, providers, base_dir=build_dir)
    optimized = create_session(build_dir / MODEL_FILE, options, providers, base_dir=build_dir)
    stats = measure_latency(
        {
            "original": lambda: original.run(None, feeds),
            "optimized": lambda: optimized.run(None, feeds),
        },
        config,
        batch=batch_of(feeds),
    )
    return Latency(original=stats["original"], optimized=stats["optimized"])


def batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim > 0 else 1


def memory_report(run: RunContext, analysis: MemoryAnalysis, records: Sequence[PassRecord],
                   build_dir: Path, build: BuildReport, availability, choice: MemoryChoice | None) -> MemoryReport:
    """The static picture of original and build, and their measured peaks: the original under
    onnxruntime's defaults (hwopt's thread count), the build as it deploys (as ``choice``
    measured it, where it did)."""
    report = MemoryReport(
        original=analyze_memory(run.loaded.proto, run.specs, feeds=run.feeds[0]),
        build=analysis,
        reorder=next((r.metrics for r in reversed(records)
                      if r.name == "reorder" and r.status == "applied"), None),
        ort_settings={**{key: build.session_options.get(key) for key in MEMORY_SETTINGS},
                      **{key: build.session_options[key] for key in MEMORY_EXTRAS if build.session_options.get(key)}},
        settings=choice,
    )
    if not availability.available:
        report.not_measured = availability.reason
        return report
    if not run.options.measure:
        report.not_measured = "measurement skipped (--no-bench)"
        return report
    listed = [{"name": n, "options": dict(o)} for n, o in build_providers(build)]
    with tempfile.TemporaryDirectory(prefix="hwopt-feeds-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        save_npz(feeds_path, run.feeds[0])
        # Fresh processes, the original's beside the empty session's (a process's peak is its own).
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            original = pool.submit(measure_session_memory, run.loaded.path, listed, default_session_options("all"),
                                   feeds_path)
            session_bytes = empty_session_bytes()
            report.measured_original = original.result()
        report.measured_build = choice.deployed_result.memory if choice else None
        if report.measured_build is None:
            report.measured_build = measure_session_memory(build_dir / MODEL_FILE, listed, build.session_options,
                                                           feeds_path, base_dir=build_dir)
    # Every weight, subgraphs' and Constant nodes' too (the analysis counts the main graph's).
    report.floor = Floor(weight_bytes=build.optimized.weight_bytes, arena_bytes=analysis.planned_arena_bytes,
                         io_bytes=analysis.input_bytes + analysis.output_bytes, session_bytes=session_bytes)
    return report
