"""The report of ``hwopt tune``: every candidate with what the search measured, the Pareto
fronts and their plot; JSON (``hwopt.tune/1``), tables and Markdown."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwopt.hostinfo import host_info
from hwopt.quant.accuracy import AccuracyResult
from hwopt.report.render import Document, Table, fmt_bytes, fmt_ms, fmt_ratio
from hwopt.timing import LatencyStats

SCHEMA = "hwopt.tune/1"


@dataclasses.dataclass
class Candidate:
    """One (recipe, session variant) pair and what the search learned about it."""

    recipe: str
    variant: str
    status: str = "pending"  # pending | measured | stopped | rejected | failed
    reason: str = ""
    rung: int = -1  # the last race it ran in: 0 first race, higher = longer races
    ratio: float | None = None  # p50 / the anchor's p50 in its last race
    stats: LatencyStats | None = None  # its last race
    final: bool = False  # its numbers come from the final race
    accuracy: AccuracyResult | None = None
    memory_bytes: int | None = None
    size_bytes: int | None = None
    found_at_s: float | None = None  # seconds into the search when it was first timed
    session_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    providers: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.recipe}/{self.variant}"

    @property
    def usable(self) -> bool:
        return self.status in ("measured", "stopped") and self.ratio is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "recipe": self.recipe, "variant": self.variant, "status": self.status,
            "reason": self.reason, "rung": self.rung, "ratio": self.ratio, "final": self.final,
            "latency": self.stats.to_dict() if self.stats else None,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "memory_bytes": self.memory_bytes, "size_bytes": self.size_bytes, "found_at_s": self.found_at_s,
            "session_options": self.session_options,
            "providers": [{"name": n, "options": o} for n, o in self.providers],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back what an earlier, interrupted run measured (``--resume``)."""
        self.status, self.reason, self.rung = data["status"], data["reason"], data["rung"]
        self.ratio, self.found_at_s = data["ratio"], data["found_at_s"]
        self.memory_bytes, self.size_bytes = data["memory_bytes"], data["size_bytes"]
        if data.get("latency"):
            self.stats = LatencyStats.from_dict(data["latency"])
        if data.get("accuracy"):
            self.accuracy = AccuracyResult(**data["accuracy"])


@dataclasses.dataclass
class TuneReport:
    model: str
    target: str
    output_dir: str
    budget_seconds: float
    elapsed_seconds: float
    interrupted: str
    feeds_source: str
    accuracy_budget: str
    candidates: list[Candidate]
    recipes: dict[str, str]
    variants: dict[str, str]
    recipe_notes: dict[str, str]
    best: Candidate | None
    baselines: dict[str, Candidate | None]
    time_to_near_best: float | None
    pareto_accuracy: list[str]
    pareto_memory: list[str]
    timeline: list[tuple[float, str, float]]
    anchor: str  # the candidate every ratio is taken against
    versions: dict[str, str]
    plot: str | None = None
    plot_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "target": self.target,
            "output_dir": self.output_dir,
            "budget_seconds": self.budget_seconds,
            "elapsed_seconds": round(self.elapsed_seconds, 2),
            "interrupted": self.interrupted or None,
            "feeds_source": self.feeds_source,
            "accuracy_budget": self.accuracy_budget,
            "anchor": self.anchor,
            "best": self.best.id if self.best else None,
            "baselines": {k: (c.id if c else None) for k, c in self.baselines.items()},
            "time_to_95pct_of_best_s": self.time_to_near_best,
            "pareto": {"latency_accuracy": self.pareto_accuracy, "latency_memory": self.pareto_memory},
            "plot": self.plot,
            "plot_note": self.plot_note or None,
            "recipes": self.recipes,
            "variants": self.variants,
            "recipe_notes": self.recipe_notes,
            "timeline": [{"seconds": s, "best": b, "ratio": r} for s, b, r in self.timeline],
            "candidates": [c.to_dict() for c in self.candidates],
            "host": host_info().to_dict(),
            "versions": dict(self.versions),
        }

    def document(self) -> Document:
        doc = Document(heading=f"hwopt tune {self.model} --target {self.target}")
        if self.best is not None:
            doc.facts.append(("best", f"{self.best.id}: {fmt_ratio(self.best.ratio)} the p50 of {self.anchor} "
                                      f"({fmt_ms(self.best.stats.p50_ms)} ms), written to {self.output_dir}"))
        for label, c in self.baselines.items():
            if c is not None and c.ratio is not None:
                doc.facts.append((label, f"{c.id}: {fmt_ratio(c.ratio)} ({fmt_ms(c.stats.p50_ms)} ms)"))
        if self.time_to_near_best is not None:
            doc.facts.append(("found", f"a candidate within 95% of the best after {self.time_to_near_best:.0f} s "
                                       f"of {self.elapsed_seconds:.0f} s (budget {self.budget_seconds:.0f} s)"))
        doc.facts.append(("accuracy budget", self.accuracy_budget))
        doc.facts.append(("feeds", self.feeds_source))
        doc.tables.append(self._candidates_table())
        doc.tables.append(self._pareto_table())
        doc.warnings = [f"search {self.interrupted}: the best build measured so far was written"] if self.interrupted \
            else []
        doc.warnings += [f"recipe {name}: {note}" for name, note in self.recipe_notes.items()]
        return doc

    def _candidates_table(self) -> Table:
        order = {"measured": 0, "stopped": 1, "rejected": 2, "failed": 3, "not run": 4}
        rows = []
        for c in sorted(self.candidates, key=lambda c: (order.get(c.status, 5), not c.final,
                                                         c.ratio if c.ratio is not None else 1e9)):
            s = c.stats
            acc = c.accuracy
            rows.append((
                ("* " if self.best is not None and c.id == self.best.id else "") + c.id,
                c.status + (" (final)" if c.final else ""),
                fmt_ratio(c.ratio) if c.ratio is not None else "-",
                fmt_ms(s.p50_ms) if s else "-",
                fmt_ms(s.p90_ms) if s else "-",
                fmt_bytes(c.memory_bytes) if c.memory_bytes is not None else "-",
                fmt_bytes(c.size_bytes) if c.size_bytes is not None else "-",
                f"{acc.cosine:.5f}" if acc else "-",
                f"{acc.max_abs:.2g}" if acc else "-",
                c.reason,
            ))
        return Table(
            title="Candidates",
            columns=("candidate", "status", "ratio", "p50 ms", "p90 ms", "peak RSS", "size", "cosine", "max abs",
                     "note"),
            numeric=("ratio", "p50 ms", "p90 ms", "peak RSS", "size", "cosine", "max abs"),
            rows=rows,
            notes=[
                f"ratio = p50 / p50 of {self.anchor} in the same race (below 1.00x is faster); every race includes "
                "it, so ratios from different races compare; p50/p90 of the candidate's last race",
                "final = timed together in the longest, last race; stopped = dropped by successive halving",
                "cosine and max abs: outputs against the original model's on the check feeds (top-1 "
                "agreement is judged by the INT8 search on held-out samples); peak RSS: what the session "
                "and 3 runs added to a fresh process",
            ],
        )

    def _pareto_table(self) -> Table:
        rows = [("latency vs accuracy", ", ".join(self.pareto_accuracy) or "-"),
                ("latency vs memory", ", ".join(self.pareto_memory) or "-")]
        notes = [f"candidates no other beats on both axes; plot: {self.plot}" if self.plot else self.plot_note]
        return Table(title="Pareto fronts", columns=("front", "candidates"), rows=rows, notes=[n for n in notes if n])


def plot_pareto(report: TuneReport) -> bytes | None:
    """The two fronts as a PNG, or None when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.plot_note = "no plot: install hwopt[plot] (matplotlib) for pareto.png"
        return None
    usable = [c for c in report.candidates if c.usable]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [
        (axes[0], "1 - cosine (lower is more accurate)", report.pareto_accuracy,
         lambda c: max(1 - c.accuracy.cosine, 1e-9) if c.accuracy else None, True),
        (axes[1], "session peak RSS (MiB)", report.pareto_memory,
         lambda c: c.memory_bytes / 2**20 if c.memory_bytes is not None else None, False),
    ]
    for ax, ylabel, front, value, log in panels:
        points = [(c, value(c)) for c in usable if value(c) is not None]
        ax.scatter([c.ratio for c, _ in points], [v for _, v in points], color="0.6", s=18, label="candidates")
        on_front = sorted(((c, v) for c, v in points if c.id in front), key=lambda p: p[0].ratio)
        ax.plot([c.ratio for c, _ in on_front], [v for _, v in on_front], "o-", color="tab:blue", label="Pareto front")
        for c, v in on_front:
            ax.annotate(c.id, (c.ratio, v), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if report.best is not None and value(report.best) is not None:
            ax.scatter([report.best.ratio], [value(report.best)], marker="*", s=160, color="tab:red", label="best")
        if log and points:
            ax.set_yscale("log")
        ax.set_xlabel(f"latency: p50 / p50 of {report.anchor}")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"hwopt tune {Path(report.model).name} --target {report.target}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
