"""What ``hwopt tune`` searches: model recipes (which passes, which precision) crossed with
session-option variants, all built from the pass registry and the target's own settings.

A recipe is built once, by ``hwopt.optimize`` itself, so every candidate model is verified
like any build (each pass checked and rolled back on failure; INT8 held to the accuracy
budget). A session variant changes only how onnxruntime runs the model: it is a dictionary
of overrides over the target's session options, the same keys ``build.json`` records.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from hwopt.memory.settings import MemorySetting
from hwopt.session import Providers, physical_cores
from hwopt.targets.base import Target


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to build a candidate model: ``passes`` None means the target's default pipeline."""

    name: str
    description: str
    passes: tuple[str, ...] | None
    precision: str  # fp32 | int8 | fp16
    # The recipes a user compares against: the input as it is, and hwopt optimize's defaults.
    cost: int = 0  # build order: cheap first, so a good answer exists early


@dataclasses.dataclass(frozen=True)
class SessionVariant:
    """Overrides of the target's session options (``replace`` drops the target's first)."""

    name: str
    description: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    replace: bool = False
    # Options of the target's first execution provider, over the target's.
    provider_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def apply(self, base: Mapping[str, Any]) -> dict[str, Any]:
        if self.replace:
            return dict(self.overrides)
        # Config entries add to the target's rather than replacing them.
        return MemorySetting(self.name, self.description, self.overrides).session_options(base)

    def providers(self, base: Providers) -> list[tuple[str, dict[str, Any]]]:
        out = [(name, dict(options)) for name, options in base]
        if out and self.provider_overrides:
            out[0] = (out[0][0], {**out[0][1], **self.provider_overrides})
        return out


ORIGINAL = "original"
HWOPT = "hwopt"
ORT_DEFAULTS = "ort-defaults"
TARGET_DEFAULTS = "target-defaults"


def recipes(target: Target) -> list[Recipe]:
    """The model recipes for ``target``, cheapest first."""
    default = tuple(target.default_passes)
    out = [
        Recipe(ORIGINAL, "the input model, as onnxruntime optimizes it when the session loads", (), "fp32", 0),
        Recipe(HWOPT, f"hwopt's {target.name} pipeline ({len(default)} passes), FP32", None, "fp32", 1),
    ]
    if "reorder" in default:
        out.append(Recipe("hwopt-no-reorder", "hwopt's pipeline without the memory-aware reorder, FP32",
                          tuple(p for p in default if p != "reorder"), "fp32", 1))
    if target.int8_formats:
        out.append(Recipe("hwopt-int8", "hwopt's pipeline, then its INT8 search (dynamic; static too "
                          "with real --calib data; within the accuracy budget, faster than FP32 or not shipped)", None, "int8", 2))
    if "fp16" in target.precisions:
        out.append(Recipe("hwopt-fp16", "hwopt's pipeline, then FP16 with FP32 I/O", None, "fp16", 1))
    return sorted(out, key=lambda r: r.cost)


def session_variants(target: Target) -> list[SessionVariant]:
    """Session-option variants for ``target``: the target's settings first, onnxruntime's own
    defaults second (the baseline a user gets with no options at all), then one change at a
    time over the target's settings."""
    cores = physical_cores()
    logical = os.cpu_count() or cores
    out = [
        SessionVariant(TARGET_DEFAULTS, "hwopt's settings for the target"),
        SessionVariant(ORT_DEFAULTS, "onnxruntime's defaults (ORT_ENABLE_ALL, its own thread count)", {}, True),
        SessionVariant("opt-extended", "graph optimization level extended",
                       {"graph_optimization_level": "extended"}),
        SessionVariant("opt-basic", "graph optimization level basic", {"graph_optimization_level": "basic"}),
        SessionVariant("order-ort", "onnxruntime's own node order", {"execution_order": "default"}),
    ]
    # The memory settings hwopt optimize chooses among (the first is the target's own; one that
    # sizes its arena from a build's plan has no build to size from here).
    out += [SessionVariant(m.label, m.description, m.overrides) for m in target.memory_settings[1:]
            if not m.plan_chunk]
    if not target.cpu_provider:
        return out + [SessionVariant(label, description, provider_overrides=dict(overrides))
                      for label, description, overrides in target.tuning_variants]
    if cores > 1:
        out.append(SessionVariant("threads-1", "one intra-op thread", {"intra_op_num_threads": 1}))
        out.append(SessionVariant("parallel", "parallel execution mode across branches",
                                  {"execution_mode": "parallel", "inter_op_num_threads": cores}))
    if logical > cores:
        out.append(SessionVariant(f"threads-{logical}", "one intra-op thread per logical CPU",
                                  {"intra_op_num_threads": logical}))
    return out
