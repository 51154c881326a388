"""Measured peak resident memory of one onnxruntime session, in a process of its own.

``python -m hwopt.memory.probe`` reads a JSON request on stdin (model path, providers,
session options, feeds .npz path, runs), records the process's peak resident set size
after its imports, creates the session, runs it, and prints a JSON answer: the peak RSS
before the session, after creating it, and after the runs. The difference is what the
session cost, unpolluted by other sessions, the parent's allocations or Python's heap
history, which is why every measurement gets a fresh process.

:func:`measure_session_memory` is the parent side, with a time limit.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwopt.errors import HwoptError, one_line

# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclasses.dataclass(frozen=True)
class SessionMemory:
    """Peak resident bytes of a fresh process: before the session, after creating it, after
    the runs; ``session_bytes`` is what the session and its runs added."""

    baseline_bytes: int
    after_load_bytes: int
    peak_bytes: int

    @property
    def session_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes

    def to_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "session_bytes": self.session_bytes}


class MeasurementFailed(HwoptError):
    """The probe process failed or timed out; the message says how."""


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's resident high-water mark to its current RSS (Linux >= 4.0), so the
    peak of importing numpy and onnxruntime does not hide the session's own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT


def _baseline_rss() -> int:
    """RSS to measure the session against: the current RSS after a high-water-mark reset, else
    the peak so far (then a session peak below the import peak reads as 0)."""
    if _reset_peak():
        current = _status_kb("VmRSS")
        if current is not None:
            return current
    return _peak_rss()


def measure_session_memory(
    model: Path,
    providers: list[dict[str, Any]],
    session_options: Mapping[str, Any],
    feeds: Path,
    runs: int = 3,
    timeout: float = 600.0,
    base_dir: Path | None = None,
) -> SessionMemory:
    """Peak RSS of a session of ``model`` measured in a fresh Python process; relative paths
    in provider options resolve against ``base_dir`` (a build folder)."""
    request = {
        "model": str(model),
        "providers": providers,
        "session_options": dict(session_options),
        "feeds": str(feeds),
        "runs": runs,
        "base_dir": str(base_dir) if base_dir is not None else None,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hwopt.memory.probe"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MeasurementFailed(f"memory probe for {model} timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        raise MeasurementFailed(f"memory probe for {model} failed: {one_line(proc.stderr or proc.stdout)}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return SessionMemory(**answer)


def _probe(request: Mapping[str, Any]) -> dict[str, int]:
    import gc

    import numpy as np

    from hwopt.session import create_session

    gc.collect()
    baseline = _baseline_rss()
    with np.load(request["feeds"], allow_pickle=False) as archive:
        feeds = {key: archive[key] for key in archive.files}
    session = create_session(
        Path(request["model"]),
        request["session_options"],
        [(p["name"], p.get("options", {})) for p in request["providers"]],
        base_dir=Path(request["base_dir"]) if request.get("base_dir") else None,
    )
    after_load = _peak_rss()
    for _ in range(int(request["runs"])):
        session.run(None, feeds)
    return {"baseline_bytes": baseline, "after_load_bytes": after_load, "peak_bytes": _peak_rss()}


if __name__ == "__main__":
    # Imports above are light; onnxruntime and numpy load before the baseline is taken.
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    print(json.dumps(_probe(json.loads(sys.stdin.read()))))
