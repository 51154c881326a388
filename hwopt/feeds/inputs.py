"""Model inputs: concrete shapes for symbolic dimensions, and the feeds every check runs on.

A graph input's dimensions may be symbolic ("batch", "seq") or unknown. Every numeric check
and benchmark needs concrete shapes, so hwopt resolves them once, in this order:

1. ``--input-shape name=1x3x224x224`` (repeatable) fixes one input's whole shape;
2. a symbolic dimension fixed that way is fixed to the same value in every other input that
   names it (two inputs sharing "batch" stay consistent);
3. any dimension still open takes the default (1), and the report lists it, because a default
   is a guess the user should see.

Feeds are then either the user's (``.npy``/``.npz``) or generated deterministically from a seed,
each input as its :class:`~hwopt.feeds.kinds.FeedKind` says (token ids spread over the
table they index, masks all ones, ...: read from the graph when the specs are resolved).
Generated feeds prove that outputs did not change, not that a model is accurate on real data.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from hwopt.errors import InputSpecError
from hwopt.feeds.kinds import NOISE, FeedKind, plan_feed_kinds
from hwopt.guard import env_megabytes

DEFAULT_DIM = 1
FEED_LIMIT_ENV = "HWOPT_MAX_FEED_MB"
DEFAULT_MAX_FEED_BYTES = 4 << 30

Dim = int | str | None


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input: its declared shape and the concrete shape hwopt runs it with."""

    name: str
    elem_type: int
    declared: tuple[Dim, ...]
    shape: tuple[int, ...]
    defaulted: tuple[str, ...] = ()
    # How generated feeds for this input are drawn (user data ignores it).
    feed: FeedKind = NOISE

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": str(self.dtype),
            "declared_shape": [d if d is not None else "?" for d in self.declared],
            "shape": list(self.shape),
            "defaulted_dims": list(self.defaulted),
            "generated_as": self.feed.to_dict(),
        }


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` (a scalar is ``name=``); the name may itself contain '='."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise InputSpecError(f"--input-shape '{text}': expected NAME=DxDx..., e.g. input=1x3x224x224")
    if dims == "":
        return name, ()
    if not re.fullmatch(r"\d+(x\d+)*", dims):
        raise InputSpecError(
            f"--input-shape '{text}': dimensions must be positive integers joined by 'x'"
        )
    shape = tuple(int(d) for d in dims.split("x"))
    if any(d == 0 for d in shape):
        raise InputSpecError(f"--input-shape '{text}': dimensions must be at least 1")
    return name, shape


def parse_shape_options(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, shape = parse_shape_option(item)
        if name in shapes and shapes[name] != shape:
            raise InputSpecError(f"--input-shape given twice for '{name}' with different shapes")
        shapes[name] = shape
    return shapes


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: old-opset models also list their weights as inputs."""
    initializers = {init.name for init in graph.initializer}
    return [vi for vi in graph.input if vi.name not in initializers]


def declared_shape(value_info: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return ()
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def resolve_input_specs(
    graph: onnx.GraphProto,
    overrides: Mapping[str, Sequence[int]] | None = None,
    default_dim: int = DEFAULT_DIM,
) -> list[InputSpec]:
    """Concrete shapes for every graph input (see the module docstring for the rules)."""
    overrides = dict(overrides or {})
    inputs = graph_inputs(graph)
    known = {vi.name for vi in inputs}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputSpecError(
            f"--input-shape names unknown input(s) {', '.join(unknown)}; "
            f"the model's inputs are: {', '.join(sorted(known)) or '(none)'}"
        )
    symbols = _symbols_fixed_by_overrides(inputs, overrides)
    kinds = plan_feed_kinds(graph, [vi.name for vi in inputs])
    specs = []
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise InputSpecError(f"input '{vi.name}' is not a tensor; hwopt supports tensor inputs only")
        declared = declared_shape(vi)
        if vi.name in overrides:
            shape, defaulted = tuple(overrides[vi.name]), ()
        else:
            shape, defaulted = _fill_dims(vi.name, declared, symbols, default_dim)
        specs.append(
            InputSpec(
                name=vi.name,
                elem_type=vi.type.tensor_type.elem_type,
                declared=declared,
                shape=shape,
                defaulted=defaulted,
                feed=kinds[vi.name],
            )
        )
    return specs


def _is_named_symbol(dim: Dim) -> bool:
    """A symbolic dimension whose name ties dims together. Some exporters write "?" for every
    unknown dimension (PaddlePaddle) or generate "unk__N" names; those tie nothing."""
    return isinstance(dim, str) and dim not in ("", "?") and not dim.startswith("unk__")


def _symbols_fixed_by_overrides(
    inputs: Sequence[onnx.ValueInfoProto], overrides: Mapping[str, Sequence[int]]
) -> dict[str, int]:
    symbols: dict[str, int] = {}
    for vi in inputs:
        if vi.name not in overrides:
            continue
        declared = declared_shape(vi)
        shape = tuple(overrides[vi.name])
        if declared and len(declared) != len(shape):
            raise InputSpecError(
                f"--input-shape {vi.name}: rank {len(shape)} given, the model declares rank "
                f"{len(declared)} {format_dims(declared)}"
            )
        for axis, (want, given) in enumerate(zip(declared, shape)):
            if isinstance(want, int) and want > 0 and want != given:
                raise InputSpecError(
                    f"--input-shape {vi.name}: dimension {axis} is fixed to {want} in the model, "
                    f"{given} given"
                )
            if _is_named_symbol(want):
                if symbols.get(want, given) != given:
                    raise InputSpecError(
                        f"--input-shape: symbolic dimension '{want}' given two values "
                        f"({symbols[want]} and {given})"
                    )
                symbols[want] = given
    return symbols


def _fill_dims(
    name: str, declared: tuple[Dim, ...], symbols: Mapping[str, int], default_dim: int
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    shape, defaulted = [], []
    for axis, dim in enumerate(declared):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif _is_named_symbol(dim) and dim in symbols:
            shape.append(symbols[dim])
        else:
            shape.append(default_dim)
            defaulted.append(f"{name}[{axis}]" + (f" ({dim})" if isinstance(dim, str) else ""))
    return tuple(shape), tuple(defaulted)


def format_dims(declared: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in declared) + "]"


def check_array(where: object, spec: InputSpec, array: np.ndarray) -> None:
    """An array given for input ``spec`` has its dtype and every dimension it fixes."""
    if array.dtype != spec.dtype:
        raise InputSpecError(f"{where}: '{spec.name}' is {array.dtype}, the model wants {spec.dtype}")
    declared = spec.declared
    if declared and (
        len(declared) != array.ndim
        or any(isinstance(d, int) and d > 0 and d != a for d, a in zip(declared, array.shape))
    ):
        raise InputSpecError(
            f"{where}: '{spec.name}' has shape {list(array.shape)}, the model declares {format_dims(declared)}"
        )


def max_feed_bytes() -> int:
    """The most input data hwopt allocates for one set of feeds: HWOPT_MAX_FEED_MB, else 4 GiB.
    A declared shape of 2^40 elements is refused before numpy tries to allocate it."""
    limit = env_megabytes(FEED_LIMIT_ENV, InputSpecError)
    return DEFAULT_MAX_FEED_BYTES if limit is None else limit


def check_feed_bytes(nbytes: int, what: str) -> None:
    """Refuse ``nbytes`` of input data over the limit, before anything is allocated."""
    limit = max_feed_bytes()
    if nbytes > limit:
        raise InputSpecError(
            f"{what}: {nbytes / (1 << 20):,.0f} MiB of input data is over the {limit / (1 << 20):,.0f} MiB "
            f"limit (set {FEED_LIMIT_ENV}, or give smaller shapes with --input-shape)"
        )


def array_file_bytes(path: Path) -> int:
    """The bytes the arrays of a .npy or .npz file take once loaded, from their headers (an
    archive's member sizes, a .npy header's shape), without reading the data."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        if magic.startswith(b"PK"):
            with zipfile.ZipFile(handle) as archive:
                return sum(info.file_size for info in archive.infolist())
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        return math.prod(shape) * dtype.itemsize


def generate_feeds(specs: Sequence[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic feeds, each input drawn as its FeedKind says (floats N(0, 1), ids over
    their table, masks ones, ...)."""
    check_feed_bytes(sum(spec.nbytes for spec in specs), "generated inputs " + ", ".join(
        f"{spec.name} {'x'.join(map(str, spec.shape)) or 'scalar'}" for spec in specs))
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        dtype = spec.dtype
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
            raise InputSpecError(
                f"input '{spec.name}' has type {dtype}, for which hwopt cannot generate data; "
                "pass --inputs FILE.npz"
            )
        feeds[spec.name] = spec.feed.draw(rng, spec.shape, dtype)
    return feeds


def load_feeds(path: str | Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Feeds from an ``.npz`` (one array per input name) or ``.npy`` (a single-input model)."""
    path = Path(path)
    by_name = {spec.name: spec for spec in specs}
    try:
        check_feed_bytes(array_file_bytes(path), str(path))
        if path.suffix == ".npy":
            if len(specs) != 1:
                raise InputSpecError(f"{path}: a .npy file feeds one input, the model has {len(specs)}")
            arrays = {specs[0].name: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputSpecError(f"{path}: cannot read input arrays: {exc}") from exc
    missing = sorted(set(by_name) - set(arrays))
    extra = sorted(set(arrays) - set(by_name))
    if missing or extra:
        raise InputSpecError(
            f"{path}: arrays {sorted(arrays)} do not match the model's inputs {sorted(by_name)}"
        )
    feeds = {}
    for name, array in arrays.items():
        check_array(path, by_name[name], array)
        feeds[name] = array
    return feeds


def specs_from_feeds(specs: Sequence[InputSpec], feeds: Mapping[str, np.ndarray]) -> list[InputSpec]:
    """The specs with shapes taken from user-given feeds (nothing defaulted any more)."""
    return [
        dataclasses.replace(spec, shape=tuple(feeds[spec.name].shape), defaulted=())
        for spec in specs
    ]


def second_batch(specs: Sequence[InputSpec], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The feeds at batch 2, for inputs whose leading dimension is symbolic; None if none is.

    A pass that bakes the batch size into the graph (a Reshape to a constant that happens to
    match batch 1) computes the right thing on the feeds it was checked with; a second check at
    another batch size catches it. The second item is the first rolled by one along the last
    axis (floats) or repeated (integers and booleans, which may be ids or flags).
    """
    batched = [s for s in specs if s.declared and not (isinstance(s.declared[0], int) and s.declared[0] > 0)]
    if not batched or any(feeds[s.name].ndim == 0 or feeds[s.name].shape[0] != 1 for s in batched):
        return None
    out = dict(feeds)
    for spec in batched:
        first = feeds[spec.name]
        second = np.roll(first, 1, axis=-1) if np.issubdtype(first.dtype, np.floating) else first
        out[spec.name] = np.concatenate([first, second], axis=0)
    return out


def save_npz(path: Path, feeds: Mapping[str, np.ndarray]) -> Path:
    """Feeds to an .npz, one array per input name. (``np.savez(path, **feeds)`` breaks on an
    input named ``file`` or ``allow_pickle``.)"""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, array in feeds.items():
            with archive.open(f"{name}.npy", "w") as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)
    return Path(path)
