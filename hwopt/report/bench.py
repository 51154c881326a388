"""The report of ``hwopt bench``: every variant as it was run, and its latency and memory at
each batch size; JSON (``hwopt.bench/1``, documented in docs/report-schema.md) and tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from hwopt.feeds.inputs import InputSpec
from hwopt.hostinfo import HostInfo
from hwopt.memory.probe import SessionMemory
from hwopt.partition import fallback_nodes
from hwopt.progress import PhaseTime
from hwopt.report.render import Document, Table, fmt_bytes, fmt_ms, fmt_ratio, timing_table
from hwopt.session import physical_cores
from hwopt.timing import BenchConfig, LatencyStats

SCHEMA = "hwopt.bench/1"

# How many fallback node names the tables list (the JSON report lists all of them).
FALLBACK_SHOWN = 10

# The memory probe runs each session this many times, as hwopt optimize does.
MEMORY_RUNS = 3



class RunOptions(Protocol):
    """What the report reads off the options of the run (``hwopt.comparison.BenchOptions``)."""

    seconds: float
    threads: int | None
    memory: bool

    def to_dict(self) -> dict[str, Any]: ...


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
    options: RunOptions
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
