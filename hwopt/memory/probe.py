"""Measured peak resident memory of one onnxruntime session, in a process of its own.

``python -m hwopt.memory.probe`` reads a JSON request on stdin (model path, providers,
session options, feeds .npz path, runs), records the process's peak resident set size
after its imports, creates the session, runs it, and prints a JSON answer: the peak RSS
before the session, after creating it, and after the runs. The difference is what the
session cost, unpolluted by other sessions, the parent's allocations or Python's heap
history, which is why every measurement gets a fresh process.

On Linux the fresh process is forked from a probe server (``--serve``) that has numpy and
onnx imported: a build measures 10 to 15 settings, and each new interpreter spent about 0.9 s
of its 1-2 s starting and importing onnx. The forked child imports onnxruntime itself and
touches numpy's loading code once before it resets its resident high-water mark: fork does
not carry a parent's mapped library pages into the child's resident set, so pages the parent
had would otherwise count as the session's (8 MiB more than a fresh process, measured, with
onnxruntime imported in the server). Then it measures as a new process does after its
imports. The servers, one per worker thread, live as long as the process that started them.
``HWOPT_PROBE_SERVER=0`` starts a new interpreter per probe.

:func:`measure_session_memory` is the parent side, with a time limit.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import queue
import resource
import select
import subprocess
import sys
import threading
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
    if _server_wanted():
        return SessionMemory(**_ask_server(request, model, timeout))
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


SERVER_ENV = "HWOPT_PROBE_SERVER"
_idle: queue.SimpleQueue[_Server] = queue.SimpleQueue()
_all: list[_Server] = []
_lock = threading.Lock()


def _server_wanted() -> bool:
    return sys.platform.startswith("linux") and os.environ.get(SERVER_ENV, "1") != "0"


class _Server:
    """One probe server process; used by one thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hwopt.memory.probe", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def ask(self, request: Mapping[str, Any], timeout: float) -> dict | None:
        """The answer, or None when the server did not answer in time or died (it is then
        stopped, and with it the probe it was running)."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        except OSError:
            line = ""
        if not line:
            self.stop()
            return None
        return json.loads(line)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


def _ask_server(request: Mapping[str, Any], model: Path, timeout: float) -> dict[str, int]:
    try:
        server = _idle.get_nowait()
    except queue.Empty:
        server = _Server()
        with _lock:
            _all.append(server)
    answer = server.ask(request, timeout)
    if answer is None:
        with _lock:
            _all.remove(server)
        raise MeasurementFailed(f"memory probe for {model} timed out after {timeout:g} s or died")
    _idle.put(server)
    if "error" in answer:
        raise MeasurementFailed(f"memory probe for {model} failed: {answer['error']}")
    return answer


def start_servers(count: int) -> None:
    """Start up to ``count`` probe servers now, so that their start (a second of importing)
    overlaps the work before the first probe; nothing where servers are not used."""
    if not _server_wanted():
        return
    with _lock:
        missing = count - len(_all)
        for _ in range(max(0, missing)):
            server = _Server()
            _all.append(server)
            _idle.put(server)


@atexit.register
def _stop_servers() -> None:
    for server in _all:
        with contextlib.suppress(OSError, ValueError):
            server.proc.stdin.close()  # type: ignore[union-attr]  # (EOF ends its loop)


def _die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: a probe is killed when its server dies, so that a server
    killed on a timeout leaves no probe behind. (Not for the server itself: the signal follows
    the parent *thread*, and servers are started from worker threads that come and go; a server
    ends at the end of its input, when its command exits, and shares its process group, which
    the supervisor kills.)"""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _serve() -> None:
    """The server's loop: one forked child per request line, its answer (or error) one line."""
    for line in sys.stdin:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, write, leave without Python's clean-up
            _die_with_parent()
            os.close(read_end)
            try:
                request = json.loads(line)
                _child_imports(request)
                answer = _probe(request)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as the failure
                answer = {"error": one_line(exc) or type(exc).__name__}
            os.write(write_end, json.dumps(answer).encode())
            os._exit(0)
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode()
        if not text:
            text = json.dumps({"error": f"the probe process ended with status {status} and no answer"})
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _child_imports(request: Mapping[str, Any]) -> None:
    """In a forked child, before the baseline: what a fresh process has resident by then."""
    import numpy as np
    import onnxruntime  # noqa: F401

    import hwopt.session  # noqa: F401

    with np.load(request["feeds"], allow_pickle=False) as archive:
        for key in archive.files:
            archive[key]


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

    if sys.argv[1:] == ["--serve"]:
        import onnx  # noqa: F401  (the slow import; onnxruntime is the child's)

        _serve()
    else:
        import onnxruntime  # noqa: F401

        print(json.dumps(_probe(json.loads(sys.stdin.read()))))
