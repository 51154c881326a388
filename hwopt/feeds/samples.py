"""Samples: the feeds INT8 calibration runs the model on, and the held-out ones accuracy is judged on.

A calibration source is one of:

- a folder of ``.npy`` files (single-input models) and/or ``.npz`` files (one array per input
  name): one sample per file;
- one ``.npz`` file (or, for a single-input model, one ``.npy`` file) of stacked samples:
  axis 0 of every array indexes the samples, and each sample keeps a batch dimension of 1
  (``array[i:i+1]``), unless the model declares the input one rank lower (no batch
  dimension), when it is ``array[i]``;
- a folder of images (:data:`~hwopt.feeds.images.IMAGE_SUFFIXES`), preprocessed as a
  ``[calibration.image]`` table (:class:`~hwopt.feeds.images.ImageSpec`) says.

Folders are read in file-name order, not recursively; hidden files (macOS's ``._name.jpg``
resource forks among them) and files of other kinds are skipped and counted in the source
description. Every sample is checked against the model's inputs as ``--inputs`` feeds are
(names, dtypes, rank and static dimensions; symbolic dimensions may differ between samples).
Arrays are loaded with ``allow_pickle=False``: a calibration file is data, never code.

Samples are held in memory: 500 images at 640x640 in float32 take about 2.5 GB, so large
sources should be cut with ``limit``, which reads only the files it keeps.
"""

from __future__ import annotations

import dataclasses
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hwopt.errors import InputSpecError, one_line
from hwopt.feeds.images import IMAGE_SUFFIXES, ImageSpec, load_image
from hwopt.feeds.inputs import (
    InputSpec,
    array_file_bytes,
    check_array,
    check_feed_bytes,
    format_dims,
    generate_feeds,
)

ARRAY_SUFFIXES = (".npy", ".npz")
# np.load on a damaged archive raises from the zip and zlib layers, not only OSError.
_ARRAY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)

Sample = dict[str, np.ndarray]


@dataclasses.dataclass
class SampleSet:
    """Calibration samples: one feed dict per sample, and where they came from."""

    samples: list[Sample]
    source: str
    generated: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, held_out: int) -> tuple[SampleSet, SampleSet]:
        """(calibration, held-out): ``held_out`` samples evenly spaced through the set.

        Held-out sample ``i`` of ``k`` is sample ``floor((i + 1/2) * n / k)``: deterministic,
        spread over the whole source (files sorted by name are often grouped by class or
        scene), never overlapping the calibration part. At least one sample must remain.
        """
        count = len(self.samples)
        if held_out < 0:
            raise InputSpecError(f"cannot hold out {held_out} samples: the count must be 0 or more")
        if held_out >= count:
            raise InputSpecError(
                f"cannot hold out {held_out} of {count} calibration samples ({self.source}): "
                "at least one must remain for calibration; give more samples or hold out fewer"
            )
        chosen = {(2 * i + 1) * count // (2 * held_out) for i in range(held_out)}
        calibration = [s for i, s in enumerate(self.samples) if i not in chosen]
        evaluation = [s for i, s in enumerate(self.samples) if i in chosen]
        return (
            SampleSet(calibration, f"{self.source}, {len(calibration)} for calibration", self.generated),
            SampleSet(evaluation, f"{self.source}, {len(evaluation)} held out", self.generated),
        )

    def take(self, n: int) -> SampleSet:
        """The first ``n`` samples (all of them when ``n`` <= 0 or more than there are)."""
        if n <= 0 or n >= len(self.samples):
            return SampleSet(list(self.samples), self.source, self.generated)
        return SampleSet(self.samples[:n], f"{self.source}, first {n}", self.generated)


def load_samples(
    path: Path,
    specs: Sequence[InputSpec],
    image_spec: ImageSpec | None = None,
    limit: int | None = None,
) -> SampleSet:
    """The samples at ``path`` (see the module docstring), the first ``limit`` of them when
    ``limit`` is positive; anything unreadable or not fitting ``specs`` is an InputSpecError."""
    path = Path(path)
    limit = limit if limit is not None and limit > 0 else None
    if path.is_dir():
        return _load_folder(path, specs, image_spec, limit)
    if path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
        return _load_stacked(path, specs, limit)
    if not path.exists():
        raise InputSpecError(f"{path}: no such calibration file or folder")
    raise InputSpecError(
        f"{path}: calibration data is a folder of .npy/.npz files or images, or one .npz "
        "(or .npy) file of stacked samples"
    )


def generated_samples(specs: Sequence[InputSpec], count: int, seed: int = 0) -> SampleSet:
    """``count`` generated samples, from seeds ``seed`` .. ``seed + count - 1``.

    Generated data exercises every path through the model but has none of the real data's
    statistics; ranges calibrated on it are a placeholder, and reports say so.
    """
    if count < 1:
        raise InputSpecError(f"cannot generate {count} calibration samples: the count must be at least 1")
    samples = [generate_feeds(specs, seed=seed + i) for i in range(count)]
    return SampleSet(samples, f"generated (seed {seed})", generated=True)


def _load_folder(
    folder: Path, specs: Sequence[InputSpec], image_spec: ImageSpec | None, limit: int | None
) -> SampleSet:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise InputSpecError(f"{folder}: cannot list calibration folder: {exc.strerror or exc}") from exc
    arrays, images, skipped, subfolders = [], [], 0, 0
    for entry in entries:
        suffix = entry.suffix.lower()
        if entry.name.startswith("."):
            skipped += 1
        elif entry.is_dir():
            subfolders += 1
        elif suffix in ARRAY_SUFFIXES:
            arrays.append(entry)
        elif suffix in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            skipped += 1
    if arrays and images:
        raise InputSpecError(
            f"{folder}: holds both arrays ({len(arrays)} .npy/.npz) and images ({len(images)}); "
            "a calibration folder holds one kind"
        )
    if not arrays and not images:
        parts = [f"{skipped} other file(s)"] if skipped else []
        if subfolders:
            parts.append(f"{subfolders} subfolder(s), which are not searched")
        found = " and ".join(parts) or "nothing"
        raise InputSpecError(
            f"{folder}: no calibration data: found {found}; expected .npy/.npz files or images "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    files = arrays or images
    total = len(files)
    files = files[:limit] if limit is not None else files
    if images:
        image_input = _image_input(specs, image_spec, folder)
        samples = [
            _checked({image_input.name: load_image(f, image_spec, image_input.dtype)}, specs, f)
            for f in files
        ]
        kind = "images"
    else:
        samples = [_checked(_read_arrays(f, specs), specs, f) for f in files]
        kinds = sorted({f.suffix.lower() for f in arrays})
        kind = "/".join(kinds) + " files"
    count = f"first {len(files)} of {total}" if len(files) < total else f"{total}"
    source = f"{count} {kind} in {folder}/"
    if skipped:
        source += f" ({skipped} other file(s) skipped)"
    return SampleSet(samples, source)


def _load_stacked(path: Path, specs: Sequence[InputSpec], limit: int | None) -> SampleSet:
    stacked = _read_arrays(path, specs)
    _check_names(stacked, specs, path)
    lengths = {name: (array.shape[0] if array.ndim else None) for name, array in stacked.items()}
    if None in lengths.values():
        scalars = sorted(name for name, length in lengths.items() if length is None)
        raise InputSpecError(
            f"{path}: {', '.join(scalars)} is a scalar; stacked calibration arrays index the "
            "samples along axis 0"
        )
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}: {length}" for name, length in sorted(lengths.items()))
        raise InputSpecError(f"{path}: arrays hold different numbers of samples along axis 0 ({listed})")
    total = next(iter(lengths.values()), 0)
    if total == 0:
        raise InputSpecError(f"{path}: no calibration samples (axis 0 has length 0)")
    count = min(total, limit) if limit is not None else total
    by_name = {spec.name: spec for spec in specs}
    samples = []
    for index in range(count):
        sample = {name: _sample_slice(array, index, by_name[name]) for name, array in stacked.items()}
        samples.append(_checked(sample, specs, path, f"sample {index}"))
    prefix = f"first {count} of {total}" if count < total else f"{total}"
    return SampleSet(samples, f"{prefix} samples stacked in {path}")


def _sample_slice(array: np.ndarray, index: int, spec: InputSpec) -> np.ndarray:
    # A model without a batch dimension declares one rank fewer than the stacked array has.
    if spec.declared and len(spec.declared) == array.ndim - 1:
        return array[index]
    return array[index : index + 1]


def _read_arrays(path: Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """The arrays in one .npy (a single-input model's) or .npz file, read without pickle.

    The format is taken from the file's content, not its suffix, so a renamed file is read
    as what it is rather than failing inside numpy.
    """
    try:
        check_feed_bytes(array_file_bytes(path), str(path))
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            if len(specs) != 1:
                raise InputSpecError(
                    f"{path}: a .npy file feeds one input, the model has {len(specs)} "
                    f"({', '.join(s.name for s in specs)}); use .npz with one array per input name"
                )
            return {specs[0].name: loaded}
        with loaded as archive:
            return {key: archive[key] for key in archive.files}
    except _ARRAY_READ_ERRORS as exc:
        raise InputSpecError(f"{path}: cannot read calibration arrays: {one_line(exc)}") from exc


def _check_names(arrays: Mapping[str, np.ndarray], specs: Sequence[InputSpec], where: object) -> None:
    wanted = sorted(spec.name for spec in specs)
    if sorted(arrays) != wanted:
        raise InputSpecError(f"{where}: arrays {sorted(arrays)} do not match the model's inputs {wanted}")


def _checked(sample: dict[str, np.ndarray], specs: Sequence[InputSpec], path: Path, what: str = "") -> Sample:
    """``sample``, after the checks hwopt.feeds.inputs.load_feeds applies to ``--inputs``."""
    where = f"{path} ({what})" if what else str(path)
    _check_names(sample, specs, where)
    for spec in specs:
        check_array(where, spec, sample[spec.name])
    return sample


def _image_input(specs: Sequence[InputSpec], image_spec: ImageSpec | None, folder: Path) -> InputSpec:
    """The input images feed, after checking the model needs nothing else and that the
    spec's shape fits the declared one (before any image is decoded)."""
    if image_spec is None:
        raise InputSpecError(
            f"{folder}: a folder of images needs a [calibration.image] table saying how to "
            "preprocess them, with at least size = [height, width]"
        )
    if image_spec.input is not None:
        chosen = [s for s in specs if s.name == image_spec.input]
        if not chosen:
            raise InputSpecError(
                f"[calibration.image] input = '{image_spec.input}' is not a model input; the "
                f"inputs are: {', '.join(s.name for s in specs) or '(none)'}"
            )
    else:
        chosen = [s for s in specs if len(s.declared) == 4 and np.issubdtype(s.dtype, np.floating)]
        if len(chosen) != 1:
            listed = ", ".join(f"{s.name} ({s.dtype} {format_dims(s.declared)})" for s in specs)
            reason = "no" if not chosen else "more than one"
            raise InputSpecError(
                f"{folder}: the model has {reason} floating-point input of rank 4 to feed images "
                f"to (inputs: {listed or 'none'}); set input = NAME in [calibration.image]"
            )
    image_input = chosen[0]
    others = [s.name for s in specs if s.name != image_input.name]
    if others:
        raise InputSpecError(
            f"{folder}: images feed only '{image_input.name}', the model also needs "
            f"{', '.join(others)}; give .npz files with one array per input instead"
        )
    shape = image_spec.batch_shape()
    declared = image_input.declared
    if declared and (
        len(declared) != len(shape)
        or any(isinstance(d, int) and d > 0 and d != s for d, s in zip(declared, shape))
    ):
        raise InputSpecError(
            f"[calibration.image] makes '{image_input.name}' {list(shape)} ({image_spec.layout}, "
            f"size {list(image_spec.size)}, 3 channels); the model declares {format_dims(declared)}"
        )
    return image_input


