"""hwopt tune --target cpu --budget-minutes 5 against what a user gets without it: hwopt
optimize's defaults, the original model under onnxruntime's default options (ORT_ENABLE_ALL),
and onnxruntime's quantize_static with its defaults.

For each model: tune (calibration data as in benchmarks/quantize.py), build the baselines, then
time all four interleaved in one process for several rounds, each with fresh sessions;
latency is the median over rounds of p50 / p50 of the original under onnxruntime's
defaults. Accuracy of every variant is checked on the 4 held-out calibration samples against
the FP32 model with the default budget (cosine >= 0.99, top-1 >= 99%); a baseline over
budget does not count as a competitor.

    python benchmarks/tune.py [--models a,b] [--budget-minutes 5] [--rounds 5] [--seconds 2]

Writes benchmarks/results/tune.md and benchmarks/results/tune.json (after every model).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import warnings
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bench_models, fresh_session_p50s, median  # noqa: E402
from quantize import calibration_for, ort_baselines  # noqa: E402

from hwopt.feeds.inputs import resolve_input_specs  # noqa: E402
from hwopt.feeds.samples import load_samples  # noqa: E402
from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.optimize import optimize  # noqa: E402
from hwopt.options import (  # noqa: E402
    DEFAULT_HELD_OUT,
    OptimizeOptions,  # noqa: E402
    PrecisionOptions,
)
from hwopt.quant.accuracy import AccuracyBudget, compare  # noqa: E402
from hwopt.session import create_session, run_session  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402
from hwopt.tune import TuneOptions, tune  # noqa: E402

DEFAULT_MODELS = ("mobilenetv2_tiny", "resnext_tiny", "shufflenet_tiny", "inception_tiny", "ppocr_v4_det",
                  "ppocr_v4_rec", "ppocr_v2_cls")
ANCHOR = "ORT defaults"


def _build(folder: Path) -> tuple[Path, dict]:
    manifest = json.loads((folder / "build.json").read_text())
    return folder / manifest["model"], manifest["session_options"]


def measure(name: str, path: Path, budget_minutes: float, rounds: int, seconds: float, workdir: Path) -> dict:
    folder, image_spec = calibration_for(name, path)
    precision = PrecisionOptions(mode="auto", calib_path=folder, image_spec=image_spec)
    report = tune(path, TuneOptions(target="cpu", output_dir=workdir / "tuned", budget_seconds=budget_minutes * 60,
                                    base=OptimizeOptions(precision=precision)))
    optimize(path, OptimizeOptions(output_dir=workdir / "default", measure=False, precision=precision))
    specs = resolve_input_specs(onnx.load(str(path), load_external_data=False).graph)
    calib, held = load_samples(folder, specs, image_spec).split(DEFAULT_HELD_OUT)
    stock = ort_baselines(path, calib, workdir)

    variants = {"hwopt tune": _build(workdir / "tuned"), "hwopt optimize": _build(workdir / "default"),
                ANCHOR: (path, {})}
    if "ort_static" in stock:
        variants["ORT quantize_static"] = (stock["ort_static"], {})

    def open_all() -> dict:
        return {k: create_session(p, bench_session_options(o)) for k, (p, o) in variants.items()}

    sessions = open_all()
    reference = [run_session(sessions[ANCHOR], s) for s in held.samples]
    budget = AccuracyBudget()
    feeds = held.samples[0]
    p50s = fresh_session_p50s(open_all, feeds, rounds, seconds)
    row = {
        "model": name,
        "anchor_p50_ms": median(p50s[ANCHOR]),
        "tune": {"best": report.best.id if report.best else None, "elapsed_s": round(report.elapsed_seconds, 1),
                 "time_to_95pct_s": report.time_to_near_best,
                 "candidates": len(report.candidates),
                 "measured": sum(1 for c in report.candidates if c.ratio is not None),
                 "rejected": sum(1 for c in report.candidates if c.status == "rejected"),
                 "recipe_notes": report.recipe_notes},
        "variants": {},
    }
    for k, session in sessions.items():
        accuracy = compare(reference, [run_session(session, s) for s in held.samples])
        row["variants"][k] = {
            "ratio": median([p / a for p, a in zip(p50s[k], p50s[ANCHOR])]),
            "p50_ms": median(p50s[k]),
            "cosine": accuracy.cosine,
            "top1": accuracy.top1,
            "within_budget": accuracy.within(budget),
        }
    competitors = [v["ratio"] for k, v in row["variants"].items() if k != "hwopt tune" and v["within_budget"]]
    row["tune_vs_best_baseline"] = row["variants"]["hwopt tune"]["ratio"] / min(competitors)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset of model names")
    parser.add_argument("--budget-minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    wanted = set(args.models.split(",")) if args.models else set(DEFAULT_MODELS)
    rows = []
    for bm in bench_models():
        if bm.name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = measure(bm.name, bm.path, args.budget_minutes, args.rounds, args.seconds, Path(tmp))
        rows.append(row)
        v = row["variants"]
        print(f"{bm.name:18s} " + " ".join(f"{k}={v[k]['ratio']:.3f}" for k in v)
              + f" | best {row['tune']['best']} | 95% at {row['tune']['time_to_95pct_s']} s", flush=True)
        write(rows, args.budget_minutes)


def write(rows: list[dict], budget_minutes: float) -> None:
    host = host_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (RESULTS / "tune.json").write_text(json.dumps(
        {"date": stamp, "host": host.to_dict(), "budget_minutes": budget_minutes, "models": rows}, indent=2) + "\n")

    def cell(v: dict | None) -> str:
        if v is None:
            return "failed"
        top1 = f", top-1 {v['top1']:.0%}" if v["top1"] is not None else ""
        flag = "" if v["within_budget"] else " **over budget**"
        return f"{v['ratio']:.2f}x (cos {v['cosine']:.4f}{top1}){flag}"

    lines = [
        f"# hwopt tune --target cpu --budget-minutes {budget_minutes:g} against the alternatives", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; onnxruntime {host.onnxruntime}. Latency = p50 / p50 of the "
        "original model under onnxruntime's default session options, median of interleaved rounds in one "
        "process, fresh sessions each round; cos = worst cosine similarity to FP32 on 4 held-out calibration "
        "samples; top-1 = arg-max agreement for classifier-like outputs. tune vs best = tune's ratio / the best baseline within the "
        "accuracy budget (at most 1.00x means tune is at least as fast). 95% at = seconds into the search "
        "when a candidate within 5% of its final best was first timed.", "",
        "| model | ORT defaults p50 ms | hwopt tune | hwopt optimize | ORT quantize_static | tune vs best | "
        "tune's pick | 95% at / elapsed |",
        "|---|---:|---|---|---|---:|---|---|",
    ]
    for row in rows:
        v, t = row["variants"], row["tune"]
        lines.append(
            f"| {row['model']} | {row['anchor_p50_ms']:.2f} | {cell(v['hwopt tune'])} | {cell(v['hwopt optimize'])} | "
            f"{cell(v.get('ORT quantize_static'))} | {row['tune_vs_best_baseline']:.2f}x | {t['best']} | "
            f"{t['time_to_95pct_s']} s / {t['elapsed_s']} s |")
    (RESULTS / "tune.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'tune.md'}")


if __name__ == "__main__":
    main()
