"""``hwopt.runtime.load(build_dir)``: the InferenceSession a build folder describes.

The session is configured exactly as ``build.json`` says: the model file it names (checked
against the recorded SHA-256), the execution providers with their options in their order
(relative cache paths resolved inside the build folder), and the session options. A build
made with another onnxruntime version, or for providers this onnxruntime lacks, is refused
with the reason (``strict=False`` turns that into warnings and loads anyway).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import onnxruntime as ort

from hwopt.errors import ModelLoadError, RuntimeMismatch, one_line
from hwopt.output import MANIFEST, file_sha256
from hwopt.session import ORT_ERRORS, create_session

BUILD_SCHEMA_PREFIX = "hwopt.build/"
REQUIRED_KEYS = {"model": str, "files": dict, "providers": list, "session_options": dict}


@dataclasses.dataclass(frozen=True)
class Build:
    """A build folder's manifest, read and vetted."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.folder / self.manifest["model"]

    @property
    def providers(self) -> list[tuple[str, dict[str, Any]]]:
        return [(p["name"], dict(p.get("options", {}))) for p in self.manifest["providers"]]

    @property
    def session_options(self) -> dict[str, Any]:
        return dict(self.manifest["session_options"])

    def mismatches(self) -> list[str]:
        """Why this host's onnxruntime is not the one the build was made and measured with."""
        problems = []
        built_with = self.manifest.get("versions", {}).get("onnxruntime")
        if built_with and built_with != ort.__version__:
            problems.append(f"built with onnxruntime {built_with}, this is {ort.__version__}")
        available = set(ort.get_available_providers())
        missing = [name for name, _ in self.providers if name not in available]
        if missing:
            problems.append(f"providers {', '.join(missing)} are not in this onnxruntime")
        return problems


def read_build(build_dir: str | Path) -> Build:
    """The manifest of a complete build folder, with the model file's hash verified."""
    folder = Path(build_dir)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelLoadError(f"{folder}: no {MANIFEST}: not a complete hwopt build")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{manifest_path}: unreadable: {one_line(exc)}") from exc
    if not isinstance(manifest, dict) or not str(manifest.get("schema", "")).startswith(BUILD_SCHEMA_PREFIX):
        raise ModelLoadError(f"{manifest_path}: not an hwopt build manifest")
    missing = [key for key, kind in REQUIRED_KEYS.items() if not isinstance(manifest.get(key), kind)]
    if missing:
        raise ModelLoadError(f"{manifest_path}: malformed manifest (missing or wrong: {', '.join(missing)})")
    build = Build(folder, manifest)
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise ModelLoadError(f"{folder}: {name} is missing")
        if file_sha256(path) != digest:
            raise ModelLoadError(f"{folder}: {name} does not match its recorded SHA-256 (modified since the build)")
    return build


def load(build_dir: str | Path, strict: bool = True, providers: list | None = None) -> ort.InferenceSession:
    """An InferenceSession configured as the build's ``build.json`` says.

    ``providers`` overrides the recorded providers (for example to run a CUDA build on the CPU
    provider for a check); ``strict=False`` loads despite a version or provider mismatch.
    """
    build = read_build(build_dir)
    problems = build.mismatches() if providers is None else []
    if problems:
        message = f"{build.folder}: {'; '.join(problems)}"
        if strict:
            raise RuntimeMismatch(message + " (load(..., strict=False) to load anyway)")
        warnings.warn(message, stacklevel=2)
    try:
        return create_session(build.model_path, build.session_options,
                              providers if providers is not None else build.providers, base_dir=build.folder)
    except ORT_ERRORS as exc:
        raise RuntimeMismatch(f"{build.folder}: onnxruntime cannot create the session: {one_line(exc)}") from exc
