"""Resource bounds for one command: time limits on the phases a hostile graph can hang, a
memory ceiling, native crashes and SIGINT/SIGTERM turned into one-line errors.

The phases that can hang or blow up (onnx's C++ shape inference, onnxsim, onnxruntime's
session creation and runs) are native code that holds the GIL: no thread or signal handler
of the same process runs until they return. So the command line runs the command in a child
process and a small supervisor (this module; it imports neither onnx nor onnxruntime) watches
it:

* the child announces each guarded phase over a pipe (``with phase("onnxsim", "simplify")``)
  and the supervisor kills it when a phase outlives its limit;
* the supervisor polls the child's resident memory and kills it above the ceiling;
* a child killed by a signal it did not ask for (SIGSEGV in a library on a malformed model)
  becomes a one-line error naming the phase it was in;
* SIGINT and SIGTERM go to the child once; it stops cleanly (temporary files removed, no
  manifest written, so no partial build looks complete) and is killed if it does not.

Every one of these ends with exit code 2 (the input cannot be processed within the bounds),
except interruption: 130 for SIGINT, 143 for SIGTERM.

Limits come from the environment, so they apply to every command alike:

    HWOPT_TIME_LIMITS="300"                     every phase at most 300 s
    HWOPT_TIME_LIMITS="run=30,simplify=120"     per phase kind (see TIME_LIMITS)
    HWOPT_MAX_MEMORY_MB=8000                    resident memory of the command
    HWOPT_NO_SUPERVISOR=1                       run in-process (no limits; for debugging)

Library calls (``hwopt.optimize``) run in the caller's process: ``phase`` is a no-op there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

CHANNEL_ENV = "HWOPT_GUARD_FD"
NO_SUPERVISOR_ENV = "HWOPT_NO_SUPERVISOR"
TIME_LIMITS_ENV = "HWOPT_TIME_LIMITS"
MAX_MEMORY_ENV = "HWOPT_MAX_MEMORY_MB"

# Seconds per phase kind. Generous: they exist to stop a hang, not to judge speed.
TIME_LIMITS = {
    "shape_inference": 120.0,
    "simplify": 300.0,
    "session": 300.0,
    "run": 300.0,
    "pass": 900.0,
}
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
# How long a child gets to clean up after SIGINT/SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.1


class LimitError(ValueError):
    """A limit in the environment that does not parse."""


# -- the child's side -------------------------------------------------------------------------


_channel: int | None = None
_limits: dict[str, float] = {}


def attach() -> bool:
    """In a child the supervisor started: take the channel (and out of the environment, so
    that processes this one starts do not write to a descriptor number they do not own).
    True when there is a supervisor."""
    global _channel, _limits
    value = os.environ.pop(CHANNEL_ENV, "")
    if not value.isdigit():
        return False
    _channel, _limits = int(value), time_limits()
    signal.signal(signal.SIGTERM, _on_term)
    return True


@contextlib.contextmanager
def phase(label: str, kind: str) -> Iterator[None]:
    """Announce a guarded phase to the supervisor, if there is one."""
    fd = _channel
    if fd is None:
        yield
        return
    _send(fd, f"begin {_limits[kind]!r} {kind} {label}")
    try:
        yield
    finally:
        _send(fd, "end")


def _send(fd: int, line: str) -> None:
    # One write of less than PIPE_BUF bytes is atomic; a dead supervisor is not our problem.
    data = (" ".join(line.split()) + "\n").encode("utf-8", "replace")[:4000]
    with contextlib.suppress(OSError):
        os.write(fd, data)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks clean up, as Ctrl-C's
    KeyboardInterrupt does."""


def _on_term(signum: int, frame: object) -> None:
    raise Terminated()


# -- limits -----------------------------------------------------------------------------------


def time_limits() -> dict[str, float]:
    """TIME_LIMITS with the environment's overrides applied."""
    limits = dict(TIME_LIMITS)
    text = os.environ.get(TIME_LIMITS_ENV, "").strip()
    if not text:
        return limits
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "", key
        key = key.strip()
        try:
            seconds = float(value)
        except ValueError:
            raise LimitError(f"{TIME_LIMITS_ENV}: '{item}' is not SECONDS or KIND=SECONDS") from None
        if not seconds > 0:
            raise LimitError(f"{TIME_LIMITS_ENV}: '{item}': the limit must be above 0 seconds")
        if key and key not in limits:
            raise LimitError(f"{TIME_LIMITS_ENV}: unknown phase '{key}'; known: {', '.join(limits)}")
        for name in [key] if key else list(limits):
            limits[name] = seconds
    return limits


def env_megabytes(name: str, error: type[Exception] = LimitError) -> int | None:
    """Bytes from an environment variable given in MB (None when unset); ``error`` on junk."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        megabytes = float(text)
    except ValueError:
        raise error(f"{name}: '{text}' is not a number of MB") from None
    if not megabytes > 0:
        raise error(f"{name}: the limit must be above 0 MB")
    return int(megabytes * (1 << 20))


def memory_limit_bytes() -> int | None:
    """The memory ceiling: HWOPT_MAX_MEMORY_MB, else 80% of physical memory (None if unknown)."""
    limit = env_megabytes(MAX_MEMORY_ENV)
    if limit is not None:
        return limit
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * 0.8)


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# -- the supervisor ---------------------------------------------------------------------------


def wanted() -> bool:
    """Whether this command line should start a supervisor (not when it is turned off)."""
    return os.environ.get(NO_SUPERVISOR_ENV) != "1"


def supervise(argv: Sequence[str]) -> int:
    """Run ``python -m hwopt ARGV`` as a child under the limits; return its exit code."""
    try:
        time_limits()  # checked here, so that a typo fails before any work
        ceiling = memory_limit_bytes()
    except LimitError as exc:
        print(f"hwopt: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    supervisor = Supervisor.start([sys.executable, "-m", "hwopt", *argv], ceiling)
    previous = {sig: signal.signal(sig, supervisor.forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = supervisor.watch()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.close()
    if stop.message:
        print(stop.message, file=sys.stderr)
    return stop.code


@dataclasses.dataclass(frozen=True)
class Stop:
    """How a supervised child ended: its exit code, and the message when it was stopped."""

    code: int
    message: str | None = None


class Supervisor:
    """Watches one child: its phases' deadlines, its memory, how it ends."""

    def __init__(self, child: subprocess.Popen, read_fd: int, ceiling: int | None):
        self.child = child
        self.read_fd = read_fd
        self.ceiling = ceiling
        self.phases: list[tuple[float, float, str]] = []  # (deadline, seconds, label)
        self.buffer = b""
        self.pipe_open = True
        self.stop_signal: int | None = None
        self.stop_deadline: float | None = None

    @classmethod
    def start(cls, command: Sequence[str], ceiling: int | None, **popen) -> Supervisor:
        """Start ``command`` with the channel in its environment, in its own process group: a
        terminal's Ctrl-C reaches the supervisor only, which forwards it once (two
        KeyboardInterrupts would interrupt the child's clean-up)."""
        read_fd, write_fd = os.pipe()
        env = {**popen.pop("env", os.environ), CHANNEL_ENV: str(write_fd)}
        child = subprocess.Popen(list(command), pass_fds=(write_fd,), env=env, start_new_session=True, **popen)
        os.close(write_fd)
        return cls(child, read_fd, ceiling)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.read_fd)

    def forward(self, signum: int, frame: object = None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signum)

    def watch(self) -> Stop:
        """Until the child ends or is stopped."""
        while True:
            stop = self.step(_POLL_SECONDS)
            if stop is not None:
                return stop

    def step(self, timeout: float) -> Stop | None:
        """Read the child's announcements for up to ``timeout`` seconds, then apply the limits;
        a Stop once the child has ended (or was killed), else None."""
        if self.pipe_open:
            self.pipe_open = self._read_messages(timeout)
        elif timeout:
            time.sleep(timeout)
        code = self.child.poll()
        if code is not None:
            return self._finished(code)
        now = time.monotonic()
        if self.stop_deadline is not None and now > self.stop_deadline:
            self.kill()
            code = EXIT_SIGTERM if self.stop_signal == signal.SIGTERM else EXIT_SIGINT
            return Stop(code, "hwopt: interrupted (the command did not stop in time and was killed)")
        if self.stop_signal is not None:
            return None
        expired = [p for p in self.phases if now > p[0]]
        if expired:
            self.kill()
            _, seconds, label = expired[0]
            return Stop(EXIT_BAD_INPUT, (
                f"hwopt: error: {label} did not finish within {seconds:g} s; the model may be hostile "
                f"or too large for this host (raise the limit with {TIME_LIMITS_ENV})"
            ))
        rss = _rss_bytes(self.child.pid) if self.ceiling is not None else None
        if rss is not None and rss > self.ceiling:
            self.kill()
            return Stop(EXIT_BAD_INPUT, (
                f"hwopt: error: {self._where()}used {rss / (1 << 20):,.0f} MiB of memory, over the "
                f"{self.ceiling / (1 << 20):,.0f} MiB limit; the model may be hostile or too large for "
                f"this host (raise the limit with {MAX_MEMORY_ENV})"
            ))
        return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.pid, signal.SIGKILL)
        self.child.wait()

    def _read_messages(self, timeout: float) -> bool:
        """Read what the child announced; False once its end of the pipe is closed."""
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(self.read_fd, 65536)
        if not chunk:
            return False
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._message(line.decode("utf-8", "replace"))
        return True

    def _message(self, line: str) -> None:
        if line == "end":
            if self.phases:
                self.phases.pop()
            return
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "begin":
            with contextlib.suppress(ValueError):
                seconds = float(parts[1])
                self.phases.append((time.monotonic() + seconds, seconds, parts[3]))

    def _where(self) -> str:
        return f"{self.phases[-1][2]}: " if self.phases else ""

    def _finished(self, code: int) -> Stop:
        # Read what is left, so that a crash is attributed to the phase it happened in.
        while self.pipe_open and select.select([self.read_fd], [], [], 0)[0]:
            self.pipe_open = self._read_messages(0)
        if self.stop_signal is not None:
            if code < 0 or code in (EXIT_SIGINT, EXIT_SIGTERM):
                return Stop(EXIT_SIGTERM if self.stop_signal == signal.SIGTERM else EXIT_SIGINT)
            return Stop(code)
        if code < 0:
            return Stop(EXIT_BAD_INPUT, (
                f"hwopt: error: {self._where()}the process died of {_signal_name(-code)}: a native library "
                "crashed on this input; the model is malformed or hits a bug in onnx/onnxruntime"
            ))
        return Stop(code)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
