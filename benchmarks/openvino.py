"""The CPU provider against the OpenVINO provider: FP32 and hwopt's builds for each, on image
models calibrated and judged on photographs. Runs in .venv-openvino (onnxruntime-openvino
carries both providers); `make bench` runs benchmarks/openvino_models.py first, in the main
virtualenv, for the ResNet-18 and its photos.

Per model: the FP32 model on the CPU provider (the baseline, 1.00), hwopt's cpu build
(``--target cpu``, precision auto with the photo calibration: INT8 where it is faster within
the budget), the FP32 model on OpenVINO, and hwopt's openvino build (``--target openvino``,
the same search on the OpenVINO provider). All four interleaved in one process, fresh
sessions each round. Accuracy: cosine and top-1 agreement against the FP32 model on the CPU
provider, on photo crops no build was calibrated on.

    .venv-openvino/bin/python benchmarks/openvino.py [--rounds 5] [--seconds 1] [--models a,b]

Writes benchmarks/results/openvino.md and benchmarks/results/openvino.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR, SAMPLES, fresh_session_p50s, median, utc_stamp, write_results  # noqa: E402

from hwopt.feeds.images import ImageSpec  # noqa: E402
from hwopt.feeds.inputs import resolve_input_specs  # noqa: E402
from hwopt.feeds.samples import load_samples  # noqa: E402
from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (  # noqa: E402
    DEFAULT_HELD_OUT,
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,
)
from hwopt.quant.accuracy import compare  # noqa: E402
from hwopt.session import create_session, run_session  # noqa: E402
from hwopt.targets import get_target  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402

SAMPLE_CNNS = ("resnext_tiny", "mobilenetv2_tiny", "shufflenet_tiny", "inception_tiny")
VARIANTS = ("cpu fp32", "cpu build", "openvino fp32", "openvino build")
# The target: a ResNet-style CNN's openvino build at most this ratio of CPU-provider FP32.
RESNET_TARGET = 0.25
MIN_COSINE = 0.99


def cases() -> dict[str, tuple[Path, Path, ImageSpec, list[dict]]]:
    """name: (model, calibration folder, image spec, held-out feeds)."""
    # configs/sample-cnn.toml's [calibration.image]
    sample_spec = ImageSpec.from_dict({"size": [96, 96], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    out = {}
    for name in SAMPLE_CNNS:
        path = SAMPLES / f"{name}.onnx"
        specs = resolve_input_specs(onnx.load(str(path), load_external_data=False).graph)
        _, held = load_samples(SAMPLES / "calib", specs, sample_spec).split(DEFAULT_HELD_OUT)
        out[name] = (path, SAMPLES / "calib", sample_spec, list(held.samples))
    resnet = REAL_DIR / "resnet18.onnx"
    if resnet.is_file():
        spec = ImageSpec.from_dict({"size": [224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
        crops = np.load(REAL_DIR / "heldout" / "resnet18.npz")["input"]
        out["resnet18"] = (resnet, REAL_DIR / "calib" / "resnet18", spec, [{"input": c[None]} for c in crops])
    else:
        print(f"no {resnet}: run benchmarks/openvino_models.py in the main virtualenv first", flush=True)
    return out


def build(path: Path, target: str, calib: Path, spec: ImageSpec, out: Path) -> tuple[Path, dict]:
    report = optimize(path, OptimizeOptions(targets=[target], output_dir=out, measure=False,
                                            precision=PrecisionOptions(calib_path=calib, image_spec=spec)))
    b = report.builds[0]
    label = b.precision.chosen_label if b.precision else b.precision_label
    fallback = b.partition.fallback if b.partition else []
    return out / "model.onnx", {"label": label, "fallback_nodes": len(fallback)}


def measure(name: str, case, rounds: int, seconds: float, workdir: Path) -> dict:
    path, calib, spec, held = case
    cpu_model, cpu_info = build(path, "cpu", calib, spec, workdir / "cpu")
    ov_model, ov_info = build(path, "openvino", calib, spec, workdir / "openvino")
    options = bench_session_options(get_target("cpu").session_options())
    cpu = get_target("cpu").providers()
    ov = get_target("openvino").providers()
    plan = {"cpu fp32": (path, cpu), "cpu build": (cpu_model, cpu), "openvino fp32": (path, ov),
            "openvino build": (ov_model, ov)}

    def open_all() -> dict:
        return {k: create_session(m, options, p) for k, (m, p) in plan.items()}

    sessions = open_all()
    reference = [run_session(sessions["cpu fp32"], f) for f in held]
    p50s = fresh_session_p50s(open_all, held[0], rounds, seconds)
    row = {"model": name, "cpu_fp32_p50_ms": median(p50s["cpu fp32"]), "held_out": len(held),
           "builds": {"cpu": cpu_info, "openvino": ov_info}, "variants": {}}
    for key, session in sessions.items():
        accuracy = compare(reference, [run_session(session, f) for f in held])
        row["variants"][key] = {"ratio": median([p / b for p, b in zip(p50s[key], p50s["cpu fp32"])]),
                                "p50_ms": median(p50s[key]), "cosine": accuracy.cosine, "top1": accuracy.top1}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--models", help="comma-separated subset")
    args = parser.parse_args()
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        sys.exit("benchmarks/openvino.py needs the OpenVINO provider: run it with .venv-openvino/bin/python "
                 "(make venv-openvino)")
    rows = []
    for name, case in cases().items():
        if args.models and name not in args.models.split(","):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(name, case, args.rounds, args.seconds, Path(tmp))
        rows.append(row)
        v = row["variants"]
        print(f"{name:18s} " + "  ".join(f"{k} {v[k]['ratio']:.2f}x cos {v[k]['cosine']:.4f}" for k in VARIANTS),
              flush=True)
    write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    host, stamp = host_info(), utc_stamp()
    lines = [
        "# CPU provider vs OpenVINO provider: FP32 and hwopt's builds", "",
        f"{stamp}; {host.cpu}, {host.cores} cores ({', '.join(host.isa)}); onnxruntime-openvino {ort.__version__} "
        f"(both providers). Ratio = p50 / the FP32 model's p50 on the CPU provider, median of {args.rounds} "
        f"interleaved rounds of {args.seconds:g} s, fresh sessions each round. Builds: `hwopt optimize --target cpu` "
        "and `--target openvino`, precision auto, calibrated on photo crops (sample models: sample_models/calib "
        "through configs/sample-cnn.toml; resnet18: benchmarks/openvino_models.py). Accuracy (cosine, top-1 agreement) "
        "against the FP32 model on the CPU provider, on held-out photo crops no build was calibrated on. "
        "resnet18 has random weights with BatchNorm statistics set on photos (no model hub here): its timing is "
        "a real ResNet-18's, its accuracy figure is INT8 against its own FP32.", "",
        "| model | cpu build | openvino build | CPU FP32 ms | cpu build | OpenVINO FP32 | openvino build "
        "| cos cpu build | cos openvino build | top-1 openvino build | openvino vs best cpu |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        v, b = row["variants"], row["builds"]
        best_cpu = min(v["cpu fp32"]["ratio"], v["cpu build"]["ratio"])
        lines.append(
            f"| {row['model']} | {b['cpu']['label']} | {b['openvino']['label']} | {row['cpu_fp32_p50_ms']:.3f} "
            f"| {v['cpu build']['ratio']:.2f} | {v['openvino fp32']['ratio']:.2f} | {v['openvino build']['ratio']:.2f} "
            f"| {v['cpu build']['cosine']:.4f} | {v['openvino build']['cosine']:.4f} "
            f"| {v['openvino build']['top1']:.0%} | {v['openvino build']['ratio'] / best_cpu:.2f} |")
    resnet = next((r for r in rows if r["model"] == "resnet18"), None)
    if resnet is not None:
        ov = resnet["variants"]["openvino build"]
        met = ov["ratio"] <= RESNET_TARGET and ov["cosine"] >= MIN_COSINE
        lines += ["", f"Target (ResNet-style CNN, real calibration data: openvino build <= {RESNET_TARGET}x CPU-provider "
                      f"FP32 at cosine >= {MIN_COSINE}): resnet18 {ov['ratio']:.2f}x at cosine {ov['cosine']:.4f}: "
                      f"{'met' if met else 'NOT met'}."]
    write_results("openvino", stamp, host, {"onnxruntime": ort.__version__, "rounds": args.rounds, "models": rows},
                  lines)


if __name__ == "__main__":
    main()
