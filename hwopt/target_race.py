"""Several targets built in one run, raced against each other on this host.

Each build's latency in its own report is measured against the original on the build's own
provider; that does not say which build to deploy. Here every build that runs here is timed
as it deploys (its model file, providers and session options), all interleaved in one
process, fresh sessions each round, and the report names the fastest: a build that loses to
another on the same host says so (an OpenVINO build slower than the cpu build, say), so the
user deploys the other.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwopt.errors import one_line
from hwopt.session import ORT_ERRORS, create_session
from hwopt.timing import bench_session_options, race_sessions

ROUNDS = 3
# A build counts as slower than the fastest only beyond this ratio (timing noise on a host).
MARGIN = 1.03


@dataclasses.dataclass
class TargetRace:
    """Median p50 per target over the rounds, and each one's ratio to the fastest."""

    p50_ms: dict[str, float]
    rounds: int
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # target -> why not raced

    @property
    def fastest(self) -> str | None:
        return min(self.p50_ms, key=self.p50_ms.get) if self.p50_ms else None

    def ratio(self, target: str) -> float | None:
        if target not in self.p50_ms:
            return None
        return self.p50_ms[target] / self.p50_ms[self.fastest]

    def slower(self) -> list[str]:
        """The raced targets slower than the fastest beyond the margin."""
        return [t for t in self.p50_ms if self.ratio(t) > MARGIN]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "margin": MARGIN,
            "fastest": self.fastest,
            "p50_ms": dict(self.p50_ms),
            "ratio_to_fastest": {t: self.ratio(t) for t in self.p50_ms},
            "skipped": dict(self.skipped),
        }


def race_targets(
    builds: Sequence[Any], model_file: str, feeds: Mapping[str, np.ndarray], seconds: float
) -> TargetRace | None:
    """Race the builds (``BuildReport``s, each with ``model_file`` in its folder) that run
    here; None when fewer than two do."""
    candidates, skipped = {}, {}
    for build in builds:
        if not build.available:
            skipped[build.target] = f"not measured here: {build.availability_reason}"
        else:
            candidates[build.target] = build
    if len(candidates) < 2:
        return None
    p50s: dict[str, list[float]] = {t: [] for t in candidates}
    for _ in range(ROUNDS):
        try:
            sessions = {t: _session(b, model_file) for t, b in candidates.items()}
        except ORT_ERRORS as exc:
            return TargetRace({}, 0, {**skipped, "all": f"onnxruntime: {one_line(exc)}"})
        stats = race_sessions(sessions, feeds, seconds)
        for target, stat in stats.items():
            p50s[target].append(stat.p50_ms)
    return TargetRace({t: statistics.median(v) for t, v in p50s.items()}, ROUNDS, skipped)


def _session(build: Any, model_file: str):
    folder = Path(build.build_dir)
    providers = [(p["name"], p["options"]) for p in build.providers]
    return create_session(folder / model_file, bench_session_options(build.session_options), providers, folder)
