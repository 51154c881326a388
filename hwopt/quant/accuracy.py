"""How close a quantized model stays to its float model, and the budget that decides.

Measured on held-out samples (never the calibration ones, which the quantizer has already
fitted): per output and per sample, the cosine similarity of the flattened outputs and the
largest absolute difference; for classifier-like outputs (a float tensor whose last axis
holds class scores: ``[N, C]`` classifiers, ``[N, T, C]`` sequence decoders such as CTC
recognizers) also the fraction of positions whose arg-max class agrees. An encoder's
``[N, T, D]`` hidden states have the same shape as a decoder's scores, but the arg-max of a
feature vector means nothing (one INT8 encoder agreed on 98% of positions at cosine 0.99998);
a rank-3 output whose name says it holds states or features is not classifier-like.

The budget (``--max-accuracy-drop``) is either one number ``d`` (cosine >= 1 - d and top-1
agreement >= 1 - d) or ``key=value`` pairs among ``cosine``, ``top1`` and ``abs``, for example
``cosine=0.995,top1=0.98``. The default is cosine >= 0.99 and top-1 agreement >= 99%.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from hwopt.errors import UsageError
from hwopt.verify import cosine_similarity

Outputs = Mapping[str, np.ndarray]

# A last axis with fewer entries is not a set of class scores (a box, a 2-channel map ...).
MIN_CLASSES = 2
# Output names of rank-3 tensors that hold features, not class scores.
_FEATURE_NAMES = re.compile(r"hidden|state|embed|feature|encod|pool", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class AccuracyBudget:
    min_cosine: float = 0.99
    min_top1: float = 0.99
    max_abs: float | None = None

    @classmethod
    def parse(cls, text: str) -> AccuracyBudget:
        text = text.strip()
        try:
            drop = float(text)
        except ValueError:
            drop = None
        if drop is not None:
            if not 0 <= drop < 1:
                raise UsageError(f"--max-accuracy-drop {text}: a single number must be in [0, 1)")
            return cls(min_cosine=1 - drop, min_top1=1 - drop)
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in ("cosine", "top1", "abs"):
                raise UsageError(
                    f"--max-accuracy-drop '{text}': expected a number or cosine=..,top1=..,abs=.."
                )
            try:
                values[key] = float(value)
            except ValueError:
                raise UsageError(f"--max-accuracy-drop: '{value}' is not a number") from None
        return cls(
            min_cosine=values.get("cosine", cls.min_cosine),
            min_top1=values.get("top1", cls.min_top1),
            max_abs=values.get("abs"),
        )

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        parts = [f"cosine >= {self.min_cosine:g}", f"top-1 agreement >= {self.min_top1:.1%}"]
        if self.max_abs is not None:
            parts.append(f"max abs <= {self.max_abs:g}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    cosine: float  # the worst over outputs and samples
    max_abs: float
    top1: float | None  # agreement over classifier-like outputs; None when there are none
    samples: int

    def violations(self, budget: AccuracyBudget) -> list[str]:
        out = []
        if not self.cosine >= budget.min_cosine:
            out.append(f"cosine {self.cosine:.4f} < {budget.min_cosine:g}")
        if self.top1 is not None and not self.top1 >= budget.min_top1:
            out.append(f"top-1 agreement {self.top1:.1%} < {budget.min_top1:.1%}")
        if budget.max_abs is not None and not self.max_abs <= budget.max_abs:
            out.append(f"max abs {self.max_abs:.3g} > {budget.max_abs:g}")
        return out

    def within(self, budget: AccuracyBudget) -> bool:
        return not self.violations(budget)

    def to_dict(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)


def classifier_like(array: np.ndarray, name: str = "") -> bool:
    return (
        np.issubdtype(array.dtype, np.floating)
        and (array.ndim == 2 or array.ndim == 3 and not _FEATURE_NAMES.search(name))
        and array.shape[-1] >= MIN_CLASSES
    )


def compare(reference: Sequence[Outputs], candidate: Sequence[Outputs]) -> AccuracyResult:
    """The candidate's outputs against the reference's, sample by sample."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError("one candidate output set per reference output set, and at least one")
    cosine, max_abs = 1.0, 0.0
    agree = total = 0
    for ref, got in zip(reference, candidate):
        for name, a in ref.items():
            b = got[name]
            a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
            cosine = min(cosine, cosine_similarity(a64, b64))
            diff = np.abs(a64 - b64)
            max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
            if classifier_like(a, name):
                agree += int((a.argmax(-1) == b.argmax(-1)).sum())
                total += int(math.prod(a.shape[:-1]))
    return AccuracyResult(
        cosine=cosine,
        max_abs=max_abs,
        top1=agree / total if total else None,
        samples=len(reference),
    )
