"""The report of ``hwopt optimize``: one structure, printed as tables, JSON or Markdown.

The JSON form (``to_dict``) is the stable, versioned interface: its schema name is
``hwopt.report/<major>``, and docs/report-schema.md documents every field. Fields are only
added within a major version.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hwopt.feeds.inputs import InputSpec
from hwopt.gates import GateResult
from hwopt.graph_choice import GraphChoice
from hwopt.hostinfo import HostInfo
from hwopt.memory.analysis import MemoryAnalysis
from hwopt.memory.probe import SessionMemory
from hwopt.memory.settings import Floor, MemoryChoice
from hwopt.model.stats import ModelStats
from hwopt.passes.base import PassRecord
from hwopt.progress import PhaseTime
from hwopt.quant.accuracy import AccuracyResult
from hwopt.quant.choose import PrecisionReport
from hwopt.report.render import (
    Document,
    Table,
    fmt_bytes,
    fmt_change,
    fmt_count,
    fmt_error,
    fmt_ms,
    fmt_ratio,
    timing_table,
)
from hwopt.targets.base import Check
from hwopt.timing import LatencyStats
from hwopt.verify import OutputDiff

SCHEMA = "hwopt.report/1"


@dataclasses.dataclass
class Latency:
    """Latency of the original and the optimized model, or why it was not measured."""

    original: LatencyStats | None = None
    optimized: LatencyStats | None = None
    not_measured: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.original is None or self.optimized is None or self.optimized.p50_ms <= 0:
            return None
        return self.original.p50_ms / self.optimized.p50_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": self.not_measured is None,
            "not_measured_reason": self.not_measured,
            "original": self.original.to_dict() if self.original else None,
            "optimized": self.optimized.to_dict() if self.optimized else None,
            "speedup_p50": self.speedup,
        }


@dataclasses.dataclass
class Accuracy:
    """The build's outputs against the original model's, on the same feeds."""

    outputs: list[OutputDiff]
    samples: int
    # Per output: how far onnxruntime's own basic optimizations move it (float32 rounding).
    rounding_noise: dict[str, float] = dataclasses.field(default_factory=dict)
    # Cosine, max abs and top-1 agreement over all check feeds (what --max-accuracy-drop gates).
    summary: AccuracyResult | None = None

    @property
    def result(self) -> AccuracyResult:
        return self.summary

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.outputs), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((d.cosine for d in self.outputs), default=1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "min_cosine": self.min_cosine,
            "rounding_noise": dict(self.rounding_noise),
            "top1_agreement": self.summary.top1 if self.summary else None,
            "outputs": [d.to_dict() for d in self.outputs],
        }


@dataclasses.dataclass
class Partition:
    """Nodes per execution provider in the build's session, and the fallback nodes."""

    nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback: list[str] = dataclasses.field(default_factory=list)
    not_measured: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"nodes_per_provider": dict(self.nodes), "fallback_nodes": list(self.fallback),
                "measured": self.not_measured is None, "not_measured_reason": self.not_measured}


@dataclasses.dataclass
class MemoryReport:
    """Static analysis of original and build, the reorder pass's effect, measured RSS."""

    original: MemoryAnalysis
    build: MemoryAnalysis
    reorder: dict[str, Any] | None = None
    measured_original: SessionMemory | None = None
    measured_build: SessionMemory | None = None
    not_measured: str | None = None
    ort_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The memory settings chosen by measurement, or why none were (settings_note).
    settings: MemoryChoice | None = None
    settings_note: str = ""
    floor: Floor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.original.to_dict(),
            "build": self.build.to_dict(),
            "reorder": self.reorder,
            "measured": {
                "original": self.measured_original.to_dict() if self.measured_original else None,
                "build": self.measured_build.to_dict() if self.measured_build else None,
                "not_measured_reason": self.not_measured,
                "ort_settings": dict(self.ort_settings),
                "original_settings": "onnxruntime's defaults (hwopt's thread count)",
            },
            "floor": self.floor.to_dict() if self.floor else None,
            "settings": self.settings.to_dict() if self.settings else None,
            "settings_note": self.settings_note,
        }


@dataclasses.dataclass
class BuildReport:
    """Everything about the build for one target."""

    target: str
    build_dir: str
    providers: list[dict[str, Any]]
    session_options: dict[str, Any]
    available: bool
    availability_reason: str
    original: ModelStats
    optimized: ModelStats
    latency: Latency
    accuracy: Accuracy
    passes: list[PassRecord]
    graph_choice: GraphChoice | None = None
    precision: PrecisionReport | None = None
    precision_label: str = "fp32"
    target_notes: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    partition: Partition | None = None
    memory: MemoryReport | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "build_dir": self.build_dir,
            "available": self.available,
            "availability_reason": self.availability_reason,
            "providers": self.providers,
            "session_options": self.session_options,
            "original": self.original.to_dict(),
            "optimized": self.optimized.to_dict(),
            "latency": self.latency.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "passes": [r.to_dict() for r in self.passes],
            "graph_choice": self.graph_choice.to_dict() if self.graph_choice else None,
            "precision_label": self.precision_label,
            "precision": self.precision.to_dict() if self.precision else None,
            "target_notes": list(self.target_notes),
            "checks": [c.to_dict() for c in self.checks],
            "partition": self.partition.to_dict() if self.partition else None,
            "memory": self.memory.to_dict() if self.memory else None,
            "warnings": list(self.warnings),
        }


@dataclasses.dataclass
class ModelInfo:
    path: str
    sha256: str
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class OptimizeReport:
    model: ModelInfo
    inputs: list[InputSpec]
    feeds_source: str
    host: HostInfo
    versions: dict[str, str]
    builds: list[BuildReport]
    gates: list[GateResult] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # what the run did that a reader must know
    target_race: Any = None  # a TargetRace when several builds ran here and were raced
    # Wall-clock seconds of each top-level phase of the run (hwopt.progress), in order.
    timings: list[PhaseTime] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "command": "optimize",
            "versions": dict(self.versions),
            "host": self.host.to_dict(),
            "model": self.model.to_dict(),
            "inputs": [spec.to_dict() for spec in self.inputs],
            "feeds": {"source": self.feeds_source,
                      "generated_as": {spec.name: spec.feed.describe() for spec in self.inputs}},
            "builds": [b.to_dict() for b in self.builds],
            "gates": [g.to_dict() for g in self.gates],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "target_race": self.target_race.to_dict() if self.target_race else None,
            "timings": [t.to_dict() for t in self.timings],
        }

    @property
    def uses_generated_data(self) -> bool:
        """Whether any figure rests on data hwopt generated (checks, calibration or judging)."""
        return self.feeds_source.startswith("generated") or any(
            b.precision is not None and b.precision.generated_data for b in self.builds)

    def for_target(self, target: str) -> OptimizeReport:
        """The report restricted to one target's build (what that build folder carries)."""
        return dataclasses.replace(self, builds=[b for b in self.builds if b.target == target],
                                   gates=[g for g in self.gates if g.target == target])

    def document(self, explain: bool = False) -> Document:
        doc = Document(heading=f"hwopt optimize {self.model.path}")
        doc.facts.append(("inputs", "; ".join(_describe_input(s) for s in self.inputs)))
        doc.facts.append(("feeds", self.feeds_source))
        doc.facts += [("note", note) for note in self.notes]
        if self.uses_generated_data:
            doc.facts.append(("generated feeds", "; ".join(f"{s.name}: {s.feed.describe()}" for s in self.inputs)))
        doc.facts.append(
            ("host", f"{self.host.cpu} ({self.host.cores} cores; {', '.join(self.host.isa) or 'no ISA flags read'})")
        )
        if len(self.builds) > 1:
            doc.tables.append(_comparison_table(self.builds, self.target_race))
        for build in self.builds:
            doc.facts.append((f"build [{build.target}]", f"{build.build_dir} ({build.precision_label})"))
            doc.tables += _build_tables(build, explain)
            doc.warnings += [f"[{build.target}] {w}" for w in build.warnings]
        if self.gates:
            doc.tables.append(Table(
                title="CI gates",
                columns=("target", "gate", "result", "detail"),
                rows=[(g.target, g.gate, "passed" if g.passed else "FAILED", g.detail) for g in self.gates],
            ))
        if self.timings:
            doc.tables.append(timing_table(self.timings))
        doc.warnings += self.warnings
        return doc


def _comparison_table(builds: list[BuildReport], race: Any = None) -> Table:
    rows = []
    for b in builds:
        lat = b.latency
        ratio = race.ratio(b.target) if race is not None else None
        rows.append((
            b.target, "yes" if b.available else "no", b.precision_label, str(b.optimized.nodes),
            fmt_bytes(b.optimized.serialized_bytes),
            fmt_ms(lat.optimized.p50_ms) if lat.optimized else "not measured here",
            fmt_ratio(lat.speedup), "-" if ratio is None else f"{ratio:.2f}x",
            fmt_error(b.accuracy.max_rel), f"{b.accuracy.min_cosine:.5f}",
            f"{sum(c.passed for c in b.checks)}/{len(b.checks)}" if b.checks else "-",
        ))
    notes = ["speed-up and latency only where the target's provider runs on this host; every target's "
             "outputs are compared with the original on the CPU provider"]
    if race is not None and race.fastest:
        notes.append(f"vs fastest: each build as deployed (its model, providers and session options), raced "
                     f"against the others interleaved in one process, median of {race.rounds} rounds with fresh "
                     f"sessions; fastest here: {race.fastest}")
    return Table(
        title="Targets compared",
        columns=("target", "runs here", "precision", "nodes", "size", "p50 ms", "speed-up", "vs fastest", "max rel",
                 "cosine", "checks"),
        numeric=("nodes", "size", "p50 ms", "speed-up", "vs fastest", "max rel", "cosine"),
        rows=rows,
        notes=notes,
    )


def _describe_input(spec: InputSpec) -> str:
    declared = ", ".join("?" if d is None else str(d) for d in spec.declared)
    text = f"{spec.name} {spec.dtype} [{declared}] -> {'x'.join(map(str, spec.shape)) or 'scalar'}"
    if spec.defaulted:
        text += f" (defaulted: {', '.join(spec.defaulted)})"
    return text


def _build_tables(build: BuildReport, explain: bool) -> list[Table]:
    t = build.target
    before, after = build.original, build.optimized
    model = Table(
        title=f"[{t}] Model",
        columns=("", "original", "optimized", "change"),
        numeric=("original", "optimized", "change"),
        rows=[
            ("nodes", str(before.nodes), str(after.nodes), fmt_change(before.nodes, after.nodes)),
            ("parameters", fmt_count(before.parameters), fmt_count(after.parameters),
             fmt_change(before.parameters, after.parameters)),
            ("weights", fmt_bytes(before.weight_bytes), fmt_bytes(after.weight_bytes),
             fmt_change(before.weight_bytes, after.weight_bytes)),
            ("file size", fmt_bytes(before.serialized_bytes), fmt_bytes(after.serialized_bytes),
             fmt_change(before.serialized_bytes, after.serialized_bytes)),
        ],
    )
    tables = [model, _latency_table(build), _accuracy_table(build)]
    target_table = _target_table(build)
    if target_table is not None:
        tables.append(target_table)
    if build.graph_choice is not None:
        tables.append(_graph_choice_table(build.target, build.graph_choice))
    if build.precision is not None:
        tables.append(_precision_table(build.target, build.precision, build.original.serialized_bytes))
    if build.memory is not None:
        tables.append(_memory_table(build.target, build.memory))
        if build.memory.settings is not None:
            tables.append(_memory_settings_table(build.target, build.memory.settings))
    tables.append(_passes_table(build))
    if explain:
        tables.append(
            Table(
                title=f"[{t}] Why matches were not rewritten (--explain)",
                columns=("pass", "rule", "node", "reason"),
                rows=[
                    (r.name, d.rule, d.node, d.reason) for r in build.passes for d in r.declined
                ] or [("-", "-", "-", "every match was rewritten")],
            )
        )
    return tables


def _latency_table(build: BuildReport) -> Table:
    latency = build.latency
    title = f"[{build.target}] Latency (ms)"
    if latency.not_measured:
        return Table(title=title, columns=("",), rows=[(f"not measured here: {latency.not_measured}",)])
    rows = []
    for label, stats in (("original", latency.original), ("optimized", latency.optimized)):
        if stats is not None:
            rows.append((label, fmt_ms(stats.p50_ms), fmt_ms(stats.p90_ms), fmt_ms(stats.mean_ms),
                         fmt_ms(stats.std_ms), str(stats.runs)))
    threads = build.session_options.get("intra_op_num_threads", "?")
    notes = [f"speed-up (p50): {fmt_ratio(latency.speedup)}; {threads} intra-op threads, "
             "thread spinning off; runs interleaved in one process"]
    noisy = [label for label, s in (("original", latency.original), ("optimized", latency.optimized))
             if s is not None and s.noisy]
    if noisy:
        notes.append(f"high run-to-run variation for {', '.join(noisy)}: treat the ratio with care")
    return Table(title=title, columns=("", "p50", "p90", "mean", "std", "runs"),
                 numeric=("p50", "p90", "mean", "std", "runs"), rows=rows, notes=notes)


def _accuracy_table(build: BuildReport) -> Table:
    acc = build.accuracy
    return Table(
        title=f"[{build.target}] Outputs against the original ({acc.samples} sample(s))",
        columns=("output", "max abs", "max rel", "cosine", "ORT rounding noise"),
        numeric=("max abs", "max rel", "cosine", "ORT rounding noise"),
        rows=[(d.name, fmt_error(d.max_abs), fmt_error(d.max_rel), f"{d.cosine:.6f}",
               fmt_error(acc.rounding_noise.get(d.name)))
              for d in acc.outputs],
        notes=["max rel = largest absolute difference / largest magnitude of that output; "
               "ORT rounding noise = how far onnxruntime's own basic optimizations move it"],
    )


def _target_table(build: BuildReport) -> Table | None:
    rows = [("note", n) for n in build.target_notes]
    rows += [(f"check: {c.name}", f"{'passed' if c.passed else 'FAILED'}: {c.detail}") for c in build.checks]
    part = build.partition
    if part is not None:
        if part.not_measured:
            rows.append(("nodes per provider", f"not measured here: {part.not_measured}"))
        else:
            rows.append(("nodes per provider", ", ".join(f"{ep} {n}" for ep, n in part.nodes.items())))
            rows.append(("fallback nodes", ", ".join(part.fallback[:10]) + (" ..." if len(part.fallback) > 10 else "")
                         if part.fallback else "none"))
    if not rows:
        return None
    return Table(title=f"[{build.target}] Target", columns=("", "detail"), rows=rows)


def _precision_table(target: str, precision: PrecisionReport, fp32_bytes: int) -> Table:
    rows = []
    for v in precision.variants:
        acc = v.accuracy
        rows.append((
            v.label, v.status, fmt_ratio(v.latency_ratio),
            f"{acc.cosine:.4f}" if acc else "-",
            f"{acc.top1:.1%}" if acc and acc.top1 is not None else "-",
            fmt_error(acc.max_abs) if acc else "-",
            fmt_bytes(v.size_bytes) if v.size_bytes else "-",
            v.reason,
        ))
    notes = [
        f"requested {precision.requested}, shipped {precision.chosen} ({precision.chosen_label}): {precision.reason}",
        f"budget: {precision.budget.describe()}; latency ratio = variant p50 / FP32 build p50, interleaved; "
        f"accuracy on {precision.held_out_samples} held-out sample(s), calibration on "
        f"{precision.calibration_samples} ({precision.calibration_source})",
        f"host instruction sets: {', '.join(precision.isa) or 'unknown'}",
    ]
    if precision.static_note:
        notes.append(precision.static_note)
    return Table(
        title=f"[{target}] Precision (INT8 variants tried)",
        columns=("variant", "status", "latency", "cosine", "top-1", "max abs", "size", "why"),
        numeric=("latency", "cosine", "top-1", "max abs", "size"),
        rows=rows or [("-", "no INT8 variant was built", "", "", "", "", "", "")],
        notes=notes,
    )


def _graph_choice_table(target: str, choice: GraphChoice) -> Table:
    rows = [(v.label, "kept" if v.kept else "not kept", ", ".join(f"{r:.3f}x" for r in v.ratios) or "-",
             str(len(v.result.model.graph.node)), v.reason) for v in choice.variants]
    return Table(
        title=f"[{target}] Float graph variants (kept only where faster)",
        columns=("variant", "status", "latency vs pipeline graph", "nodes", "why"),
        numeric=("nodes",),
        rows=rows,
        notes=["each race interleaved, fresh sessions; the INT8 search then quantizes every graph"],
    )


def _memory_table(target: str, memory: MemoryReport) -> Table:
    before, after = memory.original, memory.build
    rows = [
        ("weights", fmt_bytes(before.weight_bytes), fmt_bytes(after.weight_bytes)),
        ("inputs + outputs", fmt_bytes(before.input_bytes + before.output_bytes),
         fmt_bytes(after.input_bytes + after.output_bytes)),
        ("activations, naive (each its own buffer)", fmt_bytes(before.naive_activation_bytes),
         fmt_bytes(after.naive_activation_bytes)),
        ("activations, planned arena", f"{fmt_bytes(before.planned_arena_bytes)} ({before.plan_strategy})",
         f"{fmt_bytes(after.planned_arena_bytes)} ({after.plan_strategy})"),
        ("activations, lower bound", fmt_bytes(before.lower_bound_bytes), fmt_bytes(after.lower_bound_bytes)),
        ("peak live activations", fmt_bytes(before.peak_live_bytes), fmt_bytes(after.peak_live_bytes)),
    ]
    if memory.measured_original and memory.measured_build:
        original, build = memory.measured_original.session_bytes, memory.measured_build.session_bytes
        rows.append(("measured session peak RSS", fmt_bytes(original),
                     f"{fmt_bytes(build)} ({build / original:.2f}x)" if original > 0 else fmt_bytes(build)))
    else:
        rows.append(("measured session peak RSS", "not measured", memory.not_measured or ""))
    floor = memory.floor.total if memory.floor else None
    if floor and memory.measured_build:
        rows.append(("floor (weights + planned arena + I/O + empty session)", "",
                     f"{fmt_bytes(floor)} (peak {memory.measured_build.session_bytes / floor:.2f}x)"))
    notes = [
        "planned arena: offsets for every activation in one buffer (memory_plan.json); lower bound: "
        "the most bytes live at once, rounded to the 64-byte alignment; peak RSS: each session in "
        "a fresh process, above a bare import of onnxruntime; the original under onnxruntime's defaults "
        "(hwopt's thread count), the build as it deploys: " + ", ".join(f"{k}={v}" for k, v in memory.ort_settings.items()),
    ]
    if memory.floor and floor:
        notes.append(f"floor: weights {fmt_bytes(memory.floor.weight_bytes)} + planned arena "
                     f"{fmt_bytes(memory.floor.arena_bytes)} + inputs and outputs {fmt_bytes(memory.floor.io_bytes)} "
                     f"+ a session of an empty graph {fmt_bytes(memory.floor.session_bytes or 0)} (measured)")
    if memory.settings_note:
        notes.append(f"memory settings: {memory.settings_note}")
    if memory.reorder:
        notes.append(
            f"reorder: peak live {fmt_bytes(memory.reorder['peak_live_bytes_before'])} -> "
            f"{fmt_bytes(memory.reorder['peak_live_bytes_after'])} ({memory.reorder['method']})"
        )
    unknown = after.unknown_size_tensors
    if unknown:
        notes.append(f"{len(unknown)} activation(s) of unknown size left out of these totals: "
                     + ", ".join(unknown[:5]))
    return Table(title=f"[{target}] Memory", columns=("", "original", "build"),
                 numeric=("original", "build"), rows=rows, notes=notes)


def _memory_settings_table(target: str, choice: MemoryChoice) -> Table:
    rows = [(r.setting.label, fmt_bytes(r.peak_bytes) if r.peak_bytes is not None else "-",
             f"{r.vs_fastest:.3f}x" if r.vs_fastest is not None else "-",
             r.status, r.reason or r.setting.description) for r in choice.results]
    notes = [f"{choice.goal}: {choice.chosen.setting.label}, {choice.reason}",
             "peak: each setting's session in a fresh process; p50 vs fastest: over the fastest of the same race, "
             "the median of up to 3 races with fresh sessions, all settings interleaved in one process"]
    if choice.order is not None:
        notes.append(f"the reorder pass's node order (priority-based execution): {choice.order.reason}")
    if choice.weights is not None:
        notes.append(f"weights file: {choice.weights.reason}")
    return Table(title=f"[{target}] Memory settings (chosen by measurement, --optimize-for {choice.goal})",
                 columns=("setting", "peak RSS", "p50 vs fastest", "status", "what / why"),
                 numeric=("peak RSS", "p50 vs fastest"), rows=rows, notes=notes)


def _passes_table(build: BuildReport) -> Table:
    rows = []
    notes = []
    for r in build.passes:
        rows.append((
            r.name, r.status, f"{r.seconds:.2f}s", f"{r.nodes_before}->{r.nodes_after}",
            f"{fmt_count(r.params_before)}->{fmt_count(r.params_after)}",
            fmt_error(r.max_abs), fmt_error(r.max_rel),
            ", ".join(f"{k} x{v}" for k, v in r.rewrites.items()) or "-",
        ))
        if r.reason:
            notes.append(f"{r.name} {r.status}: {r.reason}")
        if r.declined:
            notes.append(f"{r.name}: {len(r.declined)} match(es) declined (see --explain)")
    return Table(
        title=f"[{build.target}] Passes",
        columns=("pass", "status", "time", "nodes", "params", "max abs", "max rel", "rewrites"),
        numeric=("time", "max abs", "max rel"),
        rows=rows or [("-", "no passes", "", "", "", "", "", "")],
        notes=notes,
    )
