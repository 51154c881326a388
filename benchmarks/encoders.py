"""Transformers: onnxruntime's transformer optimizer (+ quantize_dynamic) and hwopt's builds,
all against the original model under ORT defaults, interleaved in one process, fresh sessions
every round.

Models (benchmarks/transformer_models.py, random weights, exported on first use into benchmarks/models/):
a torch.nn.TransformerEncoder (``encoder``) and a transformers BertModel (``bert``), both 4
layers, hidden 256, 4 heads, run at batch 1, sequence 128.

Held-out feeds: 16 samples of token ids drawn uniformly over the whole vocabulary, attention
mask all ones, token types 0 for the first half of the sequence and 1 for the second; for
models with an attention mask, also a set whose last 25% of positions are padding (mask 0).
Accuracy = cosine similarity (mean over samples) and max abs difference of the flattened main
output against the original's, over all positions. Latency is timed on the first sample.

Variants: the original (ORT_ENABLE_ALL, intra-op threads = cores); ``optimize_model(model_type=
"bert", num_heads=4, hidden_size=256)`` (its other arguments at their defaults); that plus
``quantize_dynamic`` (defaults; and per_channel=True); hwopt's default build and its
``--precision fp32`` build (``hwopt.optimize``, input shapes 1 x 128, sessions as build.json
says). Every session in the timing runs with spinning off (hwopt.timing.NO_SPIN), as in the other
benchmarks: several live sessions would otherwise steal each other's cores.

    python benchmarks/encoders.py [--models encoder,bert] [--rounds 5] [--seconds 2] [--skip-hwopt]

Writes benchmarks/results/transformers.md and benchmarks/results/transformers.json.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR, RESULTS, fresh_session_p50s, median  # noqa: E402
from transformer_models import TRANSFORMER_MODELS, ensure_transformer_models, model_path  # noqa: E402

from hwopt.hostinfo import host_info  # noqa: E402
from hwopt.session import create_session, default_session_options  # noqa: E402
from hwopt.timing import bench_session_options  # noqa: E402

BATCH, SEQ = 1, 128
SAMPLES = 16
PADDING = 0.25
SEED = 1234
NUM_HEADS, HIDDEN = 4, 256
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "EmbedLayerNormalization")
VARIANTS = {  # key -> column title
    "ort": "ORT defaults",
    "ort_opt": "ORT transformer optimizer",
    "ort_opt_qdyn": "+ quantize_dynamic",
    "ort_opt_qdyn_pc": "+ quantize_dynamic per-channel",
    "hwopt": "hwopt default",
    "hwopt_fp32": "hwopt fp32",
}


def held_out(name: str, padding: float = 0.0) -> list[dict[str, np.ndarray]]:
    """``SAMPLES`` feeds at batch 1 x 128: ids uniform over the vocabulary (the same ids with
    and without padding), the last ``padding`` fraction of positions masked."""
    spec = TRANSFORMER_MODELS[name]
    rng = np.random.default_rng(SEED)
    pad_from = SEQ - int(round(SEQ * padding))
    samples = []
    for _ in range(SAMPLES):
        feeds = {"input_ids": rng.integers(0, spec.vocab, size=(BATCH, SEQ), dtype=np.int64)}
        if "attention_mask" in spec.inputs:
            mask = np.ones((BATCH, SEQ), dtype=np.int64)
            mask[:, pad_from:] = 0
            feeds["attention_mask"] = mask
        if "token_type_ids" in spec.inputs:
            feeds["token_type_ids"] = np.repeat((np.arange(SEQ) >= SEQ // 2)[None].astype(np.int64), BATCH, axis=0)
        samples.append(feeds)
    return samples


def op_counts(path: Path) -> dict[str, int]:
    counts = collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: counts.get(op, 0) for op in FUSED_OPS}


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def ort_variants(path: Path, workdir: Path, row: dict) -> dict[str, Path]:
    """The ORT transformer optimizer's model and its quantize_dynamic forms; failures go in ``row``."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from hwopt.output import inside

    out: dict[str, Path] = {}
    opt = workdir / "ort_opt.onnx"
    began = time.perf_counter()
    try:
        with inside(workdir):
            optimized = optimize_model(str(path), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN)
            optimized.save_model_to_file(str(opt))
        out["ort_opt"] = opt
        row["ort_optimizer"] = {"seconds": time.perf_counter() - began, "fused": op_counts(opt),
                                "statistics": dict(optimized.get_fused_operator_statistics())}
    except Exception as exc:  # noqa: BLE001 - reported in the table
        row["errors"]["ort_opt"] = error_text(exc)
        return out
    for key, per_channel in (("ort_opt_qdyn", False), ("ort_opt_qdyn_pc", True)):
        target = workdir / f"{key}.onnx"
        began = time.perf_counter()
        try:
            with inside(workdir):
                try:
                    quantize_dynamic(str(opt), str(target), per_channel=per_channel)
                except RuntimeError as exc:
                    # onnx shape inference cannot type the outputs of com.microsoft ops (the
                    # fused Attention, SkipLayerNormalization); the quantizer's own advice:
                    if "DefaultTensorType" not in str(exc):
                        raise
                    quantize_dynamic(str(opt), str(target), per_channel=per_channel,
                                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
                    row.setdefault("notes", {})[key] = "quantize_dynamic needed DefaultTensorType=FLOAT"
            out[key] = target
            row.setdefault("quantize_seconds", {})[key] = time.perf_counter() - began
        except Exception as exc:  # noqa: BLE001
            row["errors"][key] = error_text(exc)
    return out


def hwopt_build(path: Path, mode: str, out_dir: Path, row: dict, key: str) -> Path | None:
    """hwopt.optimize for the cpu target at 1 x 128 in ``mode`` precision; the build folder, or
    None with the error recorded in ``row`` (the API is in flux: any failure is a result)."""
    from hwopt.optimize import optimize
    from hwopt.options import OptimizeOptions, PrecisionOptions

    spec = TRANSFORMER_MODELS[row["model"]]
    began = time.perf_counter()
    try:
        options = OptimizeOptions(targets=("cpu",), output_dir=out_dir, measure=False,
                                  input_shapes={name: (BATCH, SEQ) for name in spec.inputs},
                                  precision=PrecisionOptions(mode=mode))
        optimize(path, options)
    except Exception as exc:  # noqa: BLE001 - recorded in the row
        row["errors"][key] = error_text(exc)
        row["hwopt"][key] = {"seconds": time.perf_counter() - began, "traceback": traceback.format_exc()[-2000:]}
        return None
    info: dict = {"seconds": time.perf_counter() - began}
    try:
        manifest = json.loads((out_dir / "build.json").read_text())
        info["build_precision"] = manifest.get("precision")
        info["session_options"] = manifest.get("session_options")
        info["providers"] = manifest.get("providers")
        report = json.loads((out_dir / "report.json").read_text())
        build = (report.get("builds") or [{}])[0]
        info["precision"] = build.get("precision")
        info["precision_label"] = build.get("precision_label")
        info["graph_choice"] = build.get("graph_choice")
        info["passes_applied"] = [p.get("name") for p in build.get("passes", []) if p.get("status") == "applied"]
        info["fused"] = op_counts(out_dir / manifest.get("model", "model.onnx"))
        info["ops"] = dict(collections.Counter(
            n.op_type for n in onnx.load(str(out_dir / manifest.get("model", "model.onnx"))).graph.node))
    except Exception as exc:  # noqa: BLE001 - the files' layout may change; keep what was read
        info["read_error"] = error_text(exc)
    row["hwopt"][key] = info
    return out_dir


def open_variant(variant: Path, timing: bool):
    """A session for a model file or an hwopt build folder (as build.json says; with
    ``timing``, spinning off like every other session in the race)."""
    if variant.is_dir():
        from hwopt.runtime import load, read_build

        if not timing:
            try:
                return load(variant)
            except Exception:  # noqa: BLE001 - fall back to the recorded options by hand
                pass
        build = read_build(variant)
        return create_session(build.model_path, bench_session_options(build.session_options), build.providers,
                              base_dir=build.folder)
    options = default_session_options("all")
    return create_session(variant, bench_session_options(options) if timing else options)


def accuracy(reference: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    cosines = []
    for r, g in zip(reference, got):
        r, g = r.ravel().astype(np.float64), g.ravel().astype(np.float64)
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cosines.append(float(r @ g) / denom if denom else float("nan"))
    return {"cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines)),
            "max_abs_diff": float(max(np.abs(r - g).max() for r, g in zip(reference, got)))}


def main_outputs(session, samples: list[dict[str, np.ndarray]], output: str) -> list[np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    return [session.run([output], {k: v for k, v in s.items() if k in names})[0] for s in samples]


def measure(name: str, path: Path, rounds: int, seconds: float, skip_hwopt: bool, workdir: Path) -> dict:
    spec = TRANSFORMER_MODELS[name]
    row: dict = {"model": name, "file": path.name, "errors": {}, "hwopt": {}, "variants": {}}
    variants: dict[str, Path] = {"ort": path, **ort_variants(path, workdir, row)}
    if not skip_hwopt:
        for key, mode in (("hwopt", "auto"), ("hwopt_fp32", "fp32")):
            build = hwopt_build(path, mode, workdir / key, row, key)
            if build is not None:
                variants[key] = build

    sets = {"full": held_out(name)}
    if "attention_mask" in spec.inputs:
        sets["padded"] = held_out(name, PADDING)
    output = spec.outputs[0]
    reference = {}
    for key, variant in list(variants.items()):
        try:
            session = open_variant(variant, timing=False)
            outs = {s: main_outputs(session, samples, output) for s, samples in sets.items()}
        except Exception as exc:  # noqa: BLE001 - a variant that does not run is a result
            row["errors"][key] = error_text(exc)
            del variants[key]
            continue
        if key == "ort":
            reference = outs
        row["variants"][key] = {s: accuracy(reference[s], outs[s]) for s in sets}
        del session

    feeds = sets["full"][0]

    def open_all() -> dict:
        return {k: open_variant(v, timing=True) for k, v in variants.items()}

    began = time.perf_counter()
    p50s = fresh_session_p50s(open_all, feeds, rounds, seconds)
    row["timing_seconds"] = time.perf_counter() - began
    row["ort_p50_ms"] = median(p50s["ort"])
    for key in variants:
        row["variants"][key].update({
            "ratio": median([p / f for p, f in zip(p50s[key], p50s["ort"])]),
            "p50_ms": median(p50s[key]), "p50s_ms": p50s[key]})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(TRANSFORMER_MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--skip-hwopt", action="store_true", help="measure only the onnxruntime variants")
    args = parser.parse_args()
    wanted = args.models.split(",") if args.models else list(TRANSFORMER_MODELS)
    unknown = sorted(set(wanted) - set(TRANSFORMER_MODELS))
    if unknown:
        sys.exit(f"unknown model(s): {', '.join(unknown)}")
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" advice
    started = time.perf_counter()
    missing = [n for n in TRANSFORMER_MODELS if not model_path(REAL_DIR, n).is_file()]
    paths = ensure_transformer_models(REAL_DIR)
    export_seconds = time.perf_counter() - started
    if missing:
        print(f"exported {', '.join(missing)} in {export_seconds:.1f} s", flush=True)
    rows = []
    for name in wanted:
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="hwopt-transformers-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = measure(name, paths[name], args.rounds, args.seconds, args.skip_hwopt, Path(tmp))
        row["seconds"] = time.perf_counter() - began
        rows.append(row)
        v = row["variants"]
        print(f"{name:8s} ort p50 {row['ort_p50_ms']:.2f} ms | "
              + " ".join(f"{k}={v[k]['ratio']:.3f}/cos{v[k]['full']['cosine']:.4f}" for k in v)
              + f" | {row['seconds']:.0f} s", flush=True)
        for key, error in row["errors"].items():
            print(f"  {key} failed: {error}", flush=True)
    write(rows, {"rounds": args.rounds, "seconds": args.seconds, "skip_hwopt": args.skip_hwopt,
                 "export_seconds": export_seconds if missing else None, "exported": missing,
                 "total_seconds": time.perf_counter() - started})


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("onnxruntime", "onnx", "torch", "transformers"):
        try:  # by distribution: ``import transformers`` here would find this file
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def hwopt_line(info: dict | None, error: str | None) -> str:
    if info is None and error is None:
        return "not run"
    if error is not None:
        return f"failed after {info['seconds']:.0f} s ({error})" if info else f"failed ({error})"
    precision = info.get("precision")
    if not isinstance(precision, dict):  # fp32 builds have no precision stage
        precision = {}
    chose = (precision.get("chosen_label") or info.get("precision_label") or info.get("build_precision")
             or precision.get("chosen") or "?")
    reason = precision.get("reason")
    fused = {k: v for k, v in (info.get("fused") or {}).items() if v}
    passes = info.get("passes_applied")
    return (f"{chose}" + (f" ({reason})" if reason else "") + f"; optimize took {info['seconds']:.0f} s"
            + (f"; passes applied: {', '.join(passes)}" if passes else "")
            + (f"; fused ops in the build: {fused}" if fused else ""))


def write(rows: list[dict], run: dict) -> None:
    host = host_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (RESULTS / "transformers.json").write_text(json.dumps(
        {"date": stamp, "host": host.to_dict(), "versions": versions(), "run": run, "models": rows}, indent=2) + "\n")

    def cell(row: dict, key: str) -> str:
        v = row["variants"].get(key)
        if v is None:
            return "failed" if key in row["errors"] else "-"
        return f"{v['ratio']:.2f}x (cos {v['full']['cosine']:.4f})"

    def acc(row: dict, key: str, samples: str) -> str:
        v = row["variants"].get(key, {}).get(samples)
        return "-" if v is None else f"{v['cosine']:.5f} / {v['max_abs_diff']:.3g}"

    lines = [
        "# Transformers: onnxruntime's transformer optimizer and quantize_dynamic vs hwopt", "",
        f"{stamp}; {host.cpu}, {host.cores} cores; instruction sets: {', '.join(host.isa)}; onnxruntime "
        f"{host.onnxruntime}. Batch 1, sequence 128. Latency = p50 / the original's p50 (ORT_ENABLE_ALL, "
        f"{default_session_options()['intra_op_num_threads']} intra-op threads, spinning off in every session), "
        f"median of {run['rounds']} interleaved rounds of {run['seconds']:g} s, fresh sessions each round; "
        f"cos = mean cosine similarity of the main output to the original's on {SAMPLES} held-out samples "
        "(token ids uniform over the whole vocabulary, no padding). Random-weight models from "
        "benchmarks/transformer_models.py.", "",
        "| model | original p50 ms | " + " | ".join(VARIANTS.values()) + " |",
        "|---|---:|" + "---|" * len(VARIANTS),
    ]
    for row in rows:
        lines.append(f"| {row['model']} | {row['ort_p50_ms']:.2f} | "
                     + " | ".join(cell(row, k) for k in VARIANTS) + " |")
    lines += ["", "Accuracy detail, mean cosine / max abs diff of the main output (all positions); "
              f"padded = the same ids with the last {PADDING:.0%} of positions masked:", "",
              "| model | samples | " + " | ".join(VARIANTS.values()) + " |",
              "|---|---|" + "---|" * len(VARIANTS)]
    for row in rows:
        for samples in ("full", "padded"):
            if any(samples in v for v in row["variants"].values()):
                lines.append(f"| {row['model']} | {samples} | " + " | ".join(acc(row, k, samples) for k in VARIANTS)
                             + " |")
    lines.append("")
    for row in rows:
        opt = row.get("ort_optimizer")
        fused = ", ".join(f"{k} {v}" for k, v in opt["fused"].items()) if opt else "failed"
        lines.append(f"* **{row['model']}**: ORT transformer optimizer's ops: {fused}.")
        if not run["skip_hwopt"]:
            for key in ("hwopt", "hwopt_fp32"):
                lines.append(f"  * {VARIANTS[key]}: {hwopt_line(row['hwopt'].get(key), row['errors'].get(key))}.")
        for key, error in row["errors"].items():
            if not key.startswith("hwopt"):
                lines.append(f"  * {VARIANTS.get(key, key)} failed: {error}.")
        for key, note in row.get("notes", {}).items():
            lines.append(f"  * {VARIANTS.get(key, key)}: {note} (onnx shape inference cannot type the outputs "
                         "of the optimizer's com.microsoft ops; the quantizer's error message advises it).")
    versions_line = ", ".join(f"{k} {v}" for k, v in versions().items())
    lines += ["", f"Versions: {versions_line}. Whole run {run['total_seconds']:.0f} s."]
    (RESULTS / "transformers.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'transformers.md'}")


if __name__ == "__main__":
    main()
