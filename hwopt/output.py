"""Writing outputs safely: atomic files, vetted output folders, never over the input.

Every file is written to a temporary name in its destination folder, flushed and fsync'ed,
then renamed into place, so a reader (or an interrupted run) never sees half a file. A build's
manifest, ``build.json``, is written last and removed first, so a folder without it is not a
complete build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import onnx

from hwopt.errors import OutputError

# Protobuf cannot serialize a message of 2 GiB or more; stay clear of the limit.
INLINE_MODEL_LIMIT = (2 << 30) - (64 << 20)
MANIFEST = "build.json"
REPORT_JSON = "report.json"
TUNE_RESULTS = "tune-results.jsonl"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def save_model_atomic(model: onnx.ModelProto, path: Path, external: bool = False) -> list[str]:
    """Save a model; above the protobuf limit, or with ``external``, its weights go to
    ``<name>.data`` beside it.

    Returns the names of the files written (relative to ``path``'s folder).
    """
    path = Path(path)
    data_name = f"{path.name}.data"
    if model.ByteSize() < INLINE_MODEL_LIMIT and not external:
        write_bytes_atomic(path, model.SerializeToString(deterministic=True))
        (path.parent / data_name).unlink(missing_ok=True)  # an earlier build's weights file
        return [path.name]
    # onnx.save_model moves the weights out of the proto it is given: save a copy.
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=path.parent))
    try:
        onnx.save_model(
            copy,
            str(staging / path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        os.replace(staging / data_name, path.parent / data_name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [path.name, data_name]


def _is_previous_output(folder: Path) -> bool:
    """True for a folder hwopt wrote before: it holds a manifest or an hwopt report."""
    if (folder / MANIFEST).is_file():
        return True
    results = folder / TUNE_RESULTS
    if results.is_file():  # an interrupted hwopt tune, before it wrote a build
        try:
            with open(results, encoding="utf-8") as handle:
                return json.loads(handle.readline())["header"]["schema"].startswith("hwopt.")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
    report = folder / REPORT_JSON
    if report.is_file():
        try:
            return str(json.loads(report.read_text()).get("schema", "")).startswith("hwopt.")
        except (OSError, ValueError, AttributeError):
            return False
    return False


def prepare_output_dir(out_dir: Path, protected: Iterable[Path]) -> Path:
    """Create (or reuse) an output folder; refuse anything that could clobber the input.

    ``protected`` are files that must never be written: the input model and its external data.
    A folder that exists must be empty or an earlier hwopt output.
    """
    out_dir = Path(out_dir)
    protected = {Path(p).resolve() for p in protected}
    resolved = out_dir.resolve()
    if resolved in protected:
        raise OutputError(f"{out_dir}: the output would overwrite the input model")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if any(p.parent == resolved for p in protected):
        raise OutputError(f"{out_dir}: the output folder is the input model's folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_previous_output(out_dir):
        raise OutputError(
            f"{out_dir}: folder is not empty and holds no earlier hwopt build; "
            "choose another output folder"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test.", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write there ({exc.strerror})") from exc
    return out_dir


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run with ``folder`` as the working directory: onnxruntime's tools (quantization, symbolic
    shape inference) write temporary files relative to it, and hwopt writes nowhere but its
    output and temp folders. Not thread-safe: the working directory is the process's."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def quiet_logger(name: str = "") -> Iterator[None]:
    """Hold the named logger (the root logger by default) at ERROR while onnxruntime's tools
    run: they log advice on stderr ("Please use QuantFormat.QDQ", "Only support models of onnx
    opset 7 and above") about cases hwopt handles itself, and stderr is hwopt's to write."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
