"""``hwopt tune``: search pass pipelines, precisions and session options for one target under
an accuracy budget and a time budget; write the best build and a Pareto report.

``hwopt.tune.space`` says what is searched, ``hwopt.tune.search`` how (racing against an
anchor, successive halving), ``hwopt.tune.builds`` builds the recipes into the build cache
(``hwopt.tune.cache``), ``hwopt.tune.race`` times one race (here or on ``hwopt.tune.workers``),
``hwopt.tune.memory`` probes peak memory, ``hwopt.tune.results`` keeps the resumable results,
and ``hwopt.tune.outcome`` what comes out (its report is ``hwopt.report.tune``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hwopt.report.tune import TuneReport
from hwopt.tune.outcome import build_report, write_outputs
from hwopt.tune.search import Progress, TuneOptions, Tuner


def tune(model_path: str | Path, options: TuneOptions | None = None,
         on_progress: Callable[[Progress], None] | None = None) -> TuneReport:
    """Tune ``model_path``; the best build and the reports land in ``options.output_dir``.
    An interrupted search still writes them, with ``report.interrupted`` saying so."""
    tuner = Tuner(Path(model_path), options or TuneOptions(), on_progress)
    tuner.prepare()
    tuner.run()
    report = build_report(tuner)
    write_outputs(tuner, report)
    return report


__all__ = ["Progress", "TuneOptions", "TuneReport", "tune"]
