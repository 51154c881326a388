"""The ``hwopt bench`` run: open the variants, time them interleaved at each batch size, then
measure each session's peak memory in a fresh process."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hwopt import progress
from hwopt.comparison.iobinding import make_runner
from hwopt.comparison.options import BenchOptions
from hwopt.comparison.variants import Variant, disambiguate, open_session, open_variant
from hwopt.errors import ModelLoadError, UsageError, one_line
from hwopt.feeds.inputs import save_npz
from hwopt.feeds.shared import FeedSet, batch_feed_sets, common_inputs
from hwopt.guard import phase
from hwopt.hostinfo import host_info
from hwopt.memory.probe import MeasurementFailed, measure_session_memory
from hwopt.report.bench import MEMORY_RUNS, BatchResult, BenchReport, VariantRun
from hwopt.session import ORT_ERRORS, resolve_provider_paths
from hwopt.stages.files import versions
from hwopt.timing import BenchConfig, Runner, measure_latency


def benchmark(paths: Sequence[Path], options: BenchOptions,
              listener: progress.Listener | None = None) -> BenchReport:
    """Latency (and, with ``options.memory``, peak RSS) of every model file or build folder in
    ``paths``, at every batch size, on the same feeds, timed interleaved in one process."""
    options.validate()
    if not paths:
        raise UsageError("hwopt bench: give at least one model file or build folder")
    with progress.Tracker(listener) as tracker:
        with progress.phase("load"):
            variants = [open_variant(Path(p), options) for p in paths]
            disambiguate(variants)
            warnings = [f"{v.label}: {w}" for v in variants for w in v.warnings]
            inputs = common_inputs(variants, options.input_shapes)
            feed_sets, feeds_source = batch_feed_sets(inputs, options, warnings)
            for v in variants:
                progress.step(v.label)
                open_session(v)
        batches = []
        for feed_set in feed_sets:
            with progress.phase(f"latency at batch {feed_set.batch}"):
                batches.append(_time(variants, feed_set, options))
        for v in variants:
            runs = [batch.run_of(v.label) for batch in batches]
            if v.session is not None and all(run.stats is None for run in runs):
                raise ModelLoadError(f"{v.label}: does not run: {runs[0].not_measured}")
            v.session = None  # free the timing sessions before the memory probes start theirs
        if options.memory:
            with progress.phase("memory"):
                _measure_memory(variants, feed_sets, batches)

    report = BenchReport(
        variants=[v.info for v in variants],
        batches=batches,
        options=options,
        feeds_source=feeds_source,
        host=host_info(),
        versions=versions(),
        timings=list(tracker.phases),
    )
    report.warnings = warnings + report.findings()
    return report


def _time(variants: Sequence[Variant], feed_set: FeedSet, options: BenchOptions) -> BatchResult:
    runs = {v.label: VariantRun(v.label) for v in variants}
    runners: dict[str, Runner] = {}
    for v in variants:
        if v.session is None:
            runs[v.label].not_measured = v.info.availability_reason
            continue
        try:
            runner, v.info.io_binding = make_runner(v.session, feed_set.feeds)
            # One run before timing: a model that cannot run at this batch size (a batch baked
            # into a Reshape, say) is reported, not allowed to abort the others. Every later run
            # repeats it on the same feeds, so a run that never ends is stopped here.
            with phase(f"{v.label} at batch {feed_set.batch}", "run"):
                runner()
        except ORT_ERRORS as exc:
            runs[v.label].not_measured = f"run failed at batch {feed_set.batch}: {one_line(exc)}"
            continue
        runners[v.label] = runner
    stats = measure_latency(runners, BenchConfig(target_seconds=options.seconds), batch=feed_set.batch)
    baseline = next((label for label in runs if label in stats), None)
    for label, s in stats.items():
        runs[label].stats = s
        runs[label].ratio = s.p50_ms / stats[baseline].p50_ms if stats[baseline].p50_ms > 0 else None
    return BatchResult(feed_set.batch, feed_set.source, feed_set.specs, list(runs.values()), baseline)


def _measure_memory(variants: Sequence[Variant], feed_sets: Sequence[FeedSet], batches: Sequence[BatchResult]) -> None:
    with tempfile.TemporaryDirectory(prefix="hwopt-bench-") as tmp:
        for feed_set, batch in zip(feed_sets, batches):
            feeds_path = Path(tmp) / f"feeds-batch{feed_set.batch}.npz"
            save_npz(feeds_path, feed_set.feeds)
            for v in variants:
                run = batch.run_of(v.label)
                progress.step(f"{v.label} at batch {feed_set.batch}")
                if run.stats is None:
                    run.memory_not_measured = run.not_measured
                    continue
                # The probe creates a plain session: the same options, without the
                # assignment recording the timed session carried.
                providers = [{"name": name, "options": opts}
                             for name, opts in resolve_provider_paths(v.providers, v.base_dir)]
                try:
                    run.memory = measure_session_memory(v.model_path, providers, v.info.session_options,
                                                        feeds_path, runs=MEMORY_RUNS)
                except MeasurementFailed as exc:
                    run.memory_not_measured = str(exc)
