"""What a deployment target is: execution providers, session options, a default pipeline,
and an honest answer to "can it run here?".

A target is declarative: the build directory records exactly these settings, and
``hwopt.runtime.load`` rebuilds the session from that record.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from hwopt.session import Providers, default_session_options


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether the target's providers can run on this host, and if not, why not."""

    available: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason}


class Target(abc.ABC):
    """Base class of the targets in the registry."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_passes: ClassVar[tuple[str, ...]]
    # Precisions the target can build besides fp32, chosen by measurement (hwopt.precision).
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # Options the target gives its passes; a config file's [passes.<name>] tables override them.
    pass_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @abc.abstractmethod
    def providers(self) -> Providers:
        """Execution providers in priority order, each with its provider options."""

    def session_options(self) -> dict[str, Any]:
        return default_session_options(level="all")

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this host can run the target's providers."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "providers": [{"name": n, "options": dict(o)} for n, o in self.providers()],
            "session_options": self.session_options(),
            "default_passes": list(self.default_passes),
            "availability": self.availability().to_dict(),
        }
