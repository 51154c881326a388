"""Peak resident memory of ``hwopt tune``'s candidates, each session in a fresh process
(``hwopt.memory.probe``): the final race's entrants first, then the memory-minded session
variants, while the time budget lasts."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import numpy as np

from hwopt.feeds.inputs import save_npz
from hwopt.memory.probe import MeasurementFailed, measure_session_memory
from hwopt.report.tune import Candidate
from hwopt.tune.builds import Built


def measure_memory(candidates: Iterable[Candidate], built: Mapping[str, Built], memory_minded: Collection[str],
                   feeds: Mapping[str, np.ndarray], seconds_left: Callable[[], float],
                   step: Callable[[str], None], save: Callable[[Candidate], None]) -> None:
    """Peak RSS of the finalists, then of the ``memory_minded`` variants, while time lasts."""
    order = sorted((c for c in candidates if c.usable and c.memory_bytes is None),
                   key=lambda c: (not c.final, c.variant not in memory_minded, c.ratio))
    # The final race's entrants are measured even a little past the budget: the memory
    # front and the table need them, and there are at most a handful.
    with tempfile.TemporaryDirectory(prefix="hwopt-tune-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        save_npz(feeds_path, feeds)
        for c in order:
            if seconds_left() <= 0 and not c.final:
                break
            build = built[c.recipe]
            step(f"memory of {c.id}")
            try:
                memory = measure_session_memory(build.model_path,
                                                [{"name": n, "options": o} for n, o in c.providers],
                                                c.session_options, feeds_path, base_dir=build.folder)
            except MeasurementFailed:
                continue
            c.memory_bytes = memory.session_bytes
            save(c)
