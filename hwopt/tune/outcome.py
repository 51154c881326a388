"""What a ``hwopt tune`` search leaves: its report (the Pareto fronts, how soon a near-best
candidate was found) and, in the output folder, the best build in the format ``hwopt optimize``
writes, with the session and provider options tune found."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hwopt.output import MANIFEST, REPORT_JSON, write_bytes_atomic, write_json_atomic, write_text_atomic
from hwopt.report.render import render_markdown
from hwopt.report.tune import TuneReport, plot_pareto
from hwopt.stages.files import versions
from hwopt.tune.results import RESULTS_FILE
from hwopt.tune.search import ANCHOR, Tuner
from hwopt.tune.space import HWOPT, TARGET_DEFAULTS

TUNE_JSON = "tune.json"
PLOT = "pareto.png"
# "Reached 95% of the final best": a candidate within this factor of the best ratio.
NEAR_BEST = 1 / 0.95


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
        anchor=ANCHOR,
        versions=versions(),
    )


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
