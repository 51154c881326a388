"""The report of ``hwopt inspect``: what a model is, what it costs and how well it fits the
hardware, as one structure printed as tables or JSON (``hwopt.inspect/1``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hwopt.feeds.inputs import InputSpec
from hwopt.model.stats import ModelStats
from hwopt.report.render import Document, Table, fmt_bytes, fmt_count

SCHEMA = "hwopt.inspect/1"


@dataclasses.dataclass(frozen=True)
class Note:
    """One hardware-fit finding: a kind, a sentence, and the nodes it concerns."""

    kind: str
    message: str
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "nodes": list(self.nodes)}


@dataclasses.dataclass
class NodeCost:
    name: str
    op_type: str
    macs: int | None


@dataclasses.dataclass
class InspectReport:
    path: str
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[InputSpec]
    outputs: list[dict[str, Any]]
    stats: ModelStats
    histogram: dict[str, int]
    costs: list[NodeCost]
    notes: list[Note]
    shape_method: str

    @property
    def total_macs(self) -> int:
        return sum(c.macs or 0 for c in self.costs)

    @property
    def unknown_cost_nodes(self) -> list[str]:
        return [c.name for c in self.costs if c.macs is None]

    def macs_by_op(self) -> dict[str, int | None]:
        """MACs per operator type; None where any node of that type has unknown shapes."""
        totals: dict[str, int | None] = {}
        for cost in self.costs:
            known = totals.get(cost.op_type, 0)
            totals[cost.op_type] = None if known is None or cost.macs is None else known + cost.macs
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "path": self.path,
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "producer": self.producer,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": self.outputs,
            "nodes": self.stats.nodes,
            "parameters": self.stats.parameters,
            "weight_bytes": self.stats.weight_bytes,
            "file_bytes": self.stats.serialized_bytes,
            "op_histogram": self.histogram,
            "macs": self.total_macs,
            "flops": 2 * self.total_macs,
            "macs_by_op": self.macs_by_op(),
            "nodes_with_unknown_cost": self.unknown_cost_nodes,
            "shape_inference": self.shape_method,
            "node_costs": [dataclasses.asdict(c) for c in self.costs],
            "notes": [n.to_dict() for n in self.notes],
        }

    def document(self) -> Document:
        doc = Document(heading=f"hwopt inspect {self.path}")
        doc.facts += [
            ("IR version", str(self.ir_version)),
            ("opsets", ", ".join(f"{d} {v}" for d, v in self.opsets.items())),
            ("producer", self.producer or "-"),
            ("nodes", str(self.stats.nodes)),
            ("parameters", f"{fmt_count(self.stats.parameters)} ({fmt_bytes(self.stats.weight_bytes)})"),
            ("file size", fmt_bytes(self.stats.serialized_bytes)),
            ("shapes", self.shape_method),
            ("compute", f"{fmt_count(self.total_macs)} MACs = {fmt_count(2 * self.total_macs)} FLOPs "
             f"at {', '.join(self._shape_text(s) for s in self.inputs)}"),
        ]
        doc.tables.append(Table(
            title="Inputs and outputs",
            columns=("", "name", "dtype", "declared shape", "shape used"),
            rows=[("input", s.name, str(s.dtype), _dims(s.declared), "x".join(map(str, s.shape)))
                  for s in self.inputs]
            + [("output", o["name"], o["dtype"], _dims(o["declared_shape"]), "-") for o in self.outputs],
        ))
        by_op = self.macs_by_op()
        doc.tables.append(Table(
            title="Operators",
            columns=("op", "count", "MACs", "share"),
            numeric=("count", "MACs", "share"),
            rows=[(op, str(n), _macs_cell(by_op, op), _share_cell(by_op, op, self.total_macs))
                  for op, n in sorted(self.histogram.items(), key=lambda kv: (-kv[1], kv[0]))],
        ))
        heaviest = sorted((c for c in self.costs if c.macs), key=lambda c: -c.macs)[:10]
        if heaviest:
            doc.tables.append(Table(
                title="Heaviest nodes",
                columns=("node", "op", "MACs", "share"),
                numeric=("MACs", "share"),
                rows=[(c.name, c.op_type, fmt_count(c.macs), f"{c.macs / self.total_macs:.1%}")
                      for c in heaviest],
            ))
        doc.tables.append(Table(
            title="Hardware fit",
            columns=("finding", "detail"),
            rows=[(n.kind, n.message) for n in self.notes] or [("-", "nothing to note")],
        ))
        if self.unknown_cost_nodes:
            doc.warnings.append(
                f"{len(self.unknown_cost_nodes)} compute node(s) have shapes shape inference could "
                "not resolve; their MACs are not counted: " + ", ".join(self.unknown_cost_nodes[:5])
            )
        return doc

    @staticmethod
    def _shape_text(spec: InputSpec) -> str:
        return f"{spec.name}={'x'.join(map(str, spec.shape))}"


def _macs_cell(by_op: dict[str, int | None], op: str) -> str:
    if op not in by_op:
        return "-"
    return "unknown" if by_op[op] is None else fmt_count(by_op[op])


def _share_cell(by_op: dict[str, int | None], op: str, total: int) -> str:
    value = by_op.get(op)
    return f"{value / total:.1%}" if value is not None and total else "-"


def _dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
