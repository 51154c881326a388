"""The builds ``hwopt tune`` times: each model recipe is one ``hwopt.optimize`` call (so every
candidate is verified like any build) into its folder of the build cache, here or on the
workers; the INT8 search's other variants within budget become builds of their own."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import onnx

from hwopt.errors import OutputError, UsageError, one_line
from hwopt.memory.analysis import analyze_memory
from hwopt.model.load import LoadedModel
from hwopt.optimize import optimize
from hwopt.options import OptimizeOptions
from hwopt.output import (
    MANIFEST,
    REPORT_JSON,
    file_sha256,
    prepare_output_dir,
    write_bytes_atomic,
    write_json_atomic,
)
from hwopt.stages.context import RunContext
from hwopt.stages.files import INT8_VARIANTS, MEMORY_PLAN, MODEL_FILE
from hwopt.targets.base import Target
from hwopt.tune.cache import BuildCache, build_options
from hwopt.tune.space import Recipe
from hwopt.tune.workers import Workers


@dataclasses.dataclass
class Built:
    """A recipe's build folder (a complete ``hwopt optimize`` build) and what it reported."""

    recipe: Recipe
    folder: Path
    report: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.folder / self.manifest["model"]

    @property
    def model_sha256(self) -> str:
        return self.manifest["files"][self.manifest["model"]]

    @property
    def report_build(self) -> dict[str, Any]:
        return self.report["builds"][0]


@dataclasses.dataclass(frozen=True)
class BuildRefused:
    """Why a recipe yields no candidate of its own, and the status its candidate gets."""

    reason: str
    status: str = "rejected"


class RecipeBuilds:
    """The recipes built so far, by name; each built at most once, into the cache."""

    def __init__(self, model_path: Path, loaded: LoadedModel, checks: RunContext, target: Target,
                 base: OptimizeOptions, cache: BuildCache):
        self.model_path = model_path
        self.loaded = loaded
        self.checks = checks
        self.target = target
        self.base = base
        self.cache = cache
        self.built: dict[str, Built] = {}
        self.errors: dict[str, str] = {}  # recipe -> why a worker could not build it
        self.variant_recipes: dict[str, list[str]] = {}  # INT8 recipe -> its variants' recipes

    def is_cached(self, recipe: Recipe) -> bool:
        return (self.cache.folder(recipe) / MANIFEST).is_file()

    def build(self, recipe: Recipe) -> BuildRefused | None:
        """Build ``recipe`` (or take it from the cache); why not, when it yields nothing new."""
        folder = self.cache.folder(recipe)
        error = self.errors.get(recipe.name)
        if error is not None:
            return BuildRefused(f"cannot build: {error}")
        if not (folder / MANIFEST).is_file():
            try:
                optimize(self.model_path, dataclasses.replace(self.options(recipe), output_dir=folder))
            except UsageError as exc:
                return BuildRefused(f"cannot build: {one_line(exc)}")
        report = json.loads((folder / REPORT_JSON).read_text())
        manifest = json.loads((folder / MANIFEST).read_text())
        built = Built(recipe, folder, report, manifest)
        if recipe.precision == "int8":
            # Even when the search kept FP32, its variants within budget are tune's to time.
            self.variant_recipes[recipe.name] = self._int8_variants(built)
        label = manifest["precision"]
        if recipe.precision != "fp32" and label != recipe.precision:
            reason = (built.report_build.get("precision") or {}).get("reason") or f"the build is {label}"
            return BuildRefused(f"no {recipe.precision.upper()} build: {reason}")
        same = next((b.recipe.name for b in self.built.values() if b.model_sha256 == built.model_sha256), None)
        if same is not None:
            return BuildRefused(f"the same model as {same}", status="stopped")
        self.built[recipe.name] = built
        return None

    def options(self, recipe: Recipe) -> OptimizeOptions:
        """The ``optimize`` options that build ``recipe``."""
        return build_options(self.base, self.target, recipe)

    def _int8_variants(self, built: Built) -> list[str]:
        """The INT8 search's other variants within budget, each as a recipe of its own with a
        build folder like the search's pick (the INT8 choice is a measurement, and tune
        measures more carefully than the search has time to)."""
        listing = built.folder / INT8_VARIANTS / "variants.json"
        if not listing.is_file():
            return []
        names = []
        for index, entry in enumerate(json.loads(listing.read_text())):
            name = f"{built.recipe.name}-v{index}"
            folder = built.folder.parent / f"{built.folder.name}-v{index}"
            if not (folder / MANIFEST).is_file():
                self._derive_build(built, built.folder / INT8_VARIANTS / entry["file"], folder, entry["label"])
            manifest = json.loads((folder / MANIFEST).read_text())
            derived = Built(Recipe(name, f"INT8 variant {entry['label']} (from the INT8 search)", built.recipe.passes,
                                   "int8", built.recipe.cost), folder, json.loads((folder / REPORT_JSON).read_text()),
                            manifest)
            if derived.model_sha256 == built.model_sha256 or any(
                    b.model_sha256 == derived.model_sha256 for b in self.built.values()):
                continue  # the search's own pick
            self.built[name] = derived
            names.append(name)
        return names

    def _derive_build(self, base: Built, model_path: Path, folder: Path, label: str) -> None:
        """A build folder like ``base`` whose model is ``model_path``; the manifest last."""
        folder.mkdir(parents=True, exist_ok=True)
        model = onnx.load(str(model_path))
        write_bytes_atomic(folder / MODEL_FILE, model_path.read_bytes())
        plan = analyze_memory(model, self.checks.specs, feeds=self.checks.feeds[0]).plan_document(self.checks.specs)
        write_json_atomic(folder / MEMORY_PLAN, plan)
        report = json.loads((base.folder / REPORT_JSON).read_text())
        for entry in report["builds"]:
            entry["optimized"]["serialized_bytes"] = model_path.stat().st_size
            entry.setdefault("warnings", []).append(
                f"hwopt tune shipped INT8 variant {label}, not the one the INT8 search chose; its precision "
                "section describes the search")
        write_json_atomic(folder / REPORT_JSON, report)
        write_bytes_atomic(folder / "report.md", (base.folder / "report.md").read_bytes())
        manifest = dict(base.manifest)
        manifest["model"] = MODEL_FILE
        manifest["files"] = {name: file_sha256(folder / name) for name in (MODEL_FILE, MEMORY_PLAN)}
        manifest["precision"] = "int8"
        manifest["int8_variant"] = label
        write_json_atomic(folder / MANIFEST, manifest)

    def build_on_workers(self, recipes: Iterable[Recipe], workers: Workers, step: Callable[[str], None]) -> None:
        """Build every recipe not in the cache in parallel on the workers, into the cache."""
        by_name = {r.name: r for r in recipes}
        jobs = {r.name: self.options(r) for r in by_name.values() if not self.is_cached(r)}
        if not jobs:
            return
        step(f"building {len(jobs)} recipes on the workers")
        source = self.model_path.parent
        files = {self.model_path.name: self.model_path.read_bytes(),
                 **{name: (source / name).read_bytes() for name in self.loaded.external_files}}
        for name, result in workers.build_many(files, self.model_path.name, jobs).items():
            if isinstance(result, str):
                self.errors[name] = result
                continue
            folder = prepare_output_dir(self.cache.folder(by_name[name]), protected=[self.model_path])
            for file_name, data in result.items():
                if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
                    raise OutputError(f"--workers: a worker returned the file '{file_name}', outside its build")
                if file_name != MANIFEST:
                    (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(folder / file_name, data)
            write_bytes_atomic(folder / MANIFEST, result[MANIFEST])  # last: the build is complete
