"""The inputs several models share, and the feeds they all run on, one set per batch size
(``hwopt bench``: every variant of a comparison runs on the very same feeds)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
from onnx import helper

from hwopt.errors import InputSpecError
from hwopt.feeds.inputs import (
    Dim,
    InputSpec,
    generate_feeds,
    load_feeds,
    resolve_input_specs,
    specs_from_feeds,
)
from hwopt.feeds.kinds import NOISE, FeedKind


class Signature(Protocol):
    """A model as far as its feeds go: a label for messages, and its graph inputs."""

    @property
    def label(self) -> str: ...

    @property
    def inputs(self) -> Sequence[onnx.ValueInfoProto]: ...


class FeedOptions(Protocol):
    """What decides the feeds: the user's file, shapes, batch sizes, the seed."""

    inputs_file: Path | None
    input_shapes: Mapping[str, Sequence[int]]
    batches: Sequence[int]
    seed: int


@dataclasses.dataclass
class SharedInput:
    """One graph input as every variant declares it: fixed dimensions from whichever fixes them."""

    name: str
    elem_type: int
    declared: tuple[Dim, ...]
    declared_by: str  # the variant whose rank the others are held to
    fixed_by: dict[int, str]  # axis -> label of the first variant that fixes it
    feed: FeedKind = NOISE  # how generated values are drawn, read from the first variant's graph

    @property
    def batched(self) -> bool:
        return bool(self.declared) and not _fixed(self.declared[0])


def _fixed(dim: Dim) -> bool:
    return isinstance(dim, int) and dim > 0


def common_inputs(variants: Sequence[Signature], overrides: Mapping[str, Sequence[int]]) -> list[SharedInput]:
    """The inputs all variants share, or an InputSpecError naming the first difference."""
    per_variant = []
    for v in variants:
        graph = helper.make_graph([], "signature", v.inputs, [])
        try:
            per_variant.append(resolve_input_specs(graph, overrides))
        except InputSpecError as exc:
            raise InputSpecError(f"{v.label}: {exc}") from exc
    first, first_specs = variants[0], per_variant[0]
    merged = {s.name: SharedInput(s.name, s.elem_type, s.declared, first.label,
                             {axis: first.label for axis, d in enumerate(s.declared) if _fixed(d)},
                             first.feed_kinds.get(s.name, NOISE))
              for s in first_specs}
    for v, specs in zip(variants[1:], per_variant[1:]):
        names, theirs = [s.name for s in first_specs], [s.name for s in specs]
        if set(names) != set(theirs):
            raise InputSpecError(
                f"{first.label} and {v.label} take different inputs ({first.label}: {', '.join(names) or 'none'}; "
                f"{v.label}: {', '.join(theirs) or 'none'}); every variant must take the same inputs"
            )
        for spec in specs:
            ours = merged[spec.name]
            if spec.elem_type != ours.elem_type:
                raise InputSpecError(
                    f"input '{spec.name}' is {_dtype_name(ours.elem_type)} in {first.label} but "
                    f"{spec.dtype} in {v.label}; every variant must take the same input types"
                )
            _merge_dims(ours, spec.declared, v.label)
    return [merged[s.name] for s in first_specs]


def _dtype_name(elem_type: int) -> str:
    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))


def _merge_dims(ours: SharedInput, declared: tuple[Dim, ...], label: str) -> None:
    if not declared:
        return
    if not ours.declared:
        ours.declared, ours.declared_by = declared, label
        ours.fixed_by = {axis: label for axis, d in enumerate(declared) if _fixed(d)}
        return
    if len(declared) != len(ours.declared):
        raise InputSpecError(
            f"input '{ours.name}' has rank {len(ours.declared)} in {ours.declared_by} "
            f"but rank {len(declared)} in {label}"
        )
    dims = list(ours.declared)
    for axis, (mine, theirs) in enumerate(zip(ours.declared, declared)):
        if _fixed(theirs):
            if _fixed(mine) and mine != theirs:
                raise InputSpecError(
                    f"input '{ours.name}' dimension {axis} is {mine} in {ours.fixed_by[axis]} but {theirs} in {label}; "
                    "the variants cannot run on the same feeds"
                )
            if not _fixed(mine):
                dims[axis] = theirs
                ours.fixed_by[axis] = label
        elif mine in (None, "") and theirs not in (None, ""):
            dims[axis] = theirs
    ours.declared = tuple(dims)


def _signature(inputs: Sequence[SharedInput], batch: int | None) -> onnx.GraphProto:
    """A node-less graph with the merged inputs; with ``batch``, batched inputs fix it."""
    value_infos = []
    for i in inputs:
        dims = [None if d == "" else d for d in i.declared]
        if batch is not None and i.batched:
            dims[0] = batch
        value_infos.append(helper.make_tensor_value_info(i.name, i.elem_type, dims))
    return helper.make_graph([], "signature", value_infos, [])


@dataclasses.dataclass
class FeedSet:
    batch: int
    source: str  # see BatchResult.batch_source
    specs: list[InputSpec]
    feeds: dict[str, np.ndarray]


def batch_feed_sets(inputs: Sequence[SharedInput], options: FeedOptions,
                    warnings: list[str]) -> tuple[list[FeedSet], str]:
    """The feeds for every batch size to run, and where they came from."""
    if options.inputs_file is not None:
        return [_user_feed_set(inputs, options, warnings)], f"user: {options.inputs_file}"
    declared = {i.name: i.declared for i in inputs}
    kinds = {i.name: i.feed for i in inputs}
    batched = [i for i in inputs if i.batched]
    source = (f"generated (seed {options.seed}), the same for every variant: "
              + "; ".join(f"{i.name}: {i.feed.describe()}" for i in inputs))
    batch_plan, batch_source = _batch_plan(inputs, options, warnings)
    sets = []
    for batch in batch_plan:
        overrides = {
            name: (batch, *shape[1:]) if name in {i.name for i in batched} and len(shape) > 0 else tuple(shape)
            for name, shape in options.input_shapes.items()
        }
        specs = resolve_input_specs(_signature(inputs, batch if batched else None), overrides)
        specs = [dataclasses.replace(s, declared=declared[s.name], feed=kinds[s.name]) for s in specs]
        sets.append(FeedSet(batch, batch_source, specs, generate_feeds(specs, options.seed)))
    defaulted = [d for s in sets[0].specs for d in s.defaulted]
    if defaulted:
        warnings.append(f"symbolic dimension(s) {', '.join(defaulted)} defaulted to 1: pass --input-shape "
                        "for the shapes the model really runs at")
    return sets, source


def _user_feed_set(inputs: Sequence[SharedInput], options: FeedOptions, warnings: list[str]) -> FeedSet:
    """The user's feeds (--inputs), used exactly as given: the batch size is the file's."""
    batched = [i for i in inputs if i.batched]
    requested = list(dict.fromkeys(int(b) for b in options.batches))
    specs = resolve_input_specs(_signature(inputs, None), options.input_shapes)
    feeds = load_feeds(options.inputs_file, specs)
    specs = specs_from_feeds(specs, feeds)
    ranked = [s for s in specs if s.shape]
    lead = next((s for s in ranked if s.name in {i.name for i in batched}), ranked[0] if ranked else None)
    batch = lead.shape[0] if lead is not None else 1
    if requested != [batch]:
        warnings.append(f"--batch {','.join(map(str, requested))} ignored: the feeds come from "
                        f"{options.inputs_file} (batch {batch})")
    return FeedSet(batch, "--inputs file", specs, feeds)


def _batch_plan(inputs: Sequence[SharedInput], options: FeedOptions, warnings: list[str]) -> tuple[list[int], str]:
    """The batch sizes generated feeds are made for, and where they come from."""
    batched = [i for i in inputs if i.batched]
    requested = list(dict.fromkeys(int(b) for b in options.batches))
    if not batched:
        ranked = [i for i in inputs if i.declared]
        batch = int(ranked[0].declared[0]) if ranked else 1
        if requested != [batch]:
            reason = (f"input '{ranked[0].name}' has a fixed leading dimension {batch} in {ranked[0].fixed_by[0]}"
                      if ranked else "no input has a batch dimension")
            warnings.append(f"--batch {','.join(map(str, requested))} ignored: {reason}; benchmarked at batch {batch}")
        return [batch], "fixed by the model"
    # The leading dimension of a batched input comes from --batch, whatever --input-shape
    # says: a model with other symbolic dimensions needs --input-shape for those, and the
    # batch written there is a placeholder unless it is not one of the batch sizes.
    overridden = [name for name, shape in options.input_shapes.items()
                  if name in {i.name for i in batched} and len(shape) > 0 and int(shape[0]) not in requested]
    if overridden:
        warnings.append(f"--input-shape {', '.join(overridden)}: the leading (batch) dimension given is "
                        "replaced by each --batch size")
    return requested, "--batch"
