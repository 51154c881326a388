"""``hwopt bench``: latency and peak memory of models and build folders, compared on one host.

Every path given is a *variant*: an ONNX file, run on the CPU provider with hwopt's default
session options, or a build folder written by ``hwopt optimize``, run exactly as its
``build.json`` says (providers in their order, session options, relative provider paths
resolved inside the folder). The comparison is fair by construction:

* every variant gets the same feeds at each batch size (generated from one seed, or the
  user's file), and the inputs must agree in names, dtypes and fixed dimensions;
* all variants are timed interleaved in one process (``hwopt.timing`` explains why), with
  thread spinning off in every session and, with ``threads``, one intra-op thread count;
* a variant whose first provider is a GPU one is timed with IO binding, its inputs copied to
  the device once, so the number is the model's and not the PCIe bus's;
* a variant whose providers cannot run here is reported as not measured, with the reason,
  and the others still run;
* peak resident memory comes from a fresh process per session (``hwopt.memory.probe``).

The batch dimension is the leading dimension of every input that declares it symbolic; a
model that fixes it is benchmarked at its own size, and the report says which batch sizes
were not run and why.
"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from hwopt import progress
from hwopt.errors import InputSpecError, ModelLoadError, UsageError, one_line
from hwopt.guard import phase
from hwopt.hostinfo import HostInfo, host_info
from hwopt.memory.probe import MeasurementFailed, SessionMemory, measure_session_memory
from hwopt.model.feedkinds import NOISE, FeedKind, plan_feed_kinds
from hwopt.model.inputs import (
    Dim,
    InputSpec,
    generate_feeds,
    graph_inputs,
    load_feeds,
    resolve_input_specs,
    save_npz,
    specs_from_feeds,
)
from hwopt.model.load import load_model
from hwopt.optimize import versions
from hwopt.partition import RECORD_ASSIGNMENT, fallback_nodes, provider_assignment
from hwopt.progress import PhaseTime
from hwopt.report.render import Document, Table, fmt_bytes, fmt_ms, fmt_ratio, timing_table
from hwopt.runtime import read_build
from hwopt.session import (
    ORT_ERRORS,
    create_session,
    default_session_options,
    make_session_options,
    physical_cores,
    resolve_provider_paths,
)
from hwopt.targets.base import Availability
from hwopt.targets.providers import provider_availability
from hwopt.timing import (
    BenchConfig,
    LatencyStats,
    Runner,
    bench_session_options,
    measure_latency,
)

SCHEMA = "hwopt.bench/1"

# onnxruntime records which provider got each node only when asked to, and
# get_provider_graph_assignment_info() (hwopt.partition.provider_assignment) refuses
# otherwise. Recording costs nothing per run, so the timed session itself is
# created with it rather than a second session per variant (a TensorRT session can take
# minutes to build).

# Providers whose tensors live in device memory, by the OrtValue device name. session.run with
# numpy feeds copies every input to the device and every output back on each run; IO binding
# does the input copy once, before timing, and leaves the outputs on the device.
DEVICE_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}

# How many fallback node names the tables list (the JSON report lists all of them).
FALLBACK_SHOWN = 10

# The memory probe runs each session this many times, as hwopt optimize does.
MEMORY_RUNS = 3

DeviceValue = Callable[[np.ndarray, str, int], Any]


@dataclasses.dataclass
class BenchOptions:
    """Everything ``hwopt bench`` can be told; the CLI fills this in."""

    # Batch sizes, applied to the leading dimension of inputs that declare it symbolic; a
    # model that fixes it is benchmarked at its own size and the report says so.
    batches: Sequence[int] = (1,)
    # Concrete shapes for the other symbolic dimensions (--input-shape); the leading
    # dimension of a batched input is set by ``batches``.
    input_shapes: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    # Feeds used exactly as given (--inputs .npz/.npy); the batch size is then the file's.
    inputs_file: Path | None = None
    # Timed seconds per variant per batch size.
    seconds: float = 2.0
    # Intra-op threads for every variant, a build's recorded count included; None: each
    # variant's own (physical cores for a model file).
    threads: int | None = None
    # Peak RSS of every session, each in a fresh process.
    memory: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not self.batches:
            raise UsageError("--batch: give at least one batch size")
        bad = [b for b in self.batches if not isinstance(b, int) or b < 1]
        if bad:
            raise UsageError(f"--batch: batch sizes must be integers of at least 1, got {bad}")
        if not self.seconds > 0:
            raise UsageError(f"--seconds must be positive, got {self.seconds}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [int(b) for b in self.batches],
            "input_shapes": {name: [int(d) for d in shape] for name, shape in self.input_shapes.items()},
            "inputs_file": str(self.inputs_file) if self.inputs_file is not None else None,
            "seconds": self.seconds,
            "threads": self.threads,
            "memory": self.memory,
            "seed": self.seed,
        }


# --- report ---------------------------------------------------------------------------------


@dataclasses.dataclass
class VariantInfo:
    """One model file or build folder, as it was run."""

    label: str
    path: str
    kind: str  # "model" or "build"
    target: str | None
    model_path: str
    providers: list[dict[str, Any]]
    session_options: dict[str, Any]  # as timed: thread count and spinning applied
    threads: int | None  # intra-op threads; None or 0: onnxruntime's choice
    available: bool = True
    availability_reason: str = ""
    io_binding: bool | None = None  # None: never run
    active_providers: list[str] = dataclasses.field(default_factory=list)
    assignment: dict[str, list[str]] | None = None  # provider -> node names
    assignment_reason: str | None = None  # why there is no assignment
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def first_provider(self) -> str:
        return self.providers[0]["name"] if self.providers else ""

    @property
    def fallback_nodes(self) -> list[str]:
        """Nodes that did not go to the variant's first (intended) provider."""
        return fallback_nodes(self.assignment or {}, self.first_provider)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "path": self.path,
            "kind": self.kind,
            "target": self.target,
            "model": self.model_path,
            "providers": self.providers,
            "session_options": self.session_options,
            "threads": self.threads,
            "available": self.available,
            "availability_reason": self.availability_reason,
            "io_binding": self.io_binding,
            "active_providers": list(self.active_providers),
            "assignment": {
                "recorded": self.assignment is not None,
                "reason": self.assignment_reason,
                "nodes_per_provider": {ep: len(nodes) for ep, nodes in (self.assignment or {}).items()},
                "fallback_nodes": self.fallback_nodes,
            },
            "notes": list(self.notes),
        }


@dataclasses.dataclass
class VariantRun:
    """One variant at one batch size: its latency and memory, or why they were not measured."""

    variant: str
    stats: LatencyStats | None = None
    not_measured: str | None = None
    ratio: float | None = None  # p50 / the baseline's p50
    memory: SessionMemory | None = None
    memory_not_measured: str | None = None  # None with memory None: memory was not asked for

    def to_dict(self) -> dict[str, Any]:
        if self.stats is not None:
            latency = {"measured": True, **self.stats.to_dict(), "ratio_p50": self.ratio}
        else:
            latency = {"measured": False, "reason": self.not_measured}
        if self.memory is not None:
            memory: dict[str, Any] | None = {"measured": True, **self.memory.to_dict()}
        elif self.memory_not_measured is not None:
            memory = {"measured": False, "reason": self.memory_not_measured}
        else:
            memory = None
        return {"variant": self.variant, "latency": latency, "memory": memory}


@dataclasses.dataclass
class BatchResult:
    """Every variant at one batch size, on the same feeds."""

    batch: int
    batch_source: str  # "--batch", "fixed by the model" or "--inputs file"
    inputs: list[InputSpec]
    runs: list[VariantRun]
    baseline: str | None = None  # the variant ratios are taken against

    def run_of(self, label: str) -> VariantRun:
        return next(run for run in self.runs if run.variant == label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batch_source": self.batch_source,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "baseline": self.baseline,
            "results": [run.to_dict() for run in self.runs],
        }


@dataclasses.dataclass
class BenchReport:
    variants: list[VariantInfo]
    batches: list[BatchResult]
    options: BenchOptions
    feeds_source: str
    host: HostInfo
    versions: dict[str, str]
    warnings: list[str] = dataclasses.field(default_factory=list)
    timings: list[PhaseTime] = dataclasses.field(default_factory=list)

    def variant(self, label: str) -> VariantInfo:
        return next(v for v in self.variants if v.label == label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "command": "bench",
            "versions": dict(self.versions),
            "host": self.host.to_dict(),
            "options": self.options.to_dict(),
            "feeds": {"source": self.feeds_source},
            "method": {
                "interleaved": True,
                "thread_spinning": False,
                "warmup_runs": BenchConfig().warmup_runs,
                "seconds_per_variant": self.options.seconds,
                "memory_runs": MEMORY_RUNS if self.options.memory else None,
            },
            "variants": [v.to_dict() for v in self.variants],
            "batches": [b.to_dict() for b in self.batches],
            "warnings": list(self.warnings),
            "timings": [t.to_dict() for t in self.timings],
        }

    def findings(self) -> list[str]:
        """Warnings read off the results: what a reader must know before trusting a number."""
        warnings = []
        for v in self.variants:
            if not v.available:
                warnings.append(f"{v.label}: not measured here: {v.availability_reason}")
                continue
            fallback = v.fallback_nodes
            if fallback:
                shown = ", ".join(fallback[:FALLBACK_SHOWN]) + (f" (+{len(fallback) - FALLBACK_SHOWN} more)"
                                                               if len(fallback) > FALLBACK_SHOWN else "")
                warnings.append(f"{v.label}: {len(fallback)} node(s) fell back from {v.first_provider}: {shown}")
            if v.assignment_reason:
                warnings.append(f"{v.label}: provider assignment not recorded: {v.assignment_reason}")
            if v.threads and v.threads > physical_cores():
                warnings.append(f"{v.label}: runs {v.threads} intra-op threads on {physical_cores()} usable cores: "
                                "oversubscribed; pass --threads to compare on this host")
        measured = [v for v in self.variants if v.available]
        if self.options.threads is None and len({v.threads for v in measured}) > 1:
            warnings.append("the variants run with different intra-op thread counts ("
                            + ", ".join(f"{v.label} {v.threads or 'onnxruntime choice'}" for v in measured)
                            + "): pass --threads to compare like with like")
        for batch in self.batches:
            for run in batch.runs:
                if run.stats is not None and run.stats.noisy:
                    warnings.append(f"{run.variant}: batch {batch.batch}: run-to-run variation {run.stats.cv:.0%} of "
                                    "the mean: treat its numbers and ratio with care")
                elif run.stats is None and self.variant(run.variant).available:
                    warnings.append(f"{run.variant}: batch {batch.batch}: not measured: {run.not_measured}")
                if run.stats is not None and run.memory is None and run.memory_not_measured:
                    warnings.append(f"{run.variant}: batch {batch.batch}: peak RSS not measured: {run.memory_not_measured}")
        return warnings

    def document(self) -> Document:
        doc = Document(heading="hwopt bench " + " ".join(v.label for v in self.variants))
        for v in self.variants:
            doc.facts.append((v.label, _describe_variant(v)))
        doc.facts.append(("feeds", self.feeds_source))
        isa = ", ".join(self.host.isa) or "no ISA flags read"
        doc.facts.append(("host", f"{self.host.cpu} ({self.host.cores} cores; {isa}); onnxruntime {self.host.onnxruntime}"))
        doc.tables = [self._batch_table(b) for b in self.batches]
        if self.timings:
            doc.tables.append(timing_table(self.timings))
        doc.warnings = list(self.warnings)
        return doc

    def _batch_table(self, batch: BatchResult) -> Table:
        rows = []
        for run in batch.runs:
            memory = (fmt_bytes(run.memory.session_bytes) if run.memory is not None
                      else "not measured" if run.memory_not_measured is not None else "-")
            s = run.stats
            if s is None:
                rows.append((run.variant, "not measured here", "", "", "", "", "", "", "", memory))
                continue
            rows.append((run.variant, fmt_ms(s.p50_ms), fmt_ms(s.p90_ms), fmt_ms(s.p99_ms), fmt_ms(s.mean_ms),
                         fmt_ms(s.std_ms), str(s.runs), _fmt_throughput(s.throughput), fmt_ratio(run.ratio), memory))
        title = f"Batch {batch.batch}" + ("" if batch.batch_source == "--batch" else f" ({batch.batch_source})")
        return Table(
            title=f"{title}: latency (ms)",
            columns=("variant", "p50", "p90", "p99", "mean", "std", "runs", "items/s", "ratio", "peak RSS"),
            numeric=("p50", "p90", "p99", "mean", "std", "runs", "items/s", "ratio", "peak RSS"),
            rows=rows,
            notes=self._batch_notes(batch),
        )

    def _batch_notes(self, batch: BatchResult) -> list[str]:
        measured = [self.variant(r.variant) for r in batch.runs if r.stats is not None]
        notes = [f"{r.variant}: not measured here: {r.not_measured}" for r in batch.runs if r.stats is None]
        notes.append("inputs: " + ("; ".join(_describe_input(s) for s in batch.inputs) or "none"))
        if not measured:
            return notes
        notes.append(
            f"runs interleaved in one process, order shuffled each round, after {BenchConfig().warmup_runs} "
            f"warm-up runs; about {self.options.seconds:g} s per variant; thread spinning off in every "
            "session (sessions sharing a process would steal each other's cores)"
        )
        notes.append(_threads_note(measured, self.options.threads))
        bound = [v.label for v in measured if v.io_binding]
        notes.append(
            f"IO binding for {', '.join(bound)}: inputs copied to the device once before timing, outputs "
            "left on the device, so host-device copies are not timed"
            if bound else "no IO binding: every variant ran on host memory (session.run with numpy arrays)"
        )
        if batch.baseline is not None:
            notes.append(f"ratio = p50 / p50 of {batch.baseline} (below 1.00x is faster); items/s = batch / p50")
        if self.options.memory:
            notes.append(f"peak RSS: what the session and {MEMORY_RUNS} runs added to a fresh process's "
                         "resident memory, one process per variant and batch size")
        return notes


def _describe_variant(v: VariantInfo) -> str:
    parts = [v.path, " > ".join(p["name"] for p in v.providers)]
    parts.append(f"intra-op threads: {v.threads or 'onnxruntime choice'}")
    if v.io_binding:
        parts.append("IO binding")
    if v.assignment is not None:
        parts.append("nodes: " + ", ".join(f"{ep} {len(nodes)}" for ep, nodes in v.assignment.items()))
    if not v.available:
        parts.append(f"not measured here: {v.availability_reason}")
    return "; ".join(parts + v.notes)


def _describe_input(spec: InputSpec) -> str:
    return f"{spec.name} {spec.dtype} {'x'.join(map(str, spec.shape)) or 'scalar'}"


def _threads_note(measured: Sequence[VariantInfo], forced: int | None) -> str:
    counts = {v.label: v.threads for v in measured}
    if len(set(counts.values())) == 1:
        count = next(iter(counts.values()))
        text = f"intra-op threads: {count or 'onnxruntime choice'} for every variant"
    else:
        text = "intra-op threads: " + ", ".join(f"{label} {n or 'onnxruntime choice'}" for label, n in counts.items())
    if forced is not None:
        text += " (--threads)"
    return text


def _fmt_throughput(items_per_s: float) -> str:
    return f"{items_per_s:.1f}" if items_per_s < 100 else f"{items_per_s:,.0f}"


# --- runners -------------------------------------------------------------------------------


def _ortvalue_on_device(array: np.ndarray, device: str, device_id: int) -> Any:
    return ort.OrtValue.ortvalue_from_numpy(array, device, device_id)


def session_device(session: Any) -> tuple[str, int] | None:
    """Where a session's inputs and outputs belong: ``(device, device_id)`` when its first
    active provider keeps tensors on a device, None for host memory."""
    providers = session.get_providers()
    if not providers or providers[0] not in DEVICE_PROVIDERS:
        return None
    options = session.get_provider_options().get(providers[0], {})
    return DEVICE_PROVIDERS[providers[0]], int(options.get("device_id") or 0)


class BoundRunner:
    """Runs a session through IO binding with its inputs already on the device.

    The outputs are bound to the device; after the first run the buffers onnxruntime
    allocated are bound back as the outputs, so later runs write into the same memory: no
    allocation in the timed loop, and fixed output addresses, which a session that replays a
    CUDA graph (``enable_cuda_graph``, ``trt_cuda_graph_enable``) relies on.
    """

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray], device: str, device_id: int,
                 device_value: DeviceValue = _ortvalue_on_device) -> None:
        self.session = session
        self.binding = session.io_binding()
        # Held here: the binding must not outlive the device buffers it points into.
        self.inputs = {name: device_value(np.ascontiguousarray(a), device, device_id) for name, a in feeds.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self.output_names = [output.name for output in session.get_outputs()]
        for name in self.output_names:
            self.binding.bind_output(name, device, device_id)
        self.outputs_pinned = False

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        if not self.outputs_pinned:
            for name, value in zip(self.output_names, self.binding.get_outputs()):
                self.binding.bind_ortvalue_output(name, value)
            self.outputs_pinned = True


def make_runner(session: Any, feeds: Mapping[str, np.ndarray],
                device_value: DeviceValue = _ortvalue_on_device) -> tuple[Runner, bool]:
    """The callable that times one run of ``session`` on ``feeds``, and whether it uses IO
    binding: sessions on a device provider run bound to device copies of the feeds, all others
    run ``session.run`` on the numpy arrays."""
    device = session_device(session)
    if device is None:
        feeds = dict(feeds)
        return (lambda: session.run(None, feeds)), False
    return BoundRunner(session, feeds, *device, device_value=device_value), True


# --- variants ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Variant:
    """A variant while it is being benchmarked: its report entry plus what running it needs."""

    info: VariantInfo
    source: Path
    model_path: Path
    providers: list[tuple[str, dict[str, Any]]]
    base_dir: Path | None
    inputs: list[onnx.ValueInfoProto]
    warnings: list[str]  # for the report, once the label is final
    feed_kinds: dict[str, FeedKind] = dataclasses.field(default_factory=dict)  # read from its graph
    session: Any = None

    @property
    def label(self) -> str:
        return self.info.label


def _open_variant(path: Path, options: BenchOptions) -> _Variant:
    warnings = []
    if path.is_dir():
        build = read_build(path)
        try:
            model_path, providers = build.model_path, build.providers
            session_options, target = build.session_options, build.manifest.get("target")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(f"{path}: build.json lacks or mangles {exc}: not a build hwopt can run") from exc
        name = path.resolve().name
        label, kind, base_dir = (f"{name} [{target}]" if target else name), "build", path
        built_with = build.manifest.get("versions", {}).get("onnxruntime")
        if built_with and built_with != ort.__version__:
            warnings.append(f"built with onnxruntime {built_with}, this is {ort.__version__}: its recorded "
                            "settings were chosen for the other version")
    else:
        model_path, providers, base_dir = path, [("CPUExecutionProvider", {})], None
        session_options, target, label, kind = default_session_options("all"), None, path.name, "model"
    graph = load_model(model_path).proto.graph
    inputs = [_copy(vi) for vi in graph_inputs(graph)]
    feed_kinds = plan_feed_kinds(graph, [vi.name for vi in inputs])

    notes = []
    recorded = session_options.get("intra_op_num_threads")
    if options.threads is not None:
        if kind == "build" and recorded is not None and int(recorded) != options.threads:
            notes.append(f"--threads {options.threads} overrides the build's intra_op_num_threads={recorded}")
        session_options = {**session_options, "intra_op_num_threads": options.threads}
    session_options = bench_session_options(session_options)
    try:
        make_session_options(session_options)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    threads = session_options.get("intra_op_num_threads")
    info = VariantInfo(
        label=label,
        path=str(path),
        kind=kind,
        target=target,
        model_path=str(model_path),
        providers=[{"name": name, "options": dict(opts)} for name, opts in providers],
        session_options=session_options,
        threads=int(threads) if threads is not None else None,
        notes=notes,
    )
    return _Variant(info, path, model_path, providers, base_dir, inputs, warnings, feed_kinds)


def _copy(value_info: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value_info)
    return copy


def _disambiguate(variants: Sequence[_Variant]) -> None:
    """Make labels unique: variants that share one are told apart by their parent folder's
    name when that differs between them, else numbered in the order given."""
    groups: dict[str, list[_Variant]] = collections.defaultdict(list)
    for v in variants:
        groups[v.label].append(v)
    for label, group in groups.items():
        if len(group) == 1:
            continue
        parents = [v.source.resolve().parent.name for v in group]
        if len(set(parents)) == len(group):
            for v, parent in zip(group, parents):
                v.info.label = f"{parent}/{label}"
        else:
            for number, v in enumerate(group, 1):
                v.info.label = f"{label} #{number}"


def _availability(providers: Sequence[tuple[str, Any]]) -> Availability:
    if not providers:
        return Availability(False, "no execution provider recorded")
    built_in = set(ort.get_available_providers())
    first = provider_availability(providers[0][0])
    if not first.available:
        return first
    missing = [name for name, _ in providers if name not in built_in]
    if missing:
        return Availability(False, f"{', '.join(missing)} not in this onnxruntime build")
    return Availability(True)


def _open_session(v: _Variant) -> None:
    """Create the variant's timed session, or say in its report entry why it cannot run."""
    availability = _availability(v.providers)
    if not availability.available:
        v.info.available, v.info.availability_reason = False, availability.reason
        return
    entries = {**v.info.session_options.get("config_entries", {}), **RECORD_ASSIGNMENT}
    try:
        session = create_session(v.model_path, {**v.info.session_options, "config_entries": entries},
                                 v.providers, base_dir=v.base_dir)
    except ORT_ERRORS as exc:
        # The provider is here, so the model is what fails: that is bad input, not a host
        # that lacks something.
        raise ModelLoadError(f"{v.label}: onnxruntime cannot create the session: {one_line(exc)}") from exc
    active = session.get_providers()
    v.info.active_providers = list(active)
    if not active or active[0] != v.providers[0][0]:
        v.info.available = False
        v.info.availability_reason = (f"onnxruntime did not register {v.providers[0][0]} for this session "
                                      f"(it would run on {', '.join(active) or 'nothing'})")
        return
    v.session = session
    if not hasattr(session, "get_provider_graph_assignment_info"):
        v.info.assignment_reason = f"onnxruntime {ort.__version__} cannot report which provider runs each node"
        return
    try:
        v.info.assignment = provider_assignment(session)
    except ORT_ERRORS as exc:
        v.info.assignment_reason = f"onnxruntime did not report the node assignment: {one_line(exc)}"


# --- inputs and feeds ----------------------------------------------------------------------


@dataclasses.dataclass
class _Input:
    """One graph input as every variant declares it: fixed dimensions from whichever fixes them."""

    name: str
    elem_type: int
    declared: tuple[Dim, ...]
    declared_by: str  # the variant whose rank the others are held to
    fixed_by: dict[int, str]  # axis -> label of the first variant that fixes it
    feed: FeedKind = NOISE  # how generated values are drawn, read from the first variant's graph

    @property
    def batched(self) -> bool:
        return bool(self.declared) and not _fixed(self.declared[0])


def _fixed(dim: Dim) -> bool:
    return isinstance(dim, int) and dim > 0


def _common_inputs(variants: Sequence[_Variant], overrides: Mapping[str, Sequence[int]]) -> list[_Input]:
    """The inputs all variants share, or an InputSpecError naming the first difference."""
    per_variant = []
    for v in variants:
        graph = helper.make_graph([], "signature", v.inputs, [])
        try:
            per_variant.append(resolve_input_specs(graph, overrides))
        except InputSpecError as exc:
            raise InputSpecError(f"{v.label}: {exc}") from exc
    first, first_specs = variants[0], per_variant[0]
    merged = {s.name: _Input(s.name, s.elem_type, s.declared, first.label,
                             {axis: first.label for axis, d in enumerate(s.declared) if _fixed(d)},
                             first.feed_kinds.get(s.name, NOISE))
              for s in first_specs}
    for v, specs in zip(variants[1:], per_variant[1:]):
        names, theirs = [s.name for s in first_specs], [s.name for s in specs]
        if set(names) != set(theirs):
            raise InputSpecError(
                f"{first.label} and {v.label} take different inputs ({first.label}: {', '.join(names) or 'none'}; "
                f"{v.label}: {', '.join(theirs) or 'none'}); every variant must take the same inputs"
            )
        for spec in specs:
            ours = merged[spec.name]
            if spec.elem_type != ours.elem_type:
                raise InputSpecError(
                    f"input '{spec.name}' is {_dtype_name(ours.elem_type)} in {first.label} but "
                    f"{spec.dtype} in {v.label}; every variant must take the same input types"
                )
            _merge_dims(ours, spec.declared, v.label)
    return [merged[s.name] for s in first_specs]


def _dtype_name(elem_type: int) -> str:
    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))


def _merge_dims(ours: _Input, declared: tuple[Dim, ...], label: str) -> None:
    if not declared:
        return
    if not ours.declared:
        ours.declared, ours.declared_by = declared, label
        ours.fixed_by = {axis: label for axis, d in enumerate(declared) if _fixed(d)}
        return
    if len(declared) != len(ours.declared):
        raise InputSpecError(
            f"input '{ours.name}' has rank {len(ours.declared)} in {ours.declared_by} "
            f"but rank {len(declared)} in {label}"
        )
    dims = list(ours.declared)
    for axis, (mine, theirs) in enumerate(zip(ours.declared, declared)):
        if _fixed(theirs):
            if _fixed(mine) and mine != theirs:
                raise InputSpecError(
                    f"input '{ours.name}' dimension {axis} is {mine} in {ours.fixed_by[axis]} but {theirs} in {label}; "
                    "the variants cannot run on the same feeds"
                )
            if not _fixed(mine):
                dims[axis] = theirs
                ours.fixed_by[axis] = label
        elif mine in (None, "") and theirs not in (None, ""):
            dims[axis] = theirs
    ours.declared = tuple(dims)


def _signature(inputs: Sequence[_Input], batch: int | None) -> onnx.GraphProto:
    """A node-less graph with the merged inputs; with ``batch``, batched inputs fix it."""
    value_infos = []
    for i in inputs:
        dims = [None if d == "" else d for d in i.declared]
        if batch is not None and i.batched:
            dims[0] = batch
        value_infos.append(helper.make_tensor_value_info(i.name, i.elem_type, dims))
    return helper.make_graph([], "signature", value_infos, [])


@dataclasses.dataclass
class _FeedSet:
    batch: int
    source: str  # see BatchResult.batch_source
    specs: list[InputSpec]
    feeds: dict[str, np.ndarray]


def _feed_sets(inputs: Sequence[_Input], options: BenchOptions, warnings: list[str]) -> tuple[list[_FeedSet], str]:
    """The feeds for every batch size to run, and where they came from."""
    declared = {i.name: i.declared for i in inputs}
    kinds = {i.name: i.feed for i in inputs}
    batched = [i for i in inputs if i.batched]
    requested = list(dict.fromkeys(int(b) for b in options.batches))

    if options.inputs_file is not None:
        specs = resolve_input_specs(_signature(inputs, None), options.input_shapes)
        feeds = load_feeds(options.inputs_file, specs)
        specs = specs_from_feeds(specs, feeds)
        ranked = [s for s in specs if s.shape]
        lead = next((s for s in ranked if s.name in {i.name for i in batched}), ranked[0] if ranked else None)
        batch = lead.shape[0] if lead is not None else 1
        if requested != [batch]:
            warnings.append(f"--batch {','.join(map(str, requested))} ignored: the feeds come from "
                            f"{options.inputs_file} (batch {batch})")
        return [_FeedSet(batch, "--inputs file", specs, feeds)], f"user: {options.inputs_file}"

    source = (f"generated (seed {options.seed}), the same for every variant: "
              + "; ".join(f"{i.name}: {i.feed.describe()}" for i in inputs))
    if not batched:
        ranked = [i for i in inputs if i.declared]
        batch = int(ranked[0].declared[0]) if ranked else 1
        if requested != [batch]:
            reason = (f"input '{ranked[0].name}' has a fixed leading dimension {batch} in {ranked[0].fixed_by[0]}"
                      if ranked else "no input has a batch dimension")
            warnings.append(f"--batch {','.join(map(str, requested))} ignored: {reason}; benchmarked at batch {batch}")
        batch_plan, batch_source = [batch], "fixed by the model"
    else:
        batch_plan, batch_source = requested, "--batch"
        # The leading dimension of a batched input comes from --batch, whatever --input-shape
        # says: a model with other symbolic dimensions needs --input-shape for those, and the
        # batch written there is a placeholder unless it is not one of the batch sizes.
        overridden = [name for name, shape in options.input_shapes.items()
                      if name in {i.name for i in batched} and len(shape) > 0 and int(shape[0]) not in requested]
        if overridden:
            warnings.append(f"--input-shape {', '.join(overridden)}: the leading (batch) dimension given is "
                            "replaced by each --batch size")

    sets = []
    for batch in batch_plan:
        overrides = {
            name: (batch, *shape[1:]) if name in {i.name for i in batched} and len(shape) > 0 else tuple(shape)
            for name, shape in options.input_shapes.items()
        }
        specs = resolve_input_specs(_signature(inputs, batch if batched else None), overrides)
        specs = [dataclasses.replace(s, declared=declared[s.name], feed=kinds[s.name]) for s in specs]
        sets.append(_FeedSet(batch, batch_source, specs, generate_feeds(specs, options.seed)))
    defaulted = [d for s in sets[0].specs for d in s.defaulted]
    if defaulted:
        warnings.append(f"symbolic dimension(s) {', '.join(defaulted)} defaulted to 1: pass --input-shape "
                        "for the shapes the model really runs at")
    return sets, source


# --- the benchmark -------------------------------------------------------------------------


def benchmark(paths: Sequence[Path], options: BenchOptions,
              listener: progress.Listener | None = None) -> BenchReport:
    """Latency (and, with ``options.memory``, peak RSS) of every model file or build folder in
    ``paths``, at every batch size, on the same feeds, timed interleaved in one process."""
    options.validate()
    if not paths:
        raise UsageError("hwopt bench: give at least one model file or build folder")
    with progress.Tracker(listener) as tracker:
        with progress.phase("load"):
            variants = [_open_variant(Path(p), options) for p in paths]
            _disambiguate(variants)
            warnings = [f"{v.label}: {w}" for v in variants for w in v.warnings]
            inputs = _common_inputs(variants, options.input_shapes)
            feed_sets, feeds_source = _feed_sets(inputs, options, warnings)
            for v in variants:
                progress.step(v.label)
                _open_session(v)
        batches = []
        for feed_set in feed_sets:
            with progress.phase(f"latency at batch {feed_set.batch}"):
                batches.append(_time(variants, feed_set, options))
        for v in variants:
            runs = [batch.run_of(v.label) for batch in batches]
            if v.session is not None and all(run.stats is None for run in runs):
                raise ModelLoadError(f"{v.label}: does not run: {runs[0].not_measured}")
            v.session = None  # free the timing sessions before the memory probes start theirs
        if options.memory:
            with progress.phase("memory"):
                _measure_memory(variants, feed_sets, batches)

    report = BenchReport(
        variants=[v.info for v in variants],
        batches=batches,
        options=options,
        feeds_source=feeds_source,
        host=host_info(),
        versions=versions(),
        timings=list(tracker.phases),
    )
    report.warnings = warnings + report.findings()
    return report


def _time(variants: Sequence[_Variant], feed_set: _FeedSet, options: BenchOptions) -> BatchResult:
    runs = {v.label: VariantRun(v.label) for v in variants}
    runners: dict[str, Runner] = {}
    for v in variants:
        if v.session is None:
            runs[v.label].not_measured = v.info.availability_reason
            continue
        try:
            runner, v.info.io_binding = make_runner(v.session, feed_set.feeds)
            # One run before timing: a model that cannot run at this batch size (a batch baked
            # into a Reshape, say) is reported, not allowed to abort the others. Every later run
            # repeats it on the same feeds, so a run that never ends is stopped here.
            with phase(f"{v.label} at batch {feed_set.batch}", "run"):
                runner()
        except ORT_ERRORS as exc:
            runs[v.label].not_measured = f"run failed at batch {feed_set.batch}: {one_line(exc)}"
            continue
        runners[v.label] = runner
    stats = measure_latency(runners, BenchConfig(target_seconds=options.seconds), batch=feed_set.batch)
    baseline = next((label for label in runs if label in stats), None)
    for label, s in stats.items():
        runs[label].stats = s
        runs[label].ratio = s.p50_ms / stats[baseline].p50_ms if stats[baseline].p50_ms > 0 else None
    return BatchResult(feed_set.batch, feed_set.source, feed_set.specs, list(runs.values()), baseline)


def _measure_memory(variants: Sequence[_Variant], feed_sets: Sequence[_FeedSet], batches: Sequence[BatchResult]) -> None:
    with tempfile.TemporaryDirectory(prefix="hwopt-bench-") as tmp:
        for feed_set, batch in zip(feed_sets, batches):
            feeds_path = Path(tmp) / f"feeds-batch{feed_set.batch}.npz"
            save_npz(feeds_path, feed_set.feeds)
            for v in variants:
                run = batch.run_of(v.label)
                progress.step(f"{v.label} at batch {feed_set.batch}")
                if run.stats is None:
                    run.memory_not_measured = run.not_measured
                    continue
                # The probe creates a plain session: the same options, without the
                # assignment recording the timed session carried.
                providers = [{"name": name, "options": opts}
                             for name, opts in resolve_provider_paths(v.providers, v.base_dir)]
                try:
                    run.memory = measure_session_memory(v.model_path, providers, v.info.session_options,
                                                        feeds_path, runs=MEMORY_RUNS)
                except MeasurementFailed as exc:
                    run.memory_not_measured = str(exc)


__all__ = [
    "SCHEMA",
    "BatchResult",
    "BenchOptions",
    "BenchReport",
    "BoundRunner",
    "VariantInfo",
    "VariantRun",
    "benchmark",
    "make_runner",
    "session_device",
]
