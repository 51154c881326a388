"""``hwopt.optimize``: load a model, run each target's verified pipeline, write the builds,
measure them, and report.

The steps, in order (docs/architecture.md draws them):

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

import concurrent.futures
import dataclasses
import logging
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from hwopt import progress
from hwopt.config import Config
from hwopt.errors import GateFailed, ModelLoadError, PassError, TargetUnavailable, UsageError, one_line
from hwopt.gates import Gates, evaluate
from hwopt.graph_choice import GraphChoice, applies, choose_graph
from hwopt.hostinfo import host_info
from hwopt.memory.analysis import MemoryAnalysis, analyze_memory
from hwopt.memory.probe import MeasurementFailed, measure_session_memory, start_servers
from hwopt.memory.settings import (
    RACES,
    Floor,
    MemoryChoice,
    MemorySetting,
    WeightsCheck,
    choose_settings,
    empty_session_bytes,
    weights_check,
)
from hwopt.model.inputs import (
    InputSpec,
    generate_feeds,
    load_feeds,
    resolve_input_specs,
    save_npz,
    second_batch,
    specs_from_feeds,
)
from hwopt.model.load import LoadedModel, load_model
from hwopt.model.shapes import with_concrete_inputs
from hwopt.model.stats import model_stats, weight_bytes
from hwopt.output import (
    MANIFEST,
    REPORT_JSON,
    file_sha256,
    prepare_output_dir,
    save_model_atomic,
    write_json_atomic,
    write_text_atomic,
)
from hwopt.partition import RECORD_ASSIGNMENT, fallback_nodes, provider_assignment
from hwopt.passes.base import PassContext
from hwopt.passes.pipeline import NOT_KEPT, PassRecord, Pipeline, PipelineResult
from hwopt.passes.registry import check_names, resolve
from hwopt.precision import PrecisionOptions, calibration_sets, run_precision_stage
from hwopt.quant.accuracy import compare
from hwopt.quant.calibration import load_samples
from hwopt.quant.choose import FAST_SHIP_RACES, PIPELINE_GRAPH
from hwopt.report.optimize import (
    Accuracy,
    BuildReport,
    Latency,
    MemoryReport,
    ModelInfo,
    OptimizeReport,
    Partition,
)
from hwopt.report.render import render_markdown
from hwopt.session import ORT_ERRORS, create_session, default_session_options, physical_cores, run_session
from hwopt.target_race import race_targets
from hwopt.targets import BuildContext, Target, get_target
from hwopt.timing import BenchConfig, bench_session_options, measure_latency
from hwopt.verify import (
    ModelRunner,
    VerificationFailed,
    compare_outputs,
    merge_diffs,
    rounding_noise,
)

log = logging.getLogger(__name__)

BUILD_SCHEMA = "hwopt.build/1"
MODEL_FILE = "model.onnx"
MEMORY_PLAN = "memory_plan.json"
# The onnxruntime settings that decide how much memory a session takes, recorded beside the
# measurement.
MEMORY_SETTINGS = ("graph_optimization_level", "enable_mem_pattern", "enable_cpu_mem_arena", "execution_order")
# Weights from which a build measures keeping them in a file beside model.onnx.
WEIGHTS_FILE_MIN = 1 << 20
# And these where a build sets them (hwopt.memory.settings).
MEMORY_EXTRAS = ("config_entries", "env_allocator", "run_options")
NO_FALLBACK = {"session.disable_cpu_ep_fallback": "1"}
# Where a build keeps the INT8 variants within budget when asked (PrecisionOptions.keep_variants).
INT8_VARIANTS = "int8-variants"
# --fast: seconds per variant in decision races and in the report's benchmark, and the memory
# settings it measures (onnxruntime's defaults first; the ones that won most often in
# bench/results/memory_settings.md), one race each.
FAST_RACE_SECONDS = 0.25
FAST_BENCH_SECONDS = 0.5
FAST_MEMORY_SETTINGS = ("pattern+arena", "no-pattern", "exact-arena", "exact-arena-no-prepack")
FAST_RACES = 1


@dataclasses.dataclass
class OptimizeOptions:
    """Everything ``hwopt optimize`` can be told; the CLI and config files fill this in."""

    targets: Sequence[str] = ("cpu",)
    output_dir: Path | None = None
    input_shapes: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    # Bake the resolved input shapes into the build (and fold what becomes constant).
    static_shapes: bool = False
    # What the measured choice of memory settings favours (hwopt.config.GOALS); with
    # memory_search off, the target's first (onnxruntime's defaults) ships unmeasured.
    optimize_for: str = "balanced"
    memory_search: bool = True
    # A bounded search for CI (FAST): fewer variants, shorter races; the report says what was
    # left out.
    fast: bool = False
    inputs_file: Path | None = None
    passes: Sequence[str] | None = None
    skip_passes: Sequence[str] = ()
    strict: bool = False
    pass_options: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)
    precision: PrecisionOptions = dataclasses.field(default_factory=PrecisionOptions)
    target_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    require_target: bool = False
    no_fallback: bool = False
    gates: Gates = Gates()
    benchmark: bool = True
    bench: BenchConfig = BenchConfig()
    seed: int = 0
    # Session options over the target's (hwopt tune writes the ones it found this way).
    session_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def race_seconds(self) -> float:
        """Seconds per variant in one race behind a build-time decision."""
        return FAST_RACE_SECONDS if self.fast else max(0.5, self.bench.target_seconds / 2)

    @property
    def memory_race_seconds(self) -> float:
        """Seconds per setting in a memory-settings race (at most RACE_RUNS runs): nine settings
        race at once, up to three times."""
        return FAST_RACE_SECONDS if self.fast else max(0.25, self.bench.target_seconds / 4)

    @property
    def search_seconds(self) -> float:
        """Seconds per variant in the precision search's races that decide what ships."""
        return min(self.bench.target_seconds, FAST_BENCH_SECONDS) if self.fast else self.bench.target_seconds

    @property
    def bench_config(self) -> BenchConfig:
        """The report's benchmark of original against build."""
        if not self.fast:
            return self.bench
        return dataclasses.replace(self.bench, target_seconds=min(self.bench.target_seconds, FAST_BENCH_SECONDS))

    @classmethod
    def from_config(cls, config: Config) -> OptimizeOptions:
        """Options as a config file sets them, hwopt's defaults for the rest."""
        options = cls()
        if config.targets is not None:
            options.targets = config.targets
        if config.inputs is not None:
            options.inputs_file = config.inputs
        if config.input_shapes is not None:
            options.input_shapes = dict(config.input_shapes)
        if config.static_shapes is not None:
            options.static_shapes = config.static_shapes
        if config.optimize_for is not None:
            options.optimize_for = config.optimize_for
        if config.fast is not None:
            options.fast = config.fast
        if config.passes is not None:
            options.passes = config.passes
        if config.skip_passes is not None:
            options.skip_passes = config.skip_passes
        if config.strict is not None:
            options.strict = config.strict
        options.pass_options = dict(config.pass_options)
        options.target_options = dict(config.target_options)
        if config.bench_enabled is not None:
            options.benchmark = config.bench_enabled
        if config.bench_seconds is not None:
            options.bench = dataclasses.replace(options.bench, target_seconds=config.bench_seconds)
        options.precision = PrecisionOptions.from_config(config)
        options.gates = config.gates
        return options


def versions() -> dict[str, str]:
    """Versions of what a build depends on. ``onnxruntime`` is the imported module's, whichever
    wheel installed it (onnxruntime-gpu and onnxruntime-openvino install the same module); the
    wheel itself is listed under its own name."""
    out = {}
    for dist in ("hwopt", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxsim", "onnxscript",
                 "onnx-ir", "numpy"):
        if dist == "onnxruntime":
            out[dist] = ort.__version__
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def default_output_dir(model_path: Path) -> Path:
    return Path.cwd() / f"{model_path.stem}.hwopt"


@dataclasses.dataclass
class RunChecks:
    """What every target of one run shares: the model, its feeds and reference outputs."""

    loaded: LoadedModel
    specs: list[InputSpec]
    feeds: list[dict[str, np.ndarray]]  # check feeds: batch 1, and batch 2 when dynamic
    references: list[dict[str, np.ndarray]]
    noise: dict[str, float]
    options: OptimizeOptions
    pipelines: dict[tuple, PipelineResult] = dataclasses.field(default_factory=dict)
    # What the passes start from: the loaded model, or (--static-shapes) a copy with its input
    # shapes baked in.
    source: onnx.ModelProto | None = None

    @property
    def start(self) -> onnx.ModelProto:
        return self.source if self.source is not None else self.loaded.proto

    def pipeline_result(self, target: Target) -> PipelineResult:
        """The graph pipeline's result for ``target``; targets running the same passes with the
        same options share one run."""
        names = _choose_passes(target, self.options)
        return self._run(target, names, self.start, self.references)

    def graph_variants(self, target: Target) -> dict[str, PipelineResult]:
        """The target's measured variants: each its passes, then (where the first of them
        changed the model) the target's pipeline, run verified on the loaded model; none when
        the user chose the passes or skipped a variant's."""
        if self.options.passes is not None:
            return {}
        skipped = set(self.options.skip_passes)
        names = _choose_passes(target, self.options)
        variants = {}
        for label, passes in target.measured_variants.items():
            if skipped & set(passes):
                continue
            head = self._run(target, passes, self.start, self.references)
            if applies(head):  # a CNN pays for one pass that matches nothing, not a second pipeline
                tail = self._run(target, names, head.model, head.outputs, start=label)
                head = PipelineResult(tail.model, [*head.records, *tail.records], tail.outputs)
            variants[label] = head
        return variants

    def _run(self, target: Target, names: Sequence[str], model: onnx.ModelProto,
             references: Sequence[Mapping[str, np.ndarray]], start: str = "") -> PipelineResult:
        """``names`` run on ``model`` (the loaded model, or the variant ``start`` names)."""
        pass_options = {
            name: {**target.pass_options.get(name, {}), **self.options.pass_options.get(name, {})}
            for name in {*target.pass_options, *self.options.pass_options}
        }
        key = (tuple(names), start, repr(sorted((k, sorted(v.items())) for k, v in pass_options.items())))
        if key not in self.pipelines:
            pipeline = Pipeline(resolve(names), pass_options)
            ctx = PassContext(target=target.name, input_specs=self.specs)
            self.pipelines[key] = pipeline.run(model, ctx, self.feeds, references, self.noise)
        return self.pipelines[key]


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
        if options.benchmark:  # every build's memory is probed: the servers start while the passes run
            start_servers(physical_cores())
        with progress.phase("reference outputs"):
            run, feeds_source, batch_note = prepare_checks(loaded, options)
        out_dir = prepare_output_dir(
            options.output_dir or default_output_dir(model_path),
            protected=[model_path, *(model_path.parent / f for f in loaded.external_files)],
        )
        builds, manifests = [], []
        for target in targets.values():
            build_dir = out_dir if len(targets) == 1 else prepare_output_dir(out_dir / target.name, [model_path])
            with progress.for_target(target.name):
                build, manifest = _build_for_target(run, target, build_dir)
            builds.append(build)
            manifests.append(manifest)
        race = None
        if len(builds) > 1 and options.benchmark:
            with progress.phase("target race"):
                race = race_targets(builds, MODEL_FILE, run.feeds[0], seconds=options.race_seconds)
    report = _report(run, builds, race, feeds_source, batch_note)
    report.timings = list(tracker.phases)
    for build, manifest in zip(builds, manifests):
        _write_build_files(Path(build.build_dir), report.for_target(build.target), manifest)
    if len(builds) > 1:
        _write_build_files(out_dir, report, manifest=None)
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


def _report(run: RunChecks, builds: list[BuildReport], race, feeds_source: str, batch_note: str | None) -> OptimizeReport:
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


def prepare_checks(loaded: LoadedModel, options: OptimizeOptions) -> tuple[RunChecks, str, str | None]:
    """Feeds for the checks (batch 1, and 2 where the batch is dynamic) and the original's
    outputs on them; also the feeds' source and a note when batch 2 could not run."""
    specs, feeds, feeds_source = _inputs_and_feeds(loaded, options)
    try:
        original = ModelRunner(loaded.proto)
        reference = original(feeds)
    except VerificationFailed as exc:
        raise ModelLoadError(f"{loaded.path}: the model does not run: {exc}") from exc
    check_feeds, references, batch_note = [feeds], [reference], None
    # A build with baked shapes runs at exactly those: no second batch size to check.
    batch2 = None if options.static_shapes else second_batch(specs, feeds)
    if batch2 is not None:
        try:
            references.append(original(batch2))
            check_feeds.append(batch2)
        except VerificationFailed as exc:
            batch_note = f"passes were checked at one batch size only: the original does not run at batch 2 ({exc})"
    source = None
    if options.static_shapes:
        source = with_concrete_inputs(loaded.proto, specs)
        try:  # with onnxruntime's graph optimizations on, as a build is deployed
            run_session(create_session(source, default_session_options(level="all")), feeds)
        except ORT_ERRORS as exc:
            # silero VAD: onnxruntime infers the types of an If branch the fixed sample rate never
            # takes, and its LSTM there refuses the baked input rank.
            source = None
            batch_note = (f"--static-shapes not applied: onnxruntime refuses the model with these shapes baked in "
                          f"({one_line(exc)}); the build keeps the model's own input shapes")
    run = RunChecks(loaded, specs, check_feeds, references, rounding_noise(loaded.proto, check_feeds, references), options,
                 source=source)
    return run, feeds_source, batch_note


def _inputs_and_feeds(
    loaded: LoadedModel, options: OptimizeOptions
) -> tuple[list[InputSpec], dict[str, np.ndarray], str]:
    specs = resolve_input_specs(loaded.proto.graph, options.input_shapes)
    if options.inputs_file is not None:
        feeds = load_feeds(options.inputs_file, specs)
        return specs_from_feeds(specs, feeds), feeds, f"user: {options.inputs_file}"
    if options.precision.calib_path is not None and options.precision.mode in ("auto", "int8"):
        # Real samples beat generated ones, and models whose symbolic dims have a minimum size
        # (an STFT's reflect pad) only run on data of the right shape.
        sample = load_samples(options.precision.calib_path, specs, options.precision.image_spec, limit=1)
        feeds = sample.samples[0]
        return specs_from_feeds(specs, feeds), feeds, f"calibration sample: {options.precision.calib_path}"
    return specs, generate_feeds(specs, options.seed), f"generated (seed {options.seed})"


def _choose_passes(target: Target, options: OptimizeOptions) -> list[str]:
    names = list(options.passes) if options.passes is not None else list(target.default_passes)
    return [name for name in names if name not in set(options.skip_passes)]


def session_options_for(target: Target, options: OptimizeOptions) -> dict[str, Any]:
    return {**target.session_options(), **options.session_overrides}


def _target_precision(target: Target, requested: str) -> str:
    """The precision a target builds for the requested one (``auto``: CPU measures; the GPU
    targets build FP16, their fast path)."""
    if requested == "auto":
        return "auto" if target.int8_formats else ("fp16" if "fp16" in target.precisions else "fp32")
    if requested not in target.precisions:
        raise UsageError(f"--precision {requested}: target {target.name} builds {', '.join(target.precisions)}"
                         + (f" ({target.precision_note})" if target.precision_note else ""))
    return requested


@dataclasses.dataclass
class _Graphs:
    """The float graphs a build may ship (the one to ship first) and how they were chosen."""

    result: PipelineResult  # the target's pipeline
    graphs: dict[str, PipelineResult]
    variants: dict[str, PipelineResult]
    choice: GraphChoice | None


def _float_graphs(run: RunChecks, target: Target, available: bool) -> _Graphs:
    """The target's verified pipeline and, where they apply and race faster, its graph variants."""
    options = run.options
    with progress.phase("passes"):
        result = run.pipeline_result(target)
    graphs, choice = {PIPELINE_GRAPH: result}, None
    with progress.phase("graph variants"):
        variants = run.graph_variants(target) if available else {}
        if any(applies(v) for v in variants.values()):
            choice = choose_graph(result.model, variants, run.feeds[0], session_options_for(target, options),
                                  target.providers(), seconds=options.race_seconds)
            graphs.update({label: v for label, v in variants.items() if applies(v)})
            if choice.chosen is not None:
                graphs = {choice.chosen.label: graphs[choice.chosen.label], **graphs}
    return _Graphs(result, graphs, variants, choice)


def _build_for_target(run: RunChecks, target: Target, build_dir: Path) -> tuple[BuildReport, dict]:
    """Build, write and measure one target; return its report and the manifest, which the
    caller writes last."""
    options = run.options
    availability = target.availability()
    precision = _target_precision(target, options.precision.mode)
    floats = _float_graphs(run, target, availability.available)
    graph = next(iter(floats.graphs))
    model, precision_report = floats.graphs[graph].model, None
    if target.int8_formats and precision in ("auto", "int8") and availability.available:
        with progress.phase("precision"):
            stage = dataclasses.replace(options.precision, mode=precision)
            precision_report, model = run_precision_stage(
                {label: r.model for label, r in floats.graphs.items()}, run.specs, stage,
                session_options_for(target, options), target.providers(), bench_seconds=options.search_seconds,
                seed=options.seed, keep=build_dir / INT8_VARIANTS if options.precision.keep_variants else None,
                formats=target.int8_formats, fast=options.fast,
            )
        if precision_report.chosen == "int8":
            graph = precision_report.graph
    records = _records_for(floats.result, floats.variants, graph, floats.choice)
    with progress.phase("finalize"):
        final, outputs, model_files, analysis = _finalize(run, target, build_dir, model, floats.graphs[graph],
                                                          precision)
    model = final.model
    session_options = session_options_for(target, options)
    providers = list(final.providers or target.providers())
    with progress.phase("memory settings"):
        memory_choice, memory_note, model_files = _memory_settings(run, target, build_dir, model, model_files,
                                                                   providers, session_options, records, analysis,
                                                                   availability)
    deployed = memory_choice.deployed if memory_choice else None
    if deployed is not None:
        session_options = deployed.session_options(session_options)
        if memory_choice.order and not memory_choice.order.kept:
            records = [dataclasses.replace(r, status=NOT_KEPT, reason=f"its order {memory_choice.order.reason}")
                       if r.name == "reorder" and r.status == "applied" else r for r in records]
    if options.no_fallback and providers[0][0] != "CPUExecutionProvider":
        # onnxruntime refuses a CPU provider listed explicitly together with the no-fallback
        # entry; without either, a node no listed provider takes is a session error.
        providers = [p for p in providers if p[0] != "CPUExecutionProvider"]
        session_options["config_entries"] = {**session_options.get("config_entries", {}), **NO_FALLBACK}
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
            samples=sum(_batch_of(f) for f in run.feeds),
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
    _measure_build(run, build, build_dir, providers, availability, analysis, records, memory_choice, memory_note)
    extra = [f for f in final.files if (build_dir / f).is_file()]
    return build, _manifest(build, run.loaded, run.specs, model, records, build_dir,
                            [*model_files, MEMORY_PLAN, *extra])


def _finalize(run: RunChecks, target: Target, build_dir: Path, model: onnx.ModelProto, chosen: PipelineResult,
              precision: str):
    """The target's last step on the chosen graph, the build's outputs on the check feeds, the
    model written, and its memory analysis."""
    calibration = None
    if precision == "int8" and not target.int8_formats:
        calibration = calibration_sets(run.options.precision, run.specs, run.options.seed)[0]
    (build_dir / MANIFEST).unlink(missing_ok=True)  # the manifest marks a complete build
    final = target.finalize(model, BuildContext(
        build_dir=build_dir, specs=run.specs, feeds=run.feeds, references=run.references,
        precision=precision, calibration=calibration, options=target.options,
    ))
    if final.model is chosen.model:
        outputs = chosen.outputs
    else:
        runner = ModelRunner(final.model)
        outputs = [runner(f) for f in run.feeds]
    model_files = save_model_atomic(final.model, build_dir / MODEL_FILE)
    return final, outputs, model_files, analyze_memory(final.model, run.specs, feeds=run.feeds[0])


def _memory_settings(run: RunChecks, target: Target, build_dir: Path, model: onnx.ModelProto, model_files: list[str],
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


def _measure_build(run: RunChecks, build: BuildReport, build_dir: Path, providers, availability,
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
        if not run.options.benchmark:
            build.latency.not_measured = "benchmark skipped (--no-bench)"
        else:
            with progress.phase("benchmark"):
                build.latency = _benchmark(run.loaded, build_dir, build, run.feeds[0], run.options.bench_config)
    with progress.phase("memory report"):
        build.memory = _memory_report(run, analysis, records, build_dir, build, availability, memory_choice)
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


def _records_for(result: PipelineResult, variants: Mapping[str, PipelineResult], graph: str,
                 choice: GraphChoice | None) -> list[PassRecord]:
    """The pass records of the graph the build ships; when that is the pipeline's, the applied
    first pass of each measured variant follows, marked not kept, with why."""
    if graph in variants:
        return list(variants[graph].records)
    records = list(result.records)
    reasons = {v.label: v.reason for v in choice.variants} if choice else {}
    for label, variant in variants.items():
        if applies(variant):
            first = variant.records[0]
            records.append(dataclasses.replace(first, status=NOT_KEPT, reason=f"{label} not shipped: {reasons[label]}"))
    return records


def _providers(build: BuildReport) -> list[tuple[str, dict[str, Any]]]:
    return [(p["name"], dict(p["options"])) for p in build.providers]


def _partition(build_dir: Path, build: BuildReport) -> Partition:
    """Which provider runs each node of the build, from onnxruntime's own assignment."""
    options = dict(build.session_options)
    options["config_entries"] = {**options.get("config_entries", {}), **RECORD_ASSIGNMENT}
    providers = _providers(build)
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


def _memory_search_skipped(run: RunChecks, target: Target, providers, availability) -> str:
    """Why this build measures no memory settings; empty where it does."""
    if not target.memory_settings:
        return f"{providers[0][0]} manages its own memory: the target's settings ship unmeasured"
    if not availability.available:
        return availability.reason
    if not run.options.benchmark:
        return "not chosen: measurement skipped (--no-bench); the target's defaults ship"
    if not run.options.memory_search:
        return "not chosen: --no-memory-search; the target's defaults ship"
    if run.options.session_overrides:
        return "not chosen: the session options given (hwopt tune's) ship as they are"
    return ""


def _weights_file_check(run: RunChecks, target: Target, model: onnx.ModelProto, build_dir: Path, providers,
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


def _choose_memory_settings(run: RunChecks, target: Target, build_dir: Path, providers, session_options,
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


def _memory_report(run: RunChecks, analysis: MemoryAnalysis, records: Sequence[PassRecord],
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
    if not run.options.benchmark:
        report.not_measured = "measurement skipped (--no-bench)"
        return report
    listed = [{"name": n, "options": dict(o)} for n, o in _providers(build)]
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


def _benchmark(loaded: LoadedModel, build_dir: Path, build: BuildReport,
               feeds: Mapping[str, np.ndarray], config: BenchConfig) -> Latency:
    """The original and the build, interleaved, both under the build's settings."""
    options, providers = bench_session_options(build.session_options), _providers(build)
    original = create_session(loaded.path, options, providers, base_dir=build_dir)
    optimized = create_session(build_dir / MODEL_FILE, options, providers, base_dir=build_dir)
    stats = measure_latency(
        {
            "original": lambda: original.run(None, feeds),
            "optimized": lambda: optimized.run(None, feeds),
        },
        config,
        batch=_batch_of(feeds),
    )
    return Latency(original=stats["original"], optimized=stats["optimized"])


def _batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim > 0 else 1


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


def _manifest(
    build: BuildReport,
    loaded: LoadedModel,
    specs: Sequence[InputSpec],
    model: onnx.ModelProto,
    records: Sequence[PassRecord],
    build_dir: Path,
    files: Sequence[str],
) -> dict:
    """``build.json``: what ``hwopt.runtime.load`` needs to recreate the session exactly."""
    return {
        "schema": BUILD_SCHEMA,
        "target": build.target,
        "precision": build.precision_label,
        "model": MODEL_FILE,
        "files": {name: file_sha256(build_dir / name) for name in files},
        "providers": build.providers,
        "session_options": build.session_options,
        "inputs": [spec.to_dict() for spec in specs],
        "outputs": [
            {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name}
            for vi in model.graph.output
        ],
        "pipeline": [
            {"name": r.name, "status": r.status, "rewrites": r.rewrites, "reason": r.reason}
            for r in records
        ],
        "source": {"path": str(loaded.path), "sha256": loaded.sha256},
        "versions": versions(),
        "host": host_info().to_dict(),
    }


def _write_build_files(build_dir: Path, report: OptimizeReport, manifest: dict | None) -> None:
    """Reports first, manifest last: a folder with ``build.json`` is a complete build."""
    write_json_atomic(build_dir / REPORT_JSON, report.to_dict())
    write_text_atomic(build_dir / "report.md", render_markdown(report.document(explain=True)))
    if manifest is not None:
        write_json_atomic(build_dir / MANIFEST, manifest)
