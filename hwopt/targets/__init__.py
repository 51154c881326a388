"""The target registry: ``cpu`` (and, as they are built, ``cuda``, ``tensorrt`` and ``gpu``)."""

from __future__ import annotations

from hwopt.errors import UsageError
from hwopt.targets.base import Availability, Target
from hwopt.targets.cpu import CpuTarget

_TARGETS: dict[str, type[Target]] = {cls.name: cls for cls in (CpuTarget,)}


def target_names() -> list[str]:
    return list(_TARGETS)


def get_target(name: str) -> Target:
    """The target registered under ``name``; unknown names are a usage error."""
    try:
        return _TARGETS[name]()
    except KeyError:
        raise UsageError(
            f"unknown target '{name}'; known targets: {', '.join(target_names())}"
        ) from None


__all__ = ["Availability", "Target", "get_target", "target_names"]
