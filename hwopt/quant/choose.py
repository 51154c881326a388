"""Choosing the precision by measurement: the fastest INT8 variant within the accuracy budget,
or FP32 when none is faster.

No single INT8 setting wins everywhere (the right format depends on the CPU's instruction
sets and on the model, per layer), so every choice here is measured on this host, against
the FP32 build, on the same feeds, with runs interleaved:

1. **Formats.** (Variants within 3% of the fastest are tied and ranked in a fixed order,
   so that runs on one host agree.) Static INT8 (QDQ and QOperator, U8 and S8 activations, per-channel and
   per-tensor weights, 7-bit weights on x86 CPUs without VNNI, all from one calibration) when
   the user gave calibration data, and dynamic INT8 (weights quantized offline, activation
   scales computed at run time, per-channel or not) of every float graph the build may ship
   (the pipeline's, and the transformer-fused one where it applies). Successive halving on
   repetitions: every variant is timed briefly, the faster half again, longer.
2. **Accuracy.** The survivors, fastest first, are checked on the held-out samples; the first
   within the budget is the base. If none is: other calibration methods (percentile,
   entropy) for the fastest format, then accuracy-aware fallback, keeping the tensors with the
   worst quantization noise (and the nodes that touch them) in float, more at each step,
   until the budget holds.
3. **Speed per layer.** Layer groups that INT8 kernels often run slower than float
   (depthwise convolutions, the first convolution on 3 channels, grouped convolutions, ...)
   are tried in float one group at a time; a group stays in float when that is measurably
   faster and still within the budget.
4. **Decision.** The final variant is timed against FP32 again; it ships only if it is faster
   by more than the noise margin and within the budget, unless the user forces INT8.

Static INT8 takes every activation scale from the calibration data, so its accuracy rests on
that data: without real samples (``--calib DIR``) it is not a candidate unless the user opts in
with ``--calib generated``. It is still measured for speed, briefly, so that the report can say
what it would gain and the one flag that unlocks it. Dynamic INT8 computes its scales from each
input at run time; its accuracy is judged on the held-out samples, which without ``--calib`` are
generated from the graph (token ids spread over their table, masks ones: hwopt.feeds.kinds).

Every variant tried is recorded with its latency ratio, accuracy and size, and why it was
kept or dropped.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwopt import progress
from hwopt.errors import one_line
from hwopt.feeds.samples import SampleSet
from hwopt.hostinfo import HostInfo
from hwopt.quant.accuracy import AccuracyBudget, AccuracyResult, compare
from hwopt.quant.sensitivity import rank_nodes, tensor_sqnr
from hwopt.quant.variants import CALIBRATION_METHODS, QuantConfig, QuantizationFailed, Quantizer
from hwopt.session import ORT_ERRORS, Providers, create_session, run_session
from hwopt.timing import bench_session_options, race_sessions

log = logging.getLogger(__name__)

# The label of the pipeline's own float graph among the graphs a search quantizes.
PIPELINE_GRAPH = ""
# The second FP32 session a ship race times, whose distance from the first is the race's noise.
_TWIN = "fp32 (second session)"

# A variant must beat FP32 by more than this, in a majority of up to SHIP_RACES races with
# fresh sessions, to ship: below it, the difference is noise. With one race, and with "both of
# two races", the choice between INT8 and FP32 flipped from run to run on mobilenetv2_tiny and
# resnext_tiny.
SPEED_MARGIN = 0.98
SHIP_RACES = 5
FAST_SHIP_RACES = 3
# Runs per session in one race, at most (but a race lasts at least MIN_RACE_SECONDS): what
# moves a ratio is drift between races, which more races answer; past a few hundred runs a
# race's medians no longer move (mobilenetv2_tiny ran 1,000 a race, 8 s of its 9 s search).
RACE_RUNS = 200
FAST_SKIPS = ("INT8 of the graph variants", "per-tensor dynamic INT8", "layer groups kept in float",
              "the static INT8 probe")
# Two races that both land this far from the margin, on the same side, decide without a third:
# one race lands up to ~10% off on these hosts now and then, two in the same direction rarely.
CLEAR_OF_MARGIN = 0.05
# Keeping a layer group in float must gain at least this much, in each of GROUP_RACES races
# with fresh sessions, to be kept: one race's few percent are within what one session of a
# model differs from another, and every group in float costs weight size. With one race,
# the classifier Gemm went back to float on three of four sample CNNs for a 2-4% "gain",
# leaving their weights at 0.31-0.36x FP32 instead of 0.25x.
GROUP_GAIN = 0.98
GROUP_RACES = 2
FALLBACK_STEPS = (1, 2, 4, 8, 16, 32, 64)
# In a halving round, variants within 3% of the last survivor survive too.
HALVING_TIES = 1.03
# Narrower sets of operators to quantize, tried when the whole model is over budget: the
# convolutional backbone of a hybrid model (a CNN feeding attention, as PP-OCRv4 rec) often
# quantizes well where its attention does not.
OP_SCOPES = (("Conv",), ("Conv", "MatMul", "Gemm"))
# Operators that mark a model as quantized (besides QLinear* and *Integer).
INTEGER_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "QGemm", "QAttention"})


def _ratio(record: VariantRecord) -> float:
    return record.latency_ratio if record.latency_ratio is not None else float("inf")


@dataclasses.dataclass
class VariantRecord:
    label: str
    config: QuantConfig | None  # None: the FP32 build
    latency_ratio: float | None = None  # p50 / FP32 p50
    accuracy: AccuracyResult | None = None
    size_bytes: int | None = None
    status: str = "tried"
    reason: str = ""
    # The ratio of each race against FP32 that decided whether it ships (beats_fp32), and each
    # race's noise: how far a second FP32 session measured from the first.
    race_ratios: list[float] = dataclasses.field(default_factory=list)
    race_noise: list[float] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "config": self.config.to_dict() if self.config else None,
            "latency_ratio": self.latency_ratio,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "size_bytes": self.size_bytes,
            "status": self.status,
            "reason": self.reason,
            "race_ratios": list(self.race_ratios),
            "race_noise": list(self.race_noise),
        }


@dataclasses.dataclass
class PrecisionReport:
    requested: str
    chosen: str  # "fp32" or "int8"
    chosen_label: str
    reason: str
    budget: AccuracyBudget
    calibration_source: str
    calibration_samples: int
    held_out_samples: int
    generated_data: bool
    isa: tuple[str, ...]
    variants: list[VariantRecord] = dataclasses.field(default_factory=list)
    # Why static INT8 was not a candidate, with what it measured, and the flag that unlocks it.
    static_note: str = ""
    # Whether static INT8 variants were candidates (real calibration data, or --calib generated).
    static_candidates: bool = True
    # The float graph the shipped model came from (PIPELINE_GRAPH or a measured variant's label).
    graph: str = PIPELINE_GRAPH
    # What --fast left out of this search.
    fast_skips: list[str] = dataclasses.field(default_factory=list)

    @property
    def chosen_record(self) -> VariantRecord | None:
        return next((v for v in self.variants if v.status.startswith("chosen")), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "chosen": self.chosen,
            "chosen_label": self.chosen_label,
            "reason": self.reason,
            "budget": self.budget.to_dict(),
            "calibration": {
                "source": self.calibration_source,
                "samples": self.calibration_samples,
                "held_out_samples": self.held_out_samples,
                "generated": self.generated_data,
            },
            "isa": list(self.isa),
            "variants": [v.to_dict() for v in self.variants],
            "static_note": self.static_note,
            "static_candidates": self.static_candidates,
            "graph": self.graph or "pipeline",
            "fast_skips": list(self.fast_skips),
        }


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    budget: AccuracyBudget = AccuracyBudget()
    calibration: str | None = None  # None: minmax first, the others when accuracy fails
    force_int8: bool = False
    bench_seconds: float = 1.0
    # Static INT8 competes only on real calibration data (or when the user accepts generated
    # data); otherwise it is measured for speed and reported, never shipped.
    static: bool = True
    dynamic: bool = True
    # The static INT8 formats the target's provider runs well (OpenVINO: QDQ only).
    formats: tuple[str, ...] = ("qdq", "qoperator")
    # --fast: dynamic INT8 of the FP32 build's graph only, no layer-group refinement, no static
    # probe, FAST_SHIP_RACES ship races (FAST_SKIPS says so in the report).
    fast: bool = False


def _reduce_range(host: HostInfo) -> bool:
    x86 = host.machine.lower() in ("x86_64", "amd64", "i686", "x86")
    return x86 and not host.has_vnni


def format_candidates(host: HostInfo, formats: Sequence[str] = ("qdq", "qoperator")) -> list[QuantConfig]:
    """The static format space on this host. Weights are S8 (the integer kernels' fast path);
    7-bit weights only on x86 without VNNI, where 8-bit products can saturate."""
    return [
        QuantConfig(fmt=fmt, activations=act, per_channel=pc, reduce_range=_reduce_range(host))
        for fmt in formats
        for act in ("u8", "s8")
        for pc in (True, False)
    ]


def dynamic_candidates(host: HostInfo, graphs: Sequence[str]) -> list[QuantConfig]:
    """Dynamic INT8 of each float graph: U8 activations (DynamicQuantizeLinear's type), S8
    weights, per-channel or per-tensor."""
    return [
        QuantConfig(fmt="dynamic", activations="u8", per_channel=pc, reduce_range=_reduce_range(host), graph=graph)
        for graph in graphs
        for pc in (True, False)
    ]


# The static formats measured for speed alone when static INT8 is not a candidate.
# One format: each costs a full static quantization (6 s on ResNeXt50 per-channel) for a note
# in the report. QDQ, the format onnxruntime recommends on the CPU; per-tensor, whose scales
# take a fraction of per-channel's Python time to compute and whose kernels are the same.
STATIC_PROBES = (QuantConfig(fmt="qdq", per_channel=False),)
# Its calibration: speed does not depend on the scales, and calibrating ResNeXt50 on 32
# samples took 5 s of the probe's 7.
PROBE_SAMPLES = 2


class _Search:
    def __init__(
        self,
        graphs: Mapping[str, onnx.ModelProto],
        calib: SampleSet,
        held: SampleSet,
        settings: SearchSettings,
        session_options: Mapping[str, Any],
        providers: Providers,
        workdir: Path,
    ):
        """``graphs``: the float graphs to quantize by label, the FP32 build first (every
        ratio is to it); PIPELINE_GRAPH, the pipeline's own, is among them."""
        self.settings = settings
        self.held = held
        self.quantizers = {}
        for index, (label, model) in enumerate(graphs.items()):
            folder = workdir / f"graph_{index}"
            folder.mkdir(parents=True, exist_ok=True)
            self.quantizers[label] = Quantizer(model, calib, folder)
        self.fp32_graph = next(iter(graphs))
        self.workdir = workdir
        self.session_options = bench_session_options(session_options)
        self.providers = providers
        self.fp32_session = create_session(self.quantizers[self.fp32_graph].float_path, self.session_options, providers)
        self.reference = [run_session(self.fp32_session, s) for s in held.samples]
        self.records: list[VariantRecord] = []
        self.paths: dict[QuantConfig, Path] = {}
        self._prepared: dict[str, onnx.ModelProto] = {}

    def prepared(self, graph: str) -> onnx.ModelProto:
        """The pre-processed float model of ``graph``, as the quantizer names its nodes."""
        if graph not in self._prepared:
            self._prepared[graph] = onnx.load(str(self.quantizers[graph].prepared), load_external_data=False)
        return self._prepared[graph]

    # -- building and measuring -----------------------------------------------------------
    def build(self, config: QuantConfig, calibration: SampleSet | None = None) -> VariantRecord:
        record = VariantRecord(config.label(), config)
        self.records.append(record)
        progress.step(f"quantize {record.label}")
        try:
            path = self.quantizers[config.graph].quantize(config, calibration)
        except QuantizationFailed as exc:
            record.status, record.reason = "failed", f"quantizer: {exc}"
            return record
        if not quantizes_anything(onnx.load(str(path), load_external_data=False).graph):
            # silero VAD keeps its Convs and LSTMs inside If branches, which the quantizer does
            # not enter: its "INT8" variants were the float model, and one was shipped as INT8.
            record.status = "failed"
            record.reason = "the quantizer left every operator in float (none it handles outside subgraphs)"
            return record
        self.paths[config] = path
        record.size_bytes = path.stat().st_size
        return record

    def accuracy(self, record: VariantRecord) -> AccuracyResult | None:
        if record.accuracy is None and record.config in self.paths:
            try:
                session = create_session(self.paths[record.config], self.session_options, self.providers)
                outputs = [run_session(session, s) for s in self.held.samples]
            except ORT_ERRORS as exc:
                record.status, record.reason = "failed", f"onnxruntime: {one_line(exc)}"
                return None
            record.accuracy = compare(self.reference, outputs)
        return record.accuracy

    def time(self, records: Sequence[VariantRecord], seconds: float, twin: bool = False) -> float | None:
        """Latency ratios to FP32 for ``records``, all timed interleaved with FP32. With ``twin``,
        a second session of the FP32 model runs too, and its ratio to the first is returned: how
        far apart two copies of one model measure in this race (the race's noise)."""
        progress.step("timing " + ", ".join(r.label for r in records) + " against fp32")
        runnable = {}
        for record in records:
            if record.config not in self.paths:
                continue
            try:
                runnable[record.label] = create_session(self.paths[record.config], self.session_options, self.providers)
            except ORT_ERRORS as exc:
                record.status, record.reason = "failed", f"onnxruntime: {one_line(exc)}"
        sessions = {"fp32": self.fp32_session, **runnable}
        if twin:
            sessions[_TWIN] = create_session(self.quantizers[self.fp32_graph].float_path, self.session_options,
                                             self.providers)
        stats = race_sessions(sessions, self.held.samples[0], seconds, max_runs=RACE_RUNS)
        for record in records:
            if record.label in stats:
                record.latency_ratio = stats[record.label].p50_ms / stats["fp32"].p50_ms
        return stats[_TWIN].p50_ms / stats["fp32"].p50_ms if twin else None

    def beats_fp32(self, record: VariantRecord) -> bool:
        """Whether ``record`` runs under SPEED_MARGIN x FP32 in a majority of up to SHIP_RACES
        races (it stops once either side has the majority); its ratio becomes the median of the
        races run. The first race also times a second FP32 session: how far it lands from the
        first is the race's noise, which the report gives beside the margin (in every race it
        cost a third of the races' time, 4 s on ResNeXt50, for a figure nothing decides by).

        A majority, not every race: on these hosts one race in several lands 10% off, and with
        "every race of two" resnext_tiny shipped INT8, INT8, FP32 in three runs. (Using the
        noise as the bar, 1 - 2 x noise, made mobilenetv2_tiny flip too: one pair's distance is
        itself too noisy to decide by.) Two races that both land more than CLEAR_OF_MARGIN
        from the margin on the same side decide on their own: on ResNeXt50, whose INT8 ran
        1.10x FP32, the third race cost 6 s and could not change the outcome."""
        ratios, noises = [], []
        races = FAST_SHIP_RACES if self.settings.fast else SHIP_RACES
        majority = races // 2 + 1
        for race in range(races):
            twin = self.time([record], self.ship_seconds, twin=race == 0)
            if record.latency_ratio is None:
                ratios = [None]
                break
            ratios.append(record.latency_ratio)
            if twin is not None:
                noises.append(abs(1.0 - twin))
            wins = sum(r < SPEED_MARGIN for r in ratios)
            if wins >= majority or len(ratios) - wins >= majority or _clear(ratios):
                break
        record.latency_ratio = None if None in ratios else float(np.median(ratios))
        record.race_ratios = [r for r in ratios if r is not None]
        record.race_noise = noises
        wins = sum(r < SPEED_MARGIN for r in record.race_ratios)
        clear_win = wins == len(record.race_ratios) and _clear(record.race_ratios)
        return record.latency_ratio is not None and (wins >= majority or clear_win)

    @property
    def ship_seconds(self) -> float:
        """Seconds per session in a ship race: half the benchmark's. What moves a ship race is
        drift between races (one in several lands 6-10% off), which more races answer; more
        runs in one race do not (ResNeXt50: 22 runs a race instead of 44, 9 s less). --fast
        goes below the half second."""
        half = self.settings.bench_seconds / 2
        return half if self.settings.fast else max(0.5, half)

    def within(self, record: VariantRecord) -> bool:
        accuracy = self.accuracy(record)
        return accuracy is not None and accuracy.within(self.settings.budget)

    def mark_over_budget(self, record: VariantRecord) -> None:
        if record.status != "failed" and record.accuracy is not None:
            record.status = "over budget"
            record.reason = "; ".join(record.accuracy.violations(self.settings.budget))

    # -- the stages -----------------------------------------------------------------------
    def formats(self, host: HostInfo) -> list[VariantRecord]:
        method = self.settings.calibration or "minmax"
        configs = []
        if self.settings.static:
            static = format_candidates(host, self.settings.formats)
            if self.settings.fast:  # U8 activations, per-channel weights, the target's first format
                static = static[:1]
            configs += [dataclasses.replace(c, calibration=method) for c in static]
        if self.settings.dynamic and self.settings.fast:  # one candidate, raced once: in the ship races
            configs += [c for c in dynamic_candidates(host, [self.fp32_graph]) if c.per_channel]
        elif self.settings.dynamic:
            configs += dynamic_candidates(host, list(self.quantizers))
        built = [self.build(config) for config in configs]
        alive = [r for r in built if r.status != "failed"]
        seconds = max(0.5, self.settings.bench_seconds / 2)
        while len(alive) > 2:
            self.time(alive, seconds)
            alive.sort(key=_ratio)
            # The faster half goes on, and whatever is within noise of the slowest of that half.
            cut = _ratio(alive[(len(alive) + 1) // 2 - 1]) * HALVING_TIES
            survivors = [r for r in alive if _ratio(r) <= cut]
            if len(survivors) == len(alive):
                break
            for dropped in alive[len(survivors):]:
                dropped.status, dropped.reason = "dropped", "slower than the faster half in a timing round"
            alive = survivors
            seconds *= 2
        if alive and not (self.settings.fast and len(alive) == 1):  # (FP32 alone raced for nothing)
            self.time(alive, seconds)
        return stable_ranking(alive, configs)

    def accurate_base(self, ranked: list[VariantRecord]) -> VariantRecord | None:
        """The fastest variant within budget, repaired step by step when none is."""
        for record in ranked:
            if self.within(record):
                return record
            self.mark_over_budget(record)
        # Repairs re-calibrate or narrow what static INT8 quantizes; dynamic variants have no
        # calibration to repair, and the noise ranking behind the fallback needs calibration.
        evaluated = [r for r in ranked if r.accuracy is not None and r.config.calibrated]
        if not evaluated or not self.settings.static:
            return None
        best = max(evaluated, key=lambda r: r.accuracy.cosine)
        repairs = [dataclasses.replace(best.config, op_types=scope) for scope in OP_SCOPES]
        methods = [self.settings.calibration] if self.settings.calibration else list(CALIBRATION_METHODS)
        repairs += [dataclasses.replace(best.config, calibration=m) for m in methods if m != best.config.calibration]
        for config in repairs:
            record = self.build(config)
            if self.within(record):
                return record
            self.mark_over_budget(record)
            if record.accuracy is not None and record.accuracy.cosine > best.accuracy.cosine:
                best = record
        return self.fallback(best)

    def fallback(self, record: VariantRecord) -> VariantRecord | None:
        """Keep the nodes that add the most quantization noise in float, more at each step,
        until within budget."""
        qdq_config = dataclasses.replace(record.config, fmt="qdq")
        if qdq_config not in self.paths:
            qdq = self.build(qdq_config)
            self.records.remove(qdq)
            if qdq.status == "failed":
                return None
        try:
            quantizer = self.quantizers[record.config.graph]
            sqnr = tensor_sqnr(quantizer.prepared, self.paths[qdq_config], self.held.take(2), self.workdir)
        except Exception as exc:  # noqa: BLE001 - ORT's debug tooling; a failure ends the fallback, reported
            record.reason += f"; sensitivity analysis failed: {type(exc).__name__}: {one_line(exc)}"
            return None
        units = [unit for unit, _ in rank_nodes(self.prepared(record.config.graph), sqnr)]
        for count in FALLBACK_STEPS:
            if count > len(units) // 2:
                break
            names = [name for unit in units[:count] for name in unit]
            exclude = tuple(sorted(set(record.config.exclude) | set(names)))
            candidate = self.build(dataclasses.replace(record.config, exclude=exclude))
            if self.within(candidate):
                candidate.reason = (
                    f"the {len(names)} node(s) adding the most quantization noise kept in float "
                    f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                )
                return candidate
            self.mark_over_budget(candidate)
        return None

    def refine_groups(self, base: VariantRecord) -> VariantRecord:
        untouched = _untouched_nodes(self.prepared(base.config.graph), self.paths[base.config]) \
            if base.config.dynamic else set()
        for group, nodes in layer_groups(self.prepared(base.config.graph)).items():
            if not nodes or set(nodes) <= set(base.config.exclude):
                continue
            exclude = tuple(sorted(set(base.config.exclude) | set(nodes)))
            if set(nodes) <= untouched:  # what the check below finds after quantizing, without it
                config = dataclasses.replace(base.config, exclude=exclude)
                record = VariantRecord(f"{config.label()} ({group} in float)", config)
                record.status, record.reason = "not kept", f"the same model: the quantizer leaves {group} alone"
                self.records.append(record)
                continue
            candidate = self.build(dataclasses.replace(base.config, exclude=exclude))
            candidate.label += f" ({group} in float)"
            if candidate.status == "failed":
                continue
            if filecmp.cmp(self.paths[candidate.config], self.paths[base.config], shallow=False):
                # Dynamic INT8 leaves Add/Mul in float anyway: racing the same model against
                # itself can only pick noise (it once shipped transformer_tiny 11% off FP32).
                candidate.status, candidate.reason = "not kept", f"the same model: the quantizer leaves {group} alone"
                continue
            faster = self.faster_in_float(base, candidate)
            if faster and self.within(candidate):
                base.status, base.reason = "superseded", f"keeping {group} in float was faster"
                base = candidate
            else:
                candidate.status = "not kept"
                candidate.reason = (
                    f"{group} in float was not faster in {GROUP_RACES} races" if not faster else "over budget"
                )
        return base

    def faster_in_float(self, base: VariantRecord, candidate: VariantRecord) -> bool:
        """Whether ``candidate`` (``base`` with a layer group in float) beats ``base`` by
        GROUP_GAIN in every one of GROUP_RACES races; it stops at the first race it loses."""
        for _ in range(GROUP_RACES):
            self.time([base, candidate], self.settings.bench_seconds / 2)
            if candidate.latency_ratio is None or base.latency_ratio is None:
                return False
            if candidate.latency_ratio >= GROUP_GAIN * base.latency_ratio:
                return False
        return True


def _clear(ratios: Sequence[float]) -> bool:
    """Whether the first two ship races both landed beyond CLEAR_OF_MARGIN, on one side."""
    return len(ratios) == 2 and (all(r < SPEED_MARGIN - CLEAR_OF_MARGIN for r in ratios)
                                 or all(r > SPEED_MARGIN + CLEAR_OF_MARGIN for r in ratios))


def stable_ranking(records: Sequence[VariantRecord], preference: Sequence[QuantConfig]) -> list[VariantRecord]:
    """Fastest first, except that variants within HALVING_TIES of the fastest count as tied and
    go in the fixed order of ``preference`` (the candidate list): which of two formats a few
    percent apart measures faster changes from run to run, and the build should not."""
    ranked = sorted(records, key=_ratio)
    if not ranked or ranked[0].latency_ratio is None:
        return ranked
    cut = ranked[0].latency_ratio * HALVING_TIES
    order = {config: index for index, config in enumerate(preference)}
    tied = sorted((r for r in ranked if _ratio(r) <= cut), key=lambda r: order.get(r.config, len(order)))
    return tied + [r for r in ranked if _ratio(r) > cut]


def quantizes_anything(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` (or a subgraph in it) has an operator that runs on integers."""
    for node in graph.node:
        if node.op_type in INTEGER_OPS or node.op_type.startswith("QLinear") or node.op_type.endswith("Integer"):
            return True
        if any(quantizes_anything(a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH):
            return True
    return False


def _untouched_nodes(prepared: onnx.ModelProto, quantized: Path) -> set[str]:
    """Nodes of ``prepared`` that dynamic INT8 wrote back unchanged (same name, operator and
    inputs): keeping them in float cannot change the model (ResNeXt50: four groups, 4 s of
    quantizing to learn that)."""
    written = {n.name: (n.op_type, tuple(n.input)) for n in onnx.load(str(quantized), load_external_data=False).graph.node}
    return {n.name for n in prepared.graph.node if written.get(n.name) == (n.op_type, tuple(n.input))}


def layer_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node groups whose INT8 kernels are often slower than float on CPUs."""
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    inputs = {vi.name for vi in model.graph.input}
    groups: dict[str, list[str]] = {
        "first convolution": [], "depthwise convolutions": [], "grouped convolutions": [],
        "elementwise Add/Mul": [], "MatMul/Gemm": [],
    }
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights:
            w = weights[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            cin = w[1] * group
            if node.input[0] in inputs or cin <= 4:
                groups["first convolution"].append(node.name)
            elif group > 1 and group == cin:
                groups["depthwise convolutions"].append(node.name)
            elif group > 1:
                groups["grouped convolutions"].append(node.name)
        elif node.op_type in ("Add", "Mul"):
            groups["elementwise Add/Mul"].append(node.name)
        elif node.op_type in ("MatMul", "Gemm"):
            groups["MatMul/Gemm"].append(node.name)
    return groups


def choose_precision(
    graphs: Mapping[str, onnx.ModelProto],
    calib: SampleSet,
    held: SampleSet,
    requested: str,
    settings: SearchSettings,
    host: HostInfo,
    session_options: Mapping[str, Any],
    providers: Providers,
    workdir: Path,
    keep: Path | None = None,
) -> tuple[PrecisionReport, Path | None]:
    """Search INT8 variants of the float ``graphs`` (by label, the FP32 build first); return
    the report and the chosen INT8 model's path (None when FP32 wins). With ``keep``, every
    variant built within the accuracy budget is copied there too, listed in ``variants.json``
    (hwopt tune races them itself)."""
    search = _Search(graphs, calib, held, settings, session_options, providers, workdir)
    report, chosen = _choose(search, calib, held, requested, settings, host)
    if settings.fast:
        report.fast_skips = [skip for skip in FAST_SKIPS if len(graphs) > 1 or skip != FAST_SKIPS[0]]
        if settings.static:
            report.fast_skips.append(f"static INT8 formats other than {format_candidates(host, settings.formats)[0].label()}")
    elif not settings.static and PIPELINE_GRAPH in search.quantizers:
        report.static_note = _probe_static(search, host)
    if keep is not None:
        _keep_within_budget(search, keep)
    return report, chosen


def _probe_static(search: _Search, host: HostInfo) -> str:
    """Time static INT8 against FP32 once, for the report: what it would gain on this host
    (its accuracy is not judged, nor is it ever shipped from here)."""
    probes = [probe for probe in STATIC_PROBES if probe.fmt in search.settings.formats]
    few = search.quantizers[PIPELINE_GRAPH].calibration.take(PROBE_SAMPLES)
    built = [search.build(dataclasses.replace(probe, reduce_range=_reduce_range(host)), few) for probe in probes]
    records = [r for r in built if r.status != "failed"]
    if records:
        search.time(records, max(0.5, search.settings.bench_seconds / 2))
    for record in records:
        record.status = "not a candidate"
        record.reason = "static INT8 without real calibration data: timed for the report only"
    timed = [r for r in records if r.latency_ratio is not None]
    if not timed:
        why = built[0].reason if built else "no variant"
        return f"static INT8 could not be measured on this model ({why}); it needs --calib DIR with real samples"
    best = min(timed, key=_ratio)
    return (
        f"static INT8 ({best.label}) measured {best.latency_ratio:.2f}x FP32 latency on this host, accuracy not "
        "judged: its activation scales would come from generated data, so it was not a candidate. "
        "Pass --calib DIR with real input samples to let it compete (--calib generated accepts generated data)"
    )


def _keep_within_budget(search: _Search, keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    listed = []
    for index, record in enumerate(search.records):
        if record.config in search.paths and record.accuracy is not None and search.within(record):
            name = f"variant_{index}.onnx"
            shutil.copyfile(search.paths[record.config], keep / name)
            listed.append({"file": name, "label": record.label, "accuracy": record.accuracy.to_dict(),
                           "latency_ratio": record.latency_ratio, "status": record.status})
    (keep / "variants.json").write_text(json.dumps(listed, indent=2) + "\n")


def _choose(search: _Search, calib: SampleSet, held: SampleSet, requested: str, settings: SearchSettings,
            host: HostInfo) -> tuple[PrecisionReport, Path | None]:
    report = PrecisionReport(
        requested=requested, chosen="fp32", chosen_label="FP32", reason="",
        budget=settings.budget, calibration_source=calib.source,
        calibration_samples=len(calib), held_out_samples=len(held),
        generated_data=calib.generated, isa=host.isa, graph=search.fp32_graph, static_candidates=settings.static,
    )
    ranked = search.formats(host)
    base = search.accurate_base(ranked)
    report.variants = search.records
    if base is None:
        if search.records and all(r.status == "failed" for r in search.records):
            report.reason = f"no INT8 variant could be made: {search.records[0].reason}"
            return report, None
        report.reason = f"no INT8 variant met the accuracy budget ({settings.budget.describe()})"
        return report, _forced(search, ranked, settings, report)
    if not settings.fast:
        base = search.refine_groups(base)
    if not search.beats_fp32(base):
        ratio = f"{base.latency_ratio:.2f}x" if base.latency_ratio is not None else "an unmeasured"
        base.status = "slower"
        base.reason = f"{ratio} FP32 latency (median): not faster than FP32 beyond noise in most races"
        report.reason = f"the best INT8 variant within budget runs at {ratio} FP32{_decided_by(base, settings)}"
        return report, _forced(search, [base], settings, report)
    base.status = "chosen"
    report.graph = base.config.graph
    for record in search.records:
        if record.status == "tried":
            record.status, record.reason = "not chosen", "the chosen variant was faster within the budget"
    report.chosen, report.chosen_label = "int8", base.label
    report.reason = (
        f"fastest variant within the budget: {base.latency_ratio:.2f}x FP32 latency, "
        f"cosine {base.accuracy.cosine:.4f}{_decided_by(base, settings)}"
    )
    return report, search.paths[base.config]


def _decided_by(record: VariantRecord, settings: SearchSettings) -> str:
    """The races behind a ship-or-not decision: their ratios (the spread between them is the
    noise a run sees) against the margin each had to beat. On a tie FP32 ships, so repeated
    runs on one host make the same build unless INT8 is clearly faster."""
    if not record.race_ratios:
        return ""
    ratios = ", ".join(f"{r:.3f}x" for r in record.race_ratios)
    noise = ", ".join(f"{n:.3f}" for n in record.race_noise) or "-"
    races = FAST_SHIP_RACES if settings.fast else SHIP_RACES
    return (f" (races: {ratios}; noise, a second FP32 session against the first in the first race: {noise}; "
            f"INT8 ships only below {SPEED_MARGIN:.2f}x in a majority of up to {races} races, or in both of "
            f"the first two below {SPEED_MARGIN - CLEAR_OF_MARGIN:.2f}x, else FP32)")


def _forced(search: _Search, ranked: Sequence[VariantRecord], settings: SearchSettings,
            report: PrecisionReport) -> Path | None:
    """With --force-int8, the fastest INT8 variant ships anyway, and the report says so."""
    if not settings.force_int8:
        return None
    candidates = [r for r in ranked if r.config in search.paths]
    if not candidates:
        return None
    forced = min(candidates, key=lambda r: r.latency_ratio if r.latency_ratio is not None else float("inf"))
    forced.status = "chosen (forced)"
    report.graph = forced.config.graph
    report.chosen, report.chosen_label = "int8", forced.label
    report.reason += "; shipped anyway because INT8 was forced"
    return search.paths[forced.config]

