"""How long `hwopt optimize` takes, phase by phase, on ordinary models (issue: progress and speed).

Each run is the command line as a CI step runs it (`hwopt optimize MODEL --json`, a fresh
process, the supervisor included), timed from outside; the phase seconds come from the report's
timing section. Models: ResNeXt50-32x4d, ResNet-18 and SqueezeNet 1.1 (torchvision's
architectures with random weights and photo-set BatchNorm statistics: benchmarks/speed_models.py,
benchmarks/openvino_models.py), YOLOv8n (Ultralytics' own export of its config with random weights,
where `ultralytics` is installed), PP-OCRv4 det at 640x640, and mobilenetv2_tiny. Calibration data is
generated (hwopt's default without --calib), 32 samples, as the issue's figures were measured.

Runs are stored under a label (`--label before` on the code before a change, `--label after`,
the default, on the code after it) in benchmarks/results/optimize_speed.json; the Markdown table shows
every label side by side, so the before figures survive the after run.

    python benchmarks/speed_models.py            # once: writes the CNNs
    python benchmarks/optimize_speed.py [--label after] [--models resnext50_32x4d,...] [--fast]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR, RESULTS, SAMPLES, ensure_real_models, utc_stamp, write_results  # noqa: E402

from hwopt.hostinfo import host_info  # noqa: E402

STEM = "optimize_speed"
CALIB = ["--calib-samples", "32"]
# name -> (path, extra arguments)
MODELS = {
    "resnext50_32x4d": (REAL_DIR / "resnext50_32x4d.onnx", CALIB),
    "resnet18": (REAL_DIR / "resnet18.onnx", CALIB),
    "squeezenet1_1": (REAL_DIR / "squeezenet1_1.onnx", CALIB),
    "yolov8n": (REAL_DIR / "yolov8n.onnx", CALIB),
    "ppocr_v4_det_640_fp32_nobench": (REAL_DIR / "ch_PP-OCRv4_det_infer.onnx",
                                      ["-s", "x=1x3x640x640", "--precision", "fp32", "--no-bench"]),
    "mobilenetv2_tiny": (SAMPLES / "mobilenetv2_tiny.onnx", CALIB),
}
# The targets: ResNeXt50 at most 60 s by default and 25 s with --fast; every model at
# most 0.6x its time before.
RESNEXT_LIMIT, FAST_LIMIT, RATIO_LIMIT = 60.0, 25.0, 0.6


def run(path: Path, extra: list[str], fast: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="hwopt-speed-") as tmp:
        command = [sys.executable, "-m", "hwopt", "optimize", str(path), "-o", str(Path(tmp) / "build"), "--json",
                   *extra, *(["--fast"] if fast else [])]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{path.name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    (build,) = report["builds"]
    phases: dict[str, float] = {}
    for timing in report.get("timings", []):
        phases[timing["name"]] = phases.get(timing["name"], 0.0) + timing["seconds"]
    precision = build.get("precision") or {}
    memory = (build.get("memory") or {}).get("settings") or {}
    measured = (build.get("memory") or {}).get("measured") or {}
    return {"seconds": seconds, "phases": phases, "precision": build["precision_label"],
            "precision_choice": precision.get("chosen_label"), "memory_setting": memory.get("chosen"),
            "nodes": build["optimized"]["nodes"], "speedup": (build.get("latency") or {}).get("speedup_p50"),
            "build_peak_mib": _mib((measured.get("build") or {}).get("session_bytes")),
            "original_peak_mib": _mib((measured.get("original") or {}).get("session_bytes"))}


def _mib(value: int | None) -> float | None:
    return None if value is None else value / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="after")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--fast", action="store_true", help="run with --fast (stored as LABEL+fast)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per model; the median run is kept (these hosts swing 20-30%% run to run)")
    args = parser.parse_args()
    ensure_real_models()
    names = [n for n in args.models.split(",") if n != "yolov8n" or MODELS[n][0].is_file()]  # (optional)
    missing = [name for name in names if not MODELS[name][0].is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run benchmarks/speed_models.py and benchmarks/openvino_models.py first")
    path = RESULTS / f"{STEM}.json"
    data = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    label = args.label + ("+fast" if args.fast else "")
    runs = data["runs"].setdefault(label, {})
    for name in names:
        model, extra = MODELS[name]
        tries = sorted((run(model, extra, args.fast) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        runs[name] = {**tries[len(tries) // 2], "all_seconds": [t["seconds"] for t in tries]}
        print(f"{label} {name}: {runs[name]['seconds']:.1f} s {runs[name]['phases']}", flush=True)
    write(data["runs"])


def write(runs: dict[str, dict]) -> None:
    host, stamp = host_info(), utc_stamp()
    labels = list(runs)
    lines = [
        "# How long `hwopt optimize` takes, by phase", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. Seconds of wall-clock time for "
        "`hwopt optimize MODEL --json` in a fresh process (imports and the supervisor included; the median of "
        "the runs listed in the JSON where a model ran more than once), with hwopt's "
        "defaults and 32 generated calibration samples, except PP-OCRv4 det (`--precision fp32 --no-bench` at "
        "640x640). Phases from the report's timing section. Labels: `before` is the code before the speed work, "
        "`after` after it, `+fast` with `--fast`. Chosen: the precision, the memory setting, and "
        "the build's measured peak and speed-up over the original (each run measures its own; the memory "
        "setting is a measured choice among candidates that often sit within a few MiB of each other). "
        f"Targets: ResNeXt50 at most {RESNEXT_LIMIT:.0f} s, with --fast at most {FAST_LIMIT:.0f} s; every model "
        f"at most {RATIO_LIMIT}x its `before` time.", "",
        "| model | " + " | ".join(labels) + " | after / before | chosen (" + " / ".join(labels) + ") |",
        "|---|" + "---:|" * (len(labels) + 1) + "---|",
    ]
    models = list(dict.fromkeys(name for label in labels for name in runs[label]))
    for name in models:
        cells = [f"{runs[label][name]['seconds']:.1f}" if name in runs[label] else "-" for label in labels]
        before, after = runs.get("before", {}).get(name), runs.get("after", {}).get(name)
        ratio = f"{after['seconds'] / before['seconds']:.2f}" if before and after else "-"
        chosen = " / ".join(_chosen(runs[label].get(name)) for label in labels)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {chosen} |")
    for label in labels:
        phases = list(dict.fromkeys(p for row in runs[label].values() for p in row["phases"]))
        lines += ["", f"## {label}: seconds per phase", "",
                  "| model | " + " | ".join(phases) + " | total |", "|---|" + "---:|" * (len(phases) + 1)]
        for name, row in runs[label].items():
            cells = [f"{row['phases'][p]:.1f}" if p in row["phases"] else "-" for p in phases]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['seconds']:.1f} |")
    write_results(STEM, stamp, host, {"runs": runs}, lines)


def _chosen(row: dict | None) -> str:
    if row is None:
        return "-"
    text = f"{row['precision_choice'] or row['precision']}, {row['memory_setting'] or 'defaults'}"
    if row.get("build_peak_mib") is not None:
        text += f" ({row['build_peak_mib']:.0f} MiB"
        text += f", {row['speedup']:.2f}x)" if row.get("speedup") else ")"
    return text


if __name__ == "__main__":
    main()
