"""hwopt.runtime.load: the session build.json describes, refused on a mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SAMPLES, fp32_options

from hwopt import runtime
from hwopt.errors import ModelLoadError, RuntimeMismatch
from hwopt.optimize import optimize


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rt") / "b"
    optimize(SAMPLES / "resnext_tiny.onnx", fp32_options(output_dir=out, measure=False))
    return out


def test_load_configures_the_session_as_recorded(build: Path) -> None:
    session = runtime.load(build)
    manifest = json.loads((build / "build.json").read_text())
    assert session.get_providers() == [p["name"] for p in manifest["providers"]]
    (out,) = session.run(None, {"input": np.zeros((2, 3, 96, 96), np.float32)})
    assert out.shape == (2, 100)


def _edit_manifest(build: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.onnx", "memory_plan.json"):
        (copy / name).write_bytes((build / name).read_bytes())
    manifest = json.loads((build / "build.json").read_text())
    for key, value in changes.items():
        if key == "ort":
            manifest["versions"]["onnxruntime"] = value
        else:
            manifest[key] = value
    (copy / "build.json").write_text(json.dumps(manifest))
    return copy


def test_other_onnxruntime_version_is_refused_unless_not_strict(build: Path, tmp_path: Path) -> None:
    copy = _edit_manifest(build, tmp_path, ort="0.0.1")
    with pytest.raises(RuntimeMismatch, match=f"built with onnxruntime 0.0.1, this is {ort.__version__}"):
        runtime.load(copy)
    with pytest.warns(UserWarning, match="0.0.1"):
        assert runtime.load(copy, strict=False) is not None


def test_missing_provider_is_refused(build: Path, tmp_path: Path) -> None:
    copy = _edit_manifest(build, tmp_path, providers=[{"name": "FancyExecutionProvider", "options": {}}])
    with pytest.raises(RuntimeMismatch, match="FancyExecutionProvider"):
        runtime.load(copy)


def test_modified_model_is_refused(build: Path, tmp_path: Path) -> None:
    copy = _edit_manifest(build, tmp_path)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\x00")
    with pytest.raises(ModelLoadError, match="does not match its recorded SHA-256"):
        runtime.load(copy)


def test_incomplete_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a complete hwopt build"):
        runtime.load(tmp_path)
