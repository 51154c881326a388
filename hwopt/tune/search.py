"""The search behind ``hwopt tune``: spend the time budget where it pays.

1. Build the cheap recipes (the input as is, hwopt's FP32 pipeline with and without reorder)
   through ``hwopt.optimize``, so each is verified like any build, and cache each build by a
   hash of everything that decides it.
2. Race them, interleaved, with the *anchor* (the input under onnxruntime's default options)
   in every race: a candidate's score is its p50 over the anchor's p50 in the same race,
   which keeps scores from different races comparable on a noisy host. A candidate's first
   run is also its accuracy check against the original's outputs; over budget is rejected.
3. Build the expensive recipe (INT8: calibration and hwopt's own variant search) while time
   remains, and race it against the incumbent.
4. Cross the two best recipes with every session-option variant and run successive halving:
   short races first, the slowest two thirds stopped after each, the rest raced longer.
5. A final, longer race of the finalists and the baselines (the anchor, hwopt optimize's
   defaults): the numbers the report shows. Then peak memory of those, each in a fresh
   process, while the budget lasts.

Every candidate's result is appended to ``tune-results.jsonl`` as it is measured, so an
interrupted run (Ctrl-C, SIGTERM) keeps what it measured, writes the best build so far, and
``--resume`` continues from the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwopt import guard
from hwopt.errors import OutputError, TargetUnavailable, UsageError, one_line
from hwopt.memory.analysis import analyze_memory
from hwopt.memory.probe import MeasurementFailed, measure_session_memory
from hwopt.model.inputs import save_npz
from hwopt.model.load import load_model
from hwopt.optimize import (
    INT8_VARIANTS,
    MEMORY_PLAN,
    MODEL_FILE,
    OptimizeOptions,
    optimize,
    prepare_checks,
    session_options_for,
    versions,
)
from hwopt.output import (
    MANIFEST,
    REPORT_JSON,
    TUNE_RESULTS,
    file_sha256,
    prepare_output_dir,
    write_bytes_atomic,
    write_json_atomic,
)
from hwopt.quant.accuracy import AccuracyBudget, AccuracyResult, compare
from hwopt.session import ORT_ERRORS, create_session
from hwopt.targets import get_target
from hwopt.targets.base import Target
from hwopt.timing import BenchConfig, LatencyStats, bench_session_options, measure_latency
from hwopt.tune.space import (
    HWOPT,
    ORIGINAL,
    ORT_DEFAULTS,
    TARGET_DEFAULTS,
    Recipe,
    SessionVariant,
    recipes,
    session_variants,
)
from hwopt.tune.workers import RaceEntry, Workers

RESULTS_FILE = TUNE_RESULTS
RESULTS_SCHEMA = "hwopt.tune-results/1"
CACHE_DIR = ".tune-cache"
ANCHOR = f"{ORIGINAL}/{ORT_DEFAULTS}"
ETA = 3  # successive halving keeps a third of the candidates after each rung
FINALISTS = 3
FINAL_ROUNDS = 3  # the final race is run this many times; each candidate keeps its median


@dataclasses.dataclass
class TuneOptions:
    """What ``hwopt tune`` can be told; ``base`` carries the shared optimize options (input
    shapes, feeds, calibration, accuracy budget, target options, seed)."""

    target: str = "cpu"
    output_dir: Path | None = None
    budget_seconds: float = 300.0
    base: OptimizeOptions = dataclasses.field(default_factory=OptimizeOptions)
    resume: bool = False
    recipes: Sequence[str] | None = None  # restrict the space (names from hwopt.tune.space)
    variants: Sequence[str] | None = None
    memory: bool = True
    workers: str | None = None  # local:N, ray://HOST:PORT or auto (hwopt.tune.workers)


@dataclasses.dataclass
class Candidate:
    """One (recipe, session variant) pair and what the search learned about it."""

    recipe: str
    variant: str
    status: str = "pending"  # pending | measured | stopped | rejected | failed
    reason: str = ""
    rung: int = -1  # the last race it ran in: 0 first race, higher = longer races
    ratio: float | None = None  # p50 / the anchor's p50 in its last race
    stats: LatencyStats | None = None  # its last race
    final: bool = False  # its numbers come from the final race
    accuracy: AccuracyResult | None = None
    memory_bytes: int | None = None
    size_bytes: int | None = None
    found_at_s: float | None = None  # seconds into the search when it was first timed
    session_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    providers: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.recipe}/{self.variant}"

    @property
    def usable(self) -> bool:
        return self.status in ("measured", "stopped") and self.ratio is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "recipe": self.recipe, "variant": self.variant, "status": self.status,
            "reason": self.reason, "rung": self.rung, "ratio": self.ratio, "final": self.final,
            "latency": self.stats.to_dict() if self.stats else None,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "memory_bytes": self.memory_bytes, "size_bytes": self.size_bytes, "found_at_s": self.found_at_s,
            "session_options": self.session_options,
            "providers": [{"name": n, "options": o} for n, o in self.providers],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back what an earlier, interrupted run measured (``--resume``)."""
        self.status, self.reason, self.rung = data["status"], data["reason"], data["rung"]
        self.ratio, self.found_at_s = data["ratio"], data["found_at_s"]
        self.memory_bytes, self.size_bytes = data["memory_bytes"], data["size_bytes"]
        if data.get("latency"):
            self.stats = LatencyStats.from_dict(data["latency"])
        if data.get("accuracy"):
            self.accuracy = AccuracyResult(**data["accuracy"])


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


@dataclasses.dataclass
class Progress:
    """What a progress display shows after each step."""

    done: int
    total: int
    best: str | None
    best_ratio: float | None
    seconds_left: float
    step: str


class Tuner:
    def __init__(self, model_path: Path, options: TuneOptions,
                 on_progress: Callable[[Progress], None] | None = None):
        self.model_path = Path(model_path)
        self.options = options
        self.on_progress = on_progress or (lambda p: None)
        self.candidates: dict[str, Candidate] = {}
        self.built: dict[str, Built] = {}
        self.recipe_notes: dict[str, str] = {}
        self.build_errors: dict[str, str] = {}  # recipe -> why a worker could not build it
        self.survivors: list[Candidate] = []  # what the last rung of successive halving kept
        self.variant_recipes: dict[str, list[str]] = {}  # INT8 recipe -> its variants' recipes
        self._decisive: dict[str, Any] | None = None  # what every cache key hashes (see _cache_folder)
        self.sessions: dict[str, Any] = {}
        self.timeline: list[tuple[float, str, float]] = []  # (seconds, best id, best ratio)
        self.interrupted = ""
        self.workers: Workers | None = None
        self.start = time.monotonic()
        self.elapsed_before = 0.0  # seconds an earlier, resumed run spent

    # --- set-up ----------------------------------------------------------------------------

    def prepare(self) -> None:
        opts = self.options
        self.target: Target = get_target(opts.target, opts.base.target_options.get(opts.target))
        availability = self.target.availability()
        if not availability.available:
            raise TargetUnavailable(f"hwopt tune times every candidate on this host, and target "
                                    f"{self.target.name} is not available here: {availability.reason}")
        self.recipes = {r.name: r for r in recipes(self.target) if opts.recipes is None or r.name in opts.recipes}
        self.variants = {v.name: v for v in session_variants(self.target)
                         if opts.variants is None or v.name in opts.variants or v.name in (TARGET_DEFAULTS, ORT_DEFAULTS)}
        if opts.recipes is not None:
            unknown = sorted(set(opts.recipes) - set(self.recipes))
            if unknown:
                known = ", ".join(r.name for r in recipes(self.target))
                raise UsageError(f"unknown recipe(s) {', '.join(unknown)} for target {self.target.name}; known: {known}")
        if opts.variants is not None:
            unknown = sorted(set(opts.variants) - set(self.variants))
            if unknown:
                known = ", ".join(v.name for v in session_variants(self.target))
                raise UsageError(f"unknown session variant(s) {', '.join(unknown)} for target {self.target.name}; "
                                 f"known: {known}")
        opts.base.precision.validate()
        self.loaded = load_model(self.model_path)
        base = dataclasses.replace(opts.base, targets=(self.target.name,), benchmark=False)
        self.checks, self.feeds_source, _ = prepare_checks(self.loaded, base)
        self.out_dir = prepare_output_dir(
            opts.output_dir or Path.cwd() / f"{self.model_path.stem}.tune",
            protected=[self.model_path, *(self.model_path.parent / f for f in self.loaded.external_files)],
        )
        self.recipes.setdefault(ORIGINAL, next(r for r in recipes(self.target) if r.name == ORIGINAL))
        self.results = ResultsLog(self.out_dir / RESULTS_FILE, self._header(), resume=opts.resume)
        for data in self.results.previous:
            c = self._candidate(data["recipe"], data["variant"])
            c.restore(data)
        self.elapsed_before = self.results.previous_elapsed
        if opts.workers:
            self.workers = Workers(opts.workers, self.target.name)

    def _header(self) -> dict[str, Any]:
        base = self.options.base
        return {
            "schema": RESULTS_SCHEMA,
            "source_sha256": self.loaded.sha256,
            "target": self.target.name,
            "input_shapes": {k: list(v) for k, v in base.input_shapes.items()},
            "budget": base.precision.budget.to_dict(),
            "versions": versions(),
        }

    def _candidate(self, recipe: str, variant: str) -> Candidate:
        key = f"{recipe}/{variant}"
        if key not in self.candidates:
            v = self.variants.get(variant) or SessionVariant(variant, "")
            self.candidates[key] = Candidate(
                recipe, variant,
                session_options=v.apply(session_options_for(self.target, self.options.base)),
                providers=v.providers(self.target.providers()),
            )
        return self.candidates[key]

    # --- time ------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.start

    def left(self) -> float:
        return self.options.budget_seconds - self.elapsed()

    def _report_progress(self, step: str) -> None:
        best = self.best()
        done = sum(1 for c in self.candidates.values() if c.status != "pending")
        total = max(len(self.candidates), len(self.recipes) * len(self.variants) // 2 or 1)
        self.on_progress(Progress(done, total, best.id if best else None, best.ratio if best else None,
                                  max(self.left(), 0.0), step))

    # --- the search ------------------------------------------------------------------------

    def run(self) -> None:
        """The whole search; Ctrl-C or SIGTERM ends it early with what was measured."""
        try:
            self._search()
        except (KeyboardInterrupt, guard.Terminated) as exc:
            self.interrupted = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "terminated"
        finally:
            self.sessions.clear()
            if self.workers is not None:
                self.workers.close()

    def _search(self) -> None:
        if self.workers is not None:
            self._build_on_workers()
        cheap = [r for r in self.recipes.values() if r.cost < 2]
        expensive = [r for r in self.recipes.values() if r.cost >= 2]
        for recipe in cheap:
            self._build(recipe)
        first = [self._candidate(ORIGINAL, ORT_DEFAULTS)] + [
            self._candidate(name, TARGET_DEFAULTS) for name in self.built]
        first_seconds = self._rung_seconds(len(first), share=0.08)
        self._race([c for c in first if c.status == "pending"], first_seconds, rung=0)
        for recipe in expensive:
            cached = (self._cache_folder(recipe) / MANIFEST).is_file()
            if not cached and self.left() < 0.35 * self.options.budget_seconds:
                self.recipe_notes[recipe.name] = "not built: too little of the time budget left"
                continue
            names = [recipe.name] if self._build(recipe) else []
            names += self.variant_recipes.pop(recipe.name, [])
            if names:
                self._race([self._candidate(n, TARGET_DEFAULTS) for n in names], first_seconds, rung=0,
                           against=self._leaders(1))
        self._halving()
        self._final_race()
        if self.options.memory and self.workers is not None and self.workers.remote:
            self.recipe_notes["memory"] = "not measured: the candidates ran on the cluster's machines, not this one"
        elif self.options.memory:
            self._measure_memory()
        for c in self.candidates.values():
            if c.status == "pending":
                c.status, c.reason = "not run", "the time budget ran out first"

    def _rung_seconds(self, count: int, share: float) -> float:
        """Seconds per candidate for a race of ``count`` that may take ``share`` of the budget."""
        return max(0.05, min(2.0, share * self.options.budget_seconds / max(count, 1)))

    def _leaders(self, k: int) -> list[Candidate]:
        ranked = sorted((c for c in self.candidates.values() if c.usable), key=lambda c: c.ratio)
        return ranked[:k]

    def best(self) -> Candidate | None:
        finals = [c for c in self.candidates.values() if c.usable and c.final]
        pool = finals or [c for c in self.candidates.values() if c.usable]
        return min(pool, key=lambda c: c.ratio, default=None)

    def _halving(self) -> None:
        recipes_ranked = []
        for c in self._leaders(len(self.candidates)):
            if c.recipe not in recipes_ranked and c.recipe != ORIGINAL:
                recipes_ranked.append(c.recipe)
        pool = [self._candidate(r, v) for r in recipes_ranked[:2] for v in self.variants]
        pool = [c for c in pool if c.status in ("pending", "measured")]
        rung = 1 + max((c.rung for c in pool), default=0)
        rungs = max(1, math.ceil(math.log(max(len(pool), 2), ETA)))
        reserve = 0.25 * self.options.budget_seconds  # the final race and memory
        while len(pool) > FINALISTS and self.left() > reserve:
            seconds = self._rung_seconds(len(pool), share=(self.left() - reserve) / self.options.budget_seconds / rungs)
            self._race(pool, seconds, rung)
            ranked = sorted((c for c in pool if c.usable), key=lambda c: c.ratio)
            keep = ranked[:max(FINALISTS, math.ceil(len(ranked) / ETA))]
            for c in ranked[len(keep):]:
                c.status, c.reason = "stopped", f"stopped after race {rung}: slower than the best {len(keep)}"
                self._save(c)
                self.sessions.pop(c.id, None)
            pool, rung = keep, rung + 1
        pending = [c for c in pool if c.status == "pending"]
        if pending and self.left() > 0:
            self._race(pending, self._rung_seconds(len(pending), 0.05), rung)
        self.survivors = [c for c in pool if c.usable]

    def _final_race(self) -> None:
        # The last rung's survivors: a candidate stopped earlier keeps the ratio of an earlier,
        # shorter race, which is not evidence against those that outlasted it.
        survivors = sorted(self.survivors, key=lambda c: c.ratio)
        finalists = survivors[:FINALISTS] if survivors else self._leaders(FINALISTS)
        baselines = [self._candidate(ORIGINAL, ORT_DEFAULTS), self._candidate(HWOPT, TARGET_DEFAULTS)]
        if "hwopt-int8" in self.built:
            baselines.append(self._candidate("hwopt-int8", TARGET_DEFAULTS))
        entrants = list({c.id: c for c in [*finalists, *baselines] if c.usable}.values())
        seconds = max(0.2, min(2.0, 0.12 * self.options.budget_seconds / max(len(entrants), 1)))
        self._race(entrants, seconds, rung=99, final=True, rounds=FINAL_ROUNDS)

    # --- building --------------------------------------------------------------------------

    def _build(self, recipe: Recipe) -> bool:
        """Build ``recipe`` (or take it from the cache); False when it yields nothing new."""
        self._report_progress(f"building {recipe.name}")
        folder = self._cache_folder(recipe)
        error = self.build_errors.get(recipe.name)
        if error is not None:
            self._recipe_failed(recipe, f"cannot build: {error}")
            return False
        if not (folder / MANIFEST).is_file():
            try:
                optimize(self.model_path, dataclasses.replace(self._build_options(recipe), output_dir=folder))
            except UsageError as exc:
                self._recipe_failed(recipe, f"cannot build: {one_line(exc)}")
                return False
        report = json.loads((folder / REPORT_JSON).read_text())
        manifest = json.loads((folder / MANIFEST).read_text())
        built = Built(recipe, folder, report, manifest)
        if recipe.precision == "int8":
            # Even when the search kept FP32, its variants within budget are tune's to time.
            self.variant_recipes[recipe.name] = self._int8_variants(built)
        label = manifest["precision"]
        if recipe.precision != "fp32" and label != recipe.precision:
            reason = (built.report_build.get("precision") or {}).get("reason") or f"the build is {label}"
            self._recipe_failed(recipe, f"no {recipe.precision.upper()} build: {reason}")
            return False
        same = next((b.recipe.name for b in self.built.values() if b.model_sha256 == built.model_sha256), None)
        if same is not None:
            self._recipe_failed(recipe, f"the same model as {same}", status="stopped")
            return False
        self.built[recipe.name] = built
        return True

    def _save(self, c: Candidate) -> None:
        self.results.write(c, self.elapsed())

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
            self.recipes[name] = derived.recipe
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

    def _build_options(self, recipe: Recipe) -> OptimizeOptions:
        base = self.options.base
        return dataclasses.replace(
            base, targets=(self.target.name,), benchmark=False,
            passes=list(recipe.passes) if recipe.passes is not None else None, skip_passes=(),
            # The INT8 search times its variants as optimize does: with less time per variant
            # it picked a slower variant (inception_tiny: 1.03x optimize's INT8 build).
            precision=dataclasses.replace(base.precision, mode=recipe.precision, force=False,
                                          keep_variants=recipe.precision == "int8"),
            gates=dataclasses.replace(base.gates), session_overrides={},
        )

    def _build_on_workers(self) -> None:
        """Build every recipe not in the cache in parallel on the workers, into the cache."""
        jobs = {r.name: self._build_options(r) for r in self.recipes.values()
                if not (self._cache_folder(r) / MANIFEST).is_file()}
        if not jobs:
            return
        self._report_progress(f"building {len(jobs)} recipes on the workers")
        source = self.model_path.parent
        files = {self.model_path.name: self.model_path.read_bytes(),
                 **{name: (source / name).read_bytes() for name in self.loaded.external_files}}
        for name, result in self.workers.build_many(files, self.model_path.name, jobs).items():
            if isinstance(result, str):
                self.build_errors[name] = result
                continue
            folder = prepare_output_dir(self._cache_folder(self.recipes[name]),
                                        protected=[self.model_path])
            for file_name, data in result.items():
                if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
                    raise OutputError(f"--workers: a worker returned the file '{file_name}', outside its build")
                if file_name != MANIFEST:
                    (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(folder / file_name, data)
            write_bytes_atomic(folder / MANIFEST, result[MANIFEST])  # last: the build is complete

    def _recipe_failed(self, recipe: Recipe, reason: str, status: str = "rejected") -> None:
        self.recipe_notes[recipe.name] = reason
        c = self._candidate(recipe.name, TARGET_DEFAULTS)
        c.status, c.reason = status, reason
        self._save(c)

    def _cache_folder(self, recipe: Recipe) -> Path:
        """Where ``recipe``'s build is cached: a hash of everything that decides the build."""
        if self._decisive is None:  # once: it digests the feeds file and the calibration folder
            self._decisive = self._decisive_settings()
        key = json.dumps({**self._decisive, "recipe": dataclasses.asdict(recipe)}, sort_keys=True, default=str)
        return self.out_dir / CACHE_DIR / hashlib.sha256(key.encode()).hexdigest()[:20]

    def _decisive_settings(self) -> dict[str, Any]:
        base = self.options.base
        precision = base.precision
        calib = precision.calib_path
        return {
            "source": self.loaded.sha256,
            "target": self.target.name,
            "target_options": dict(self.target.options),
            "input_shapes": {k: list(v) for k, v in base.input_shapes.items()},
            "inputs": _file_digest(base.inputs_file),
            "calib": [str(calib), _file_digest(calib)] if calib else None,
            "calib_generated": precision.calib_generated,
            "calib_samples": precision.calib_samples,
            "calib_method": precision.calib_method,
            "budget": precision.budget.to_dict(),
            "pass_options": {k: dict(v) for k, v in base.pass_options.items()},
            "seed": base.seed,
            "versions": versions(),
        }

    # --- timing ----------------------------------------------------------------------------

    def _session(self, c: Candidate) -> Any | None:
        """The candidate's timed session, created and accuracy-checked on first use."""
        if c.id in self.sessions:
            return self.sessions[c.id]
        built = self.built.get(c.recipe)
        if built is None:
            return None
        session, outcome = open_and_check(built.model_path, built.folder, c.session_options, c.providers,
                                          self.checks.feeds, self.checks.references, self._budget())
        self._take_outcome(c, outcome)
        if session is not None:
            self.sessions[c.id] = session
        return session

    def _budget(self) -> AccuracyBudget:
        # Top-1 agreement is judged where there are enough samples: by the INT8 search, on
        # held-out data. Here, on the check feeds, each candidate is held to the cosine and
        # absolute-error parts of the budget.
        return dataclasses.replace(self.options.base.precision.budget, min_top1=0.0)

    def _take_outcome(self, c: Candidate, outcome: Mapping[str, Any]) -> None:
        """Record an accuracy check's outcome (from this process or a worker)."""
        if outcome.get("accuracy") is not None:
            c.accuracy = AccuracyResult(**outcome["accuracy"])
        built = self.built.get(c.recipe)
        if built is not None:
            c.size_bytes = built.report_build["optimized"]["serialized_bytes"]
        if outcome["status"] != "ok":
            c.status, c.reason = outcome["status"], outcome["reason"]
            self._save(c)

    def _race(self, entrants: Sequence[Candidate], seconds: float, rung: int,
              against: Sequence[Candidate] = (), final: bool = False, rounds: int = 1) -> None:
        """Time ``entrants`` interleaved, with the anchor and ``against`` in the same race.

        With several ``rounds``, each with fresh sessions, a candidate's ratio is the median of
        its per-round ratios and its statistics are those of that median round: neither one slow
        stretch of the host nor one unlucky session then moves the decision."""
        anchor = self._candidate(ORIGINAL, ORT_DEFAULTS)
        field = [c for c in {c.id: c for c in [anchor, *against, *entrants]}.values()
                 if c.status not in ("rejected", "failed") and c.recipe in self.built]
        if anchor not in field or len(field) < 2 and not final:
            return
        self._report_progress(f"race {'final' if final else rung}: {len(field)} candidates, {seconds:.2f} s each")
        measured: dict[str, list[tuple[float, LatencyStats]]] = {}
        for round_index in range(rounds):
            if round_index:
                # Fresh sessions each round: one session of a model can run several percent
                # faster or slower than another (where its buffers landed), measured up to
                # 0.86x to 0.98x FP32 across five sessions of one INT8 ResNeXt.
                for c in field:
                    self.sessions.pop(c.id, None)
            stats = self._race_on_workers(field, seconds) if self.workers else self._race_here(field, seconds)
            reference = stats[anchor.id].p50_ms if anchor.id in stats else 0.0
            if reference <= 0:
                break
            for cid, s in stats.items():
                measured.setdefault(cid, []).append((s.p50_ms / reference, s))
            field = [c for c in field if c.id in stats]
        if not measured:
            return
        for cid, results in measured.items():
            ratio, s = sorted(results, key=lambda r: r[0])[(len(results) - 1) // 2]
            c = self.candidates[cid]
            c.stats, c.ratio, c.rung = s, ratio, max(c.rung, rung)
            c.final = final
            if c.status == "pending":
                c.status = "measured"
            if c.found_at_s is None:
                c.found_at_s = round(self.elapsed(), 2)
            self._save(c)
        best = self.best()
        if best is not None:
            self.timeline.append((round(self.elapsed(), 2), best.id, best.ratio))
        self._report_progress(f"race {'final' if final else rung} done")

    def _race_here(self, field: Sequence[Candidate], seconds: float) -> dict[str, LatencyStats]:
        sessions = {c.id: s for c in field if (s := self._session(c)) is not None}
        return time_sessions(sessions, self.checks.feeds[0], seconds)

    def _race_on_workers(self, field: Sequence[Candidate], seconds: float) -> dict[str, LatencyStats]:
        entries = []
        for c in field:
            built = self.built[c.recipe]
            files = {name: (built.folder / name).read_bytes() for name in built.manifest["files"]}
            entries.append(RaceEntry(c.id, files, built.manifest["model"], c.session_options,
                                     [(n, dict(o)) for n, o in c.providers]))
        outcomes = self.workers.race(entries, self.checks.feeds, self.checks.references, seconds, self._budget())
        stats = {}
        for c in field:
            outcome = outcomes[c.id]
            self._take_outcome(c, outcome)
            if outcome.get("stats") is not None:
                stats[c.id] = LatencyStats.from_dict(outcome["stats"])
        return stats

    def _measure_memory(self) -> None:
        """Peak RSS of the finalists, then of the memory-minded variants, while time lasts."""
        memory_minded = {m.label for m in self.target.memory_settings}
        order = sorted((c for c in self.candidates.values() if c.usable and c.memory_bytes is None),
                       key=lambda c: (not c.final, c.variant not in memory_minded, c.ratio))
        # The final race's entrants are measured even a little past the budget: the memory
        # front and the table need them, and there are at most a handful.
        with tempfile.TemporaryDirectory(prefix="hwopt-tune-") as tmp:
            feeds_path = Path(tmp) / "feeds.npz"
            save_npz(feeds_path, self.checks.feeds[0])
            for c in order:
                if self.left() <= 0 and not c.final:
                    break
                built = self.built[c.recipe]
                self._report_progress(f"memory of {c.id}")
                try:
                    memory = measure_session_memory(built.model_path,
                                                    [{"name": n, "options": o} for n, o in c.providers],
                                                    c.session_options, feeds_path, base_dir=built.folder)
                except MeasurementFailed:
                    continue
                c.memory_bytes = memory.session_bytes
                self._save(c)


def open_and_check(model_path: Path, base_dir: Path, session_options: Mapping[str, Any],
                   providers: Sequence[tuple[str, Mapping[str, Any]]], feeds: Sequence[Mapping[str, np.ndarray]],
                   references: Sequence[Mapping[str, np.ndarray]], budget: AccuracyBudget) -> tuple[Any, dict]:
    """A candidate's timing session and its accuracy check against the original's outputs:
    (session or None, {"status": ok | failed | rejected, "reason", "accuracy"})."""
    try:
        session = create_session(model_path, bench_session_options(session_options), providers, base_dir=base_dir)
        names = [o.name for o in session.get_outputs()]
        outputs = [dict(zip(names, session.run(None, f))) for f in feeds]
    except ORT_ERRORS as exc:
        return None, {"status": "failed", "reason": f"onnxruntime: {one_line(exc)}", "accuracy": None}
    accuracy = compare(references, outputs)
    violations = accuracy.violations(budget)
    if violations:
        return None, {"status": "rejected", "reason": "over the accuracy budget: " + "; ".join(violations),
                      "accuracy": accuracy.to_dict()}
    return session, {"status": "ok", "reason": "", "accuracy": accuracy.to_dict()}


def time_sessions(sessions: Mapping[str, Any], feeds: Mapping[str, np.ndarray],
                  seconds: float) -> dict[str, LatencyStats]:
    """Time the sessions interleaved on ``feeds``: one race."""
    runners = {cid: (lambda s=s: s.run(None, feeds)) for cid, s in sessions.items()}
    with guard.phase("tune race", "run"):
        return measure_latency(runners, BenchConfig(warmup_runs=2, min_runs=3, target_seconds=seconds),
                               batch=_batch(feeds))


def _batch(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim > 0 else 1


def _file_digest(path: Path | None) -> str | None:
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


class ResultsLog:
    """``tune-results.jsonl``: a header line, then one line per candidate update, appended and
    fsync'ed as the search goes, so an interrupted run loses nothing it measured."""

    def __init__(self, path: Path, header: dict[str, Any], resume: bool):
        self.path = path
        self.previous: list[dict[str, Any]] = []
        self.previous_elapsed = 0.0
        if resume:
            self._read(header)
        elif path.exists():
            path.unlink()
        self.started = time.monotonic()
        if not self.path.exists():
            self._append({"header": header})

    def _read(self, header: dict[str, Any]) -> None:
        if not self.path.is_file():
            raise UsageError(f"--resume: {self.path} does not exist; run without --resume to start")
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line torn by the interruption
        first = records[0].get("header") if records else None
        if not isinstance(first, dict):
            raise UsageError(f"--resume: {self.path} is not a tune results file")
        for key in ("source_sha256", "target", "input_shapes", "budget"):
            if first.get(key) != header[key]:
                raise UsageError(f"--resume: {self.path} was written for another {key.replace('_', ' ')}; "
                                 "run without --resume to start over")
        latest: dict[str, dict[str, Any]] = {}
        for record in records[1:]:
            if "candidate" in record:
                latest[record["candidate"]["id"]] = record["candidate"]
                self.previous_elapsed = max(self.previous_elapsed, record.get("elapsed_s", 0.0))
        self.previous = list(latest.values())

    def write(self, candidate: Candidate, elapsed: float) -> None:
        self._append({"candidate": candidate.to_dict(), "elapsed_s": round(elapsed, 2)})

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def clear_cache(out_dir: Path) -> None:
    shutil.rmtree(Path(out_dir) / CACHE_DIR, ignore_errors=True)
