"""Build and benchmark the GPU targets on this machine (run by scripts/gpu_check.sh).

For each sample model and PP-OCRv4 det (fetched from PyPI when ../shared/models has the
script), five builds of the same model:

    cuda_unoptimized  the original graph (no passes), FP32, on the CUDA provider
    cuda_fp32         hwopt's passes, FP32, CUDA
    cuda_fp16         hwopt's passes, FP16, CUDA
    tensorrt_fp16     hwopt's passes, TensorRT FP16 engine
    cpu               hwopt's CPU build

then `hwopt bench` of all five interleaved at batch 8, and a summary with the ratios the
targets are judged by: cuda FP16 against cuda FP32 (>= 1.8x faster), TensorRT FP16 against
cuda FP16 (>= 1.3x faster). Every command's output and the bench JSON are kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {
    "mobilenetv2_tiny": ["input=8x3x96x96"],
    "resnext_tiny": ["input=8x3x96x96"],
    "shufflenet_tiny": ["input=8x3x96x96"],
    "inception_tiny": ["input=8x3x96x96"],
    "transformer_tiny": ["tokens=8x32x64"],
}
BUILDS = {
    "cuda_unoptimized": ["--target", "cuda", "--passes", "", "--precision", "fp32"],
    "cuda_fp32": ["--target", "cuda", "--precision", "fp32"],
    "cuda_fp16": ["--target", "cuda", "--precision", "fp16"],
    "tensorrt_fp16": ["--target", "tensorrt", "--precision", "fp16"],
    "cpu": ["--target", "cpu", "--precision", "fp32"],
}


def hwopt(*args: str, log: Path) -> int:
    proc = subprocess.run([sys.executable, "-m", "hwopt", *args], capture_output=True, text=True)
    log.write_text(f"$ hwopt {' '.join(args)}\n{proc.stdout}\n{proc.stderr}\nexit {proc.returncode}\n")
    return proc.returncode


def models() -> dict[str, tuple[Path, list[str]]]:
    found = {name: (ROOT / "sample_models" / f"{name}.onnx", shapes) for name, shapes in SAMPLES.items()}
    real = ROOT / "benchmarks" / "models" / "ch_PP-OCRv4_det_infer.onnx"
    fetch = ROOT.parent / "shared" / "models" / "fetch_real_models.sh"
    if not real.is_file() and fetch.is_file():
        subprocess.run(["bash", str(fetch), str(real.parent)], check=False)
    if real.is_file():
        found["ppocr_v4_det"] = (real, ["x=8x3x640x640"])
    return found


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-results").resolve()
    results.mkdir(parents=True, exist_ok=True)
    hwopt("targets", "--json", log=results / "targets.txt")
    summary = []
    for name, (path, shapes) in models().items():
        folder = results / name
        folder.mkdir(exist_ok=True)
        shape_args = [arg for s in shapes for arg in ("--input-shape", s)]
        built = []
        for build, flags in BUILDS.items():
            code = hwopt("optimize", str(path), "-o", str(folder / build), "--no-bench", "--require-target",
                         *shape_args, *flags, log=folder / f"{build}.log")
            if code == 0:
                built.append(build)
        bench_json = folder / "bench.json"
        hwopt("bench", *(str(folder / b) for b in built), "--batch", "8", *shape_args, "--json",
              log=folder / "bench.log")
        text = (folder / "bench.log").read_text()
        start = text.find("{")
        p50 = {}
        if start >= 0:
            try:
                report = json.loads(text[start:text.rfind("}") + 1])
            except ValueError:
                report = None
            if report is not None:
                bench_json.write_text(json.dumps(report, indent=2))
                labels = {v["label"]: Path(v["path"]).name for v in report["variants"]}
                for result in report["batches"][0]["results"]:
                    if result["latency"].get("measured"):
                        p50[labels[result["variant"]]] = result["latency"]["p50_ms"]
        summary.append((name, built, p50))
    lines = ["# GPU check", "", "| model | builds | p50 ms at batch 8 | cuda fp16 vs fp32 | tensorrt fp16 vs cuda fp16 |",
             "|---|---|---|---|---|"]
    for name, built, p50 in summary:
        def ratio(a: str, b: str, p50: dict = p50) -> str:
            return f"{p50[a] / p50[b]:.2f}x" if a in p50 and b in p50 else "-"
        lines.append(f"| {name} | {', '.join(built)} | " + ", ".join(f"{k} {v:.3f}" for k, v in p50.items())
                     + f" | {ratio('cuda_fp32', 'cuda_fp16')} | {ratio('cuda_fp16', 'tensorrt_fp16')} |")
    (results / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print((results / "gpu_check.md").read_text())


if __name__ == "__main__":
    main()
