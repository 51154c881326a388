"""``hwopt.optimize``: load a model, run each target's verified pipeline, write the builds,
measure them, and report.

The steps, in order (docs/architecture.md draws them; hwopt.stages holds steps 2 and 3):

1. load the model safely and resolve concrete input shapes;
2. take the user's feeds or generate them, record the original model's outputs (at batch 2
   too where the batch is dynamic) and its float rounding noise;
3. for each target: run its graph pipeline (every pass verified, failures rolled back; the
   result is shared by targets that run the same passes), build the target's measured graph
   variants (the transformer-fused graph on the CPU) and keep one only where it races faster
   (hwopt.graph_choice), choose the precision (CPU: FP32, dynamic INT8, or static INT8 with
   real calibration data, by measurement over every graph), let the target finish the build (FP16 for CUDA, TensorRT's
   calibration table), write the build folder, compare the build's outputs with the
   original's, and, where the target's provider runs on this host, benchmark original and
   build interleaved, record which provider runs each node, and measure session memory;
4. evaluate the CI gates and return one report covering every target. ``check_outcome``
   turns failed checks into exit codes after the report is printed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hwopt import progress
from hwopt.errors import GateFailed, PassError, TargetUnavailable, UsageError
from hwopt.gates import evaluate
from hwopt.hostinfo import host_info
from hwopt.memory.probe import start_servers
from hwopt.model.load import LoadedModel, load_model
from hwopt.options import FAST_BENCH_SECONDS, FAST_RACE_SECONDS, OptimizeOptions
from hwopt.output import prepare_output_dir
from hwopt.passes.registry import check_names
from hwopt.quant.choose import FAST_SHIP_RACES
from hwopt.report.optimize import BuildReport, ModelInfo, OptimizeReport
from hwopt.session import physical_cores
from hwopt.stages.context import RunContext, prepare_run
from hwopt.stages.files import MODEL_FILE, versions, write_build_files
from hwopt.stages.memory import FAST_MEMORY_SETTINGS, FAST_RACES
from hwopt.stages.target import build_for_target
from hwopt.target_race import race_targets
from hwopt.targets import Target, get_target

log = logging.getLogger(__name__)


def default_output_dir(model_path: Path) -> Path:
    return Path.cwd() / f"{model_path.stem}.hwopt"


def optimize(model_path: str | Path, options: OptimizeOptions | None = None,
             listener: progress.Listener | None = None) -> OptimizeReport:
    """Optimize ``model_path`` for every target in ``options.targets``; return the report.
    ``listener`` hears of each phase and step as it happens (the command line's display)."""
    options = options or OptimizeOptions()
    model_path = Path(model_path)
    targets = _targets(options)
    with progress.Tracker(listener) as tracker:
        with progress.phase("load"):
            loaded = _load(model_path, options)
        if options.measure:  # every build's memory is probed: the servers start while the passes run
            start_servers(physical_cores())
        with progress.phase("reference outputs"):
            run, feeds_source, batch_note = prepare_run(loaded, options)
        out_dir = prepare_output_dir(
            options.output_dir or default_output_dir(model_path),
            protected=[model_path, *(model_path.parent / f for f in loaded.external_files)],
        )
        builds, manifests = [], []
        for target in targets.values():
            build_dir = out_dir if len(targets) == 1 else prepare_output_dir(out_dir / target.name, [model_path])
            with progress.for_target(target.name):
                build, manifest = build_for_target(run, target, build_dir)
            builds.append(build)
            manifests.append(manifest)
        race = None
        if len(builds) > 1 and options.measure:
            with progress.phase("target race"):
                race = race_targets(builds, MODEL_FILE, run.feeds[0], seconds=options.race_seconds)
    report = _report(run, builds, race, feeds_source, batch_note)
    report.timings = list(tracker.phases)
    for build, manifest in zip(builds, manifests):
        write_build_files(Path(build.build_dir), report.for_target(build.target), manifest)
    if len(builds) > 1:
        write_build_files(out_dir, report, manifest=None)
    return report


def _targets(options: OptimizeOptions) -> dict[str, Target]:
    if not options.targets:
        raise UsageError("no target given")
    targets: dict[str, Target] = {}
    for name in dict.fromkeys(options.targets):
        target = get_target(name, options.target_options.get(name))
        targets.setdefault(target.name, target)
    options.precision.validate()
    return targets


def _load(model_path: Path, options: OptimizeOptions) -> LoadedModel:
    loaded = load_model(model_path)
    # After loading: naming a pass imports every pass module, which a bad file need not wait for.
    if options.passes is not None:
        check_names(options.passes, "--passes")
    check_names(options.skip_passes, "--skip-pass")
    check_names(list(options.pass_options), "[passes] options")
    return loaded


def _report(run: RunContext, builds: list[BuildReport], race, feeds_source: str, batch_note: str | None) -> OptimizeReport:
    """The run's report: every build, the gates, and what a reader must know about the run."""
    report = OptimizeReport(
        model=_model_info(run.loaded),
        inputs=run.specs,
        feeds_source=feeds_source,
        host=host_info(),
        versions=versions(),
        builds=builds,
        gates=evaluate(run.options.gates, builds),
        target_race=race,
    )
    for target in race.slower() if race else ():
        report.warnings.append(
            f"[{target}] the {race.fastest} build is faster on this host: {target} ran at {race.ratio(target):.2f}x "
            f"its p50 (builds raced as deployed, interleaved, {race.rounds} rounds): deploy the {race.fastest} build here"
        )
    if feeds_source.startswith("generated"):
        report.warnings.append(
            "outputs were compared on generated inputs: this shows the build computes what the "
            "original computes, not that either is accurate on real data (pass --inputs FILE.npz)"
        )
    if batch_note:
        report.warnings.append(batch_note)
    if run.source is not None:
        report.notes.append("--static-shapes: the build's inputs are fixed to "
                            + ", ".join(f"{s.name}={'x'.join(map(str, s.shape)) or 'scalar'}" for s in run.specs)
                            + "; it runs at exactly those shapes and was checked at them only")
    if run.options.fast:
        report.notes.append(_fast_note(builds))
    defaulted = [d for spec in run.specs for d in spec.defaulted]
    if defaulted:
        report.warnings.append(
            f"symbolic dimensions set to the default 1: {', '.join(defaulted)} "
            "(fix them with --input-shape NAME=DxDx...)"
        )
    return report


def _fast_note(builds: Sequence[BuildReport]) -> str:
    """What --fast measured less of than a full run, for the report."""
    skips = sorted({skip for b in builds if b.precision for skip in b.precision.fast_skips})
    return (f"--fast: a bounded search: decision races of {FAST_RACE_SECONDS:g} s per variant and a "
            f"{FAST_BENCH_SECONDS:g} s benchmark; memory settings: {len(FAST_MEMORY_SETTINGS)} candidates "
            f"({', '.join(FAST_MEMORY_SETTINGS)}), {FAST_RACES} race each"
            + (f"; precision: INT8 decided in up to {FAST_SHIP_RACES} races, skipped: {', '.join(skips)}" if skips
               else "")
            + "; a full run may choose differently where candidates are close")


def check_outcome(report: OptimizeReport, options: OptimizeOptions) -> None:
    """Raise the failure a finished run ends with, if any (after the report is printed, so
    that a CI log shows why): a required target that cannot run here (exit 4), failed gates,
    a requested INT8 build that could not be delivered, fallback nodes under --no-fallback,
    or a rolled-back pass under --strict (exit 3)."""
    builds = report.builds
    if options.require_target:
        missing = [b for b in builds if not b.available]
        if missing:
            raise TargetUnavailable("; ".join(f"target {b.target} is not available here: {b.availability_reason}"
                                              for b in missing))
    failed = [g for g in report.gates if not g.passed]
    if failed:
        raise GateFailed(f"{len(failed)} gate(s) failed: " + "; ".join(str(g) for g in failed))
    unmet = [b for b in builds if b.precision and b.precision.requested == "int8" and b.precision.chosen != "int8"]
    if unmet:
        raise GateFailed(
            f"--precision int8: {unmet[0].precision.reason} for target {unmet[0].target}; the FP32 "
            "build was written (--force-precision ships the fastest INT8 variant anyway)"
        )
    if options.no_fallback:
        fallback = [b for b in builds if b.partition and b.partition.fallback]
        if fallback:
            b = fallback[0]
            raise GateFailed(f"--no-fallback: target {b.target} runs {len(b.partition.fallback)} node(s) "
                             f"on other providers: {', '.join(b.partition.fallback[:5])}")
    if options.strict:
        rolled = [(b.target, r) for b in builds for r in b.passes if r.status == "rolled_back"]
        if rolled:
            target, record = rolled[0]
            raise PassError(
                f"--strict: pass '{record.name}' failed verification for target {target}: {record.reason}"
            )


def _model_info(loaded: LoadedModel) -> ModelInfo:
    proto = loaded.proto
    return ModelInfo(
        path=str(loaded.path),
        sha256=loaded.sha256,
        file_bytes=loaded.file_bytes,
        ir_version=proto.ir_version,
        opsets={o.domain or "ai.onnx": o.version for o in proto.opset_import},
        producer=f"{proto.producer_name} {proto.producer_version}".strip(),
    )


