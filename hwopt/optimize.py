"""``hwopt.optimize``: load a model, run a target's verified pipeline, write the build, measure it.

The steps, in order (docs/architecture.md draws them):

1. load the model safely and resolve concrete input shapes;
2. take the user's feeds or generate them, and record the original model's outputs;
3. for each target: run its pipeline (every pass verified, failures rolled back), write the
   build directory, compare the build's outputs with the original's, and benchmark original
   and build interleaved where the target's provider runs on this host;
4. return one report covering every target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx

from hwopt.config import Config
from hwopt.bench import BenchConfig, bench_session_options, measure_latency
from hwopt.errors import GateFailed, ModelLoadError, PassError, UsageError
from hwopt.hostinfo import host_info
from hwopt.model.inputs import (
    InputSpec,
    generate_feeds,
    load_feeds,
    resolve_input_specs,
    second_batch,
    specs_from_feeds,
)
from hwopt.model.load import LoadedModel, load_model
from hwopt.model.stats import model_stats
from hwopt.output import (
    MANIFEST,
    REPORT_JSON,
    prepare_output_dir,
    save_model_atomic,
    write_json_atomic,
    write_text_atomic,
)
from hwopt.passes.base import PassContext
from hwopt.precision import PrecisionOptions, run_precision_stage
from hwopt.passes.pipeline import Pipeline, PipelineResult
from hwopt.passes.registry import check_names, resolve
from hwopt.memory.analysis import analyze_memory
from hwopt.memory.probe import measure_session_memory
from hwopt.report.optimize import (
    Accuracy,
    BuildReport,
    Latency,
    MemoryReport,
    ModelInfo,
    OptimizeReport,
)
from hwopt.report.render import render_markdown
from hwopt.session import create_session
from hwopt.targets import Target, get_target
from hwopt.verify import VerificationFailed, compare_outputs, merge_diffs, rounding_noise, run_model

log = logging.getLogger(__name__)

BUILD_SCHEMA = "hwopt.build/1"
MODEL_FILE = "model.onnx"
MEMORY_PLAN = "memory_plan.json"
# The onnxruntime settings that decide how much memory a session takes, recorded beside the
# measurement.
MEMORY_SETTINGS = ("graph_optimization_level", "enable_mem_pattern", "enable_cpu_mem_arena", "execution_order")


@dataclasses.dataclass
class OptimizeOptions:
    """Everything ``hwopt optimize`` can be told; the CLI and config files fill this in."""

    targets: Sequence[str] = ("cpu",)
    output_dir: Path | None = None
    input_shapes: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    inputs_file: Path | None = None
    passes: Sequence[str] | None = None
    skip_passes: Sequence[str] = ()
    strict: bool = False
    pass_options: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)
    precision: PrecisionOptions = dataclasses.field(default_factory=PrecisionOptions)
    benchmark: bool = True
    bench: BenchConfig = BenchConfig()
    seed: int = 0

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
        if config.passes is not None:
            options.passes = config.passes
        if config.skip_passes is not None:
            options.skip_passes = config.skip_passes
        if config.strict is not None:
            options.strict = config.strict
        options.pass_options = dict(config.pass_options)
        if config.bench_enabled is not None:
            options.benchmark = config.bench_enabled
        if config.bench_seconds is not None:
            options.bench = dataclasses.replace(options.bench, target_seconds=config.bench_seconds)
        options.precision = PrecisionOptions.from_config(config)
        return options


def versions() -> dict[str, str]:
    out = {}
    for dist in ("hwopt", "onnx", "onnxruntime", "onnxsim", "onnxscript", "onnx-ir", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def default_output_dir(model_path: Path) -> Path:
    return Path.cwd() / f"{model_path.stem}.hwopt"


def optimize(model_path: str | Path, options: OptimizeOptions | None = None) -> OptimizeReport:
    """Optimize ``model_path`` for every target in ``options.targets``; return the report."""
    options = options or OptimizeOptions()
    model_path = Path(model_path)
    if not options.targets:
        raise UsageError("no target given")
    targets = [get_target(name) for name in dict.fromkeys(options.targets)]
    options.precision.validate()
    loaded = load_model(model_path)
    # After loading: naming a pass imports every pass module, which a bad file need not wait for.
    if options.passes is not None:
        check_names(options.passes, "--passes")
    check_names(options.skip_passes, "--skip-pass")
    check_names(list(options.pass_options), "[passes] options")
    specs, feeds, feeds_source = _inputs_and_feeds(loaded, options)
    try:
        reference = run_model(loaded.proto, feeds)
    except VerificationFailed as exc:
        raise ModelLoadError(f"{model_path}: the model does not run: {exc}") from exc
    check_feeds, references, batch_note = [feeds], [reference], None
    batch2 = second_batch(specs, feeds)
    if batch2 is not None:
        try:
            references.append(run_model(loaded.proto, batch2))
            check_feeds.append(batch2)
        except VerificationFailed as exc:
            batch_note = f"passes were checked at one batch size only: the original does not run at batch 2 ({exc})"

    noise = rounding_noise(loaded.proto, check_feeds)

    out_dir = prepare_output_dir(
        options.output_dir or default_output_dir(model_path),
        protected=[model_path, *(model_path.parent / f for f in loaded.external_files)],
    )
    builds, manifests = [], []
    for target in targets:
        build_dir = out_dir if len(targets) == 1 else prepare_output_dir(out_dir / target.name, [model_path])
        build, manifest = _build_for_target(
            target, loaded, specs, check_feeds, references, noise, build_dir, options
        )
        builds.append(build)
        manifests.append(manifest)

    report = OptimizeReport(
        model=_model_info(loaded),
        inputs=specs,
        feeds_source=feeds_source,
        host=host_info(),
        versions=versions(),
        builds=builds,
    )
    if feeds_source.startswith("generated"):
        report.warnings.append(
            "outputs were compared on generated inputs: this shows the build computes what the "
            "original computes, not that either is accurate on real data (pass --inputs FILE.npz)"
        )
    if batch_note:
        report.warnings.append(batch_note)
    defaulted = [d for spec in specs for d in spec.defaulted]
    if defaulted:
        report.warnings.append(
            f"symbolic dimensions set to the default 1: {', '.join(defaulted)} "
            "(fix them with --input-shape NAME=DxDx...)"
        )
    for build, manifest in zip(builds, manifests):
        _write_build_files(Path(build.build_dir), report.for_target(build.target), manifest)
    if len(builds) > 1:
        _write_build_files(out_dir, report, manifest=None)
    return report


def check_outcome(report: OptimizeReport, options: OptimizeOptions) -> None:
    """Raise the check failure (exit code 3) a finished run ends with, if any: a requested
    INT8 build that could not be delivered, or a rolled-back pass under ``--strict``. Called
    after the report is printed, so that a CI log shows why."""
    builds = report.builds
    unmet = [b for b in builds if b.precision and b.precision.requested == "int8" and b.precision.chosen != "int8"]
    if unmet:
        raise GateFailed(
            f"--precision int8: {unmet[0].precision.reason} for target {unmet[0].target}; the FP32 "
            "build was written (--force-precision ships the fastest INT8 variant anyway)"
        )
    if options.strict:
        failed = [(b.target, r) for b in builds for r in b.passes if r.status == "rolled_back"]
        if failed:
            target, record = failed[0]
            raise PassError(
                f"--strict: pass '{record.name}' failed verification for target {target}: {record.reason}"
            )


def _inputs_and_feeds(
    loaded: LoadedModel, options: OptimizeOptions
) -> tuple[list[InputSpec], dict[str, np.ndarray], str]:
    specs = resolve_input_specs(loaded.proto.graph, options.input_shapes)
    if options.inputs_file is not None:
        feeds = load_feeds(options.inputs_file, specs)
        return specs_from_feeds(specs, feeds), feeds, f"user: {options.inputs_file}"
    return specs, generate_feeds(specs, options.seed), f"generated (seed {options.seed})"


def _choose_passes(target: Target, options: OptimizeOptions) -> list[str]:
    names = list(options.passes) if options.passes is not None else list(target.default_passes)
    return [name for name in names if name not in set(options.skip_passes)]


def _build_for_target(
    target: Target,
    loaded: LoadedModel,
    specs: list[InputSpec],
    feeds: list[dict[str, np.ndarray]],
    references: list[dict[str, np.ndarray]],
    noise: dict[str, float],
    build_dir: Path,
    options: OptimizeOptions,
) -> tuple[BuildReport, dict]:
    """Run the target's pipeline and write its model; return the report and the manifest,
    which the caller writes last."""
    pass_options = {
        name: {**target.pass_options.get(name, {}), **options.pass_options.get(name, {})}
        for name in {*target.pass_options, *options.pass_options}
    }
    pipeline = Pipeline(resolve(_choose_passes(target, options)), pass_options)
    ctx = PassContext(target=target.name, input_specs=specs)
    result = pipeline.run(loaded.proto, ctx, feeds, references, noise)
    availability = target.availability()

    model, outputs, precision = result.model, result.outputs, None
    if _wants_int8(target, options.precision, availability.available):
        precision, model = run_precision_stage(
            result.model, specs, options.precision, target.session_options(), target.providers(),
            bench_seconds=options.bench.target_seconds, seed=options.seed,
        )
        if model is not result.model:
            outputs = [run_model(model, f) for f in feeds]

    (build_dir / MANIFEST).unlink(missing_ok=True)  # the manifest marks a complete build
    model_files = save_model_atomic(model, build_dir / MODEL_FILE)
    build = BuildReport(
        target=target.name,
        build_dir=str(build_dir),
        providers=[{"name": n, "options": dict(o)} for n, o in target.providers()],
        session_options=target.session_options(),
        available=availability.available,
        availability_reason=availability.reason,
        original=model_stats(loaded.proto, loaded.file_bytes),
        optimized=model_stats(model, sum((build_dir / f).stat().st_size for f in model_files)),
        latency=Latency(),
        accuracy=Accuracy(
            merge_diffs([compare_outputs(r, o) for r, o in zip(references, outputs)]),
            samples=sum(_batch_of(f) for f in feeds),
            rounding_noise=noise,
        ),
        passes=result.records,
        precision=precision,
    )
    if precision is not None and precision.generated_data:
        build.warnings.append(
            "INT8 was calibrated and judged on GENERATED inputs: its accuracy figures say nothing "
            "about real data; pass --calib with samples of real inputs"
        )
    if not availability.available:
        build.latency.not_measured = availability.reason
    elif not options.benchmark:
        build.latency.not_measured = "benchmark skipped (--no-bench)"
    else:
        build.latency = _benchmark(target, loaded, build_dir / MODEL_FILE, feeds[0], options.bench)
    for record in result.rolled_back:
        build.warnings.append(f"pass '{record.name}' was rolled back: {record.reason}")
    build.memory = _memory_report(target, loaded, specs, model, result, build_dir, feeds[0], availability, options)
    write_json_atomic(build_dir / MEMORY_PLAN, build.memory.build.plan_document(specs))
    return build, _manifest(build, loaded, specs, result, build_dir, [*model_files, MEMORY_PLAN])


def _memory_report(
    target: Target,
    loaded: LoadedModel,
    specs: Sequence[InputSpec],
    model: onnx.ModelProto,
    result: PipelineResult,
    build_dir: Path,
    feeds: Mapping[str, np.ndarray],
    availability,
    options: OptimizeOptions,
) -> MemoryReport:
    session_options = target.session_options()
    report = MemoryReport(
        original=analyze_memory(loaded.proto, specs),
        build=analyze_memory(model, specs),
        reorder=next((r.metrics for r in reversed(result.records)
                      if r.name == "reorder" and r.status == "applied"), None),
        ort_settings={key: session_options.get(key) for key in MEMORY_SETTINGS},
    )
    if not availability.available:
        report.not_measured = availability.reason
    elif not options.benchmark:
        report.not_measured = "measurement skipped (--no-bench)"
    else:
        providers = [{"name": n, "options": dict(o)} for n, o in target.providers()]
        with tempfile.TemporaryDirectory(prefix="hwopt-feeds-") as tmp:
            feeds_path = Path(tmp) / "feeds.npz"
            np.savez(feeds_path, **feeds)
            report.measured_original = measure_session_memory(loaded.path, providers, session_options, feeds_path)
            report.measured_build = measure_session_memory(build_dir / MODEL_FILE, providers, session_options, feeds_path)
    return report


def _wants_int8(target: Target, precision: PrecisionOptions, available: bool) -> bool:
    if precision.mode == "fp32":
        return False
    if "int8" not in target.precisions:
        if precision.mode == "int8":
            raise UsageError(f"--precision int8: target {target.name} has no INT8 build yet")
        return False
    # The choice is made by measurement: a target that cannot run here cannot choose.
    return available


def _benchmark(
    target: Target, loaded: LoadedModel, built: Path, feeds: Mapping[str, np.ndarray], config: BenchConfig
) -> Latency:
    providers = target.providers()
    options = bench_session_options(target.session_options())
    original = create_session(loaded.path, options, providers)
    optimized = create_session(built, options, providers)
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
    result: PipelineResult,
    build_dir: Path,
    model_files: Sequence[str],
) -> dict:
    """``build.json``: what ``hwopt.runtime.load`` needs to recreate the session exactly."""
    return {
        "schema": BUILD_SCHEMA,
        "target": build.target,
        "model": MODEL_FILE,
        "files": {name: _sha256(build_dir / name) for name in model_files},
        "providers": build.providers,
        "session_options": build.session_options,
        "inputs": [spec.to_dict() for spec in specs],
        "outputs": [
            {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(
                vi.type.tensor_type.elem_type).name}
            for vi in result.model.graph.output
        ],
        "pipeline": [
            {"name": r.name, "status": r.status, "rewrites": r.rewrites, "reason": r.reason}
            for r in result.records
        ],
        "source": {"path": str(loaded.path), "sha256": loaded.sha256},
        "versions": versions(),
        "host": host_info().to_dict(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_build_files(build_dir: Path, report: OptimizeReport, manifest: dict | None) -> None:
    """Reports first, manifest last: a folder with ``build.json`` is a complete build."""
    write_json_atomic(build_dir / REPORT_JSON, report.to_dict())
    write_text_atomic(build_dir / "report.md", render_markdown(report.document(explain=True)))
    if manifest is not None:
        write_json_atomic(build_dir / MANIFEST, manifest)
