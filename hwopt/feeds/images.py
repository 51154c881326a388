"""Image files as model inputs: the preprocessing an image model's calibration data needs.

An image becomes one input batch of 1 in four steps, each set by an :class:`ImageSpec`:

1. decode with Pillow and convert to 8-bit RGB (the first frame of an animation or a
   multi-page TIFF; alpha dropped; EXIF orientation *not* applied, as torchvision's and most
   training pipelines' loaders do not apply it either);
2. resize to ``size`` = (height, width) with bilinear filtering: ``stretch`` ignores the
   aspect ratio, ``letterbox`` keeps it and centres the image on a ``pad_value`` canvas
   (the YOLO-family preprocessing, whose usual pad value is 114);
3. reorder channels to ``channel_order`` and normalize every pixel ``p`` (0..255) per channel::

       x = (p * scale - mean[c]) / std[c]

   with ``mean`` and ``std`` given in the model's channel order (after the reorder); the
   torchvision ImageNet values are ``mean = (0.485, 0.456, 0.406)``,
   ``std = (0.229, 0.224, 0.225)`` with the default ``scale`` of 1/255;
4. lay out as ``NCHW`` (1, 3, H, W) or ``NHWC`` (1, H, W, 3).

Calibration only sees what the model will see in deployment when this matches the real
preprocessing; a wrong mean or channel order still calibrates, to the wrong ranges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwopt.errors import ConfigError, InputSpecError, UsageError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

CHANNELS = 3
_CHANNEL_ORDERS = ("RGB", "BGR")
_LAYOUTS = ("NCHW", "NHWC")
_RESIZES = ("stretch", "letterbox")
# Pillow's conversion of 16-bit and float images to RGB clips every value above 255, which
# would calibrate on a white image; refuse those instead.
_UNSUPPORTED_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class _ImageSpecValueError(ConfigError):
    """A field value ImageSpec rejects; from_dict re-raises it with the config location."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"ImageSpec: {problem}")
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How to turn an image file into a model input (see the module docstring for the steps).

    ``size`` is (height, width). ``mean`` and ``std`` hold one value per channel in
    ``channel_order`` (a single value applies to all three). ``input`` names the model input
    that gets the image; by default the model's only floating-point input of rank 4.
    Text fields are case-insensitive and stored normalized ("rgb" -> "RGB").
    """

    size: tuple[int, int]
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "stretch"
    pad_value: int = 0
    input: str | None = None

    def __post_init__(self) -> None:
        size = _pair_of_positive_ints(self.size)
        if size is None:
            raise _ImageSpecValueError(
                f"size must be (height, width) in positive integers, not {self.size!r}"
            )
        mean = _per_channel(self.mean, "mean")
        std = _per_channel(self.std, "std")
        if any(s == 0 for s in std):
            raise _ImageSpecValueError(f"std must not be zero, got {list(std)}")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or not self.scale > 0:
            raise _ImageSpecValueError(f"scale must be a positive number, not {self.scale!r}")
        channel_order = _choice(self.channel_order, _CHANNEL_ORDERS, "channel_order", str.upper)
        layout = _choice(self.layout, _LAYOUTS, "layout", str.upper)
        resize = _choice(self.resize, _RESIZES, "resize", str.lower)
        if (
            not isinstance(self.pad_value, int)
            or isinstance(self.pad_value, bool)
            or not 0 <= self.pad_value <= 255
        ):
            raise _ImageSpecValueError(f"pad_value must be an integer from 0 to 255, not {self.pad_value!r}")
        if self.input is not None and (not isinstance(self.input, str) or not self.input):
            raise _ImageSpecValueError(f"input must be an input name, not {self.input!r}")
        for name, value in [
            ("size", size),
            ("mean", mean),
            ("std", std),
            ("scale", float(self.scale)),
            ("channel_order", channel_order),
            ("layout", layout),
            ("resize", resize),
        ]:
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "[calibration.image]") -> ImageSpec:
        """An ImageSpec from a config table, e.g. ``[calibration.image]``::

            size = [224, 224]
            mean = [0.485, 0.456, 0.406]
            std = [0.229, 0.224, 0.225]

        Unknown keys and values of the wrong type are a ConfigError naming ``where``.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table, not {type(data).__name__}")
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
            )
        if "size" not in data:
            raise ConfigError(
                f"{where}: 'size' is required: the [height, width] the model expects, e.g. size = [224, 224]"
            )
        kwargs: dict[str, Any] = {}
        size = data["size"]
        if _is_int(size):
            size = [size, size]
        if not isinstance(size, (list, tuple)) or not all(_is_int(v) for v in size):
            raise ConfigError(f"{where}: size must be [height, width] in integers, not {size!r}")
        kwargs["size"] = tuple(size)
        for name in ("mean", "std"):
            if name in data:
                value = data[name]
                if _is_number(value):
                    value = [value]
                if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
                    raise ConfigError(f"{where}: {name} must be a number or a list of numbers, not {value!r}")
                kwargs[name] = tuple(float(v) for v in value)
        if "scale" in data:
            if not _is_number(data["scale"]):
                raise ConfigError(f"{where}: scale must be a number, not {data['scale']!r}")
            kwargs["scale"] = float(data["scale"])
        for name in ("channel_order", "layout", "resize", "input"):
            if name in data:
                if not isinstance(data[name], str):
                    raise ConfigError(f"{where}: {name} must be a string, not {data[name]!r}")
                kwargs[name] = data[name]
        if "pad_value" in data:
            if not _is_int(data["pad_value"]):
                raise ConfigError(f"{where}: pad_value must be an integer, not {data['pad_value']!r}")
            kwargs["pad_value"] = data["pad_value"]
        try:
            return cls(**kwargs)
        except _ImageSpecValueError as exc:
            raise ConfigError(f"{where}: {exc.problem}") from None

    def batch_shape(self) -> tuple[int, int, int, int]:
        """The shape of the batch of 1 that load_image returns."""
        height, width = self.size
        if self.layout == "NCHW":
            return (1, CHANNELS, height, width)
        return (1, height, width, CHANNELS)

    def describe(self) -> str:
        """One line for a report: the preprocessing as applied."""
        height, width = self.size
        return (
            f"{self.resize} to {height}x{width}, {self.channel_order} {self.layout}, "
            f"x*{self.scale:g} - mean {list(self.mean)} / std {list(self.std)}"
        )


def load_image(path: Path, spec: ImageSpec, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The image at ``path`` as a batch of 1 laid out per ``spec``, in ``dtype``.

    An integer ``dtype`` (a model that takes raw uint8 pixels) needs a spec whose
    normalization keeps the values integral and in range, e.g. scale 1, mean 0, std 1.
    """
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("reading calibration images needs Pillow: pip install pillow") from None
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode in _UNSUPPORTED_MODES:
                raise InputSpecError(
                    f"{path}: {image.mode} images (16-bit or floating-point pixels) are not "
                    "supported; convert them to 8-bit, or give .npy/.npz calibration arrays"
                )
            rgb = _resized(image.convert("RGB"), spec, Image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError (not an image, truncated) is an OSError; a decompression
        # bomb is refused by Pillow's pixel limit before it is decoded.
        raise InputSpecError(f"{path}: cannot read image: {one_line(exc)}") from exc
    pixels = np.asarray(rgb, dtype=np.float64)
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    values = (pixels * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    return np.ascontiguousarray(_cast(values, np.dtype(dtype), path))[np.newaxis]


def _resized(image: Any, spec: ImageSpec, Image: Any) -> Any:
    height, width = spec.size
    if image.size == (width, height):
        return image
    if spec.resize == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    ratio = min(width / image.width, height / image.height)
    new_width = min(width, max(1, round(image.width * ratio)))
    new_height = min(height, max(1, round(image.height * ratio)))
    canvas = Image.new("RGB", (width, height), (spec.pad_value,) * CHANNELS)
    canvas.paste(
        image.resize((new_width, new_height), Image.Resampling.BILINEAR),
        ((width - new_width) // 2, (height - new_height) // 2),
    )
    return canvas


def _cast(values: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if np.all(values == np.round(values)) and values.min() >= info.min and values.max() <= info.max:
            return values.astype(dtype)
        raise InputSpecError(
            f"{path}: the image input is {dtype}, but [calibration.image] normalizes pixels to "
            f"values from {values.min():g} to {values.max():g}; for raw pixels set scale = 1, "
            "mean = 0, std = 1"
        )
    raise InputSpecError(f"{path}: an image cannot feed an input of type {dtype}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pair_of_positive_ints(value: object) -> tuple[int, int] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    if not all(_is_int(v) and v > 0 for v in value):
        return None
    return (int(value[0]), int(value[1]))


def _per_channel(value: object, name: str) -> tuple[float, ...]:
    if _is_number(value):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
        raise _ImageSpecValueError(f"{name} must be a number or a list of numbers, not {value!r}")
    if len(value) not in (1, CHANNELS):
        raise _ImageSpecValueError(f"{name} needs 1 or {CHANNELS} values (one per channel), got {len(value)}")
    values = tuple(float(v) for v in value)
    return values * CHANNELS if len(values) == 1 else values


def _choice(value: object, allowed: tuple[str, ...], name: str, normalize: Any) -> str:
    if isinstance(value, str) and normalize(value) in allowed:
        return normalize(value)
    raise _ImageSpecValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
