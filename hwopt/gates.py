"""CI gates: thresholds a build must meet, checked after the report is printed.

    --max-latency-ms N      the build's p50 latency (ms) at the benchmarked batch
    --min-speedup X         original p50 / build p50
    --max-accuracy-drop D   the build's outputs against the original's (cosine, top-1, abs;
                            same syntax as the INT8 budget, which it also sets)
    --max-size-mb N         the build's model file(s)
    --max-memory-mb N       the peak resident memory the build's session added, measured
                            in a fresh process (the budget of an edge device)

A gate that cannot be evaluated (the target's provider is not on this host, a measurement
was skipped) fails too, with the reason: a CI gate that cannot check must not pass. Every
failed gate says which, for which target, and by how much; the run exits with code 3.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hwopt.quant.accuracy import AccuracyBudget
from hwopt.schema import setting

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Gates:
    max_latency_ms: float | None = setting(None, key="gates.max_latency_ms")
    min_speedup: float | None = setting(None, key="gates.min_speedup")
    max_size_mb: float | None = setting(None, key="gates.max_size_mb")
    max_memory_mb: float | None = setting(None, key="gates.max_memory_mb")
    # Set with the INT8 budget by --max-accuracy-drop (a config's max_accuracy_drop sets the
    # budget only).
    accuracy: AccuracyBudget | None = setting(None, key="gates.accuracy", config=False,
                                              parse=lambda value, where: AccuracyBudget.parse(str(value)))

    def any(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class GateResult:
    gate: str
    target: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"[{self.target}] {self.gate}: {'passed' if self.passed else 'FAILED'}: {self.detail}"


def evaluate(gates: Gates, builds: list) -> list[GateResult]:
    """One result per gate set and per build (BuildReport objects)."""
    results = []
    for build in builds:
        t = build.target
        latency = build.latency
        if gates.max_latency_ms is not None:
            if latency.optimized is None:
                results.append(GateResult("max-latency-ms", t, False, f"not measured: {latency.not_measured}"))
            else:
                p50 = latency.optimized.p50_ms
                results.append(GateResult(
                    "max-latency-ms", t, p50 <= gates.max_latency_ms,
                    f"p50 {p50:.3f} ms against a limit of {gates.max_latency_ms:g} ms"
                    + ("" if p50 <= gates.max_latency_ms else f" ({p50 - gates.max_latency_ms:+.3f} ms over)"),
                ))
        if gates.min_speedup is not None:
            if latency.speedup is None:
                results.append(GateResult("min-speedup", t, False, f"not measured: {latency.not_measured}"))
            else:
                ok = latency.speedup >= gates.min_speedup
                results.append(GateResult(
                    "min-speedup", t, ok,
                    f"{latency.speedup:.3f}x against a minimum of {gates.min_speedup:g}x"
                    + ("" if ok else f" ({gates.min_speedup - latency.speedup:.3f}x short)"),
                ))
        if gates.max_size_mb is not None:
            size = build.optimized.serialized_bytes / MB
            ok = size <= gates.max_size_mb
            results.append(GateResult(
                "max-size-mb", t, ok, f"{size:.3f} MB against a limit of {gates.max_size_mb:g} MB"
                + ("" if ok else f" ({size - gates.max_size_mb:+.3f} MB over)"),
            ))
        if gates.max_memory_mb is not None:
            measured = build.memory.measured_build if build.memory else None
            if measured is None:
                reason = build.memory.not_measured if build.memory else "no memory report"
                results.append(GateResult("max-memory-mb", t, False, f"not measured: {reason}"))
            else:
                mem = measured.session_bytes / MB
                ok = mem <= gates.max_memory_mb
                results.append(GateResult(
                    "max-memory-mb", t, ok, f"session peak RSS {mem:.1f} MB against a limit of "
                    f"{gates.max_memory_mb:g} MB" + ("" if ok else f" ({mem - gates.max_memory_mb:+.1f} MB over)"),
                ))
        if gates.accuracy is not None:
            accuracy = build.accuracy.result
            problems = accuracy.violations(gates.accuracy)
            results.append(GateResult(
                "max-accuracy-drop", t, not problems,
                "; ".join(problems) if problems else
                f"cosine {accuracy.cosine:.5f}, top-1 "
                f"{'-' if accuracy.top1 is None else f'{accuracy.top1:.1%}'} within {gates.accuracy.describe()}",
            ))
    return results
