"""The same build on every run: hwopt optimize (--precision auto, with the calibration data
benchmarks/quantize.py uses) three times per model on one host, then the three shipped models timed
against each other, interleaved, fresh sessions every round.

A model passes when all runs ship the same variant, or when the shipped models' p50 latencies
differ by less than 5% (two variants within the noise are equally good builds).

    python benchmarks/reproducibility.py [--runs 3] [--models a,b] [--skip-real]

Writes benchmarks/results/reproducibility.md and benchmarks/results/reproducibility.json.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_models, fresh_session_p50s, median, utc_stamp, write_results  # noqa: E402
from quantize import calibration_for  # noqa: E402

from hwopt.feeds.inputs import resolve_input_specs  # noqa: E402
from hwopt.feeds.samples import load_samples  # noqa: E402
from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,  # noqa: E402
)
from hwopt.session import create_session, default_session_options  # noqa: E402
from hwopt.timing import BenchConfig, bench_session_options  # noqa: E402

SPREAD_LIMIT = 1.05
# Rounds of the timing behind the spread, each with fresh sessions made in a new order. The
# spread is the largest pairwise median of per-round ratios: with 5 rounds, sessions made in
# the same order every round and the ratio of medians, three identical files of four models
# measured 1.03-1.07 apart, the first-made slowest every time.
ROUNDS = 9


def spread_of(builds: list[Path], feeds: dict, seed: int) -> tuple[list[float], float]:
    """Median p50 of each build, and the largest median (over rounds) of one build's p50 over
    another's in the same round."""
    options = bench_session_options(default_session_options("all"))
    order = random.Random(seed)

    def open_sessions() -> dict:
        names = order.sample(range(len(builds)), len(builds))
        return {str(i): create_session(builds[i], options) for i in names}

    p50s = fresh_session_p50s(open_sessions, feeds, ROUNDS, 1.0)
    rounds = [np.asarray(p50s[str(i)]) for i in range(len(builds))]
    worst = max(median(list(a / b)) for a in rounds for b in rounds)
    return [median(list(r)) for r in rounds], worst


def one_model(name: str, path: Path, runs: int, workdir: Path) -> dict:
    folder, image_spec = calibration_for(name, path)
    specs = resolve_input_specs(onnx.load(str(path), load_external_data=False).graph)
    feeds = load_samples(folder, specs, image_spec, limit=1).samples[0]
    builds, labels, seconds = [], [], []
    for run in range(runs):
        out = workdir / f"run{run}"
        start = time.perf_counter()
        report = optimize(path, OptimizeOptions(output_dir=out, measure=False, bench=BenchConfig(target_seconds=2.0),
                                                precision=PrecisionOptions(calib_path=folder, image_spec=image_spec)))
        seconds.append(time.perf_counter() - start)
        build = report.builds[0]
        labels.append(build.precision.chosen_label if build.precision else build.precision_label)
        builds.append(out / "model.onnx")
    medians, spread = spread_of(builds, feeds, seed=len(name))
    digests = [hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in builds]
    same = len(set(labels)) == 1
    return {"model": name, "labels": labels, "digests": digests, "p50_ms": medians, "spread": spread,
            "same_variant": same, "identical_files": len(set(digests)) == 1, "seconds": seconds,
            "passed": same or spread < SPREAD_LIMIT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", help="comma-separated subset")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    models = [m for m in bench_models(include_real=not args.skip_real)
              if not args.models or m.name in args.models.split(",")]
    rows = []
    for bm in models:
        with tempfile.TemporaryDirectory() as tmp:
            row = one_model(bm.name, bm.path, args.runs, Path(tmp))
        rows.append(row)
        print(f"{bm.name:18s} {'PASS' if row['passed'] else 'FAIL'} | {' / '.join(row['labels'])} | "
              f"p50 spread {row['spread']:.3f} | identical files {row['identical_files']}", flush=True)
    write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    host, stamp = host_info(), utc_stamp()
    lines = [
        "# The same build on every run: three hwopt optimize runs per model", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. `--precision auto` with the "
        "calibration data benchmarks/quantize.py uses; each run in the same process, one after the other. Spread: the "
        f"shipped models timed against each other in {ROUNDS} interleaved rounds, fresh sessions made in a new order "
        "each round; the largest median over rounds of one model's p50 over another's. Pass: the same variant every "
        f"run, or a spread under {SPREAD_LIMIT:.2f}.", "",
        "| model | run 1 | run 2 | run 3 | same variant | identical files | p50 spread | result |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for row in rows:
        labels = (row["labels"] + ["-", "-", "-"])[:3]
        lines.append(f"| {row['model']} | {' | '.join(labels)} | {'yes' if row['same_variant'] else 'no'} "
                     f"| {'yes' if row['identical_files'] else 'no'} | {row['spread']:.3f} "
                     f"| {'PASS' if row['passed'] else 'FAIL'} |")
    write_results("reproducibility", stamp, host, {"runs": args.runs, "models": rows}, lines)


if __name__ == "__main__":
    main()
