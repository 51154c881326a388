"""Fingerprint hwopt's builds and reports on every sample model, to show a refactor changed nothing.

Runs `hwopt optimize` on each sample model in configurations whose every decision is
deterministic (no latency race decides anything: fixed precision, no memory-setting search), and
writes one JSON with, per run, the SHA-256 of every file in the build folder and the JSON report
with what is measured by the clock taken out (seconds, timings, latency, measured peaks, the build
folder's path). Two fingerprints from the same code are identical; compare one taken before a
change with one taken after:

    python scripts/build_fingerprint.py -o /tmp/before.json      # on the old commit
    python scripts/build_fingerprint.py -o /tmp/after.json       # on the new one
    python scripts/build_fingerprint.py --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mobilenetv2_tiny", "resnext_tiny", "shufflenet_tiny", "inception_tiny", "transformer_tiny"]
CNN_CONFIG = ROOT / "configs" / "sample-cnn.toml"
FIXED = Path(tempfile.gettempdir()) / "hwopt-fingerprint"

# name -> extra flags; every run also gets --no-bench --no-memory-search --json. The CPU's INT8
# search is left out: which variant wins is a race. TensorRT's INT8 build is a calibration table,
# made without one (and without a GPU here).
RUNS: dict[str, list[str]] = {
    "fp32": ["--precision", "fp32"],
    "all-targets-static": ["--precision", "fp32", "--target", "cpu,cuda,tensorrt", "--static-shapes"],
    "tensorrt-int8": ["--precision", "int8", "--target", "tensorrt"],
}

# Keys whose values come from a clock or a fresh process, or name the temporary folder.
VOLATILE = {"seconds", "timings", "build_dir", "latency", "measured", "elapsed_seconds", "latency_ratios",
            "latency_ratio", "race_ratios", "race_noise"}
NUMBER = re.compile(r"\d+\.\d+")


def _strip(value: object) -> object:
    """The report without what a clock decides; numbers in sentences become '#' (a race's
    ratios are quoted in the graph choice's reason)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str):
        return NUMBER.sub("#", value)
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inputs(folder: Path) -> None:
    """The sample models, the CNN config and its photos at a fixed path: the reports and
    build.json name them, and two checkouts sit at different paths."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "sample_models", folder / "sample_models", ignore=shutil.ignore_patterns("*.py"))
    (folder / "configs").mkdir()
    shutil.copy(CNN_CONFIG, folder / "configs" / CNN_CONFIG.name)


def _run(model: str, flags: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "hwopt", "optimize", str(FIXED / "sample_models" / f"{model}.onnx"),
           "-o", str(out), "--no-bench", "--no-memory-search", "--json", *flags]
    if "int8" in flags:
        cmd += ["--calib", "generated"] if model == "transformer_tiny" else ["--config", str(FIXED / "configs" / CNN_CONFIG.name)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's hwopt, run from the fixed folder
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=FIXED, env=env, check=False)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {"stderr": proc.stderr[-2000:]}
    files = {str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*"))
             if p.is_file() and p.name not in ("report.json", "report.md")}
    return {"exit_code": proc.returncode, "files": files, "report": _strip(report)}


def fingerprint() -> dict:
    result = {}
    _inputs(FIXED)
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for name, flags in RUNS.items():
                out = Path(tmp) / f"{model}-{name}"
                result[f"{model}/{name}"] = _run(model, flags, out)
                print(f"{model}/{name}: exit {result[f'{model}/{name}']['exit_code']}", file=sys.stderr)
    return result


def _differences(a: object, b: object, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'after' if key not in a else 'before'}")
            else:
                out += _differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:80]} -> {str(b)[:80]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the fingerprint here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        diffs = _differences(before, after)
        print("\n".join(diffs) if diffs else f"identical: {len(before)} runs, builds and reports")
        return 1 if diffs else 0
    data = fingerprint()
    text = json.dumps(data, indent=1, sort_keys=True)
    if args.output:
        args.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
