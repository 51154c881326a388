"""The build cache of ``hwopt tune``: each recipe's build folder under the output folder, named
by a hash of everything that decides the build, so a resumed or repeated search reuses it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from hwopt.model.load import LoadedModel
from hwopt.optimize import OptimizeOptions, versions
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
        """Where ``recipe``'s build is cached: a hash of everything that decides the build."""
        if self._decisive is None:  # once: it digests the feeds file and the calibration folder
            self._decisive = self.decisive_settings()
        key = json.dumps({**self._decisive, "recipe": dataclasses.asdict(recipe)}, sort_keys=True, default=str)
        return self.out_dir / CACHE_DIR / hashlib.sha256(key.encode()).hexdigest()[:20]

    def decisive_settings(self) -> dict[str, Any]:
        base = self.base
        precision = base.precision
        calib = precision.calib_path
        return {
            "source": self.loaded.sha256,
            "target": self.target.name,
            "target_options": dict(self.target.options),
            "input_shapes": {k: list(v) for k, v in base.input_shapes.items()},
            "inputs": file_digest(base.inputs_file),
            "calib": [str(calib), file_digest(calib)] if calib else None,
            "calib_generated": precision.calib_generated,
            "calib_samples": precision.calib_samples,
            "calib_method": precision.calib_method,
            "budget": precision.budget.to_dict(),
            "pass_options": {k: dict(v) for k, v in base.pass_options.items()},
            "seed": base.seed,
            "versions": versions(),
        }


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


def clear_cache(out_dir: Path) -> None:
    shutil.rmtree(Path(out_dir) / CACHE_DIR, ignore_errors=True)
