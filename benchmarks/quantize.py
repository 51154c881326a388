"""INT8: hwopt --precision auto against onnxruntime's quantize_static defaults and
quantize_dynamic, all against the FP32 model under ORT_ENABLE_ALL, interleaved in one process,
fresh sessions every round.

Calibration data looks like each model's inputs (benchmarks/calibration_data.py: rendered text for
PP-OCR, synthetic speech for silero VAD, N(0, 1) for the random-weight models); the last 4
samples of each set are held out, and every accuracy figure is on those only. Baselines are
calibrated on the same samples hwopt calibrates on.

    python benchmarks/quantize.py [--models a,b] [--rounds 5] [--seconds 2]

Writes benchmarks/results/quantize.md and benchmarks/results/quantize.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import tempfile
import warnings
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_data import IMAGE_SPECS, ensure_calibration, random_images  # noqa: E402
from common import REAL_DIR, RESULTS, bench_models, fresh_session_p50s, median  # noqa: E402

from hwopt.feeds.images import ImageSpec  # noqa: E402
from hwopt.feeds.inputs import resolve_input_specs  # noqa: E402
from hwopt.feeds.samples import load_samples  # noqa: E402
from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.model.stats import model_stats  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (  # noqa: E402
    DEFAULT_HELD_OUT,
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,
)
from hwopt.quant.accuracy import compare  # noqa: E402
from hwopt.quant.calibration import SampleReader  # noqa: E402
from hwopt.session import create_session, default_session_options, run_session  # noqa: E402
from hwopt.timing import BenchConfig, bench_session_options  # noqa: E402

# The conv-heavy models the INT8 latency target is judged on (geometric mean).
CONV_HEAVY = ("resnext_tiny", "ppocr_v4_det", "ppocr_v4_rec")


def calibration_for(name: str, path: Path) -> tuple[Path, ImageSpec | None]:
    folders = ensure_calibration()
    if name in IMAGE_SPECS:
        return folders[name], ImageSpec.from_dict(IMAGE_SPECS[name])
    if name.startswith("silero"):
        return folders["silero"], None
    model = onnx.load(str(path), load_external_data=False)
    vi = model.graph.input[0]
    dims = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
    if name == "transformer_tiny":
        dims = [1, 32, 64]
    return random_images(REAL_DIR / "calib" / name, vi.name, tuple(dims)), None


def ort_baselines(path: Path, calib, workdir: Path) -> dict[str, Path]:
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hwopt.output import inside

    pre = workdir / "pre.onnx"
    with inside(workdir):  # ORT leaves temporary models in the working directory on failure
        try:
            quant_pre_process(str(path), str(pre), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference asserts on some graphs
            quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
    out = {}
    static, dynamic = workdir / "ort_static.onnx", workdir / "ort_dynamic.onnx"
    try:
        with inside(workdir):
            quantize_static(str(pre), str(static), SampleReader(calib))  # ORT's defaults
        out["ort_static"] = static
    except Exception as exc:  # noqa: BLE001 - reported in the table
        print(f"  quantize_static failed: {exc}")
    try:
        with inside(workdir):
            quantize_dynamic(str(pre), str(dynamic))
        out["ort_dynamic"] = dynamic
    except Exception as exc:  # noqa: BLE001
        print(f"  quantize_dynamic failed: {exc}")
    return out


def measure(name: str, path: Path, rounds: int, seconds: float, workdir: Path) -> dict:
    folder, image_spec = calibration_for(name, path)
    model = onnx.load(str(path))
    specs = resolve_input_specs(model.graph)
    samples = load_samples(folder, specs, image_spec)
    calib, held = samples.split(DEFAULT_HELD_OUT)
    precision = PrecisionOptions(mode="auto", calib_path=folder, image_spec=image_spec)
    report = optimize(path, OptimizeOptions(output_dir=workdir / "hwopt", measure=False, precision=precision,
                                            bench=BenchConfig(target_seconds=seconds)))
    variants = {"fp32": path, "hwopt": workdir / "hwopt" / "model.onnx", **ort_baselines(path, calib, workdir)}

    options = bench_session_options(default_session_options("all"))

    def open_all() -> dict:
        return {k: create_session(v, options) for k, v in variants.items()}

    sessions = open_all()
    reference = [run_session(sessions["fp32"], s) for s in held.samples]
    feeds = held.samples[0]
    p50s = fresh_session_p50s(open_all, feeds, rounds, seconds)
    fp32_weights = model_stats(model).weight_bytes
    row = {"model": name, "fp32_p50_ms": median(p50s["fp32"]), "precision": report.builds[0].precision.to_dict(),
           "calibration": f"{len(calib)} samples from {folder.name} ({'images' if image_spec else 'arrays'})",
           "variants": {}}
    for k, session in sessions.items():
        accuracy = compare(reference, [run_session(session, s) for s in held.samples])
        row["variants"][k] = {
            "ratio": median([p / f for p, f in zip(p50s[k], p50s["fp32"])]),
            "cosine": accuracy.cosine,
            "top1": accuracy.top1,
            "weights_ratio": model_stats(onnx.load(str(variants[k]))).weight_bytes / fp32_weights,
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset of model names")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of models not measured now from the existing quantize.json")
    args = parser.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    kept = []
    if args.keep and (RESULTS / "quantize.json").is_file():
        kept = [r for r in json.loads((RESULTS / "quantize.json").read_text())["models"]
                if wanted is None or r["model"] not in wanted]
    order = [bm.name for bm in bench_models()]
    rows = []
    for bm in bench_models():
        if wanted and bm.name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = measure(bm.name, bm.path, args.rounds, args.seconds, Path(tmp))
        rows.append(row)
        v = row["variants"]
        print(f"{bm.name:18s} " + " ".join(f"{k}={v[k]['ratio']:.3f}/cos{v[k]['cosine']:.3f}" for k in v)
              + f" | chose {row['precision']['chosen_label']}", flush=True)
        write(sorted(kept + rows, key=lambda r: order.index(r["model"]) if r["model"] in order else len(order)))


def write(rows: list[dict]) -> None:
    host = host_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    heavy = [r["variants"]["hwopt"]["ratio"] for r in rows if r["model"] in CONV_HEAVY]
    geomean = math.exp(sum(map(math.log, heavy)) / len(heavy)) if heavy else None
    (RESULTS / "quantize.json").write_text(json.dumps(
        {"date": stamp, "host": host.to_dict(), "conv_heavy_geomean": geomean, "models": rows}, indent=2) + "\n")

    def cell(v: dict | None) -> str:
        if v is None:
            return "failed"
        top1 = f", top-1 {v['top1']:.1%}" if v["top1"] is not None else ""
        return f"{v['ratio']:.2f}x (cos {v['cosine']:.4f}{top1}; w {v['weights_ratio']:.2f})"

    lines = [
        "# INT8: hwopt --precision auto vs onnxruntime's quantize_static and quantize_dynamic", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; instruction sets: {', '.join(host.isa)}; onnxruntime "
        f"{host.onnxruntime}. Latency = p50 / FP32 p50 (the original model, ORT_ENABLE_ALL), median of "
        "interleaved rounds, fresh sessions each round; cos = worst cosine similarity to FP32 on 4 held-out "
        "samples; top-1 = arg-max agreement for classifier-like outputs; w = weight bytes / FP32 weight "
        "bytes. hwopt's build also "
        "includes its FP32 graph passes.", "",
        "| model | FP32 p50 ms | hwopt auto | hwopt chose | ORT quantize_static (defaults) | ORT quantize_dynamic |",
        "|---|---:|---|---|---|---|",
    ]
    for row in rows:
        v = row["variants"]
        lines.append(f"| {row['model']} | {row['fp32_p50_ms']:.2f} | {cell(v['hwopt'])} | "
                     f"{row['precision']['chosen_label']} | {cell(v.get('ort_static'))} | {cell(v.get('ort_dynamic'))} |")
    if geomean is not None:
        lines += ["", f"Geometric mean of hwopt's latency ratio over the conv-heavy models "
                      f"({', '.join(CONV_HEAVY)}): {geomean:.3f}x FP32."]
    (RESULTS / "quantize.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'quantize.md'}")


if __name__ == "__main__":
    main()
