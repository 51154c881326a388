"""Running many hwopt commands on hostile inputs, fast, with the command line's guarantees.

Each command runs in-process in a long-lived worker (``python tests/harness.py``), which
saves a Python start-up and the onnxruntime import per command. The worker is supervised the
way the console script supervises a command (hwopt.guard): it announces its guarded phases,
and a phase past its limit, too much memory or a native crash stops it with the message the
command line would print; the harness then starts a new worker. So a result here is what a
user of the command line would have seen.

A command that runs past ``timeout`` *outside* every guarded phase is a hang the guard
cannot stop, and is reported as such.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import select
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANG = -1  # Outcome.code of a command the guard did not stop

# Short phase limits: a hostile model is stopped in seconds instead of minutes.
SHORT_LIMITS = "run=5,session=20,shape_inference=20,simplify=30,pass=60"
# Every command, with the fastest settings that still reach its deep code.
COMMANDS = {
    "inspect": lambda model, out: ["inspect", model, "--json"],
    "optimize": lambda model, out: ["optimize", model, "-o", out, "--precision", "fp32", "--no-bench", "--json"],
    "quantize": lambda model, out: ["quantize", model, "-o", out, "--calib-samples", "2", "--bench-seconds", "0.02",
                                    "--json"],
    "bench": lambda model, out: ["bench", model, "--seconds", "0.02", "--no-memory", "--json"],
    # The smallest budget tune takes; the cheap builds, the races and the final race still run.
    "tune": lambda model, out: ["tune", model, "-o", out, "--budget-minutes", "0.05", "--no-memory", "--json"],
}


@dataclasses.dataclass
class Outcome:
    code: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """What breaks the promise: exit 0 or 2 (3 and 4 are checks and targets), a one-line
        error for 2, never a traceback, never a hang."""
        found = []
        if self.code == HANG:
            found.append("hang: not stopped by any guarded phase")
        elif self.code not in (0, 2, 3, 4):
            found.append(f"exit code {self.code}")
        text = self.stdout + self.stderr
        if "Traceback" in text:
            found.append("traceback in the output")
        if self.code == 2:
            errors = [line for line in self.stderr.splitlines() if line.startswith("hwopt: error:")]
            if len(errors) != 1:
                found.append(f"{len(errors)} error lines for exit 2")
        return found


class GuardedWorker:
    """A worker process that runs hwopt commands in-process, under hwopt.guard's limits."""

    def __init__(self, time_limits: str = "10", max_memory_mb: float = 4096, restart_every: int = 200):
        self.env = {
            **os.environ,
            "HWOPT_TIME_LIMITS": time_limits,
            "HWOPT_MAX_MEMORY_MB": str(max_memory_mb),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.ceiling = int(max_memory_mb * (1 << 20))
        self.restart_every = restart_every
        self.supervisor = None
        self.buffer = b""
        self.served = 0

    def _start(self) -> None:
        from hwopt.guard import Supervisor

        self.supervisor = Supervisor.start(
            [sys.executable, str(Path(__file__).resolve())], self.ceiling, env=self.env,
            stdin=-1, stdout=-1, stderr=-3,  # subprocess.PIPE, PIPE, DEVNULL
        )
        self.buffer = b""
        self.served = 0

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.kill()
            self.supervisor.close()
            for stream in (self.supervisor.child.stdin, self.supervisor.child.stdout):
                if stream is not None:
                    stream.close()
            self.supervisor = None

    def run(self, args: Sequence[object], cwd: Path, timeout: float = 120.0) -> Outcome:
        if self.supervisor is None or self.served >= self.restart_every:
            self.close()
            self._start()
        self.served += 1
        child = self.supervisor.child
        request = json.dumps({"args": [str(a) for a in args], "cwd": str(cwd)}) + "\n"
        start = time.monotonic()
        try:
            child.stdin.write(request.encode())
            child.stdin.flush()
        except BrokenPipeError:
            return self._stopped(start)
        while True:
            ready, _, _ = select.select([child.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(child.stdout.fileno(), 1 << 20)
                if chunk:
                    self.buffer += chunk
                    if b"\n" in self.buffer:
                        line, self.buffer = self.buffer.split(b"\n", 1)
                        result = json.loads(line)
                        return Outcome(result["code"], result["stdout"], result["stderr"], time.monotonic() - start)
            stop = self.supervisor.step(0)
            if stop is not None:
                return self._stopped(start, stop)
            if time.monotonic() - start > timeout:
                self.close()
                return Outcome(HANG, seconds=time.monotonic() - start)

    def _stopped(self, start: float, stop=None) -> Outcome:
        """The worker ended mid-command: what the command line would have printed."""
        if stop is None:
            stop = self.supervisor.watch()
        self.close()
        return Outcome(stop.code, "", stop.message or "", time.monotonic() - start)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) with its content hash."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            files[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            files[rel] = "dir"
    return files


def _serve() -> None:
    """The worker: one JSON request per line in, one JSON result per line out."""
    from typer.testing import CliRunner

    from hwopt import guard
    from hwopt.cli import app

    guard.attach()
    runner = CliRunner()
    # Results go to a private copy of stdout; native code printing to descriptor 1 (onnxruntime
    # does) must not corrupt them.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for line in sys.stdin:
        request = json.loads(line)
        os.chdir(request["cwd"])
        result = runner.invoke(app, request["args"])
        out.write(json.dumps({"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
