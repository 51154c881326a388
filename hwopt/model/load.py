"""Reading an ONNX file safely.

ONNX files are untrusted input (onnx's own SECURITY.md says so). The loader therefore:

* never follows external-data locations blindly: the protobuf is parsed with external data
  *off*, every external location is checked here (relative, resolved inside the model's folder,
  a regular file that is neither a symlink nor hard-linked, ``offset + length`` inside the file,
  ``length`` equal to the declared element count times the element size) and only then read;
* bounds what a file can make hwopt allocate: file size, elements of any one tensor, and the
  total bytes all tensors declare, each configurable through :class:`LoadLimits`;
* validates the graph with ``onnx.checker`` before any pass or session sees it.

Every failure is a :class:`~hwopt.errors.ModelLoadError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from hwopt.errors import ModelLoadError, one_line
from hwopt.guard import phase

GiB = 1 << 30

# Element sizes of the tensor types a weight can have; strings have no fixed size.
_ELEMENT_BITS = {
    onnx.TensorProto.FLOAT: 32,
    onnx.TensorProto.UINT8: 8,
    onnx.TensorProto.INT8: 8,
    onnx.TensorProto.UINT16: 16,
    onnx.TensorProto.INT16: 16,
    onnx.TensorProto.INT32: 32,
    onnx.TensorProto.INT64: 64,
    onnx.TensorProto.BOOL: 8,
    onnx.TensorProto.FLOAT16: 16,
    onnx.TensorProto.DOUBLE: 64,
    onnx.TensorProto.UINT32: 32,
    onnx.TensorProto.UINT64: 64,
    onnx.TensorProto.COMPLEX64: 64,
    onnx.TensorProto.COMPLEX128: 128,
    onnx.TensorProto.BFLOAT16: 16,
    onnx.TensorProto.FLOAT8E4M3FN: 8,
    onnx.TensorProto.FLOAT8E4M3FNUZ: 8,
    onnx.TensorProto.FLOAT8E5M2: 8,
    onnx.TensorProto.FLOAT8E5M2FNUZ: 8,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.INT4: 4,
}


@dataclasses.dataclass(frozen=True)
class LoadLimits:
    """Upper bounds on what a model file may make hwopt read or allocate."""

    max_file_bytes: int = 2 * GiB
    max_external_bytes: int = 32 * GiB
    max_tensor_elements: int = 1 << 32
    max_total_tensor_bytes: int = 32 * GiB


@dataclasses.dataclass
class LoadedModel:
    """A model read from disk, with the facts about the file the report needs."""

    path: Path
    proto: onnx.ModelProto
    file_bytes: int
    sha256: str
    external_files: tuple[str, ...] = ()

    @property
    def external_bytes(self) -> int:
        return sum((self.path.parent / name).stat().st_size for name in self.external_files)


def load_model(path: str | os.PathLike[str], limits: LoadLimits | None = None) -> LoadedModel:
    """Read, bound-check and validate the ONNX model at ``path``."""
    limits = limits or LoadLimits()
    path = Path(path)
    data = _read_model_file(path, limits)
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: not an ONNX model (protobuf parse failed: {exc})") from exc
    _check_is_model(path, proto)
    external = check_tensor_sizes_and_locations(proto, path.parent, limits)
    # Validate while the weights are still outside: the checker then sees a small proto. With
    # external data the checker must be given the path, to resolve locations from its folder.
    check_model_structure(proto if not external else path, path)
    if external:
        try:
            external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: external data unreadable: {exc}") from exc
    return LoadedModel(
        path=path,
        proto=proto,
        file_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        external_files=tuple(sorted(external)),
    )


def _read_model_file(path: Path, limits: LoadLimits) -> bytes:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: empty file")
    if size > limits.max_file_bytes:
        raise ModelLoadError(
            f"{path}: {size} bytes is over the {limits.max_file_bytes}-byte limit "
            "(models over 2 GiB keep their weights in external data)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from exc


def _maps_to_numpy(elem_type: int) -> bool:
    try:
        onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError):
        return False
    return True


def _check_is_model(path: Path, proto: onnx.ModelProto) -> None:
    """Protobuf parses many byte strings into an (empty) message; insist on a real model."""
    if not proto.HasField("graph"):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph)")
    bad = _first_non_utf8(proto)
    if bad is not None:
        raise ModelLoadError(f"{path}: invalid model: a {bad} is not valid UTF-8 ({_BAD_TEXT_NOTE})")
    if proto.ir_version <= 0:
        raise ModelLoadError(f"{path}: not an ONNX model (no IR version)")
    if not proto.opset_import:
        raise ModelLoadError(f"{path}: not an ONNX model (no opset imports)")
    if not proto.graph.output:
        raise ModelLoadError(f"{path}: graph has no outputs")
    for value in proto.graph.input:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type not in _ELEM_TYPES:
            raise ModelLoadError(f"{path}: invalid model: input '{value.name}' has element type "
                                 f"{value.type.tensor_type.elem_type}, which ONNX does not define")


# Every element type this onnx knows how to map to numpy.
_ELEM_TYPES = frozenset(v for v in onnx.TensorProto.DataType.values() if v != onnx.TensorProto.UNDEFINED
                        and _maps_to_numpy(v))
_BAD_TEXT_NOTE = "ONNX strings must be UTF-8; onnx and onnx-ir cannot write this model back"


def _first_non_utf8(message) -> str | None:
    """The first string field holding bytes that are not UTF-8 ("node.name", say), or None.

    Python's protobuf hands such a field back as ``bytes``. Only message fields are walked
    into, so numeric and raw-data payloads are never iterated.
    """
    for field, value in message.ListFields():
        repeated = _is_repeated(field)
        if field.type == field.TYPE_STRING:
            values = value if repeated else [value]
            if any(isinstance(v, bytes) for v in values):
                return f"{message.DESCRIPTOR.name}.{field.name}"
        elif field.type == field.TYPE_MESSAGE:
            for item in value if repeated else [value]:
                found = _first_non_utf8(item)
                if found is not None:
                    return found
    return None


def _is_repeated(field) -> bool:
    # protobuf 6 has is_repeated; older releases only the label.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def iter_all_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto a model holds: initializers and tensor attributes, subgraphs included."""
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        for sparse in _attribute_sparse(attr):
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from _graph_tensors(graph)


def iter_sparse_tensors(proto: onnx.ModelProto) -> Iterator[onnx.SparseTensorProto]:
    """Every sparse tensor (whose dense shape a Constant or a runtime may materialize)."""

    def in_graph(graph: onnx.GraphProto) -> Iterator[onnx.SparseTensorProto]:
        yield from graph.sparse_initializer
        for node in graph.node:
            yield from in_node(node)

    def in_node(node: onnx.NodeProto) -> Iterator[onnx.SparseTensorProto]:
        for attr in node.attribute:
            yield from _attribute_sparse(attr)
            if attr.HasField("g"):
                yield from in_graph(attr.g)
            for graph in attr.graphs:
                yield from in_graph(graph)

    yield from in_graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from in_node(node)


def _attribute_sparse(attr: onnx.AttributeProto) -> Iterator[onnx.SparseTensorProto]:
    if attr.HasField("sparse_tensor"):
        yield attr.sparse_tensor
    yield from attr.sparse_tensors


def tensor_nbytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes the tensor's declared dims need, or None for strings and unknown types."""
    bits = _ELEMENT_BITS.get(tensor.data_type)
    if bits is None:
        return None
    return (math.prod(tensor.dims) * bits + 7) // 8


def check_tensor_sizes_and_locations(
    proto: onnx.ModelProto, base_dir: Path, limits: LoadLimits
) -> set[str]:
    """Bound every tensor's declared size and vet its external location; return the files used."""
    total = 0
    external_files: set[str] = set()
    base = base_dir.resolve()
    for tensor in iter_all_tensors(proto):
        _check_dims(f"tensor '{tensor.name}'", tensor.dims, limits)
        nbytes = tensor_nbytes(tensor)
        total += nbytes or 0
        if total > limits.max_total_tensor_bytes:
            raise ModelLoadError(
                f"tensors declare over {limits.max_total_tensor_bytes} bytes in total"
            )
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            external_files.add(_check_external_location(tensor, base, nbytes, limits))
        elif tensor.HasField("raw_data") and nbytes is not None and len(tensor.raw_data) != nbytes:
            raise ModelLoadError(
                f"tensor '{tensor.name}' has {len(tensor.raw_data)} bytes of data but its dims "
                f"{list(tensor.dims)} need {nbytes}"
            )
    for sparse in iter_sparse_tensors(proto):
        _check_dims(f"sparse tensor '{sparse.values.name}' (dense shape)", sparse.dims, limits)
    return external_files


def _check_dims(what: str, dims: Sequence[int], limits: LoadLimits) -> None:
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{what} has a negative dimension {list(dims)}")
    elements = math.prod(dims)
    if elements > limits.max_tensor_elements:
        raise ModelLoadError(f"{what} declares {elements} elements, over the limit of {limits.max_tensor_elements}")


def _check_external_location(
    tensor: onnx.TensorProto, base: Path, nbytes: int | None, limits: LoadLimits
) -> str:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    name = tensor.name
    if not location:
        raise ModelLoadError(f"tensor '{name}': external data without a location")
    if "\0" in location:
        raise ModelLoadError(f"tensor '{name}': external data path {location!r} contains a NUL byte")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location:
        raise ModelLoadError(f"tensor '{name}': external data path '{location}' is absolute")
    candidate = base / location
    resolved = candidate.resolve()
    if resolved != base and base not in resolved.parents:
        raise ModelLoadError(
            f"tensor '{name}': external data path '{location}' escapes the model's folder"
        )
    # Check every component for symlinks: a link inside the folder can still point out of it.
    probe = base
    for part in Path(location).parts:
        probe = probe / part
        if probe.is_symlink():
            raise ModelLoadError(f"tensor '{name}': external data path '{location}' is a symlink")
    try:
        st = os.lstat(candidate)
    except OSError:
        raise ModelLoadError(f"tensor '{name}': external data file '{location}' is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelLoadError(f"tensor '{name}': external data '{location}' is not a regular file")
    if st.st_nlink > 1:
        raise ModelLoadError(f"tensor '{name}': external data file '{location}' is hard-linked")
    if st.st_size > limits.max_external_bytes:
        raise ModelLoadError(f"tensor '{name}': external data file '{location}' is over the limit")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else st.st_size - offset
    except ValueError:
        raise ModelLoadError(f"tensor '{name}': external data offset/length are not integers") from None
    if offset < 0 or length < 0 or offset + length > st.st_size:
        raise ModelLoadError(
            f"tensor '{name}': external data range {offset}+{length} is outside '{location}' "
            f"({st.st_size} bytes)"
        )
    if nbytes is not None and length != nbytes:
        raise ModelLoadError(
            f"tensor '{name}': external data length {length} differs from the {nbytes} bytes "
            f"its dims {list(tensor.dims)} need"
        )
    return str(Path(location))


def check_model_structure(model: onnx.ModelProto | Path, path: Path | None = None) -> None:
    """Run onnx's checker (without the full shape-inference check, which passes run later)."""
    where = f"{path}: " if path else ""
    try:
        with phase("onnx checker", "shape_inference"):
            onnx.checker.check_model(model if isinstance(model, onnx.ModelProto) else str(model))
    except onnx.checker.ValidationError as exc:
        raise ModelLoadError(f"{where}invalid model: {one_line(exc)}") from exc
    except ValueError as exc:  # e.g. models over 2 GiB with inline data
        raise ModelLoadError(f"{where}invalid model: {one_line(exc)}") from exc

