"""Liveness of activation tensors: which buffers exist at each step of an execution order.

The model is reduced to a :class:`MemoryGraph`: nodes (in file order) with their data
dependencies, and activation *buffers* with sizes from shape inference at concrete input
shapes. Two facts of ONNX Runtime's CPU provider shape the reduction:

* Reshape, Flatten, Squeeze, Unsqueeze and Identity declare their output an alias of their
  input (``Alias(0, 0)`` in their kernel registrations): no new buffer, and the input's buffer
  lives until the last consumer of any of its aliases.
* Graph inputs, graph outputs and initializers are not planned into the activation arena
  (the caller owns inputs and outputs; weights are allocated once), so they are accounted
  separately. A buffer that ends up as (an alias of) a graph output is an output. Constant
  nodes are weights too: onnxruntime turns them into initializers when it loads the model.

An If/Loop/Scan node reads every outer-scope value its bodies use; its bodies' own tensors
are planned by onnxruntime per execution and are not part of the main arena.

A tensor whose size shape inference cannot resolve is listed as unknown and left out of
every total: the report says so rather than guessing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import onnx

from hwopt.memory.buffers import Buffer
from hwopt.model.shapes import TensorInfo

# ONNX Runtime CPU kernels whose output shares its input's buffer.
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


@dataclasses.dataclass
class MemoryGraph:
    """A model reduced to what scheduling and memory planning need."""

    labels: list[str]  # node names, in the model's order (node id = index)
    preds: list[frozenset[int]]  # the nodes each node waits for
    allocs: list[tuple[str, ...]]  # activation buffers each node allocates
    reads: list[tuple[str, ...]]  # activation buffers each node reads (aliases resolved)
    sizes: dict[str, int]  # bytes of each activation buffer of known size
    unknown: list[str]  # activation tensors of unknown size (left out of all totals)
    input_bytes: int
    output_bytes: int
    weight_bytes: int
    aliases: dict[str, str]  # tensor -> the buffer it lives in, for aliased tensors

    def __len__(self) -> int:
        return len(self.labels)

    def consumers(self) -> dict[str, frozenset[int]]:
        users: dict[str, set[int]] = {name: set() for name in self.sizes}
        for node, reads in enumerate(self.reads):
            for name in reads:
                if name in users:
                    users[name].add(node)
        return {name: frozenset(nodes) for name, nodes in users.items()}

    def file_order(self) -> list[int]:
        return list(range(len(self.labels)))

    def is_topological(self, order: Sequence[int]) -> bool:
        position = {node: i for i, node in enumerate(order)}
        if sorted(position) != list(range(len(self.labels))):
            return False
        return all(position[p] < position[n] for n in range(len(self.labels)) for p in self.preds[n])


def build_memory_graph(model: onnx.ModelProto, tensors: Mapping[str, TensorInfo]) -> MemoryGraph:
    """Reduce the main graph of ``model``; ``tensors`` are its tensor facts at concrete shapes."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer} | {
        node.output[0] for node in graph.node if node.op_type == "Constant" and node.domain in ("", "ai.onnx")
    }
    inputs = {vi.name for vi in graph.input if vi.name not in initializers}
    outputs = {vi.name for vi in graph.output}
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output if name}

    root: dict[str, str] = {}
    for node in graph.node:
        for name in node.output:
            if not name:
                continue
            source = node.input[0] if node.input else ""
            aliased = node.op_type in ALIAS_OPS and node.domain in ("", "ai.onnx") and source
            root[name] = root.get(source, source) if aliased else name

    # A buffer is an output if any of its aliases is a graph output; an input or weight view
    # if it aliases one of those.
    output_roots = {root.get(name, name) for name in outputs}
    external = inputs | initializers | output_roots

    def size_of(name: str) -> int | None:
        info = tensors.get(name)
        return info.nbytes if info is not None else None

    sizes: dict[str, int] = {}
    unknown: list[str] = []
    allocs: list[tuple[str, ...]] = []
    reads: list[tuple[str, ...]] = []
    preds: list[frozenset[int]] = []
    for i, node in enumerate(graph.node):
        used = [name for name in (*node.input, *_outer_scope_reads(node)) if name]
        preds.append(frozenset(producer[name] for name in used if name in producer and producer[name] != i))
        reads.append(tuple(dict.fromkeys(root.get(n, n) for n in used if root.get(n, n) not in external)))
        own = []
        for name in node.output:
            if not name or root[name] != name or name in external:
                continue
            size = size_of(name)
            if size is None:
                unknown.append(name)
                continue
            sizes[name] = size
            own.append(name)
        allocs.append(tuple(own))
    # Reads of buffers of unknown size are dropped too: they are not in any total.
    reads = [tuple(name for name in r if name in sizes) for r in reads]
    return MemoryGraph(
        labels=[node.name or (node.output[0] if node.output else node.op_type) for node in graph.node],
        preds=preds,
        allocs=allocs,
        reads=reads,
        sizes=sizes,
        unknown=unknown,
        input_bytes=sum(size_of(name) or 0 for name in inputs),
        output_bytes=sum(size_of(name) or 0 for name in outputs if root.get(name, name) == name),
        weight_bytes=sum(size_of(name) or 0 for name in initializers),
        aliases={name: r for name, r in root.items() if r != name},
    )


def _outer_scope_reads(node: onnx.NodeProto) -> list[str]:
    """Names an If/Loop/Scan body reads from enclosing scopes (its implicit inputs)."""
    names: list[str] = []
    for attr in node.attribute:
        graphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
        for body in graphs:
            names += _free_names(body)
    return names


def _free_names(graph: onnx.GraphProto) -> list[str]:
    defined = {vi.name for vi in graph.input} | {init.name for init in graph.initializer}
    free: list[str] = []
    for node in graph.node:
        for name in (*node.input, *_outer_scope_reads(node)):
            if name and name not in defined:
                free.append(name)
        defined.update(node.output)
    return free


def lifetimes(graph: MemoryGraph, order: Sequence[int]) -> list[Buffer]:
    """Every activation buffer's life, as steps of ``order`` (a topological order of nodes)."""
    step = {node: i for i, node in enumerate(order)}
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    for node in order:
        for name in graph.allocs[node]:
            start[name] = end[name] = step[node]
    for node in order:
        for name in graph.reads[node]:
            end[name] = max(end[name], step[node])
    return [Buffer(name, graph.sizes[name], start[name], end[name]) for name in start]


def live_bytes_per_step(graph: MemoryGraph, order: Sequence[int]) -> list[int]:
    """Bytes of activation buffers alive at each step of ``order``."""
    totals = [0] * (len(order) + 1)
    for buf in lifetimes(graph, order):
        totals[buf.start] += buf.size
        totals[buf.end + 1] -= buf.size
    running, out = 0, []
    for delta in totals[:-1]:
        running += delta
        out.append(running)
    return out


def peak_live_bytes(graph: MemoryGraph, order: Iterable[int] | None = None) -> int:
    """The largest total of simultaneously live activation bytes for ``order`` (default: the
    model's own order): the least any buffer plan for that order can use."""
    order = list(order) if order is not None else graph.file_order()
    return max(live_bytes_per_step(graph, order), default=0)
