"""Memory the deployed process uses: each cpu build's measured memory settings against the
original under onnxruntime's defaults, and the floor.

For every sample and real model: hwopt optimize with its defaults (``--precision auto`` with
the calibration data benchmarks/quantize.py uses, ``--optimize-for balanced``), then from its
report the original's peak under onnxruntime's defaults (hwopt's thread count), every
candidate setting's peak on the build (a fresh process each), the chosen one, and the floor
(weights + planned arena + inputs/outputs + a session of an empty graph). Then the chosen
setting is timed against the candidate that was fastest, in ROUNDS interleaved rounds with
fresh sessions, to check the 3% latency promise with more data than the build had.

    python benchmarks/memory_settings.py [--models a,b] [--skip-real]

Writes benchmarks/results/memory_settings.md and benchmarks/results/memory_settings.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_models, fresh_session_p50s, median, save_feeds, utc_stamp, write_results  # noqa: E402
from quantize import calibration_for  # noqa: E402

from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.memory.settings import CPU_SETTINGS  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,  # noqa: E402
)
from hwopt.session import create_session  # noqa: E402
from hwopt.targets import get_target  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402

ROUNDS = 7
MIB = 1 << 20
# The targets: PP-OCRv4 det at most 0.55x the original; every model at most 0.80x or
# within 10% of the floor; the chosen setting within 3% of the fastest.
DET_LIMIT, MODEL_LIMIT, FLOOR_LIMIT, SPEED_LIMIT = 0.55, 0.80, 1.10, 1.03


def one_model(name: str, path: Path, feeds: dict, workdir: Path) -> dict:
    folder, image_spec = calibration_for(name, path)
    feeds_path = save_feeds(feeds, workdir / "feeds.npz")
    out = workdir / "build"
    report = optimize(path, OptimizeOptions(output_dir=out, inputs_file=feeds_path,
                                            precision=PrecisionOptions(calib_path=folder, image_spec=image_spec)))
    build = report.builds[0]
    memory = build.memory
    choice = memory.settings
    deployed = choice.deployed_result
    fastest = min((r for r in choice.results if r.measured), key=lambda r: r.vs_fastest)
    manifest = json.loads((out / "build.json").read_text())
    base = get_target("cpu").session_options()
    assert manifest["session_options"] == deployed.setting.session_options(base), "build.json is not what was measured"
    speed = 1.0
    if fastest.setting.label != deployed.setting.label:
        options = {"deployed": bench_session_options(manifest["session_options"]),
                   "fastest": bench_session_options(fastest.setting.session_options(base))}
        p50s = fresh_session_p50s(lambda: {k: create_session(out / "model.onnx", o) for k, o in options.items()},
                                  feeds, ROUNDS, 1.0)
        speed = median([a / b for a, b in zip(p50s["deployed"], p50s["fastest"])])
    original, peak = memory.measured_original.session_bytes, memory.measured_build.session_bytes
    floor = memory.floor.total
    limit = DET_LIMIT if name == "ppocr_v4_det" else MODEL_LIMIT
    return {
        "model": name, "precision": build.precision_label, "original_bytes": original, "build_bytes": peak,
        "floor_bytes": floor, "ratio": peak / original, "over_floor": peak / floor,
        "candidates": {r.setting.label: {"peak_bytes": r.peak_bytes, "vs_fastest": r.vs_fastest}
                       for r in choice.results},
        "chosen": deployed.setting.label, "order": choice.order.to_dict() if choice.order else None,
        "fastest": fastest.setting.label, "chosen_vs_fastest": speed,
        "passed": (peak / original <= limit or (name != "ppocr_v4_det" and peak / floor <= FLOOR_LIMIT))
        and speed <= SPEED_LIMIT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    rows = []
    for bm in bench_models(include_real=not args.skip_real):
        if args.models and bm.name not in args.models.split(","):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            row = one_model(bm.name, bm.path, bm.make_feeds(np.random.default_rng(0)), Path(tmp))
        rows.append(row)
        print(f"{bm.name:18s} {'PASS' if row['passed'] else 'FAIL'} | {row['original_bytes'] / MIB:.1f} -> "
              f"{row['build_bytes'] / MIB:.1f} MiB ({row['ratio']:.2f}x, floor {row['floor_bytes'] / MIB:.1f}) | "
              f"{row['chosen']} | vs fastest {row['chosen_vs_fastest']:.3f}", flush=True)
    write(rows)


def write(rows: list[dict]) -> None:
    host, stamp = host_info(), utc_stamp()
    labels = [s.label for s in CPU_SETTINGS]
    lines = [
        "# Memory the deployed process uses: measured settings, original and floor", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. Peak resident MiB a session "
        "adds above a bare `import onnxruntime`, each in a fresh process. Original: the input model under "
        "onnxruntime's defaults (hwopt's thread count). Build: hwopt optimize's defaults (`--precision auto` with "
        "the calibration data benchmarks/quantize.py uses, `--optimize-for balanced`), checked, timed and probed on "
        "generated feeds (N(0,1) for the sample CNNs and token-shaped noise for transformer_tiny, synthetic text "
        "pages for PP-OCR, a synthetic tone for silero: peaks do not depend on the values); one column per candidate "
        "setting on the build, the chosen one starred. Floor: weights + planned arena + inputs/outputs + a "
        f"session of an empty graph. vs fastest: the chosen setting's p50 over the fastest candidate's, median "
        f"of {ROUNDS} interleaved rounds with fresh sessions (1.000 where the chosen one was the fastest). "
        f"Pass: peak at most {MODEL_LIMIT:.2f}x the original or within {FLOOR_LIMIT - 1:.0%} of the floor "
        f"(PP-OCRv4 det: at most {DET_LIMIT:.2f}x), and vs fastest at most {SPEED_LIMIT:.2f}.", "",
        "| model | precision | original | " + " | ".join(labels) + " | floor | build / original | build / floor "
        "| vs fastest | result |",
        "|---|---|" + "---:|" * (len(labels) + 6) + "---|",
    ]
    for row in rows:
        cells = []
        for label in labels:
            peak = row["candidates"].get(label, {}).get("peak_bytes")
            star = "*" if label == row["chosen"].split("+")[0] else ""
            cells.append("-" if peak is None else f"{peak / MIB:.1f}{star}")
        lines.append(f"| {row['model']} | {row['precision']} | {row['original_bytes'] / MIB:.1f} | " + " | ".join(cells)
                     + f" | {row['floor_bytes'] / MIB:.1f} | {row['ratio']:.2f} | {row['over_floor']:.2f} "
                     f"| {row['chosen_vs_fastest']:.3f} | {'PASS' if row['passed'] else 'FAIL'} |")
    write_results("memory_settings", stamp, host, {"models": rows}, lines)


if __name__ == "__main__":
    main()
