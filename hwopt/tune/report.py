"""The result of ``hwopt tune``: every candidate, the Pareto fronts, the plot, and the best
build written to the output folder in the format ``hwopt optimize`` writes."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwopt.hostinfo import host_info
from hwopt.output import MANIFEST, REPORT_JSON, write_bytes_atomic, write_json_atomic, write_text_atomic
from hwopt.report.render import Document, Table, fmt_bytes, fmt_ms, fmt_ratio, render_markdown
from hwopt.stages.files import versions
from hwopt.tune.search import ANCHOR, CACHE_DIR, RESULTS_FILE, Candidate, Tuner
from hwopt.tune.space import HWOPT, TARGET_DEFAULTS

SCHEMA = "hwopt.tune/1"
TUNE_JSON = "tune.json"
PLOT = "pareto.png"
# "Reached 95% of the final best": a candidate within this factor of the best ratio.
NEAR_BEST = 1 / 0.95


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
            "anchor": ANCHOR,
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
            "versions": versions(),
        }

    def document(self) -> Document:
        doc = Document(heading=f"hwopt tune {self.model} --target {self.target}")
        if self.best is not None:
            doc.facts.append(("best", f"{self.best.id}: {fmt_ratio(self.best.ratio)} the p50 of {ANCHOR} "
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
                f"ratio = p50 / p50 of {ANCHOR} in the same race (below 1.00x is faster); every race includes "
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


def pareto(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """The ids no other point beats on both coordinates (lower is better on both)."""
    front = []
    for pid, x, y in points:
        dominated = any((ox <= x and oy <= y) and (ox < x or oy < y) for oid, ox, oy in points if oid != pid)
        if not dominated:
            front.append(pid)
    return sorted(front, key=lambda i: next(x for p, x, _ in points if p == i))


def build_report(tuner: Tuner) -> TuneReport:
    usable = [c for c in tuner.candidates.values() if c.usable]
    best = tuner.best()
    accuracy_points = [(c.id, c.ratio, 1 - c.accuracy.cosine) for c in usable if c.accuracy is not None]
    memory_points = [(c.id, c.ratio, float(c.memory_bytes)) for c in usable if c.memory_bytes is not None]
    near = None
    if best is not None:
        found = [c.found_at_s for c in usable if c.ratio <= best.ratio * NEAR_BEST and c.found_at_s is not None]
        near = min(found, default=None)
    optimize_default = tuner.candidates.get(f"{'hwopt-int8' if 'hwopt-int8' in tuner.built else HWOPT}/"
                                            f"{TARGET_DEFAULTS}")
    return TuneReport(
        model=str(tuner.model_path),
        target=tuner.target.name,
        output_dir=str(tuner.out_dir),
        budget_seconds=tuner.options.budget_seconds,
        elapsed_seconds=tuner.elapsed(),
        interrupted=tuner.interrupted,
        feeds_source=tuner.feeds_source,
        accuracy_budget=tuner.options.base.precision.budget.describe(),
        candidates=list(tuner.candidates.values()),
        recipes={r.name: r.description for r in tuner.recipes.values()},
        variants={v.name: v.description for v in tuner.variants.values()},
        recipe_notes=dict(tuner.recipe_notes),
        best=best,
        baselines={"onnxruntime defaults": tuner.candidates.get(ANCHOR), "hwopt optimize defaults": optimize_default},
        time_to_near_best=near,
        pareto_accuracy=pareto(accuracy_points),
        pareto_memory=pareto(memory_points),
        timeline=list(tuner.timeline),
    )


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
        ax.set_xlabel(f"latency: p50 / p50 of {ANCHOR}")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"hwopt tune {Path(report.model).name} --target {report.target}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(tuner: Tuner, report: TuneReport) -> None:
    """The best build (files of its cached ``hwopt optimize`` build, with the session and
    provider options tune found), tune.json, and report.md; the manifest last."""
    out = tuner.out_dir
    (out / MANIFEST).unlink(missing_ok=True)
    png = plot_pareto(report)
    if png is not None:
        write_bytes_atomic(out / PLOT, png)
        report.plot = PLOT
    best = report.best
    build_md = ""
    manifest = None
    if best is not None:
        built = tuner.built[best.recipe]
        manifest = dict(built.manifest)
        for name in manifest["files"]:
            write_bytes_atomic(out / name, (built.folder / name).read_bytes())
        optimize_report = json.loads((built.folder / REPORT_JSON).read_text())
        for entry in optimize_report["builds"]:
            entry["session_options"] = best.session_options
            entry["providers"] = [{"name": n, "options": o} for n, o in best.providers]
            entry["build_dir"] = str(out)
        write_json_atomic(out / REPORT_JSON, optimize_report)
        build_md = (built.folder / "report.md").read_text()
        manifest["session_options"] = best.session_options
        manifest["providers"] = [{"name": n, "options": o} for n, o in best.providers]
        manifest["tune"] = {"candidate": best.id, "ratio_to_anchor": best.ratio, "anchor": ANCHOR,
                            "results": RESULTS_FILE, "report": TUNE_JSON}
    write_json_atomic(out / TUNE_JSON, report.to_dict())
    markdown = render_markdown(report.document())
    if report.plot:
        markdown += f"\n![Pareto fronts: latency against accuracy and against memory]({report.plot})\n"
    if build_md:
        markdown += "\n---\n\n## The build written\n\n" + build_md
    write_text_atomic(out / "report.md", markdown)
    if manifest is not None:
        write_json_atomic(out / MANIFEST, manifest)


__all__ = ["CACHE_DIR", "PLOT", "SCHEMA", "TUNE_JSON", "TuneReport", "build_report", "pareto", "plot_pareto",
           "write_outputs"]
