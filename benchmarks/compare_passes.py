"""Node count and latency: original vs onnxsim vs onnxslim vs hwopt's cpu pipeline.

For every sample and real model: each variant's node count (subgraphs included), its largest
output difference from the original, and its p50 latency under ONNX Runtime (ORT_ENABLE_ALL,
the same fixed thread count for all), measured interleaved in one process and repeated over
several rounds; the table shows the median ratio to the original and the spread.

    python benchmarks/compare_passes.py [--rounds 3] [--seconds 2] [--samples-only]

Writes benchmarks/results/passes.md and benchmarks/results/passes.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bench_models, interleaved_p50s, median, save_feeds  # noqa: E402

from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.model.stats import model_stats  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import OptimizeOptions  # noqa: E402
from hwopt.session import create_session, default_session_options  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402
from hwopt.verify import compare_outputs, run_model  # noqa: E402

VARIANTS = ("original", "onnxsim", "onnxslim", "hwopt")


def build_variants(model_path: Path, feeds: dict, workdir: Path) -> dict[str, onnx.ModelProto]:
    import onnxsim
    import onnxslim

    original = onnx.load(str(model_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simplified, _ = onnxsim.simplify(original)
        slimmed = onnxslim.slim(onnx.load(str(model_path)))
    build = workdir / "hwopt"
    optimize(model_path, OptimizeOptions(targets=["cpu"], output_dir=build, measure=False,
                                         inputs_file=save_feeds(feeds, workdir / "feeds.npz")))
    return {"original": original, "onnxsim": simplified, "onnxslim": slimmed,
            "hwopt": onnx.load(str(build / "model.onnx"))}


def measure(variants: dict[str, onnx.ModelProto], feeds: dict, rounds: int, seconds: float) -> dict[str, list[float]]:
    options = bench_session_options(default_session_options("all"))
    sessions = {name: create_session(model, options) for name, model in variants.items()}
    return interleaved_p50s(sessions, feeds, rounds, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per variant per round")
    parser.add_argument("--samples-only", action="store_true")
    args = parser.parse_args()

    rows = []
    for bm in bench_models(include_real=not args.samples_only):
        feeds = bm.make_feeds(np.random.default_rng(0))
        with tempfile.TemporaryDirectory() as tmp:
            variants = build_variants(bm.path, feeds, Path(tmp))
            reference = run_model(variants["original"], feeds)
            row = {"model": bm.name, "kind": bm.kind, "variants": {}}
            p50s = measure(variants, feeds, args.rounds, args.seconds)
            base = median(p50s["original"])
            for name in VARIANTS:
                ratios = [p / o for p, o in zip(p50s[name], p50s["original"])]
                diffs = compare_outputs(reference, run_model(variants[name], feeds))
                row["variants"][name] = {
                    "nodes": model_stats(variants[name]).nodes,
                    "p50_ms": median(p50s[name]),
                    "ratio": median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "max_rel": max(d.max_rel for d in diffs),
                }
            row["original_p50_ms"] = base
        rows.append(row)
        v = row["variants"]
        print(f"{bm.name:18s} nodes " + " ".join(f"{n}={v[n]['nodes']}" for n in VARIANTS)
              + " | ratio " + " ".join(f"{n}={v[n]['ratio']:.3f}" for n in VARIANTS[1:]), flush=True)

    write_results(rows, args)


def write_results(rows: list[dict], args: argparse.Namespace) -> None:
    host = host_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    payload = {"date": stamp, "host": host.to_dict(), "rounds": args.rounds,
               "seconds_per_round": args.seconds, "models": rows}
    (RESULTS / "passes.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Passes: original vs onnxsim vs onnxslim vs hwopt (cpu pipeline)", "",
        f"{stamp}; {host.cpu}, {host.cores} cores ({', '.join(host.isa)}); onnxruntime {host.onnxruntime}; "
        f"ORT_ENABLE_ALL, {host.cores} intra-op threads, spinning off; p50 latency, "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s per variant; ratio = variant p50 / original p50 "
        "(median over rounds, [min-max]).", "",
        "| model | nodes orig | onnxsim | onnxslim | hwopt | orig p50 ms | onnxsim ratio | onnxslim ratio | hwopt ratio | hwopt max rel |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        v = row["variants"]

        def ratio(name: str, v: dict = v) -> str:
            return f"{v[name]['ratio']:.3f} [{v[name]['ratio_min']:.2f}-{v[name]['ratio_max']:.2f}]"

        lines.append(
            f"| {row['model']} | {v['original']['nodes']} | {v['onnxsim']['nodes']} | {v['onnxslim']['nodes']} "
            f"| {v['hwopt']['nodes']} | {row['original_p50_ms']:.3f} | {ratio('onnxsim')} | {ratio('onnxslim')} "
            f"| {ratio('hwopt')} | {v['hwopt']['max_rel']:.1e} |"
        )
    (RESULTS / "passes.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'passes.md'}")


if __name__ == "__main__":
    main()
