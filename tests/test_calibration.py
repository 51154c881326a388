"""Calibration data: array and image sources, preprocessing, splits, and an ORT calibrator."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from PIL import Image

from hwopt.errors import ConfigError, InputSpecError, UsageError
from hwopt.feeds.images import ImageSpec, load_image
from hwopt.feeds.inputs import InputSpec, generate_feeds, resolve_input_specs
from hwopt.feeds.samples import SampleSet, generated_samples, load_samples
from hwopt.quant.calibration import SampleReader

CONV_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
conv (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) <float[4, 3, 3, 3] w, float[4] b> {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    y = Relu (c)
}
"""


def conv_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(CONV_TEXT)
    rng = np.random.default_rng(0)
    del model.graph.initializer[:]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
        ]
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def specs_of(signature: str) -> list[InputSpec]:
    """The input specs of a graph with the given inputs, e.g. ``float[N, 3, 4, 4] x``."""
    model = onnx.parser.parse_model(f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({signature}) => (float y) {{
    y = Constant <value_float = 1.0> ()
}}
""")
    return resolve_input_specs(model.graph)


IMAGE_SPECS = specs_of("float[N, 3, 2, 3] x")
ONE_INPUT = specs_of("float[N, 4] x")
TWO_INPUTS = specs_of("float[N, seq, 4] a, int64[N, seq] b")


def write_png(path: Path, pixels: np.ndarray | list) -> Path:
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def uniform_png(path: Path, width: int, height: int, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (width, height), colour).save(path)
    return path


def ids(samples: SampleSet, name: str = "x") -> list[int]:
    """The sample numbers of samples made by numbered_set."""
    return [int(sample[name][0, 0]) for sample in samples.samples]


def numbered_set(count: int) -> SampleSet:
    return SampleSet([{"x": np.full((1, 4), i, np.float32)} for i in range(count)], f"{count} numbered")


# Pixels (height 2, width 3) and their values after scale 1/255, mean 0.5, std (0.5, 0.25, 1)
# in RGB order, worked out by hand: (p / 255 - 0.5) / std.
PIXELS = [
    [(255, 0, 0), (51, 102, 204), (0, 0, 255)],
    [(0, 0, 0), (255, 255, 255), (0, 255, 0)],
]
NORMALIZED_RGB = np.array(
    [
        [[1.0, -2.0, -0.5], [-0.6, -0.4, 0.3], [-1.0, -2.0, 0.5]],
        [[-1.0, -2.0, -0.5], [1.0, 2.0, 0.5], [-1.0, 2.0, -0.5]],
    ],
    np.float32,
)  # [height, width, channel]
NORMALIZED = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.25, 1.0)}


# --- image preprocessing -------------------------------------------------------------------


def test_image_rgb_nchw_values(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", PIXELS)
    array = load_image(path, ImageSpec(size=(2, 3), **NORMALIZED))
    assert array.shape == (1, 3, 2, 3) and array.dtype == np.float32
    np.testing.assert_allclose(array[0], NORMALIZED_RGB.transpose(2, 0, 1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(array[0, :, 0, 0], [1.0, -2.0, -0.5], rtol=0, atol=1e-6)


def test_image_bgr_nhwc_values(tmp_path: Path) -> None:
    # mean and std are in the model's channel order: channel 0 is now blue, with std 0.5.
    path = write_png(tmp_path / "a.png", PIXELS)
    array = load_image(path, ImageSpec(size=(2, 3), channel_order="BGR", layout="NHWC", **NORMALIZED))
    assert array.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(array[0, 0, 0], [-1.0, -2.0, 0.5], rtol=0, atol=1e-6)  # (255, 0, 0)
    np.testing.assert_allclose(array[0, 0, 1], [0.6, -0.4, -0.3], rtol=0, atol=1e-6)  # (51, 102, 204)
    np.testing.assert_allclose(array[0, 0, 2], [1.0, -2.0, -0.5], rtol=0, atol=1e-6)  # (0, 0, 255)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_image_raw_pixels_layouts(tmp_path: Path, layout: str, order: str) -> None:
    path = write_png(tmp_path / "a.png", PIXELS)
    spec = ImageSpec(size=(2, 3), scale=1.0, channel_order=order, layout=layout)
    array = load_image(path, spec)
    hwc = np.asarray(PIXELS, np.float32)[..., :: -1 if order == "BGR" else 1]
    expected = hwc.transpose(2, 0, 1) if layout == "NCHW" else hwc
    assert array.shape == spec.batch_shape()
    np.testing.assert_array_equal(array[0], expected)


def test_image_stretch_ignores_aspect(tmp_path: Path) -> None:
    path = uniform_png(tmp_path / "a.png", width=8, height=4, colour=(200, 100, 50))
    array = load_image(path, ImageSpec(size=(3, 5), scale=1.0))
    assert array.shape == (1, 3, 3, 5)
    np.testing.assert_array_equal(
        array[0, :, :, :], np.broadcast_to([[[200.0]], [[100.0]], [[50.0]]], (3, 3, 5))
    )


def test_image_letterbox_pads_vertically(tmp_path: Path) -> None:
    # 8x4 (wide) into height 3, width 2: scaled by 1/4 to 2x1, centred in row 1.
    path = uniform_png(tmp_path / "a.png", width=8, height=4, colour=(200, 100, 50))
    array = load_image(
        path, ImageSpec(size=(3, 2), scale=1.0, resize="letterbox", pad_value=114, layout="NHWC")
    )
    assert array.shape == (1, 3, 2, 3)
    np.testing.assert_array_equal(array[0, 1], [[200, 100, 50], [200, 100, 50]])
    np.testing.assert_array_equal(array[0, [0, 2]], np.full((2, 2, 3), 114.0))


def test_image_letterbox_pads_horizontally(tmp_path: Path) -> None:
    # 2x4 (tall) into height 2, width 4: scaled by 1/2 to 1x2, centred in column 1.
    path = uniform_png(tmp_path / "a.png", width=2, height=4, colour=(10, 20, 30))
    array = load_image(path, ImageSpec(size=(2, 4), scale=1.0, resize="letterbox", pad_value=7))
    np.testing.assert_array_equal(array[0, :, :, 1], [[10, 10], [20, 20], [30, 30]])
    np.testing.assert_array_equal(array[0, :, :, [0, 2, 3]], np.full((3, 3, 2), 7.0))


def test_image_letterbox_same_aspect_is_a_plain_resize(tmp_path: Path) -> None:
    path = uniform_png(tmp_path / "a.png", width=8, height=4, colour=(1, 2, 3))
    array = load_image(path, ImageSpec(size=(2, 4), scale=1.0, resize="letterbox", pad_value=99))
    np.testing.assert_array_equal(array[0, 0], np.ones((2, 4)))


def test_image_letterbox_with_normalization(tmp_path: Path) -> None:
    # The pad is normalized like every pixel: (114 / 255 - 0.5) / 0.5 on every channel.
    path = uniform_png(tmp_path / "a.png", width=4, height=2, colour=(255, 0, 255))
    spec = ImageSpec(size=(4, 4), mean=0.5, std=0.5, resize="letterbox", pad_value=114)
    array = load_image(path, spec)
    pad = (114 / 255 - 0.5) / 0.5
    np.testing.assert_allclose(array[0, :, [0, 3], :], np.full((2, 3, 4), pad), rtol=0, atol=1e-6)
    np.testing.assert_allclose(array[0, :, 1, 0], [1.0, -1.0, 1.0], rtol=0, atol=1e-6)


def test_image_grey_and_alpha_become_rgb(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((2, 3), 77, np.uint8), mode="L").save(grey)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (3, 2), (1, 2, 3, 0)).save(rgba)
    spec = ImageSpec(size=(2, 3), scale=1.0)
    np.testing.assert_array_equal(load_image(grey, spec), np.full((1, 3, 2, 3), 77.0))
    np.testing.assert_array_equal(load_image(rgba, spec)[0, :, 0, 0], [1.0, 2.0, 3.0])


def test_image_dtypes(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", PIXELS)
    assert load_image(path, ImageSpec(size=(2, 3)), np.float16).dtype == np.float16
    raw = load_image(path, ImageSpec(size=(2, 3), scale=1.0), np.uint8)
    assert raw.dtype == np.uint8 and raw[0, 0, 0, 0] == 255
    with pytest.raises(InputSpecError, match="scale = 1"):
        load_image(path, ImageSpec(size=(2, 3)), np.uint8)


def test_image_16_bit_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((2, 3), 4000, np.uint16)).save(path)
    with pytest.raises(InputSpecError, match="deep.png.*8-bit"):
        load_image(path, ImageSpec(size=(2, 3)))


@pytest.mark.parametrize("content", [b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_image_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputSpecError, match="broken.png: cannot read image"):
        load_image(path, ImageSpec(size=(2, 3)))


def test_image_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UsageError, match="pip install pillow"):
        load_image(tmp_path / "a.png", ImageSpec(size=(2, 3)))


# --- ImageSpec from a config table -----------------------------------------------------------


def test_image_spec_from_dict() -> None:
    spec = ImageSpec.from_dict(
        {
            "size": [224, 320],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "scale": 1,
            "channel_order": "bgr",
            "layout": "nhwc",
            "resize": "Letterbox",
            "pad_value": 114,
            "input": "images",
        }
    )
    assert spec == ImageSpec(
        size=(224, 320),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        scale=1.0,
        channel_order="BGR",
        layout="NHWC",
        resize="letterbox",
        pad_value=114,
        input="images",
    )
    assert spec.batch_shape() == (1, 224, 320, 3)


def test_image_spec_defaults_and_shorthands() -> None:
    spec = ImageSpec.from_dict({"size": 224, "mean": 0.5, "std": [0.25]})
    assert spec.size == (224, 224)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)
    assert (spec.scale, spec.channel_order, spec.layout, spec.resize, spec.pad_value, spec.input) == (
        1 / 255,
        "RGB",
        "NCHW",
        "stretch",
        0,
        None,
    )


def test_image_spec_unknown_key_lists_known() -> None:
    with pytest.raises(
        ConfigError, match=r"\[calibration.image\]: unknown key\(s\) sizes; known: channel_order, input"
    ):
        ImageSpec.from_dict({"sizes": [2, 2]})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "'size' is required"),
        ({"size": "224"}, "size must be"),
        ({"size": [224]}, "size must be"),
        ({"size": [224, 0]}, "size must be"),
        ({"size": [2, True]}, "size must be"),
        ({"size": [2, 2], "mean": "imagenet"}, "mean must be"),
        ({"size": [2, 2], "mean": [0.1, 0.2]}, "mean needs 1 or 3"),
        ({"size": [2, 2], "std": [1, 0, 1]}, "std must not be zero"),
        ({"size": [2, 2], "scale": True}, "scale must be a number"),
        ({"size": [2, 2], "scale": -1.0}, "scale must be a positive"),
        ({"size": [2, 2], "channel_order": "RGBA"}, "channel_order must be one of RGB, BGR"),
        ({"size": [2, 2], "layout": 4}, "layout must be a string"),
        ({"size": [2, 2], "layout": "CHW"}, "layout must be one of NCHW, NHWC"),
        ({"size": [2, 2], "resize": "crop"}, "resize must be one of stretch, letterbox"),
        ({"size": [2, 2], "pad_value": 114.0}, "pad_value must be an integer"),
        ({"size": [2, 2], "pad_value": 256}, "pad_value must be an integer from 0 to 255"),
        ({"size": [2, 2], "input": ""}, "input must be an input name"),
    ],
)
def test_image_spec_rejects(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[calibration.image\]: " + message):
        ImageSpec.from_dict(table)


def test_image_spec_from_dict_names_its_location() -> None:
    with pytest.raises(ConfigError, match=r"^quant.toml: \[calibration.image\]: layout"):
        ImageSpec.from_dict({"size": 2, "layout": "CHW"}, where="quant.toml: [calibration.image]")
    with pytest.raises(ConfigError, match="must be a table"):
        ImageSpec.from_dict([224, 224])  # type: ignore[arg-type]


def test_image_spec_constructor_checks_values() -> None:
    with pytest.raises(ConfigError, match="^ImageSpec: layout"):
        ImageSpec(size=(2, 2), layout="CHW")


# --- array sources ---------------------------------------------------------------------------


def test_npy_folder_sorted_by_name(tmp_path: Path) -> None:
    for i in (2, 0, 1):
        np.save(tmp_path / f"s{i}.npy", np.full((1, 4), i, np.float32))
    samples = load_samples(tmp_path, ONE_INPUT)
    assert ids(samples) == [0, 1, 2]
    assert samples.source == f"3 .npy files in {tmp_path}/"
    assert not samples.generated


def test_npz_folder_with_varying_symbolic_dims(tmp_path: Path) -> None:
    for i, seq in enumerate([3, 5]):
        np.savez(tmp_path / f"s{i}.npz", a=np.zeros((1, seq, 4), np.float32), b=np.zeros((1, seq), np.int64))
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    samples = load_samples(tmp_path, TWO_INPUTS)
    assert [s["a"].shape for s in samples.samples] == [(1, 3, 4), (1, 5, 4)]
    assert [s["b"].dtype for s in samples.samples] == [np.int64, np.int64]
    assert samples.source == f"2 .npz files in {tmp_path}/ (2 other file(s) skipped)"


def test_npy_and_npz_mixed_in_one_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((1, 4), 0, np.float32))
    np.savez(tmp_path / "b.npz", x=np.full((1, 4), 1, np.float32))
    samples = load_samples(tmp_path, ONE_INPUT)
    assert ids(samples) == [0, 1]
    assert samples.source == f"2 .npy/.npz files in {tmp_path}/"


def test_stacked_npz(tmp_path: Path) -> None:
    path = tmp_path / "calib.npz"
    np.savez(path, a=np.arange(4 * 3 * 4, dtype=np.float32).reshape(4, 3, 4), b=np.arange(12).reshape(4, 3))
    samples = load_samples(path, TWO_INPUTS)
    assert len(samples) == 4
    assert samples.source == f"4 samples stacked in {path}"
    assert samples.samples[2]["a"].shape == (1, 3, 4)
    np.testing.assert_array_equal(samples.samples[2]["b"], [[6, 7, 8]])


def test_stacked_npz_for_inputs_without_batch_dim(tmp_path: Path) -> None:
    specs = specs_of("float[3, 4] x")
    np.savez(tmp_path / "calib.npz", x=np.zeros((5, 3, 4), np.float32))
    samples = load_samples(tmp_path / "calib.npz", specs)
    assert [s["x"].shape for s in samples.samples] == [(3, 4)] * 5


def test_stacked_npy_for_a_single_input(tmp_path: Path) -> None:
    np.save(tmp_path / "calib.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    samples = load_samples(tmp_path / "calib.npy", ONE_INPUT)
    assert [s["x"].shape for s in samples.samples] == [(1, 4)] * 3
    assert ids(samples) == [0, 4, 8]


def test_limit(tmp_path: Path) -> None:
    for i in range(5):
        np.save(tmp_path / f"s{i}.npy", np.full((1, 4), i, np.float32))
    # A file past the limit is never read.
    (tmp_path / "s9.npy").write_bytes(b"not an array")
    samples = load_samples(tmp_path, ONE_INPUT, limit=2)
    assert ids(samples) == [0, 1]
    assert samples.source == f"first 2 of 6 .npy files in {tmp_path}/"
    assert len(load_samples(tmp_path / "s0.npy", ONE_INPUT, limit=0)) == 1
    stacked = tmp_path / "stacked.npz"
    np.savez(stacked, x=np.zeros((10, 4), np.float32))
    assert len(load_samples(stacked, ONE_INPUT, limit=3)) == 3
    assert load_samples(stacked, ONE_INPUT, limit=3).source == f"first 3 of 10 samples stacked in {stacked}"
    assert len(load_samples(stacked, ONE_INPUT, limit=100)) == 10


# --- image folders ---------------------------------------------------------------------------


def test_image_folder(tmp_path: Path) -> None:
    for name, value in [("b.png", 2), ("a.PNG", 1), ("c.jpg", 3)]:
        uniform_png(tmp_path / name, width=6, height=4, colour=(value, value, value))
    spec = ImageSpec(size=(2, 3), scale=1.0)
    samples = load_samples(tmp_path, IMAGE_SPECS, spec)
    assert samples.source == f"3 images in {tmp_path}/"
    assert [s["x"].shape for s in samples.samples] == [(1, 3, 2, 3)] * 3
    assert [int(s["x"][0, 0, 0, 0]) for s in samples.samples[:2]] == [1, 2]
    assert samples.samples[0]["x"].dtype == np.float32
    assert len(load_samples(tmp_path, IMAGE_SPECS, spec, limit=1)) == 1


def test_image_folder_nhwc_model(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(9, 8, 7))
    specs = specs_of("float[1, 2, 3, 3] images")
    samples = load_samples(
        tmp_path, specs, ImageSpec(size=(2, 3), scale=1.0, layout="NHWC", channel_order="BGR")
    )
    np.testing.assert_array_equal(samples.samples[0]["images"][0, 0, 0], [7, 8, 9])


def test_image_folder_named_input(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(9, 8, 7))
    specs = specs_of("uint8[N, 3, 2, 3] pixels")
    samples = load_samples(tmp_path, specs, ImageSpec(size=(2, 3), scale=1.0, input="pixels"))
    assert samples.samples[0]["pixels"].dtype == np.uint8


def test_image_folder_needs_image_spec(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(0, 0, 0))
    with pytest.raises(
        InputSpecError, match=r"needs a \[calibration.image\] table.*size = \[height, width\]"
    ):
        load_samples(tmp_path, IMAGE_SPECS)


def test_image_folder_size_must_fit_model(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(0, 0, 0))
    with pytest.raises(InputSpecError, match=r"makes 'x' \[1, 3, 224, 224\].*declares \[N, 3, 2, 3\]"):
        load_samples(tmp_path, IMAGE_SPECS, ImageSpec(size=(224, 224)))
    with pytest.raises(InputSpecError, match=r"makes 'x' \[1, 2, 3, 3\]"):
        load_samples(tmp_path, IMAGE_SPECS, ImageSpec(size=(2, 3), layout="NHWC"))


@pytest.mark.parametrize(
    ("signature", "image_input", "message"),
    [
        ("float[N, 8] x", None, "no floating-point input of rank 4"),
        (
            "float[N, 3, 2, 3] a, float[N, 3, 2, 3] b",
            None,
            "more than one floating-point input.*set input = NAME",
        ),
        ("float[N, 3, 2, 3] x, float[N, 2] scale", None, "images feed only 'x', the model also needs scale"),
        ("float[N, 3, 2, 3] x", "y", "input = 'y' is not a model input"),
    ],
)
def test_image_folder_input_choice(
    tmp_path: Path, signature: str, image_input: str | None, message: str
) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(0, 0, 0))
    with pytest.raises(InputSpecError, match=message):
        load_samples(tmp_path, specs_of(signature), ImageSpec(size=(2, 3), input=image_input))


def test_image_folder_bad_image_names_file(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(0, 0, 0))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(InputSpecError, match="b.jpg: cannot read image"):
        load_samples(tmp_path, IMAGE_SPECS, ImageSpec(size=(2, 3)))


# --- errors ----------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match="no such calibration file or folder"):
        load_samples(tmp_path / "nowhere", ONE_INPUT)


def test_unsupported_file(tmp_path: Path) -> None:
    (tmp_path / "calib.csv").write_text("1,2,3,4")
    with pytest.raises(InputSpecError, match="a folder of .npy/.npz files or images"):
        load_samples(tmp_path / "calib.csv", ONE_INPUT)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match="no calibration data: found nothing"):
        load_samples(tmp_path, ONE_INPUT)
    (tmp_path / "val").mkdir()
    with pytest.raises(InputSpecError, match=r"found 1 subfolder\(s\), which are not searched"):
        load_samples(tmp_path, ONE_INPUT)


def test_folder_with_nothing_usable(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat")
    (tmp_path / "train").mkdir()
    np.save(tmp_path / "train" / "s.npy", np.zeros((1, 4), np.float32))
    with pytest.raises(
        InputSpecError, match=r"found 1 other file\(s\) and 1 subfolder\(s\), which are not searched"
    ):
        load_samples(tmp_path, ONE_INPUT)


def test_images_and_arrays_mixed(tmp_path: Path) -> None:
    uniform_png(tmp_path / "a.png", width=3, height=2, colour=(0, 0, 0))
    np.save(tmp_path / "b.npy", np.zeros((1, 3, 2, 3), np.float32))
    with pytest.raises(InputSpecError, match="both arrays .* and images"):
        load_samples(tmp_path, IMAGE_SPECS, ImageSpec(size=(2, 3)))


def test_npy_for_a_two_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((1, 3, 4), np.float32))
    with pytest.raises(InputSpecError, match="s.npy: a .npy file feeds one input, the model has 2"):
        load_samples(tmp_path, TWO_INPUTS)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"a": np.zeros((1, 3, 4), np.float64), "b": np.zeros((1, 3), np.int64)},
            "'a' is float64, the model wants float32",
        ),
        (
            {"a": np.zeros((1, 3, 5), np.float32), "b": np.zeros((1, 3), np.int64)},
            r"'a' has shape \[1, 3, 5\], the model declares \[N, seq, 4\]",
        ),
        ({"a": np.zeros((3, 4), np.float32), "b": np.zeros((1, 3), np.int64)}, r"'a' has shape \[3, 4\]"),
        (
            {"a": np.zeros((1, 3, 4), np.float32)},
            r"arrays \['a'\] do not match the model's inputs \['a', 'b'\]",
        ),
        (
            {"a": np.zeros((1, 3, 4), np.float32), "b": np.zeros((1, 3), np.int64), "c": np.zeros(1)},
            r"arrays \[.a., .b., .c.\] do not match",
        ),
    ],
)
def test_npz_mismatch_names_file(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "a_good.npz", a=np.zeros((1, 3, 4), np.float32), b=np.zeros((1, 3), np.int64))
    np.savez(tmp_path / "b_bad.npz", **arrays)
    with pytest.raises(InputSpecError, match="b_bad.npz: " + message):
        load_samples(tmp_path, TWO_INPUTS)


def test_stacked_mismatch_names_sample(tmp_path: Path) -> None:
    np.savez(tmp_path / "calib.npz", a=np.zeros((2, 3, 5), np.float32), b=np.zeros((2, 3), np.int64))
    with pytest.raises(InputSpecError, match=r"calib.npz \(sample 0\): 'a' has shape \[1, 3, 5\]"):
        load_samples(tmp_path / "calib.npz", TWO_INPUTS)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"a": np.zeros((3, 2, 4), np.float32), "b": np.zeros((2, 2), np.int64)},
            r"different numbers of samples along axis 0 \(a: 3, b: 2\)",
        ),
        ({"a": np.zeros((0, 2, 4), np.float32), "b": np.zeros((0, 2), np.int64)}, "no calibration samples"),
        ({"a": np.zeros((2, 2, 4), np.float32), "b": np.array(3)}, "b is a scalar"),
        ({"a": np.zeros((2, 2, 4), np.float32)}, "do not match the model's inputs"),
    ],
)
def test_stacked_npz_rejects(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "calib.npz", **arrays)
    with pytest.raises(InputSpecError, match=message):
        load_samples(tmp_path / "calib.npz", TWO_INPUTS)


class _WritesAFile:
    """Unpickling this would create a file: the proof that a loader ran pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickles_are_never_loaded(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / f"evil{suffix}").write_bytes(pickle.dumps(_WritesAFile(marker)))
    np.save(folder / "object.npy", np.array([_WritesAFile(marker)], dtype=object), allow_pickle=True)
    for path in (folder / f"evil{suffix}", folder / "object.npy"):
        with pytest.raises(InputSpecError, match="cannot read calibration arrays"):
            load_samples(path, ONE_INPUT)
    np.savez(folder / "objects.npz", x=np.array([_WritesAFile(marker)], dtype=object))
    with pytest.raises(InputSpecError, match="cannot read calibration arrays"):
        load_samples(folder / "objects.npz", ONE_INPUT)
    assert not marker.exists()


def test_corrupt_and_renamed_archives(tmp_path: Path) -> None:
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InputSpecError, match="broken.npz: cannot read calibration arrays"):
        load_samples(tmp_path / "broken.npz", ONE_INPUT)
    # A .npy saved under a .npz name is read as what it is.
    np.save(tmp_path / "renamed.npy", np.zeros((2, 4), np.float32))
    (tmp_path / "renamed.npy").rename(tmp_path / "renamed.npz")
    assert len(load_samples(tmp_path / "renamed.npz", ONE_INPUT)) == 2


# --- SampleSet: split, take, generated -------------------------------------------------------


def test_split_is_evenly_spaced_and_deterministic() -> None:
    calibration, held_out = numbered_set(10).split(3)
    assert ids(held_out) == [1, 5, 8]
    assert ids(calibration) == [0, 2, 3, 4, 6, 7, 9]
    assert held_out.source == "10 numbered, 3 held out"
    assert calibration.source == "10 numbered, 7 for calibration"
    again = numbered_set(10).split(3)
    assert (ids(again[0]), ids(again[1])) == (ids(calibration), ids(held_out))


def test_split_sizes_never_overlap() -> None:
    for count in range(1, 25):
        for held in range(count):
            calibration, held_out = numbered_set(count).split(held)
            assert (len(calibration), len(held_out)) == (count - held, held)
            assert sorted(ids(calibration) + ids(held_out)) == list(range(count))


def test_split_keeps_generated_flag() -> None:
    specs = specs_of("float[N, 4] x")
    calibration, held_out = generated_samples(specs, 4).split(1)
    assert calibration.generated and held_out.generated


@pytest.mark.parametrize("held", [10, 11])
def test_split_too_many_held_out(held: int) -> None:
    with pytest.raises(InputSpecError, match=f"cannot hold out {held} of 10.*at least one must remain"):
        numbered_set(10).split(held)


def test_split_negative() -> None:
    with pytest.raises(InputSpecError, match="0 or more"):
        numbered_set(3).split(-1)


def test_take() -> None:
    samples = numbered_set(5)
    assert ids(samples.take(2)) == [0, 1]
    assert samples.take(2).source == "5 numbered, first 2"
    for n in (0, -1, 5, 9):
        assert ids(samples.take(n)) == [0, 1, 2, 3, 4]
        assert samples.take(n).source == "5 numbered"


def test_generated_samples() -> None:
    samples = generated_samples(TWO_INPUTS, 3, seed=5)
    assert samples.generated and samples.source == "generated (seed 5)" and len(samples) == 3
    for i, sample in enumerate(samples.samples):
        expected = generate_feeds(TWO_INPUTS, seed=5 + i)
        assert sample.keys() == expected.keys()
        for name in sample:
            np.testing.assert_array_equal(sample[name], expected[name])
    with pytest.raises(InputSpecError, match="at least 1"):
        generated_samples(TWO_INPUTS, 0)


# --- SampleReader and an ORT calibrator --------------------------------------------------------


def test_reader_reads_rewinds_and_ranges() -> None:
    reader = SampleReader(numbered_set(5))
    assert len(reader) == 5
    assert [int(s["x"][0, 0]) for s in reader] == [0, 1, 2, 3, 4]
    assert reader.get_next() is None
    reader.rewind()
    assert int(reader.get_next()["x"][0, 0]) == 0
    reader.set_range(2, 4)
    assert [int(s["x"][0, 0]) for s in reader] == [2, 3]
    assert len(reader) == 5
    reader.set_range(3, 99)
    assert [int(s["x"][0, 0]) for s in reader] == [3, 4]
    reader.rewind()
    assert len(list(reader)) == 5


def test_reader_accepts_plain_dicts_and_copies_them() -> None:
    feeds = [{"x": np.zeros((1, 4), np.float32)}]
    reader = SampleReader(feeds)
    reader.get_next().pop("x")
    reader.rewind()
    assert list(reader.get_next()) == ["x"]


def _quantize(tmp_path: Path, reader: SampleReader, name: str, **extra_options: object) -> Path:
    out = tmp_path / name
    quantize_static(
        str(tmp_path / "conv.onnx"),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options=dict(extra_options),
    )
    return out


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_calibrator_round_trip(tmp_path: Path) -> None:
    onnx.save(conv_model(), tmp_path / "conv.onnx")
    specs = resolve_input_specs(conv_model().graph)
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(tmp_path / f"sample{i}.npy", rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    samples = load_samples(tmp_path, specs)
    reader = SampleReader(samples)

    plain = _quantize(tmp_path, reader, "plain.onnx")
    quantized = onnx.load(plain)
    onnx.checker.check_model(quantized, full_check=True)
    op_types = {node.op_type for node in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= op_types

    x = samples.samples[0]["x"]
    expected = _run(tmp_path / "conv.onnx", x)
    got = _run(plain, x)
    # INT8 budget for one Conv on in-range data: within 3% of the output's range.
    assert np.max(np.abs(got - expected)) <= 0.03 * float(np.ptp(expected))

    # Strided calibration (set_range) over the same samples finds the same MinMax ranges.
    ranges = []

    class RecordingReader(SampleReader):
        def set_range(self, start_index: int, end_index: int) -> None:
            ranges.append((start_index, end_index))
            super().set_range(start_index, end_index)

    recording = RecordingReader(samples)
    ranges.clear()
    strided = _quantize(tmp_path, recording, "strided.onnx", CalibStridedMinMax=2)
    assert ranges == [(0, 2), (2, 4)]
    np.testing.assert_array_equal(_run(strided, x), got)

    # A rewound reader calibrates again from the first sample.
    reader.rewind()
    again = _quantize(tmp_path, reader, "again.onnx")
    np.testing.assert_array_equal(_run(again, x), got)
