"""One race of ``hwopt tune`` candidates, in this process or as a worker task: each
candidate's session opened and its outputs checked against the original's, then the sessions
that pass timed interleaved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwopt import guard
from hwopt.errors import one_line
from hwopt.quant.accuracy import AccuracyBudget, compare
from hwopt.session import ORT_ERRORS, create_session
from hwopt.timing import BenchConfig, LatencyStats, bench_session_options, measure_latency


def open_and_check(model_path: Path, base_dir: Path, session_options: Mapping[str, Any],
                   providers: Sequence[tuple[str, Mapping[str, Any]]], feeds: Sequence[Mapping[str, np.ndarray]],
                   references: Sequence[Mapping[str, np.ndarray]], budget: AccuracyBudget) -> tuple[Any, dict]:
    """A candidate's timing session and its accuracy check against the original's outputs:
    (session or None, {"status": ok | failed | rejected, "reason", "accuracy"})."""
    try:
        session = create_session(model_path, bench_session_options(session_options), providers, base_dir=base_dir)
        names = [o.name for o in session.get_outputs()]
        outputs = [dict(zip(names, session.run(None, f))) for f in feeds]
    except ORT_ERRORS as exc:
        return None, {"status": "failed", "reason": f"onnxruntime: {one_line(exc)}", "accuracy": None}
    accuracy = compare(references, outputs)
    violations = accuracy.violations(budget)
    if violations:
        return None, {"status": "rejected", "reason": "over the accuracy budget: " + "; ".join(violations),
                      "accuracy": accuracy.to_dict()}
    return session, {"status": "ok", "reason": "", "accuracy": accuracy.to_dict()}


def time_sessions(sessions: Mapping[str, Any], feeds: Mapping[str, np.ndarray],
                  seconds: float) -> dict[str, LatencyStats]:
    """Time the sessions interleaved on ``feeds``: one race."""
    runners = {cid: (lambda s=s: s.run(None, feeds)) for cid, s in sessions.items()}
    with guard.phase("tune race", "run"):
        return measure_latency(runners, BenchConfig(warmup_runs=2, min_runs=3, target_seconds=seconds),
                               batch=_batch(feeds))


def _batch(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim > 0 else 1
