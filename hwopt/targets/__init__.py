"""The target registry: ``cpu``, ``cuda``, ``tensorrt``, ``openvino``, and ``gpu``, an alias
resolved on the host (TensorRT when its provider starts here, else CUDA)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwopt.errors import UsageError
from hwopt.targets.base import Availability, BuildContext, Check, Target, TargetBuild
from hwopt.targets.cpu import CpuTarget
from hwopt.targets.cuda import CudaTarget
from hwopt.targets.openvino import OpenvinoTarget
from hwopt.targets.tensorrt import TensorrtTarget

_TARGETS: dict[str, type[Target]] = {cls.name: cls for cls in (CpuTarget, CudaTarget, TensorrtTarget, OpenvinoTarget)}
ALIASES = ("gpu",)


def target_names() -> list[str]:
    return [*_TARGETS, *ALIASES]


def resolve_alias(name: str) -> tuple[str, str]:
    """The concrete target an alias stands for here, and why."""
    if name != "gpu":
        return name, ""
    trt = TensorrtTarget().availability()
    if trt.available:
        return "tensorrt", "gpu resolved to tensorrt: its provider starts on this host"
    return "cuda", f"gpu resolved to cuda: {trt.reason}"


def get_target(name: str, options: Mapping[str, Any] | None = None) -> Target:
    """The target registered under ``name`` (an alias resolves first); unknown names are a
    usage error."""
    concrete, note = resolve_alias(name)
    if concrete not in _TARGETS:
        raise UsageError(f"unknown target '{name}'; known targets: {', '.join(target_names())}")
    target = _TARGETS[concrete](options)
    target.alias_note = note
    return target


__all__ = ["Availability", "BuildContext", "Check", "Target", "TargetBuild", "get_target", "resolve_alias", "target_names"]
