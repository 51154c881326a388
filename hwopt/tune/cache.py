"""The build cache of ``hwopt tune``: each recipe's build folder under the output folder, named
by a hash of everything that decides the build, so a resumed or repeated search reuses it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from hwopt import schema
from hwopt.model.load import LoadedModel
from hwopt.options import OptimizeOptions
from hwopt.stages.files import versions
from hwopt.targets.base import Target
from hwopt.tune.space import Recipe

CACHE_DIR = ".tune-cache"


class BuildCache:
    """Where each recipe's build lives under ``out_dir``."""

    def __init__(self, out_dir: Path, loaded: LoadedModel, target: Target, base: OptimizeOptions):
        self.out_dir = out_dir
        self.loaded = loaded
        self.target = target
        self.base = base
        self._decisive: dict[str, Any] | None = None  # what every key hashes (see folder)

    def folder(self, recipe: Recipe) -> Path:
        """Where ``recipe``'s build is cached: a hash of the options it is built with (the whole
        options schema but where the output goes) and of what those options point at."""
        if self._decisive is None:  # once: it digests the feeds file and the calibration folder
            self._decisive = self.decisive_files()
        options = build_options(self.base, self.target, recipe)
        key = schema.fingerprint(options, {**self._decisive, "recipe": dataclasses.asdict(recipe)})
        return self.out_dir / CACHE_DIR / key[:20]

    def decisive_files(self) -> dict[str, Any]:
        """What the options name but do not hold: the model's, feeds' and samples' contents, the
        target's resolved options and the versions that build."""
        calib = self.base.precision.calib_path
        return {
            "source": self.loaded.sha256,
            "target_options": dict(self.target.options),
            "inputs": file_digest(self.base.inputs_file),
            "calib": file_digest(calib) if calib else None,
            "versions": versions(),
        }


def build_options(base: OptimizeOptions, target: Target, recipe: Recipe) -> OptimizeOptions:
    """The ``optimize`` options that build ``recipe`` for ``target``."""
    return dataclasses.replace(
        base, targets=(target.name,), measure=False,
        passes=list(recipe.passes) if recipe.passes is not None else None, skip_passes=(),
        # The INT8 search times its variants as optimize does: with less time per variant
        # it picked a slower variant (inception_tiny: 1.03x optimize's INT8 build).
        precision=dataclasses.replace(base.precision, mode=recipe.precision, force=False,
                                      keep_variants=recipe.precision == "int8"),
        gates=dataclasses.replace(base.gates), session_overrides={},
    )


def file_digest(path: Path | None) -> str | None:
    """A digest of a file or a folder's files (names, sizes, times): enough to see a change."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        entries = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in path.rglob("*") if p.is_file())
        return hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    if path.is_file():
        st = path.stat()
        return hashlib.sha256(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    return None
