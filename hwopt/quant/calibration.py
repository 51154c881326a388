"""The calibration samples as onnxruntime's calibrators read them (hwopt.feeds.samples makes them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from hwopt.feeds.samples import Sample, SampleSet


class SampleReader(CalibrationDataReader):
    """Feeds an onnxruntime calibrator a SampleSet, one sample per ``get_next``.

    ``len()`` is the whole set and ``set_range(start, end)`` narrows reading to samples
    ``start`` .. ``end - 1``, as ``quantize_static`` does with ``CalibStridedMinMax``.
    A calibrator reads until ``get_next`` returns None; ``rewind()`` makes the reader new
    again (the whole set, from the first sample), so one reader serves several calibrations.
    """

    def __init__(self, samples: SampleSet | Sequence[Mapping[str, np.ndarray]]) -> None:
        items = samples.samples if isinstance(samples, SampleSet) else samples
        self._samples = [dict(sample) for sample in items]
        self.rewind()

    def __len__(self) -> int:
        return len(self._samples)

    def get_next(self) -> Sample | None:
        if self._next >= self._end:
            return None
        sample = self._samples[self._next]
        self._next += 1
        # A copy of the dict (not the arrays): a caller adding or removing keys leaves ours intact.
        return dict(sample)

    def rewind(self) -> None:
        self.set_range(0, len(self._samples))

    def set_range(self, start_index: int, end_index: int) -> None:
        count = len(self._samples)
        self._start = min(max(start_index, 0), count)
        self._end = min(max(end_index, self._start), count)
        self._next = self._start
