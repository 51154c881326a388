"""One target's build: its float graphs, precision, the target's last step, memory settings,
the files written, then measured where it runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from hwopt import progress
from hwopt.feeds.sources import calibration_sets
from hwopt.memory.analysis import MemoryAnalysis, analyze_memory
from hwopt.model.stats import model_stats
from hwopt.output import MANIFEST, save_model_atomic
from hwopt.passes.base import PassRecord
from hwopt.passes.pipeline import NOT_KEPT, PipelineResult
from hwopt.quant.accuracy import compare
from hwopt.quant.choose import PrecisionReport
from hwopt.report.optimize import Accuracy, BuildReport, Latency
from hwopt.stages.context import RunContext, session_options_for
from hwopt.stages.files import INT8_VARIANTS, MEMORY_PLAN, MODEL_FILE, manifest
from hwopt.stages.graphs import FloatGraphs, float_graphs, records_for, target_precision
from hwopt.stages.measure import batch_of, measure_build
from hwopt.stages.memory import memory_stage
from hwopt.stages.precision import run_precision_stage
from hwopt.targets import BuildContext, Target
from hwopt.targets.base import Availability, TargetBuild
from hwopt.verify import ModelRunner, compare_outputs, merge_diffs

NO_FALLBACK = {"session.disable_cpu_ep_fallback": "1"}


def build_for_target(run: RunContext, target: Target, build_dir: Path) -> tuple[BuildReport, dict]:
    """Build, write and measure one target; return its report and the manifest, which the
    caller writes last."""
    options = run.options
    availability = target.availability()
    precision = target_precision(target, options.precision.mode)
    floats = float_graphs(run, target, availability.available)
    graph, model, precision_report = _precision(run, target, floats, precision, availability.available, build_dir)
    records = records_for(floats.result, floats.variants, graph, floats.choice)
    with progress.phase("finalize"):
        final, outputs, model_files, analysis = _finalize(run, target, build_dir, model, floats.graphs[graph],
                                                          precision)
    model = final.model
    providers, session_options, memory_choice, memory_note, model_files, records = _deployment(
        run, target, build_dir, final, model_files, records, analysis, availability)
    build = BuildReport(
        target=target.name,
        build_dir=str(build_dir),
        providers=[{"name": n, "options": dict(o)} for n, o in providers],
        session_options=session_options,
        available=availability.available,
        availability_reason=availability.reason,
        original=model_stats(run.loaded.proto, run.loaded.file_bytes),
        optimized=model_stats(model, sum((build_dir / f).stat().st_size for f in model_files)),
        latency=Latency(),
        accuracy=Accuracy(
            merge_diffs([compare_outputs(r, o) for r, o in zip(run.references, outputs)]),
            samples=sum(batch_of(f) for f in run.feeds),
            rounding_noise=run.noise,
            summary=compare(run.references, outputs),
        ),
        passes=records,
        graph_choice=floats.choice,
        precision=precision_report,
        precision_label=final.precision if precision_report is None or precision_report.chosen != "int8" else "int8",
        target_notes=[n for n in (target.alias_note, *final.notes) if n],
        checks=final.checks,
    )
    measure_build(run, build, build_dir, providers, availability, analysis, records, memory_choice, memory_note)
    extra = [f for f in final.files if (build_dir / f).is_file()]
    return build, manifest(build, run.loaded, run.specs, model, records, build_dir,
                            [*model_files, MEMORY_PLAN, *extra])


def _finalize(run: RunContext, target: Target, build_dir: Path, model: onnx.ModelProto, chosen: PipelineResult,
              precision: str):
    """The target's last step on the chosen graph, the build's outputs on the check feeds, the
    model written, and its memory analysis."""
    calibration = None
    if precision == "int8" and not target.int8_formats:
        calibration = calibration_sets(run.options.precision, run.specs, run.options.seed)[0]
    (build_dir / MANIFEST).unlink(missing_ok=True)  # the manifest marks a complete build
    final = target.finalize(model, BuildContext(
        build_dir=build_dir, specs=run.specs, feeds=run.feeds, references=run.references,
        precision=precision, calibration=calibration,
    ))
    if final.model is chosen.model:
        outputs = chosen.outputs
    else:
        runner = ModelRunner(final.model)
        outputs = [runner(f) for f in run.feeds]
    model_files = save_model_atomic(final.model, build_dir / MODEL_FILE)
    return final, outputs, model_files, analyze_memory(final.model, run.specs, feeds=run.feeds[0])


def _precision(run: RunContext, target: Target, floats: FloatGraphs, precision: str, available: bool,
               build_dir: Path) -> tuple[str, onnx.ModelProto, PrecisionReport | None]:
    """(the graph to ship, the model, the precision search's report): INT8 where the target
    quantizes on its own provider, runs here, and the precision asked allows it."""
    options = run.options
    graph = next(iter(floats.graphs))
    if not (target.int8_formats and precision in ("auto", "int8") and available):
        return graph, floats.graphs[graph].model, None
    with progress.phase("precision"):
        stage = dataclasses.replace(options.precision, mode=precision)
        report, model = run_precision_stage(
            {label: r.model for label, r in floats.graphs.items()}, run.specs, stage,
            session_options_for(target, options), target.providers(), bench_seconds=options.search_seconds,
            seed=options.seed, keep=build_dir / INT8_VARIANTS if options.precision.keep_variants else None,
            formats=target.int8_formats, fast=options.fast,
        )
    return (report.graph if report.chosen == "int8" else graph), model, report


def _deployment(run: RunContext, target: Target, build_dir: Path, final: TargetBuild, model_files: list[str],
                records: list[PassRecord], analysis: MemoryAnalysis, availability: Availability):
    """The providers and session options the build deploys with: the target's (or what its last
    step chose), the memory settings measured best, and --no-fallback's."""
    session_options = session_options_for(target, run.options)
    providers = list(final.providers or target.providers())
    with progress.phase("memory settings"):
        memory_choice, memory_note, model_files = memory_stage(run, target, build_dir, final.model, model_files,
                                                               providers, session_options, records, analysis,
                                                               availability)
    deployed = memory_choice.deployed if memory_choice else None
    if deployed is not None:
        session_options = deployed.session_options(session_options)
        if memory_choice.order and not memory_choice.order.kept:
            records = [dataclasses.replace(r, status=NOT_KEPT, reason=f"its order {memory_choice.order.reason}")
                       if r.name == "reorder" and r.status == "applied" else r for r in records]
    if run.options.no_fallback and not target.cpu_provider:
        # onnxruntime refuses a CPU provider listed explicitly together with the no-fallback
        # entry; without either, a node no listed provider takes is a session error.
        providers = [p for p in providers if p[0] != "CPUExecutionProvider"]
        session_options["config_entries"] = {**session_options.get("config_entries", {}), **NO_FALLBACK}
    return providers, session_options, memory_choice, memory_note, model_files, records
