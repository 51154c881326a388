"""The benchmark model set and helpers shared by the scripts under benchmarks/.

Models: the five samples, and the real trained models that ship inside PyPI packages
(fetched by ../shared/models/fetch_real_models.sh into benchmarks/models/, not committed).
Each model comes with the concrete feeds it is benchmarked on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
REAL_DIR = Path(os.environ.get("HWOPT_BENCH_MODELS", ROOT / "benchmarks" / "models"))
FETCH_SCRIPT = ROOT.parent / "shared" / "models" / "fetch_real_models.sh"
RESULTS = ROOT / "benchmarks" / "results"


@dataclasses.dataclass(frozen=True)
class BenchModel:
    name: str
    path: Path
    make_feeds: Callable[[np.random.Generator], dict[str, np.ndarray]]
    kind: str  # "sample" or "real"


def _image(name: str, *shape: int) -> Callable[[np.random.Generator], dict[str, np.ndarray]]:
    return lambda rng: {name: rng.standard_normal(shape).astype(np.float32)}


def text_image(rng: np.random.Generator, height: int, width: int, lines: int) -> np.ndarray:
    """A white page with dark glyph-like strokes on ``lines`` text lines, as uint8 HxWx3.

    Detection and recognition models give meaningful (non-saturated) outputs on it; on noise
    the PP-OCR detector's probability map is ~1e-6 everywhere, so relative errors there are
    rounding noise over nothing.
    """
    page = np.full((height, width, 3), 255, dtype=np.uint8)
    line_h = max(4, height // (2 * lines + 1))
    for line in range(lines):
        top = (2 * line + 1) * line_h
        x = int(rng.integers(2, max(3, width // 20)))
        while x < width - 4:
            glyph = int(rng.integers(2, max(3, line_h)))
            page[top : top + line_h, x : min(width - 2, x + glyph)] = int(rng.integers(0, 80))
            x += glyph + int(rng.integers(1, max(2, line_h // 2)))
    return page


def _ppocr(name: str, height: int, width: int, lines: int, imagenet: bool):
    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        img = text_image(rng, height, width, lines) / 255.0
        if imagenet:  # the detector's preprocessing
            img = (img - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        else:  # recognizer and classifier: scale to [-1, 1]
            img = (img - 0.5) / 0.5
        return {name: img.transpose(2, 0, 1)[None].astype(np.float32)}

    return make


def _silero(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(512) / 16000.0
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(512)
    return {
        "input": audio.astype(np.float32)[None, :],
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(16000, dtype=np.int64),
    }


def bench_models(include_real: bool = True) -> list[BenchModel]:
    models = [
        BenchModel(stem, SAMPLES / f"{stem}.onnx", _image("input", 1, 3, 96, 96), "sample")
        for stem in ("mobilenetv2_tiny", "resnext_tiny", "shufflenet_tiny", "inception_tiny")
    ]
    models.append(BenchModel("transformer_tiny", SAMPLES / "transformer_tiny.onnx",
                             _image("tokens", 1, 32, 64), "sample"))
    if include_real:
        ensure_real_models()
        models += [
            BenchModel("ppocr_v4_det", REAL_DIR / "ch_PP-OCRv4_det_infer.onnx",
                       _ppocr("x", 640, 640, lines=12, imagenet=True), "real"),
            BenchModel("ppocr_v4_rec", REAL_DIR / "ch_PP-OCRv4_rec_infer.onnx",
                       _ppocr("x", 48, 320, lines=1, imagenet=False), "real"),
            BenchModel("ppocr_v2_cls", REAL_DIR / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                       _ppocr("x", 48, 192, lines=1, imagenet=False), "real"),
            BenchModel("silero_vad", REAL_DIR / "silero_vad.onnx", _silero, "real"),
            BenchModel("silero_vad_op18", REAL_DIR / "silero_vad_op18_ifless.onnx", _silero, "real"),
        ]
    return models


def ensure_real_models() -> None:
    wanted = ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
              "ch_ppocr_mobile_v2.0_cls_infer.onnx", "silero_vad.onnx", "silero_vad_op18_ifless.onnx")
    if all((REAL_DIR / name).is_file() for name in wanted):
        return
    if not FETCH_SCRIPT.is_file():
        sys.exit(f"real models missing from {REAL_DIR} and no fetch script at {FETCH_SCRIPT}")
    REAL_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(FETCH_SCRIPT), str(REAL_DIR)], check=True)


def save_feeds(feeds: dict[str, np.ndarray], path: Path) -> Path:
    np.savez(path, **feeds)
    return path


def interleaved_p50s(sessions: dict, feeds: dict, rounds: int, seconds: float) -> dict[str, list[float]]:
    """p50 (ms) of every session in each of ``rounds`` interleaved rounds, all in this process."""
    from hwopt.timing import BenchConfig, measure_latency

    p50s: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        stats = measure_latency({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()},
                                BenchConfig(target_seconds=seconds))
        for name, st in stats.items():
            p50s[name].append(st.p50_ms)
    return p50s


def fresh_session_p50s(open_sessions, feeds: dict, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Like :func:`interleaved_p50s`, with sessions from ``open_sessions()`` made anew for every
    round: one session of a model can run several percent off another (where its buffers
    landed), and a user gets a fresh one."""
    p50s: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, values in interleaved_p50s(open_sessions(), feeds, 1, seconds).items():
            p50s.setdefault(name, []).extend(values)
    return p50s


def median(values: list[float]) -> float:
    return float(np.median(np.asarray(values)))


def utc_stamp() -> str:
    """When a results table was written, as its header says it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_results(stem: str, stamp: str, host, data: dict, lines: list[str]) -> None:
    """benchmarks/results/<stem>.json (the date, the host, then ``data``) and <stem>.md (``lines``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"date": stamp, "host": host.to_dict(), **data}, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / f'{stem}.md'}")
