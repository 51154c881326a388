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
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hwopt import guard
from hwopt.errors import TargetUnavailable, UsageError
from hwopt.model.load import load_model
from hwopt.options import OptimizeOptions
from hwopt.output import prepare_output_dir
from hwopt.quant.accuracy import AccuracyBudget, AccuracyResult
from hwopt.report.tune import Candidate
from hwopt.stages.context import prepare_run, session_options_for
from hwopt.targets import get_target
from hwopt.targets.base import Target
from hwopt.timing import LatencyStats
from hwopt.tune.builds import Built, RecipeBuilds
from hwopt.tune.cache import BuildCache
from hwopt.tune.memory import measure_memory
from hwopt.tune.race import open_and_check, time_sessions
from hwopt.tune.results import RESULTS_FILE, ResultsLog, results_header
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
class Progress:
    """What a progress display shows after each step."""

    done: int
    total: int
    best: str | None
    best_ratio: float | None
    seconds_left: float
    step: str


class Tuner:
    """One tune run: its candidates, the time budget, and the schedule that spends it (the
    first race, the expensive builds, successive halving, the final race, memory probes)."""

    def __init__(self, model_path: Path, options: TuneOptions,
                 on_progress: Callable[[Progress], None] | None = None):
        self.model_path = Path(model_path)
        self.options = options
        self.on_progress = on_progress or (lambda p: None)
        self.candidates: dict[str, Candidate] = {}
        self.recipe_notes: dict[str, str] = {}
        self.survivors: list[Candidate] = []  # what the last rung of successive halving kept
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
        base = dataclasses.replace(opts.base, targets=(self.target.name,), measure=False)
        self.checks, self.feeds_source, _ = prepare_run(self.loaded, base)
        self.out_dir = prepare_output_dir(
            opts.output_dir or Path.cwd() / f"{self.model_path.stem}.tune",
            protected=[self.model_path, *(self.model_path.parent / f for f in self.loaded.external_files)],
        )
        self.builds = RecipeBuilds(self.model_path, self.loaded, self.checks, self.target, opts.base,
                                   BuildCache(self.out_dir, self.loaded, self.target, opts.base))
        self.recipes.setdefault(ORIGINAL, next(r for r in recipes(self.target) if r.name == ORIGINAL))
        self.results = ResultsLog(self.out_dir / RESULTS_FILE, results_header(self.loaded, self.target, opts.base),
                                  resume=opts.resume)
        for data in self.results.previous:
            c = self._candidate(data["recipe"], data["variant"])
            c.restore(data)
        self.elapsed_before = self.results.previous_elapsed
        if opts.workers:
            self.workers = Workers(opts.workers, self.target.name)

    @property
    def built(self) -> dict[str, Built]:
        """The recipes built so far, by name."""
        return self.builds.built

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
            self.builds.build_on_workers(self.recipes.values(), self.workers, self._report_progress)
        cheap = [r for r in self.recipes.values() if r.cost < 2]
        expensive = [r for r in self.recipes.values() if r.cost >= 2]
        for recipe in cheap:
            self._build(recipe)
        first = [self._candidate(ORIGINAL, ORT_DEFAULTS)] + [
            self._candidate(name, TARGET_DEFAULTS) for name in self.built]
        first_seconds = self._rung_seconds(len(first), share=0.08)
        self._race([c for c in first if c.status == "pending"], first_seconds, rung=0)
        for recipe in expensive:
            if not self.builds.is_cached(recipe) and self.left() < 0.35 * self.options.budget_seconds:
                self.recipe_notes[recipe.name] = "not built: too little of the time budget left"
                continue
            names = [recipe.name] if self._build(recipe) else []
            names += self.builds.variant_recipes.pop(recipe.name, [])
            if names:
                self._race([self._candidate(n, TARGET_DEFAULTS) for n in names], first_seconds, rung=0,
                           against=self._leaders(1))
        self._halving()
        self._final_race()
        if self.options.memory and self.workers is not None and self.workers.remote:
            self.recipe_notes["memory"] = "not measured: the candidates ran on the cluster's machines, not this one"
        elif self.options.memory:
            measure_memory(self.candidates.values(), self.built, {m.label for m in self.target.memory_settings},
                           self.checks.feeds[0], self.left, self._report_progress, self._save)
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
        refused = self.builds.build(recipe)
        for name in self.builds.variant_recipes.get(recipe.name, []):
            self.recipes[name] = self.built[name].recipe
        if refused is not None:
            self._recipe_failed(recipe, refused.reason, refused.status)
            return False
        return True

    def _save(self, c: Candidate) -> None:
        self.results.write(c, self.elapsed())

    def _recipe_failed(self, recipe: Recipe, reason: str, status: str = "rejected") -> None:
        self.recipe_notes[recipe.name] = reason
        c = self._candidate(recipe.name, TARGET_DEFAULTS)
        c.status, c.reason = status, reason
        self._save(c)

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
