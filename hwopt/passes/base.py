"""The contract every pass follows.

A pass is a small object with a stable snake_case ``name``, a one-line ``description``, the
opset range it understands, the numeric tolerance its output must keep against its input, and
``run(model, ctx) -> PassResult``. Which targets run it is theirs to say (``Target.default_passes``).
``PassRecord`` is what the pipeline records of one pass, verification included, for the report.

Passes work on an ``onnx_ir.Model`` that the pipeline hands them as a private copy, so a pass
may rewrite it in place and return it. A pass never verifies itself: the pipeline checks and
compares every pass the same way and rolls back the ones that break the model.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import onnx_ir as ir

from hwopt.feeds.inputs import InputSpec


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a pass's outputs may move from its input's outputs.

    ``max|a-b| <= max(atol + rtol * max|reference|, noise_factor * noise)`` per output, where
    ``rtol`` is relative to the output's largest magnitude (element-wise relative error is
    meaningless where outputs cross zero) and ``noise`` is the model's own float32 rounding
    noise on that output: how far onnxruntime's basic graph optimizations (which fold
    BatchNorm and constants themselves) move it. Deep networks amplify the rounding change of
    a folded weight: PP-OCRv4 det moves by 1.2e-5 to 2e-5 under onnxruntime's own optimizer,
    so a fixed 1e-5 would reject exact rewrites for rounding alone.
    """

    rtol: float
    atol: float
    noise_factor: float = 0.0

    def limit(self, ref_scale: float, noise: float = 0.0) -> float:
        return max(self.atol + self.rtol * ref_scale, self.noise_factor * noise)

    def allows(self, max_abs: float, ref_scale: float, noise: float = 0.0) -> bool:
        return max_abs <= self.limit(ref_scale, noise)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


# Structural rewrites reorder float arithmetic (a folded BatchNorm rounds differently), so they
# get a little room, and up to twice the model's own rounding noise; a pass that only moves or
# renames nodes must be bit-exact.
STRUCTURAL = Tolerance(rtol=1e-5, atol=1e-6, noise_factor=2.0)
BIT_EXACT = Tolerance(rtol=0.0, atol=0.0)


@dataclasses.dataclass(frozen=True)
class Declined:
    """A match a pass looked at and did not rewrite, with the reason a user can act on."""

    rule: str
    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} not rewritten by {self.rule}: {self.reason}"


@dataclasses.dataclass
class PassContext:
    """What a pass may know about the run besides the model itself."""

    input_specs: Sequence[InputSpec] = ()
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PassResult:
    """The model a pass produced and what it did to get there."""

    model: ir.Model
    rewrites: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    declined: list[Declined] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    # Numbers a pass measured about its own effect (reorder: peak bytes before and after).
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return sum(self.rewrites.values()) > 0


@dataclasses.dataclass
class PassRecord:
    """What one pass did, as the per-pass table of the report shows it."""

    name: str
    status: str
    seconds: float
    nodes_before: int
    nodes_after: int
    params_before: int
    params_after: int
    max_abs: float | None = None
    max_rel: float | None = None
    reason: str | None = None
    rewrites: dict[str, int] = dataclasses.field(default_factory=dict)
    declined: list[Declined] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["declined"] = [dataclasses.asdict(d) for d in self.declined]
        return data



class Pass(abc.ABC):
    """Base class of every pass; subclasses fill in the metadata and ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    min_opset: ClassVar[int] = 7
    max_opset: ClassVar[int] = 23
    tolerance: ClassVar[Tolerance] = STRUCTURAL
    # Options a config file may set under [passes.<name>], with their defaults.
    option_defaults: ClassVar[Mapping[str, Any]] = {}

    @abc.abstractmethod
    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        """Rewrite ``model`` (a private copy: in place is fine) and say what changed."""

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "description": cls.description,
            "opsets": [cls.min_opset, cls.max_opset],
            "tolerance": cls.tolerance.to_dict(),
            "options": dict(cls.option_defaults),
        }


def default_opset(opset_imports: Mapping[str, int]) -> int:
    """The version of the default ("" / ai.onnx) domain in a model's opset imports."""
    return opset_imports.get("", opset_imports.get("ai.onnx", 0))
