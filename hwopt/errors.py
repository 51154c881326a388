"""The error hierarchy of hwopt, and the exit code each error maps to.

Exit codes (documented in README.md and in ``hwopt --help``):

====  ===========================================================
 0    success
 1    internal error: a bug in hwopt; the message says where the log is
 2    bad input or usage: unreadable model, bad option, unwritable output
 3    a check failed: a CI gate (``--max-latency-ms`` ...) or ``--strict``
 4    the target is not available on this host and ``--require-target`` asked for it
====  ===========================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CHECK_FAILED = 3
EXIT_TARGET_UNAVAILABLE = 4


class HwoptError(Exception):
    """Base of every error hwopt raises on purpose; carries its exit code."""

    exit_code: int = EXIT_INTERNAL


class UsageError(HwoptError):
    """An option or argument that cannot be honoured as given."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UsageError):
    """A TOML configuration file that is malformed or has unknown keys."""


class ModelLoadError(HwoptError):
    """A model file that cannot be read safely: missing, not ONNX, invalid, over a limit."""

    exit_code = EXIT_BAD_INPUT


class InputSpecError(UsageError):
    """An ``--input-shape`` or calibration input that does not fit the model's inputs."""


class OutputError(HwoptError):
    """The output location cannot be written, or writing it would overwrite the input."""

    exit_code = EXIT_BAD_INPUT


class PassError(HwoptError):
    """A pass failed verification and ``--strict`` asked for that to be fatal."""

    exit_code = EXIT_CHECK_FAILED


class GateFailed(HwoptError):
    """One or more CI gates (latency, speed-up, accuracy, size, memory) failed."""

    exit_code = EXIT_CHECK_FAILED


class TargetUnavailable(HwoptError):
    """The target's execution provider cannot run here and the user required it."""

    exit_code = EXIT_TARGET_UNAVAILABLE


class UpstreamAPIChanged(HwoptError):
    """An installed dependency no longer has a private API hwopt relies on (a version outside the
    range pyproject.toml allows; hwopt.upstream lists what is relied on)."""

    exit_code = EXIT_INTERNAL


class RuntimeMismatch(HwoptError):
    """A build was made for another onnxruntime version or provider set than this host has."""

    exit_code = EXIT_BAD_INPUT


def one_line(message: object, limit: int = 300) -> str:
    """The first non-empty line of an exception's text, clipped: what a one-line error shows."""
    for line in str(message).strip().splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return "unknown reason"
