"""Fewest nodes with the shapes fixed: onnxsim and onnxslim given the same input shapes as
hwopt's ``--static-shapes`` (cpu pipeline, FP32), on the sample, real and transformer models and
on the onnx package's own ``light_*`` models (IR 3: every weight listed as a graph input too).

Each variant's node count (subgraphs included), its largest output difference from the
original, and its p50 latency ratio to the original under ONNX Runtime (ORT_ENABLE_ALL, the same
thread count for all), interleaved in one process over a few rounds, fresh sessions each.

    python benchmarks/static_shapes.py [--rounds 3] [--seconds 1] [--models a,b] [--skip-real]

Writes benchmarks/results/static_shapes.md and benchmarks/results/static_shapes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bench_models, fresh_session_p50s, median, utc_stamp, write_results  # noqa: E402

from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.model.stats import model_stats  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,  # noqa: E402
)
from hwopt.session import create_session, default_session_options  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402
from hwopt.verify import compare_outputs, run_model  # noqa: E402

VARIANTS = ("original", "onnxsim", "onnxslim", "hwopt")
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_models() -> list[tuple[str, Path, dict]]:
    out = []
    for path in sorted(LIGHT.glob("light_*.onnx")):
        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        (vi,) = [vi for vi in model.graph.input if vi.name not in inits]
        shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        feeds = {vi.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        out.append((path.stem, path, feeds))
    return out


def transformer_models() -> list[tuple[str, Path, dict]]:
    from transformer_models import check_feeds, ensure_transformer_models

    names = {"encoder": ["input_ids"], "bert": ["input_ids", "attention_mask", "token_type_ids"]}
    vocab = {"encoder": 8000, "bert": 30522}
    return [(name, path, check_feeds(names[name], vocab[name]))
            for name, path in ensure_transformer_models(Path(__file__).parent / "models").items()]


def build_variants(path: Path, feeds: dict, workdir: Path) -> dict[str, onnx.ModelProto]:
    import onnxsim
    import onnxslim

    shapes = {name: list(array.shape) for name, array in feeds.items()}
    fixed = {name: shape for name, shape in shapes.items() if shape}  # a scalar has nothing to fix
    peers = {
        "onnxsim": lambda: onnxsim.simplify(onnx.load(str(path)), overwrite_input_shapes=fixed)[0],
        "onnxslim": lambda: onnxslim.slim(onnx.load(str(path)),
                                          input_shapes=[f"{n}:{','.join(map(str, s))}" for n, s in fixed.items()]),
    }
    variants = {"original": onnx.load(str(path))}
    for name, run in peers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = run()
                create_session(model)  # a peer's model that onnxruntime refuses is a failed peer
                variants[name] = model
            except Exception as exc:  # noqa: BLE001 - a peer that fails is a row entry, not the end of the run
                print(f"  {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
    optimize(path, OptimizeOptions(targets=["cpu"], output_dir=workdir / "hwopt", measure=False,
                                   input_shapes={n: tuple(s) for n, s in shapes.items()}, static_shapes=True,
                                   precision=PrecisionOptions(mode="fp32")))
    variants["hwopt"] = onnx.load(str(workdir / "hwopt" / "model.onnx"))
    return variants


def measure_one(name: str, path: Path, feeds: dict, rounds: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(path, feeds, Path(tmp))
        options = bench_session_options(default_session_options("all"))
        p50s = fresh_session_p50s(lambda: {n: create_session(m, options) for n, m in variants.items()},
                                  feeds, rounds, seconds)
        reference = run_model(variants["original"], feeds)
        row = {"model": name, "variants": {}}
        for variant in (v for v in VARIANTS if v in variants):
            ratios = [p / o for p, o in zip(p50s[variant], p50s["original"])]
            diffs = compare_outputs(reference, run_model(variants[variant], feeds))
            row["variants"][variant] = {"nodes": model_stats(variants[variant]).nodes, "ratio": median(ratios),
                                        "max_rel": max(d.max_rel for d in diffs)}
        row["original_p50_ms"] = median(p50s["original"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--models", help="comma-separated subset")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the rows of models not run now from the last json")
    args = parser.parse_args()
    models = [(bm.name, bm.path, bm.make_feeds(np.random.default_rng(0)))
              for bm in bench_models(include_real=not args.skip_real)]
    models += transformer_models() + light_models()
    if args.models:
        models = [m for m in models if m[0] in args.models.split(",")]
    rows = []
    for name, path, feeds in models:
        row = measure_one(name, path, feeds, args.rounds, args.seconds)
        rows.append(row)
        v = row["variants"]
        best_peer = min((v[p]["nodes"] for p in ("onnxsim", "onnxslim") if p in v), default=v["original"]["nodes"])
        row["fewest"] = v["hwopt"]["nodes"] <= best_peer
        print(f"{name:22s} nodes " + " ".join(f"{n}={v[n]['nodes']}" for n in VARIANTS if n in v)
              + f" | hwopt ratio {v['hwopt']['ratio']:.3f} | {'OK' if row['fewest'] else 'MORE NODES'}", flush=True)
    if args.keep and (RESULTS / "static_shapes.json").is_file():
        done = {row["model"] for row in rows}
        kept = [r for r in json.loads((RESULTS / "static_shapes.json").read_text())["models"] if r["model"] not in done]
        order = [m[0] for m in models_in_order(args)]
        rows = sorted(kept + rows, key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))
    write(rows, args)


def models_in_order(args: argparse.Namespace) -> list[tuple[str, Path, dict]]:
    return [(bm.name, bm.path, None) for bm in bench_models(include_real=not args.skip_real)] + \
        [(name, path, None) for name, path, _ in light_models()] + [("encoder", None, None), ("bert", None, None)]


def write(rows: list[dict], args: argparse.Namespace) -> None:
    host, stamp = host_info(), utc_stamp()
    lines = [
        "# Fewest nodes with fixed shapes: onnxsim and onnxslim vs hwopt --static-shapes", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. Every tool got the same input "
        "shapes (onnxsim overwrite_input_shapes, onnxslim input_shapes, hwopt -s ... --static-shapes, cpu pipeline, "
        f"FP32). Ratio = p50 / the original's p50 under ORT_ENABLE_ALL, median of {args.rounds} interleaved rounds "
        f"of {args.seconds:g} s, fresh sessions each round.", "",
        "| model | nodes orig | onnxsim | onnxslim | hwopt | fewest? | onnxsim ratio | onnxslim ratio | hwopt ratio "
        "| hwopt max rel |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        v = row["variants"]

        def cell(name: str, key: str, fmt: str, v: dict = v) -> str:
            return format(v[name][key], fmt) if name in v else "failed"

        lines.append(
            f"| {row['model']} | {v['original']['nodes']} | {cell('onnxsim', 'nodes', 'd')} "
            f"| {cell('onnxslim', 'nodes', 'd')} | {v['hwopt']['nodes']} | {'yes' if row['fewest'] else 'NO'} "
            f"| {cell('onnxsim', 'ratio', '.3f')} | {cell('onnxslim', 'ratio', '.3f')} | {v['hwopt']['ratio']:.3f} "
            f"| {v['hwopt']['max_rel']:.1e} |")
    write_results("static_shapes", stamp, host, {"rounds": args.rounds, "models": rows}, lines)


if __name__ == "__main__":
    main()
