"""The files of a build folder: the model, memory_plan.json, build.json (the manifest, written
last, marks a complete build) and the reports."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import onnx
import onnxruntime as ort

from hwopt.feeds.inputs import InputSpec
from hwopt.hostinfo import host_info
from hwopt.model.load import LoadedModel
from hwopt.output import MANIFEST, REPORT_JSON, file_sha256, write_json_atomic, write_text_atomic
from hwopt.passes.base import PassRecord
from hwopt.report.optimize import BuildReport, OptimizeReport
from hwopt.report.render import render_markdown

BUILD_SCHEMA = "hwopt.build/1"
MODEL_FILE = "model.onnx"
MEMORY_PLAN = "memory_plan.json"
# Where a build keeps the INT8 variants within budget when asked (PrecisionOptions.keep_variants).
INT8_VARIANTS = "int8-variants"


def versions() -> dict[str, str]:
    """Versions of what a build depends on. ``onnxruntime`` is the imported module's, whichever
    wheel installed it (onnxruntime-gpu and onnxruntime-openvino install the same module); the
    wheel itself is listed under its own name."""
    out = {}
    for dist in ("hwopt", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxsim", "onnxscript",
                 "onnx-ir", "numpy"):
        if dist == "onnxruntime":
            out[dist] = ort.__version__
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def manifest(
    build: BuildReport,
    loaded: LoadedModel,
    specs: Sequence[InputSpec],
    model: onnx.ModelProto,
    records: Sequence[PassRecord],
    build_dir: Path,
    files: Sequence[str],
) -> dict:
    """``build.json``: what ``hwopt.runtime.load`` needs to recreate the session exactly."""
    return {
        "schema": BUILD_SCHEMA,
        "target": build.target,
        "precision": build.precision_label,
        "model": MODEL_FILE,
        "files": {name: file_sha256(build_dir / name) for name in files},
        "providers": build.providers,
        "session_options": build.session_options,
        "inputs": [spec.to_dict() for spec in specs],
        "outputs": [
            {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name}
            for vi in model.graph.output
        ],
        "pipeline": [
            {"name": r.name, "status": r.status, "rewrites": r.rewrites, "reason": r.reason}
            for r in records
        ],
        "source": {"path": str(loaded.path), "sha256": loaded.sha256},
        "versions": versions(),
        "host": host_info().to_dict(),
    }


def write_build_files(build_dir: Path, report: OptimizeReport, manifest: dict | None) -> None:
    """Reports first, manifest last: a folder with ``build.json`` is a complete build."""
    write_json_atomic(build_dir / REPORT_JSON, report.to_dict())
    write_text_atomic(build_dir / "report.md", render_markdown(report.document(explain=True)))
    if manifest is not None:
        write_json_atomic(build_dir / MANIFEST, manifest)

