"""What a deployment target is: execution providers, session options, a default pipeline,
the target-specific last step of a build, and an honest answer to "can it run here?".

A target is declarative: the build directory records exactly these settings, and
``hwopt.runtime.load`` rebuilds the session from that record. Paths in provider options
(TensorRT's engine and timing caches, its calibration table) are relative to the build
folder and resolved when the session is created.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from hwopt.feeds.inputs import InputSpec
from hwopt.memory.settings import MemorySetting
from hwopt.session import Providers, default_session_options


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether the target's providers can run on this host, and if not, why not."""

    available: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason}


@dataclasses.dataclass
class BuildContext:
    """What a target's last build step may use."""

    build_dir: Path
    specs: Sequence[InputSpec]
    feeds: Sequence[Mapping[str, np.ndarray]]  # the check feeds
    references: Sequence[Mapping[str, np.ndarray]]  # the original model's outputs on them
    precision: str  # the precision asked for: "auto", "fp32", "fp16" or "int8"
    calibration: Any = None  # a SampleSet when INT8 calibration data was gathered


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of a build that did not need the target's hardware."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TargetBuild:
    """The model a target ships, the files it added to the build folder, and its checks."""

    model: onnx.ModelProto
    precision: str
    files: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    # The providers this build runs with, where the step changed them (OpenVINO's FP16 is a
    # provider option); None: the target's own.
    providers: Providers | None = None


class Target(abc.ABC):
    """Base class of the targets in the registry."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_passes: ClassVar[tuple[str, ...]]
    # Precisions the target can build besides fp32, chosen by measurement (hwopt.stages.precision).
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # The static INT8 formats the precision search races on the target's own provider, which
    # runs its variants; empty where INT8 is the provider's own business (TensorRT builds its
    # engine from a calibration table) or not built at all.
    int8_formats: ClassVar[tuple[str, ...]] = ()
    # Options the target gives its passes; a config file's [passes.<name>] tables override them.
    pass_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # Float graph variants kept only where they measure faster (hwopt.graph_choice): a label,
    # and the passes that run before the target's pipeline to make the variant.
    measured_variants: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    # The memory settings a build of this target chooses among by measurement, onnxruntime's
    # defaults first (hwopt.memory.settings); empty where the provider manages its own memory.
    memory_settings: ClassVar[tuple[MemorySetting, ...]] = ()
    # Target options (``--target-option cuda.cuda_graph=true``) with their defaults.
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    # Its first provider is onnxruntime's own CPU provider: nothing falls back from it (so
    # --no-fallback changes nothing), and its thread pool is what tune's thread variants vary.
    cpu_provider: ClassVar[bool] = False
    # Provider options worth trying in ``hwopt tune`` (measured only where the target runs):
    # (label, description, provider options over the first provider's).
    tuning_variants: ClassVar[tuple[tuple[str, str, Mapping[str, str]], ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None):
        given = dict(options or {})
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            from hwopt.errors import UsageError

            known = ", ".join(self.option_defaults) or "none"
            raise UsageError(f"target {self.name}: unknown option(s) {', '.join(unknown)}; known: {known}")
        self.options = {**self.option_defaults, **given}
        self.alias_note = ""  # set when an alias ("gpu") resolved to this target
        self.precision_note = ""  # why a precision is missing from ``precisions`` with these options

    @abc.abstractmethod
    def providers(self) -> Providers:
        """Execution providers in priority order, each with its provider options."""

    def session_options(self) -> dict[str, Any]:
        return default_session_options(level="all")

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this host can run the target's providers."""

    def finalize(self, model: onnx.ModelProto, ctx: BuildContext) -> TargetBuild:
        """The target's last build step after the graph passes (FP16 conversion, TensorRT's
        calibration table ...); the default ships the model as it is. What it decides is in
        what it returns (the providers too, where they change): it never changes the target."""
        return TargetBuild(model=model, precision="fp32")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "providers": [{"name": n, "options": dict(o)} for n, o in self.providers()],
            "session_options": self.session_options(),
            "default_passes": list(self.default_passes),
            "measured_variants": {label: list(passes) for label, passes in self.measured_variants.items()},
            "precisions": list(self.precisions),
            "int8_formats": list(self.int8_formats),
            "memory_settings": [s.label for s in self.memory_settings],
            "options": dict(self.options),
            "alias_note": self.alias_note,
            "availability": self.availability().to_dict(),
        }
