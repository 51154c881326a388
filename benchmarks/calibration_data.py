"""Calibration and held-out data that looks like each benchmark model's real inputs.

* PP-OCR det: 640x640 white pages with several lines of black text rendered with Pillow;
  rec: 48x320 single text lines; cls: 48x192 text lines, a third of them upside down.
  Written as PNG folders, preprocessed by hwopt's image pipeline ([calibration.image]).
* silero VAD: 512-sample frames of synthetic audio (voiced bursts of harmonics with a pitch
  glide, noise, silence) at 16 kHz, with zero state, as .npz files.
* the samples and DenseNet/GoogLeNet replicas: N(0, 1) images as .npz files (these models
  have random weights; no real data exists for them).

    python benchmarks/calibration_data.py [FOLDER]      # default benchmarks/models/calib

Deterministic (fixed seeds); existing folders are kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR  # noqa: E402

CALIB_DIR = REAL_DIR / "calib"
WORDS = ("invoice", "total", "2026", "hwopt", "ONNX", "receipt", "No.", "price", "42.50", "address",
         "Road", "quantity", "date", "order", "item", "tax", "name", "TEL", "model", "batch")

# How each PP-OCR model's images become inputs (matches PaddleOCR's preprocessing).
IMAGE_SPECS = {
    "ppocr_v4_det": {"size": [640, 640], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "ppocr_v4_rec": {"size": [48, 320], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "ppocr_v2_cls": {"size": [48, 192], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _line(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def text_page(rng: np.random.Generator, height: int = 640, width: int = 640):
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(225, 256, 3)))
    draw = ImageDraw.Draw(page)
    y = int(rng.integers(10, 40))
    while y < height - 40:
        size = int(rng.integers(16, 36))
        shade = tuple(int(v) for v in rng.integers(0, 70, 3))
        draw.text((int(rng.integers(5, 60)), y), _line(rng, int(rng.integers(2, 7))), fill=shade, font=_font(size))
        y += size + int(rng.integers(8, 40))
    return page


def text_line(rng: np.random.Generator, height: int, width: int, flip: bool = False):
    from PIL import Image, ImageDraw

    line = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(220, 256, 3)))
    ImageDraw.Draw(line).text(
        (int(rng.integers(2, 12)), int(rng.integers(2, 10))), _line(rng, int(rng.integers(1, 4))),
        fill=tuple(int(v) for v in rng.integers(0, 60, 3)), font=_font(int(rng.integers(24, 34))),
    )
    return line.rotate(180) if flip else line


def speech_like(rng: np.random.Generator, n: int = 512, rate: int = 16000) -> np.ndarray:
    t = np.arange(n) / rate
    if rng.random() < 0.3:
        return (0.01 * rng.standard_normal(n)).astype(np.float32)  # near silence
    f0 = rng.uniform(90, 250)
    glide = f0 * (1 + 0.1 * rng.standard_normal()) * t
    voice = sum(np.sin(2 * np.pi * k * (f0 * t + glide)) / k for k in range(1, 6))
    envelope = np.hanning(n) ** rng.uniform(0.3, 1.0)
    return (0.3 * voice * envelope + 0.02 * rng.standard_normal(n)).astype(np.float32)


def write_images(folder: Path, count: int, make) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        make(i).save(folder / f"{i:03d}.png")


def ensure_calibration(root: Path = CALIB_DIR, count: int = 24) -> dict[str, Path]:
    """Folders of calibration (and held-out) samples by benchmark model name."""
    rng = np.random.default_rng(7)
    folders = {name: root / name for name in ("ppocr_v4_det", "ppocr_v4_rec", "ppocr_v2_cls", "silero")}
    if not folders["ppocr_v4_det"].is_dir():
        write_images(folders["ppocr_v4_det"], count, lambda i: text_page(rng))
    if not folders["ppocr_v4_rec"].is_dir():
        write_images(folders["ppocr_v4_rec"], count, lambda i: text_line(rng, 48, 320))
    if not folders["ppocr_v2_cls"].is_dir():
        write_images(folders["ppocr_v2_cls"], count, lambda i: text_line(rng, 48, 192, flip=i % 3 == 0))
    if not folders["silero"].is_dir():
        folders["silero"].mkdir(parents=True)
        for i in range(count):
            np.savez(folders["silero"] / f"{i:03d}.npz", input=speech_like(rng)[None, :],
                     state=np.zeros((2, 1, 128), np.float32), sr=np.array(16000, dtype=np.int64))
    return folders


def random_images(folder: Path, name: str, shape: tuple[int, ...], count: int = 24) -> Path:
    if not folder.is_dir():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(11)
        for i in range(count):
            np.savez(folder / f"{i:03d}.npz", **{name: rng.standard_normal(shape).astype(np.float32)})
    return folder


if __name__ == "__main__":
    for model, folder in ensure_calibration(Path(sys.argv[1]) if len(sys.argv) > 1 else CALIB_DIR).items():
        print(model, folder, len(list(folder.iterdir())))
