"""``tune-results.jsonl``: what ``hwopt tune`` measured, candidate by candidate, as it went, so
that an interrupted run keeps it and ``--resume`` continues from it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hwopt.errors import UsageError
from hwopt.model.load import LoadedModel
from hwopt.options import OptimizeOptions
from hwopt.output import TUNE_RESULTS
from hwopt.report.tune import Candidate
from hwopt.stages.files import versions
from hwopt.targets.base import Target

RESULTS_FILE = TUNE_RESULTS
RESULTS_SCHEMA = "hwopt.tune-results/1"


def results_header(loaded: LoadedModel, target: Target, base: OptimizeOptions) -> dict[str, Any]:
    """The file's first line: what a resumed run must share with the run that wrote it."""
    return {
        "schema": RESULTS_SCHEMA,
        "source_sha256": loaded.sha256,
        "target": target.name,
        "input_shapes": {k: list(v) for k, v in base.input_shapes.items()},
        "budget": base.precision.budget.to_dict(),
        "versions": versions(),
    }


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
