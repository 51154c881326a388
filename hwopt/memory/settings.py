"""The memory settings a build deploys with, chosen by measurement.

``memory_plan.json`` proves how few activation bytes a model needs; onnxruntime never executes
that plan. What the deployed process holds depends on the session's settings: the memory
pattern (a block sized from the first run, kept beside the arena), the CPU arena and how it
grows (by powers of two, or by exactly what is asked), prepacked weights (a second, packed copy
of every GEMM/Conv weight), arena shrinkage after each run, and the node order. Measured on
PP-OCRv4 det at 640x640, these alone move a session's peak by about a third.

So a build does not assume: each candidate setting of the target's runs in a fresh process
(peak resident bytes above a bare ``import onnxruntime``, hwopt.memory.probe), all of them are
timed interleaved in one process, and the goal picks one:

* ``latency``: the fastest;
* ``memory``: the lowest peak;
* ``balanced`` (the default): the lowest peak whose p50 is within BALANCED_SLACK of the fastest.

Speed is a setting's p50 over the fastest p50 of the same race, the median over RACES races
with fresh sessions: one race of nine sessions on these hosts put settings that run the same
kernels 3-8% apart (PP-OCRv4 rec), and the fastest of nine noisy figures is itself low.

Ties go to the earlier candidate in the target's list, which starts from onnxruntime's defaults.
The chosen setting's session options, environment allocator and run options go into
``build.json``, and ``hwopt.runtime.load`` and ``hwopt bench`` apply all of them, so what was
measured is what deploys.

The floor the report measures against: the build's weights, its planned arena, its inputs and
outputs, and what a session of an empty graph costs (measured).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import statistics
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from hwopt import progress
from hwopt.errors import one_line
from hwopt.feeds.inputs import save_npz
from hwopt.memory.probe import MeasurementFailed, SessionMemory, measure_session_memory
from hwopt.options import GOALS
from hwopt.session import ORT_ERRORS, Providers, create_session, physical_cores
from hwopt.timing import bench_session_options, race_sessions

# balanced: a setting may be this much slower than the fastest (the median of its races).
BALANCED_SLACK = 1.03
RACES = 3
# Runs per setting in one race, at most (but a race lasts at least MIN_RACE_SECONDS): a race's
# p50 is a median, and 60 runs put it within about 1% where runs vary by 5%, well inside the 3%
# that decides; a model of a few milliseconds used to run some 300 a race, 39 s of races on
# SqueezeNet.
RACE_RUNS = 60
CONFIRMATIONS = 3
# A setting this much slower than the fastest in the first race runs no more races: it changes
# the kernels (no NCHWc layout: 1.9x on PP-OCRv4 rec), and no race will bring it within reach.
CLEARLY_SLOWER = 1.15
# The reorder pass's order may cost this much p50 against onnxruntime's own order before it
# must lower the peak to stay; a peak within PEAK_TIE of the other is no lower.
ORDER_SLACK = 1.02
PEAK_TIE = 0.01
# A weights file must lower the peak by this much to ship (two files are less handy than one;
# peaks of one setting measure up to 1.5 MiB apart run to run).
WEIGHTS_TIE = 0.05
# The probe runs each session this many times: the arena and the pattern settle on the first.
PROBE_RUNS = 3
MIB = 1 << 20
# Sessions that share the environment allocator say so with a config entry.
USE_ENV_ALLOCATORS = {"session.use_env_allocators": "1"}
# Memory pattern off, and an environment allocator that grows by exactly the bytes asked
# (OrtArenaCfg kSameAsRequested), not by the next power of two.
EXACT_ARENA = {"enable_mem_pattern": False, "env_allocator": {"arena_extend_strategy": 1},
               "config_entries": USE_ENV_ALLOCATORS}
NO_PREPACK = {"session.disable_prepacking": "1"}
# Graph optimization level extended: no layout transformation at load (the CPU provider's
# NCHWc copies of convolution weights), which lowers the load-time peak; measured for speed
# like every setting, since NCHWc convolutions are often faster.
NO_LAYOUT = {"graph_optimization_level": "extended"}


@dataclasses.dataclass(frozen=True)
class MemorySetting:
    """One way to run a session: overrides of the target's session options, in the keys of
    hwopt.session (``env_allocator`` and ``run_options`` included); config entries are merged
    into the target's, not replacing them."""

    label: str
    description: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The environment arena's first chunk is the build's planned arena (memory_plan.json),
    # rounded up to a MiB: filled in by ``for_plan``.
    plan_chunk: bool = False

    def for_plan(self, arena_bytes: int) -> MemorySetting:
        """This setting with the planned arena filled in (itself when it takes none)."""
        if not self.plan_chunk:
            return self
        chunk = max(1, -(-arena_bytes // MIB)) * MIB
        overrides = {**self.overrides, "env_allocator": {**self.overrides["env_allocator"],
                                                         "initial_chunk_size_bytes": chunk}}
        return dataclasses.replace(self, overrides=overrides, plan_chunk=False,
                                   description=f"{self.description}: {chunk // MIB} MiB")

    def session_options(self, base: Mapping[str, Any]) -> dict[str, Any]:
        options = {**base, **self.overrides}
        entries = {**base.get("config_entries", {}), **self.overrides.get("config_entries", {})}
        if entries:
            options["config_entries"] = entries
        return options

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "description": self.description, "overrides": dict(self.overrides)}


# The CPU provider's candidates, onnxruntime's defaults first. Execution order is not among
# them: it is the reorder pass's business and is decided after (see ``choose_settings``).
CPU_SETTINGS = (
    MemorySetting("pattern+arena", "onnxruntime's defaults: memory pattern and CPU arena on"),
    MemorySetting("no-pattern", "memory pattern off (no block sized from the first run beside the arena)",
                  {"enable_mem_pattern": False}),
    MemorySetting("no-arena", "CPU arena off (each tensor from malloc), memory pattern on",
                  {"enable_cpu_mem_arena": False}),
    MemorySetting("exact-arena", "memory pattern off; a shared arena that grows by exactly what is asked "
                  "(kSameAsRequested, environment allocator)", EXACT_ARENA),
    MemorySetting("planned-arena", "memory pattern off; a shared arena whose first chunk is the planned arena "
                  "(memory_plan.json), growing by powers of two",
                  {**EXACT_ARENA, "env_allocator": {"arena_extend_strategy": 0}}, plan_chunk=True),
    MemorySetting("exact-arena-no-prepack", "as exact-arena, and weights not prepacked (one copy of each)",
                  {**EXACT_ARENA, "config_entries": {**USE_ENV_ALLOCATORS, **NO_PREPACK}}),
    MemorySetting("exact-arena-no-layout", "as exact-arena, at graph optimization level extended (no NCHWc "
                  "weight copies at load)", {**EXACT_ARENA, **NO_LAYOUT}),
    MemorySetting("exact-arena-lean", "as exact-arena, no prepacking and no layout transformation",
                  {**EXACT_ARENA, **NO_LAYOUT, "config_entries": {**USE_ENV_ALLOCATORS, **NO_PREPACK}}),
    MemorySetting("no-pattern-shrink", "memory pattern off; the arena shrinks back after every run",
                  {"enable_mem_pattern": False, "run_options": {"memory.enable_memory_arena_shrinkage": "cpu:0"}}),
)


@dataclasses.dataclass
class SettingResult:
    setting: MemorySetting
    memory: SessionMemory | None = None  # measured in a fresh process
    p50s_ms: list[float] = dataclasses.field(default_factory=list)  # one per race it ran in
    ratios: list[float] = dataclasses.field(default_factory=list)  # p50 / the race's fastest p50
    status: str = "tried"  # tried | chosen | failed
    reason: str = ""
    model: Path | None = None  # another file of the same model (its weights kept apart)

    @property
    def peak_bytes(self) -> int | None:
        """The session's peak above a bare ``import onnxruntime``."""
        return self.memory.session_bytes if self.memory is not None else None

    @property
    def p50_ms(self) -> float | None:
        return float(np.median(self.p50s_ms)) if self.p50s_ms else None

    @property
    def vs_fastest(self) -> float | None:
        return float(np.median(self.ratios)) if self.ratios else None

    @property
    def measured(self) -> bool:
        return self.peak_bytes is not None and self.vs_fastest is not None

    def figures(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "p50_ms": self.p50_ms}

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting.to_dict(),
            "peak_bytes": self.peak_bytes,
            "p50_ms": self.p50_ms,
            "races_p50_ms": list(self.p50s_ms),
            "vs_fastest": self.vs_fastest,
            "status": self.status,
            "reason": self.reason,
        }


def paired_ratio(a: SettingResult, b: SettingResult) -> float:
    """The median over races of ``a``'s p50 over ``b``'s in the same race."""
    return float(np.median(_pair_ratios(a, b)))


def _pair_ratios(a: SettingResult, b: SettingResult) -> list[float]:
    return [x / y for x, y in zip(a.p50s_ms, b.p50s_ms)]


def median_range(values: Sequence[float], total: int) -> tuple[float, float]:
    """Where the median of ``total`` values (an odd number) can still land once the first
    ``values`` are known: races stop as soon as no later race can change a decision."""
    known, missing = sorted(values), total - len(values)
    if missing <= 0:
        middle = float(np.median(known))
        return middle, middle
    mid = total // 2
    low = known[mid - missing] if mid - missing >= 0 else -math.inf
    high = known[mid] if mid < len(known) else math.inf
    return low, high


# Given the settings still racing, the ones whose further races can change the decision.
Relevant = Callable[[Sequence[SettingResult]], Sequence[SettingResult]]


def _pair(a: SettingResult, b: SettingResult, limit: float, races: int) -> Relevant:
    """A two-way check's ``relevant``: both race on until a's median over b's is settled
    against ``limit``."""
    return lambda racing: [] if pair_settled(a, b, limit, races) else racing


def pair_settled(a: SettingResult, b: SettingResult, limit: float, races: int = RACES) -> bool:
    """Whether ``a``'s median p50 over ``b``'s, over ``races`` races, is known to be on one side
    of ``limit`` already."""
    low, high = median_range(_pair_ratios(a, b), races)
    return high <= limit or low > limit


def goal_relevant(results: Sequence[SettingResult], goal: str, races: int = RACES) -> list[SettingResult]:
    """The settings among ``results`` (the ones racing) whose further races can still change
    ``goal``'s pick, judged on where each median of ``races`` can still land: those that can
    still be the fastest (the reference every ratio is taken against), and for balanced the
    ones whose eligibility is open and whose peak is no higher than the lowest peak already
    certainly within BALANCED_SLACK. Empty once the pick is settled; memory's pick does not
    depend on speed. A race among fewer settings is cheaper: on ResNeXt50 the nine-way race's
    later rounds had two to three settings that mattered."""
    if goal == "memory":
        return []
    ranges = {r.setting.label: median_range(r.ratios, races) for r in results if r.ratios}
    racing = [r for r in results if r.setting.label in ranges and r.peak_bytes is not None]
    if not racing:
        return []
    best_high = min(ranges[r.setting.label][1] for r in racing)
    contenders = [r for r in racing if ranges[r.setting.label][0] <= best_high]
    if goal == "latency":
        return contenders if len(contenders) > 1 else []
    certain = [r.peak_bytes for r in racing if ranges[r.setting.label][1] <= BALANCED_SLACK]
    if not certain:
        return list(racing)
    open_ = [r for r in racing if ranges[r.setting.label][0] <= BALANCED_SLACK < ranges[r.setting.label][1]
             and r.peak_bytes <= min(certain)]  # type: ignore[operator]
    if not open_:
        return []
    keep = {id(r) for r in [*contenders, *open_]}
    return [r for r in racing if id(r) in keep]


@dataclasses.dataclass
class OrderCheck:
    """The reorder pass's order (priority-based execution) against onnxruntime's own, both
    with the chosen setting: it stays unless onnxruntime's order peaks no higher and runs
    faster beyond ORDER_SLACK."""

    kept: bool
    reorder: SettingResult
    ort_order: SettingResult
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "reason": self.reason,
                "reorder": self.reorder.figures(), "ort_order": self.ort_order.figures()}


@dataclasses.dataclass
class WeightsCheck:
    """The build's weights inside model.onnx against in a file beside it, which onnxruntime
    maps instead of copying out of the parsed model (PP-OCRv4 rec: 36.4 -> 29.4 MiB peak with
    onnxruntime's defaults). The file ships where it peaks lower beyond WEIGHTS_TIE."""

    external: bool
    inline: SettingResult
    apart: SettingResult
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"external": self.external, "reason": self.reason,
                "inline": self.inline.figures(), "external_file": self.apart.figures()}


@dataclasses.dataclass
class MemoryChoice:
    """Every candidate's peak and p50, the one chosen and why."""

    goal: str
    results: list[SettingResult]
    chosen: SettingResult
    reason: str
    order: OrderCheck | None = None
    weights: WeightsCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "chosen": self.chosen.setting.label,
            "reason": self.reason,
            "candidates": [r.to_dict() for r in self.results],
            "execution_order": self.order.to_dict() if self.order else None,
            "weights_file": self.weights.to_dict() if self.weights else None,
        }

    @property
    def deployed_result(self) -> SettingResult:
        """The setting the build records, with its figures: the chosen one, in the order the
        order check kept."""
        return self.order.ort_order if self.order and not self.order.kept else self.chosen

    @property
    def deployed(self) -> MemorySetting:
        return self.deployed_result.setting


@dataclasses.dataclass(frozen=True)
class Floor:
    """The least a session of the build can hold: weights, the planned arena, inputs and
    outputs, and what a session of an empty graph costs (None: not measured)."""

    weight_bytes: int
    arena_bytes: int
    io_bytes: int
    session_bytes: int | None

    @property
    def total(self) -> int | None:
        if self.session_bytes is None:
            return None
        return self.weight_bytes + self.arena_bytes + self.io_bytes + self.session_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total_bytes": self.total}


@dataclasses.dataclass(frozen=True)
class Measuring:
    """How settings are measured: the model (a setting may name another file of it), the
    session options every setting goes over, the providers, the feeds (and their file, for the
    fresh processes), seconds per race and up to how many races."""

    model: Path
    base: Mapping[str, Any]
    providers: Providers
    feeds: Mapping[str, np.ndarray]
    feeds_path: Path
    seconds: float = 0.0
    base_dir: Path | None = None
    races: int = RACES


@contextlib.contextmanager
def measuring(model: Path, base: Mapping[str, Any], providers: Providers, feeds: Mapping[str, np.ndarray],
              seconds: float = 0.0, base_dir: Path | None = None, races: int = RACES) -> Iterator[Measuring]:
    """A Measuring whose feeds file lives as long as the block."""
    with tempfile.TemporaryDirectory(prefix="hwopt-memory-") as tmp:
        feeds_path = save_npz(Path(tmp) / "feeds.npz", feeds)
        yield Measuring(model, base, providers, feeds, feeds_path, seconds, base_dir, races)


def choose_settings(model: Path, base: Mapping[str, Any], providers: Providers, feeds: Mapping[str, np.ndarray],
                    settings: Sequence[MemorySetting], goal: str, seconds: float, check_order: bool,
                    planned_arena_bytes: int, base_dir: Path | None = None, races: int = RACES) -> MemoryChoice:
    """Measure every setting (peak in fresh processes, p50 interleaved here, up to ``races``
    races), pick by ``goal``, then, with ``check_order``, whether the reorder pass's order earns
    its place."""
    results = [SettingResult(s.for_plan(planned_arena_bytes)) for s in settings]
    with measuring(model, base, providers, feeds, seconds, base_dir, races) as how:
        measure_peaks(results, how)
        time_settings(results, how, relevant=lambda racing: goal_relevant(racing, goal, races))
        choice = confirm(results, goal, how)
        if check_order:
            choice.order = _order_check(choice.chosen, how)
    return choice


def _order_check(chosen: SettingResult, how: Measuring) -> OrderCheck:
    """The chosen setting in the reorder pass's node order against onnxruntime's own."""
    setting = chosen.setting
    other = SettingResult(dataclasses.replace(
        setting, label=f"{setting.label}+ort-order", description=f"{setting.label} in onnxruntime's own node order",
        overrides={**setting.overrides, "execution_order": "default"}))
    mine = SettingResult(setting, memory=chosen.memory)
    measure_peaks([other], how)
    if not _peaks_lower(mine, other, PEAK_TIE):  # a lower peak keeps the order, however fast
        time_settings([mine, other], how, relevant=_pair(mine, other, ORDER_SLACK, how.races))
    return order_check(mine, other)


def weights_check(setting: MemorySetting, model: Path, external: Path, base: Mapping[str, Any],
                  providers: Providers, feeds: Mapping[str, np.ndarray], base_dir: Path | None = None) -> WeightsCheck:
    """``model`` against ``external`` (the same model with its weights in a file beside it),
    both with ``setting``, by peak; run before the settings are chosen, which then measure (and
    time) the layout that ships. Not raced: the same kernels run on the same bytes, mapped
    instead of copied (four builds measured 0.95x to 1.003x, each within its race's noise), and
    a build that ships the file has every later race and the report's benchmark run on it."""
    inline = SettingResult(setting)
    apart = SettingResult(dataclasses.replace(setting, label=f"{setting.label}+weights-file"), model=external)
    with measuring(model, base, providers, feeds, base_dir=base_dir) as how:
        measure_peaks([inline, apart], how)
    if inline.memory is None or apart.memory is None:
        return WeightsCheck(False, inline, apart, "the weights file could not be measured")
    figures = f"peak {_mib(apart.peak_bytes)} against {_mib(inline.peak_bytes)} inline with {setting.label}"
    if not _peaks_lower(apart, inline, WEIGHTS_TIE):
        return WeightsCheck(False, inline, apart, f"weights kept in model.onnx: {figures}, not {WEIGHTS_TIE:.0%} lower")
    return WeightsCheck(True, inline, apart, f"weights in model.onnx.data: {figures}")


def _peaks_lower(a: SettingResult, b: SettingResult, tie: float) -> bool:
    """Whether ``a`` peaks lower than ``b`` by more than ``tie`` (both measured)."""
    return a.peak_bytes is not None and b.peak_bytes is not None and a.peak_bytes < b.peak_bytes * (1 - tie)


def order_check(mine: SettingResult, other: SettingResult) -> OrderCheck:
    """Keep the reorder pass's order where it peaks lower (then it need not be raced), or costs
    no measurable latency."""
    if mine.peak_bytes is None or other.peak_bytes is None:
        return OrderCheck(True, mine, other, "onnxruntime's own order could not be measured")
    lower = _peaks_lower(mine, other, PEAK_TIE)
    figures = f"peak {_mib(mine.peak_bytes)} against {_mib(other.peak_bytes)} in onnxruntime's own order"
    raced = bool(mine.p50s_ms and other.p50s_ms)
    if lower:
        figures += f", p50 {paired_ratio(mine, other):.3f}x" if raced else " (not raced: the lower peak keeps it)"
        return OrderCheck(True, mine, other, f"kept: {figures}")
    if not raced:
        return OrderCheck(True, mine, other, "onnxruntime's own order could not be timed")
    ratio = paired_ratio(mine, other)
    figures += f", p50 {ratio:.3f}x"
    if ratio <= ORDER_SLACK:
        return OrderCheck(True, mine, other, f"kept: {figures}")
    return OrderCheck(False, mine, other, f"not deployed: {figures}, and no lower peak to pay for it")


def measure_peaks(results: Sequence[SettingResult], how: Measuring) -> None:
    """Each candidate's peak, in a fresh process of its own; one process per core at a time
    (a process's peak RSS is its own, whatever runs beside it)."""
    listed = [{"name": n, "options": dict(o)} for n, o in how.providers]
    progress.step(f"peak memory of {len(results)} setting(s), each in a fresh process")

    def probe(result: SettingResult) -> None:
        setting = result.setting
        try:
            result.memory = measure_session_memory(result.model or how.model, listed, setting.session_options(how.base),
                                                   how.feeds_path, runs=PROBE_RUNS, base_dir=how.base_dir)
        except MeasurementFailed as exc:
            result.status, result.reason = "failed", str(exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=physical_cores()) as pool:
        list(pool.map(probe, results))


def time_settings(results: Sequence[SettingResult], how: Measuring, relevant: Relevant | None = None) -> None:
    """Every measured candidate's p50 in up to ``how.races`` races, interleaved in this process with
    fresh sessions each race; after the first, the clearly slower ones stop, and all stop once
    ``relevant`` (given the ones still racing) leaves fewer than two whose further races can
    change the decision; the others stop too."""
    running = [r for r in results if r.status != "failed"]
    for race in range(how.races):
        progress.step(f"latency of {len(running)} setting(s), race", race + 1, how.races)
        stats = _race(running, how)
        if not stats:
            return
        fastest = min(st.p50_ms for st in stats.values())
        for result in running:
            if result.setting.label in stats:
                result.p50s_ms.append(stats[result.setting.label].p50_ms)
                result.ratios.append(result.p50s_ms[-1] / fastest)
        if race == 0:
            for result in running:
                if result.ratios and result.ratios[0] > CLEARLY_SLOWER:
                    result.reason = f"{result.ratios[0]:.2f}x the fastest in the first race: no more races"
            running = [r for r in running if r.ratios and r.ratios[0] <= CLEARLY_SLOWER]
        if relevant is not None and race + 1 < how.races:
            running = relevant(running)
        if len(running) < 2:
            return


def _race(results: Sequence[SettingResult], how: Measuring) -> dict[str, Any]:
    sessions = {}
    for result in results:
        setting = result.setting
        try:
            sessions[setting.label] = create_session(result.model or how.model,
                                                     bench_session_options(setting.session_options(how.base)),
                                                     how.providers, base_dir=how.base_dir)
        except ORT_ERRORS as exc:
            result.status, result.reason = "failed", f"onnxruntime: {one_line(exc)}"
    return race_sessions(sessions, how.feeds, how.seconds, max_runs=RACE_RUNS)


def confirm(results: Sequence[SettingResult], goal: str, how: Measuring) -> MemoryChoice:
    """``choose``, and for ``balanced`` a check of the pick against the fastest in up to
    ``how.races`` two-way races (fewer where the first ones settle it): a pick that is slower
    than BALANCED_SLACK there takes that figure and drops out, and the next is checked
    (CONFIRMATIONS at most, then the fastest ships). With nine settings in one race, arena
    shrinkage on shufflenet_tiny measured within 3% of the fastest and then 8.6% behind it in
    seven two-way rounds."""
    for _ in range(CONFIRMATIONS):
        choice = choose(results, goal)
        fastest = min((r for r in results if r.measured), key=lambda r: r.vs_fastest)  # type: ignore[arg-type, return-value]
        if goal != "balanced" or choice.chosen is fastest:
            return choice
        pick, best = (SettingResult(r.setting, model=r.model) for r in (choice.chosen, fastest))
        time_settings([pick, best], how, relevant=_pair(pick, best, BALANCED_SLACK, how.races))
        if not (pick.p50s_ms and best.p50s_ms):
            return choice
        ratio, count = paired_ratio(pick, best), len(pick.p50s_ms)
        if ratio <= BALANCED_SLACK:
            choice.reason += f"; confirmed against {fastest.setting.label}: {ratio:.3f}x in {count} two-way race(s)"
            return choice
        choice.chosen.status, choice.chosen.ratios = "tried", [ratio]
        choice.chosen.reason = f"{ratio:.3f}x {fastest.setting.label} in {count} two-way race(s): out"
    choice = choose(results, "latency")
    choice.reason += f" (no pick within {BALANCED_SLACK - 1:.0%} held in {CONFIRMATIONS} two-way checks)"
    return choice


def choose(results: Sequence[SettingResult], goal: str) -> MemoryChoice:
    """The goal's pick among the measured candidates (ties to the earlier one)."""
    if goal not in GOALS:
        raise ValueError(f"goal '{goal}' is not one of {', '.join(GOALS)}")
    measured = [r for r in results if r.measured]
    if not measured:
        raise MeasurementFailed("no memory setting could be measured: "
                                + "; ".join(f"{r.setting.label}: {r.reason}" for r in results))
    if goal == "latency":
        chosen = min(measured, key=lambda r: r.vs_fastest)  # type: ignore[arg-type, return-value]
        reason = f"the fastest ({chosen.p50_ms:.3f} ms p50)"
    else:
        eligible = measured if goal == "memory" else [r for r in measured if r.vs_fastest <= BALANCED_SLACK]
        chosen = min(eligible, key=lambda r: r.peak_bytes)  # type: ignore[arg-type, return-value]
        reason = f"the lowest peak ({_mib(chosen.peak_bytes)})"
        if goal == "balanced":
            reason += f" among the settings within {BALANCED_SLACK - 1:.0%} of the fastest"
        reason += f"; {chosen.vs_fastest:.3f}x the fastest (median of its races)"
    chosen.status = "chosen"
    return MemoryChoice(goal, list(results), chosen, reason)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.1f} MiB"


@functools.cache
def empty_session_bytes() -> int | None:
    """What a session of a one-node graph costs in a fresh process (the fixed part of the
    floor), the median of three; None where it cannot be measured."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory(prefix="hwopt-empty-") as tmp:
        path, feeds = Path(tmp) / "empty.onnx", Path(tmp) / "feeds.npz"
        onnx.save(model, str(path))
        save_npz(feeds, {"x": np.zeros(1, np.float32)})
        def probe(_: int) -> int:
            return measure_session_memory(path, [{"name": "CPUExecutionProvider", "options": {}}], {}, feeds,
                                          runs=1).session_bytes

        try:  # one process per core at a time: a process's peak is its own
            with concurrent.futures.ThreadPoolExecutor(max_workers=physical_cores()) as pool:
                values = list(pool.map(probe, range(3)))
        except MeasurementFailed:
            return None
    return int(statistics.median(values))
