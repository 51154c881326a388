"""Loading: valid models load; every malformed or hostile file is a one-line ModelLoadError."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SAMPLE_MODELS, save, sha256, tiny_conv_model
from onnx import numpy_helper

from hwopt.errors import ModelLoadError
from hwopt.model.load import LoadLimits, load_model


@pytest.mark.parametrize("path", SAMPLE_MODELS, ids=lambda p: p.stem)
def test_sample_models_load(path: Path) -> None:
    before = sha256(path)
    loaded = load_model(path)
    assert loaded.proto.graph.node
    assert loaded.sha256 == before == sha256(path)
    assert loaded.file_bytes == path.stat().st_size


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"\x00\x01\x02garbage" * 50, "not an ONNX model"),
        (b"just some text, certainly not a protobuf\n", "not an ONNX model"),
    ],
)
def test_not_a_model(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "nope.onnx")


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_model(tmp_path)


def test_truncated_model(tmp_path: Path) -> None:
    data = tiny_conv_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load_model(path)


def test_dangling_input_is_invalid(tmp_path: Path) -> None:
    model = tiny_conv_model()
    model.graph.node[2].input[0] = "does_not_exist"
    with pytest.raises(ModelLoadError, match="invalid model"):
        load_model(save(model, tmp_path / "dangling.onnx"))


def test_file_size_limit(tiny_model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="limit"):
        load_model(tiny_model_path, LoadLimits(max_file_bytes=100))


def test_raw_data_length_must_match_dims(tmp_path: Path) -> None:
    model = tiny_conv_model()
    model.graph.initializer[1].raw_data = b"\x00" * 3
    with pytest.raises(ModelLoadError, match="bytes of data"):
        load_model(save(model, tmp_path / "short.onnx"))


def _external_model(tmp_path: Path, location: str, offset: int = 0, length: int | None = None):
    """The tiny model with its conv weight pointing at external data ``location``."""
    model = tiny_conv_model()
    weight = model.graph.initializer[0]
    data = numpy_helper.to_array(weight).tobytes()
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(length or len(data))}
    for key, value in entries.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model, data


def test_external_data_inside_folder_loads(tmp_path: Path) -> None:
    model, data = _external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(data)
    loaded = load_model(save(model, tmp_path / "m.onnx"))
    assert loaded.external_files == ("weights.bin",)
    np.testing.assert_array_equal(
        numpy_helper.to_array(loaded.proto.graph.initializer[0]).tobytes(), data
    )


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd"])
def test_external_data_outside_folder_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    model, data = _external_model(folder, location)
    (tmp_path / "outside.bin").write_bytes(data)
    with pytest.raises(ModelLoadError, match="absolute|escapes"):
        load_model(save(model, folder / "m.onnx"))


def test_external_data_symlink_refused(tmp_path: Path) -> None:
    model, data = _external_model(tmp_path, "link.bin")
    (tmp_path / "real.bin").write_bytes(data)
    os.symlink(tmp_path / "real.bin", tmp_path / "link.bin")
    with pytest.raises(ModelLoadError, match="symlink"):
        load_model(save(model, tmp_path / "m.onnx"))


def test_external_data_hardlink_refused(tmp_path: Path) -> None:
    model, data = _external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(data)
    os.link(tmp_path / "weights.bin", tmp_path / "other-name.bin")
    with pytest.raises(ModelLoadError, match="hard-linked"):
        load_model(save(model, tmp_path / "m.onnx"))


def test_external_data_missing_file(tmp_path: Path) -> None:
    model, _ = _external_model(tmp_path, "missing.bin")
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(save(model, tmp_path / "m.onnx"))


def test_external_data_offset_past_end(tmp_path: Path) -> None:
    model, data = _external_model(tmp_path, "weights.bin", offset=64)
    (tmp_path / "weights.bin").write_bytes(data)
    with pytest.raises(ModelLoadError, match="outside"):
        load_model(save(model, tmp_path / "m.onnx"))


def test_external_data_length_must_match_dims(tmp_path: Path) -> None:
    model, data = _external_model(tmp_path, "weights.bin", length=16)
    (tmp_path / "weights.bin").write_bytes(data)
    with pytest.raises(ModelLoadError, match="differs"):
        load_model(save(model, tmp_path / "m.onnx"))


def test_huge_declared_tensor_refused(tmp_path: Path) -> None:
    model = tiny_conv_model()
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    del weight.dims[:]
    weight.dims.extend([1 << 20, 1 << 20])
    with pytest.raises(ModelLoadError, match="elements"):
        load_model(save(model, tmp_path / "huge.onnx"))
