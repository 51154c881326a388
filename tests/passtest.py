"""Helpers for pass tests: build small models from text, run one pass through the verifying
pipeline, and inspect what came out."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from hwopt.feeds.inputs import generate_feeds, resolve_input_specs
from hwopt.passes.base import Pass, PassContext, PassRecord
from hwopt.passes.pipeline import Pipeline
from hwopt.verify import run_model


def make_model(text: str, weights: Mapping[str, np.ndarray] | None = None, seed: int = 0) -> onnx.ModelProto:
    """Parse ``text`` and give every initializer declared in its ``<...>`` list a value: the one
    in ``weights``, else random of the declared shape (kept positive for names with "var").

    onnx's parser keeps initializers declared without a value as value_info entries; they
    become real initializers here.
    """
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    weights = dict(weights or {})
    produced = {out for node in model.graph.node for out in node.output}
    declared = [vi for vi in model.graph.value_info if vi.name not in produced]
    for vi in declared:
        if vi.name in weights:
            value = np.asarray(weights[vi.name])
        else:
            tensor_type = vi.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
            shape = tuple(d.dim_value for d in tensor_type.shape.dim)
            value = (rng.standard_normal(shape) * 0.5).astype(dtype)
            if "var" in vi.name:
                value = np.abs(value) + 0.5
        model.graph.initializer.append(numpy_helper.from_array(value, vi.name))
    keep = [vi for vi in model.graph.value_info if vi.name in produced]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    onnx.checker.check_model(model, full_check=True)
    return model


def run_pass(
    pass_: Pass,
    model: onnx.ModelProto,
    shapes: Mapping[str, Sequence[int]] | None = None,
    options: Mapping[str, object] | None = None,
) -> tuple[PassRecord, onnx.ModelProto]:
    """Run one pass through the pipeline (so it is verified as in production)."""
    specs = resolve_input_specs(model.graph, shapes)
    feeds = generate_feeds(specs, seed=1)
    pipeline = Pipeline([pass_], {pass_.name: dict(options)} if options else None)
    result = pipeline.run(model, PassContext(specs), [feeds], [run_model(model, feeds)])
    (record,) = result.records
    return record, result.model


def op_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in model.graph.node)
