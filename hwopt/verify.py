"""Checking a model and comparing its outputs with a reference.

Two questions, asked of every pass's output and of every build:

* is the model still valid ONNX? ``onnx.checker.check_model(full_check=True)``, which includes
  strict shape inference, and an unchanged signature (input and output names and types);
* does it compute the same thing? An ONNX Runtime run on the same feeds, every output compared
  with the reference (see :class:`~hwopt.passes.base.Tolerance` for what "within" means).

Verification sessions run with graph optimizations off, so what is checked is the model as
written, not ONNX Runtime's rewrite of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from hwopt.errors import one_line
from hwopt.guard import phase
from hwopt.session import ORT_ERRORS, create_session, default_session_options, run_session

# Failures surface as exceptions with the message; ORT's own error log would only repeat them.
VERIFY_SESSION_OPTIONS = {**default_session_options(level="disable_all"), "log_severity_level": 4}


class VerificationFailed(Exception):
    """A model that is invalid or computes something else; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class OutputDiff:
    """How far one output moved: largest absolute error, that error over the output's scale,
    and the cosine similarity of the flattened outputs."""

    name: str
    max_abs: float
    max_rel: float
    cosine: float
    ref_scale: float

    def to_dict(self) -> dict[str, float | str]:
        return dataclasses.asdict(self)


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
) -> list[OutputDiff]:
    """Per-output differences; outputs must match in names and shapes."""
    if set(reference) != set(candidate):
        raise VerificationFailed(
            f"outputs differ: expected {sorted(reference)}, got {sorted(candidate)}"
        )
    diffs = []
    for name, ref in reference.items():
        got = candidate[name]
        if ref.shape != got.shape:
            raise VerificationFailed(
                f"output '{name}' has shape {list(got.shape)}, expected {list(ref.shape)}"
            )
        diffs.append(_diff(name, np.asarray(ref), np.asarray(got)))
    return diffs


def merge_diffs(per_feed_set: Sequence[Sequence[OutputDiff]]) -> list[OutputDiff]:
    """One diff per output: the worst over several feed sets."""
    worst: dict[str, OutputDiff] = {}
    for diffs in per_feed_set:
        for d in diffs:
            w = worst.get(d.name)
            worst[d.name] = d if w is None else OutputDiff(
                d.name, max(w.max_abs, d.max_abs), max(w.max_rel, d.max_rel),
                min(w.cosine, d.cosine), max(w.ref_scale, d.ref_scale),
            )
    return list(worst.values())


def _diff(name: str, ref: np.ndarray, got: np.ndarray) -> OutputDiff:
    if ref.size == 0:
        return OutputDiff(name, 0.0, 0.0, 1.0, 0.0)
    a = ref.astype(np.float64, copy=False)
    b = got.astype(np.float64, copy=False)
    both_nan = np.isnan(a) & np.isnan(b)
    delta = np.where(both_nan, 0.0, np.abs(a - b))
    delta = np.where(np.isnan(delta), np.inf, delta)  # NaN on one side only is an error
    max_abs = float(delta.max())
    finite = np.isfinite(a)
    scale = float(np.abs(a[finite]).max()) if finite.any() else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return OutputDiff(name, max_abs, max_rel, cosine_similarity(a, b), scale)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the flattened arrays; 1.0 when both are all zeros, NaN-safe."""
    x = np.nan_to_num(a.ravel().astype(np.float64), posinf=0.0, neginf=0.0)
    y = np.nan_to_num(b.ravel().astype(np.float64), posinf=0.0, neginf=0.0)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 and ny == 0:
        return 1.0
    if nx == 0 or ny == 0:
        return 0.0
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


def check_valid(model: onnx.ModelProto) -> None:
    """The onnx checker with strict shape inference; raises VerificationFailed with its reason."""
    try:
        with phase("onnx checker with shape inference", "shape_inference"):
            onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VerificationFailed(f"checker: {one_line(exc)}") from exc


def check_same_signature(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    """Graph inputs and outputs keep their names, element types and ranks."""
    for kind in ("input", "output"):
        old = _signature(getattr(before.graph, kind), before.graph)
        new = _signature(getattr(after.graph, kind), after.graph)
        if old != new:
            raise VerificationFailed(f"graph {kind}s changed: {old} -> {new}")


def _signature(values, graph: onnx.GraphProto) -> list[tuple[str, int, int]]:
    initializers = {init.name for init in graph.initializer}
    return [
        (vi.name, vi.type.tensor_type.elem_type, len(vi.type.tensor_type.shape.dim))
        for vi in values
        if vi.name not in initializers
    ]


def run_model(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of one ORT run with verification settings; failures become VerificationFailed."""
    return ModelRunner(model)(feeds)


class ModelRunner:
    """One verification session of ``model`` for several runs (a 100 MB model's session takes
    a quarter of a second to make); failures become VerificationFailed."""

    def __init__(self, model: onnx.ModelProto):
        try:
            self.session = create_session(model, VERIFY_SESSION_OPTIONS)
        except ORT_ERRORS as exc:
            raise VerificationFailed(f"onnxruntime: {one_line(exc)}") from exc

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return run_session(self.session, feeds)
        except ORT_ERRORS as exc:
            raise VerificationFailed(f"onnxruntime: {one_line(exc)}") from exc



def rounding_noise(model: onnx.ModelProto, feed_sets: Sequence[Mapping[str, np.ndarray]],
                   outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Per output, how far onnxruntime's own basic optimizations (constant and BatchNorm
    folding) move it: the float32 rounding noise an exact rewrite of this model can cause.
    ``outputs``: the model's outputs on ``feed_sets`` with verification settings (the
    reference outputs, already computed)."""
    folded = create_session(model, {**VERIFY_SESSION_OPTIONS, "graph_optimization_level": "basic"})
    noise: dict[str, float] = {}
    for feeds, plain_outputs in zip(feed_sets, outputs):
        for d in compare_outputs(plain_outputs, run_session(folded, feeds)):
            noise[d.name] = max(noise.get(d.name, 0.0), d.max_abs if np.isfinite(d.max_abs) else 0.0)
    return noise
