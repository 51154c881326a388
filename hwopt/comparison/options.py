"""What ``hwopt bench`` can be told."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwopt.errors import UsageError


@dataclasses.dataclass
class BenchOptions:
    """Everything ``hwopt bench`` can be told; the CLI fills this in."""

    # Batch sizes, applied to the leading dimension of inputs that declare it symbolic; a
    # model that fixes it is benchmarked at its own size and the report says so.
    batches: Sequence[int] = (1,)
    # Concrete shapes for the other symbolic dimensions (--input-shape); the leading
    # dimension of a batched input is set by ``batches``.
    input_shapes: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    # Feeds used exactly as given (--inputs .npz/.npy); the batch size is then the file's.
    inputs_file: Path | None = None
    # Timed seconds per variant per batch size.
    seconds: float = 2.0
    # Intra-op threads for every variant, a build's recorded count included; None: each
    # variant's own (physical cores for a model file).
    threads: int | None = None
    # Peak RSS of every session, each in a fresh process.
    memory: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not self.batches:
            raise UsageError("--batch: give at least one batch size")
        bad = [b for b in self.batches if not isinstance(b, int) or b < 1]
        if bad:
            raise UsageError(f"--batch: batch sizes must be integers of at least 1, got {bad}")
        if not self.seconds > 0:
            raise UsageError(f"--seconds must be positive, got {self.seconds}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [int(b) for b in self.batches],
            "input_shapes": {name: [int(d) for d in shape] for name, shape in self.input_shapes.items()},
            "inputs_file": str(self.inputs_file) if self.inputs_file is not None else None,
            "seconds": self.seconds,
            "threads": self.threads,
            "memory": self.memory,
            "seed": self.seed,
        }
