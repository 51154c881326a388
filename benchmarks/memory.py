"""Memory: naive / planned / lower bound / peak before and after reordering / measured RSS.

For every sample, real and densely branched model (DenseNet-121, GoogLeNet replicas):

* the original model in the exporter's order: naive activation bytes (each buffer its own),
  planned arena, lower bound, peak live bytes;
* reordering alone on the original (the reorder pass's exact/beam search against the
  exporter's order and against a naive greedy scheduler);
* hwopt's full cpu build (fusions shrink activations too, then reorder);
* the measured peak RSS of an onnxruntime session of the original and of the build, each in
  a fresh process, median of three, with the cpu target's session options.

    python benchmarks/memory.py [--samples-only] [--no-rss]

Writes benchmarks/results/memory.md and benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from branchy_models import ensure_branchy_models  # noqa: E402
from common import REAL_DIR, RESULTS, bench_models, save_feeds  # noqa: E402

from hwopt.feeds.inputs import resolve_input_specs, specs_from_feeds  # noqa: E402
from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.memory.analysis import analyze_memory  # noqa: E402
from hwopt.memory.liveness import build_memory_graph, peak_live_bytes  # noqa: E402
from hwopt.memory.probe import measure_session_memory  # noqa: E402
from hwopt.memory.schedule import best_schedule  # noqa: E402
from hwopt.model.shapes import infer_tensor_info  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import OptimizeOptions  # noqa: E402
from hwopt.targets import get_target  # noqa: E402


def models(samples_only: bool):
    items = [(bm.name, bm.path, bm.make_feeds(np.random.default_rng(0))) for bm in bench_models(not samples_only)]
    if not samples_only:
        rng = np.random.default_rng(0)
        for name, path in ensure_branchy_models(REAL_DIR).items():
            items.append((name, path, {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}))
    return items


def rss(path: Path, feeds_path: Path, repeats: int = 3) -> int:
    target = get_target("cpu")
    providers = [{"name": n, "options": dict(o)} for n, o in target.providers()]
    return int(statistics.median(
        measure_session_memory(path, providers, target.session_options(), feeds_path).session_bytes
        for _ in range(repeats)
    ))


def measure(name: str, path: Path, feeds: dict, with_rss: bool, workdir: Path) -> dict:
    original = onnx.load(str(path))
    specs = specs_from_feeds(resolve_input_specs(original.graph), feeds)
    before = analyze_memory(original, specs)
    graph = build_memory_graph(original, infer_tensor_info(original, specs).tensors)
    winner, candidates = best_schedule(graph)
    by_method = {c.method: c.peak for c in candidates}
    feeds_path = save_feeds(feeds, workdir / "feeds.npz")
    report = optimize(path, OptimizeOptions(output_dir=workdir / "build", measure=False, inputs_file=feeds_path))
    after = report.builds[0].memory.build
    row = {
        "model": name,
        "original": before.to_dict(),
        "reorder_only": {
            "peak_exporter_order": peak_live_bytes(graph),
            "peak_reordered": winner.peak,
            "peak_naive_greedy": by_method["greedy"],
            "method": winner.method,
        },
        "build": after.to_dict(),
        "build_reorder": report.builds[0].memory.reorder,
    }
    if with_rss:
        row["rss_original"] = rss(path, feeds_path)
        row["rss_build"] = rss(workdir / "build" / "model.onnx", feeds_path)
    return row


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f}"


def pct(after: int, before: int) -> str:
    return f"{(after - before) / before:+.1%}" if before else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-only", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, path, feeds in models(args.samples_only):
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = measure(name, Path(path), feeds, not args.no_rss, Path(tmp))
        rows.append(row)
        o, r = row["original"], row["reorder_only"]
        print(f"{name:18s} naive {mib(o['naive_activation_bytes'])} MiB arena {mib(o['planned_arena_bytes'])} "
              f"bound {mib(o['lower_bound_bytes'])} | reorder {pct(r['peak_reordered'], r['peak_exporter_order'])} "
              f"greedy {pct(r['peak_naive_greedy'], r['peak_exporter_order'])}", flush=True)
    write(rows)


def write(rows: list[dict]) -> None:
    host = host_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (RESULTS / "memory.json").write_text(json.dumps({"date": stamp, "host": host.to_dict(), "models": rows}, indent=2) + "\n")
    lines = [
        "# Memory: planning, reordering and measured RSS", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. Activation bytes at batch 1 "
        "(MiB). Original = exporter's order. Arena/bound = planned arena over the lower bound (the most bytes "
        "live at once, 64-byte aligned). Reorder = peak live bytes of the reorder pass's order against the "
        "exporter's order, on the original model; greedy = a naive greedy scheduler, same comparison. "
        "Build = hwopt's cpu build (fusions, then reorder). RSS = peak resident bytes an onnxruntime session "
        "adds in a fresh process (median of 3; ORT_ENABLE_ALL, memory pattern and arena on, priority-based "
        "execution order).", "",
        "| model | naive | arena | bound | arena/bound | peak | reorder | greedy | build naive | build arena | "
        "build arena/bound | build peak | RSS original | RSS build |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        o, r, b = row["original"], row["reorder_only"], row["build"]
        lines.append(
            f"| {row['model']} | {mib(o['naive_activation_bytes'])} | {mib(o['planned_arena_bytes'])} "
            f"| {mib(o['lower_bound_bytes'])} | {o['arena_over_bound']:.3f} | {mib(o['peak_live_bytes'])} "
            f"| {pct(r['peak_reordered'], r['peak_exporter_order'])} | {pct(r['peak_naive_greedy'], r['peak_exporter_order'])} "
            f"| {mib(b['naive_activation_bytes'])} | {mib(b['planned_arena_bytes'])} | {b['arena_over_bound']:.3f} "
            f"| {mib(b['peak_live_bytes'])} | {mib(row.get('rss_original'))} | {mib(row.get('rss_build'))} |"
        )
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'memory.md'}")


if __name__ == "__main__":
    main()
