"""``hwopt tune``: search pass pipelines, precisions and session options for one target under
an accuracy budget and a time budget; write the best build and a Pareto report.

``hwopt.tune.space`` says what is searched, ``hwopt.tune.search`` how (racing against an
anchor, successive halving, a build cache, resumable results), ``hwopt.tune.report`` what
comes out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hwopt.tune.report import TuneReport, build_report, write_outputs
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
