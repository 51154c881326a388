"""Latency measurement: warm-up, then runs interleaved between variants in one process.

Timings on shared machines drift (frequency scaling, neighbours, thermal state). Measuring
variant A for ten seconds and then B for ten seconds compares A's ten seconds with B's; running
A, B, A, B ... lets the drift hit both alike, so their ratio is trustworthy even when absolute
numbers are not. The order is shuffled each round (seeded, so runs repeat), not rotated: a run
is slower after a variant that evicted the caches, and rotation keeps every variant behind the
same predecessor. Measured with three identical copies of one INT8 model among ten variants,
rotation kept one copy 4% slower than the other over three fresh-session trials; shuffling
brought them within 1%. Each call draws a new sequence of orders (seeds 0, 1, 2, ... in the
process): with one seed for every call, the sequence's own position bias came back in every
race, and repeated races, which are there to average noise out, added it up (three identical
sessions of shufflenet_tiny, eight races: the first-named one 1.2% slower in six of eight).

The number of rounds adapts to the model: enough to fill ``target_seconds`` per variant, within
``[min_runs, max_runs]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hwopt.schema import setting

Runner = Callable[[], object]

# Each ORT session owns a thread pool whose idle workers spin. With two sessions alive in one
# process, one session's spinning workers steal the cores the other needs: measured here on a
# 2-core host, p90 went from 0.94 ms to 4.9 ms (p50 0.70 ms) on a 1 ms model. Benchmarks
# therefore turn spinning off in every session they compare; the report says so.
NO_SPIN = {"session.intra_op.allow_spinning": "0"}


def bench_session_options(options: Mapping[str, object]) -> dict[str, object]:
    """A target's session options as a benchmark that holds several sessions must run them."""
    entries = dict(options.get("config_entries", {}))  # type: ignore[arg-type]
    entries.update(NO_SPIN)
    return {**options, "config_entries": entries}

# The seed of each call's order of runs (see the module's docstring).
_ORDER_SEEDS = itertools.count()

# The shortest a race with a run cap lasts per variant (see BenchConfig.min_seconds).
MIN_RACE_SECONDS = 0.25

# Coefficient of variation above which a measurement is flagged as noisy.
NOISY_CV = 0.25


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    warmup_runs: int = 5
    min_runs: int = 10
    max_runs: int = 2000
    target_seconds: float = setting(2.0, key="bench.seconds")
    # However few runs max_runs allows, time at least this long (up to target_seconds): a race
    # of 200 runs of a 0.17 ms model lasted 34 ms, and shipped transformer_tiny's INT8 three
    # times at a true 0.996x FP32.
    min_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one variant, in milliseconds, over ``runs`` timed runs."""

    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    batch: int = 1

    @property
    def throughput(self) -> float:
        """Items per second at this batch size, from the median latency."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else float("inf")

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.cv > NOISY_CV

    @classmethod
    def from_samples(cls, seconds: list[float], batch: int = 1) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            runs=len(ms),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std()),
            min_ms=float(ms.min()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            batch=batch,
        )

    @classmethod
    def from_dict(cls, data: dict) -> LatencyStats:
        """Back from ``to_dict`` (or ``dataclasses.asdict``): the derived figures are dropped."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["throughput_per_s"] = self.throughput if self.p50_ms > 0 else None
        data["cv"] = self.cv
        data["noisy"] = self.noisy
        return data


def measure_latency(
    runners: Mapping[str, Runner], config: BenchConfig = BenchConfig(), batch: int = 1
) -> dict[str, LatencyStats]:
    """Time every runner, interleaved, and return their latency statistics by name."""
    names = list(runners)
    if not names:
        return {}
    warm_times = {name: 0.0 for name in names}
    for name in names:
        for _ in range(config.warmup_runs):
            start = time.perf_counter()
            runners[name]()
            warm_times[name] += time.perf_counter() - start
    slowest = max(warm_times.values()) / max(config.warmup_runs, 1)
    rounds = int(config.target_seconds / slowest) if slowest > 0 else config.max_runs
    rounds = max(config.min_runs, min(config.max_runs, rounds))
    if slowest > 0 and config.min_seconds > 0:
        rounds = max(rounds, int(min(config.min_seconds, config.target_seconds) / slowest))

    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(next(_ORDER_SEEDS))
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            start = time.perf_counter()
            runners[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: LatencyStats.from_samples(samples[name], batch) for name in names}


def race_sessions(
    sessions: Mapping[str, Any], feeds: Mapping[str, np.ndarray], seconds: float,
    max_runs: int = BenchConfig.max_runs,
) -> dict[str, LatencyStats]:
    """One race of live sessions on the same ``feeds``, interleaved: the timing behind the
    build-time decisions (graph variants, INT8 variants, targets), after two warm-up runs each
    and at least five timed, at most ``max_runs`` unless that would last under
    MIN_RACE_SECONDS."""
    return measure_latency({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()},
                           BenchConfig(warmup_runs=2, min_runs=5, max_runs=max_runs, target_seconds=seconds,
                                       min_seconds=MIN_RACE_SECONDS))
