"""An activation buffer as the planners see it: a size and the steps during which it lives.

Steps are positions in an execution order: the buffer is allocated when its producer runs
(``start``) and freed after its last consumer runs (``end``, inclusive). Two buffers whose
step ranges intersect must not share bytes.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.size < 0 or self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid buffer {self}")

    def overlaps(self, other: Buffer) -> bool:
        """Whether the two are alive at a common step."""
        return self.start <= other.end and other.start <= self.end
