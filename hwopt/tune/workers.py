"""``hwopt tune --workers``: builds and races as Ray tasks.

``local:N`` starts a Ray instance on this machine with N CPUs; ``ray://HOST:PORT`` (or
``auto``) joins a running cluster. Builds, one ``optimize`` call per recipe (the INT8 search
is the costly one), run in parallel, all before the first race. A race is one task that
holds the ``hwopt_timer`` resource, which a node offers once, and the target's resource
(``hwopt_target_cpu``, ``hwopt_target_cuda`` ...), so no two timings share a machine and
they run on the hardware the target names. Start cluster nodes with, for example::

    ray start --address HEAD:6379 --resources '{"hwopt_timer": 1, "hwopt_target_cuda": 1}'

Models and build files travel as bytes, so the workers need no shared folder; a calibration
folder or a feeds file given by path must be readable where the builds run.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwopt.errors import HwoptError, UsageError, one_line
from hwopt.tune.race import open_and_check, time_sessions

TIMER = "hwopt_timer"


def target_resource(target: str) -> str:
    return f"hwopt_target_{target}"


@dataclasses.dataclass
class RaceEntry:
    """One candidate as a race task gets it: its build's files and how to open it."""

    id: str
    files: dict[str, bytes]
    model: str
    session_options: dict[str, Any]
    providers: list[tuple[str, dict[str, Any]]]


class Workers:
    """A connection to Ray for one tune run."""

    def __init__(self, spec: str, target: str):
        try:
            import ray
        except ImportError:
            raise UsageError("--workers needs Ray: pip install 'hwopt[ray]'") from None
        self.ray = ray
        self.spec = spec
        self.remote = not spec.startswith("local:")
        settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                    "ignore_reinit_error": True}
        if spec.startswith("local:"):
            try:
                cpus = int(spec.split(":", 1)[1])
            except ValueError:
                cpus = 0
            if cpus < 1:
                raise UsageError(f"--workers {spec}: expected local:N with N >= 1, e.g. local:2")
            ray.init(num_cpus=cpus, resources={TIMER: 1, target_resource(target): 1}, **settings)
        elif spec == "auto" or spec.startswith("ray://"):
            try:
                ray.init(address=spec, **settings)
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError ...
                raise UsageError(f"--workers {spec}: cannot connect to Ray: {one_line(exc)}") from exc
        else:
            raise UsageError(f"--workers '{spec}': expected local:N, ray://HOST:PORT or auto")
        self._build = ray.remote(num_cpus=1, max_retries=0)(_build_task)
        self._race = ray.remote(num_cpus=1, max_retries=0, resources={TIMER: 1, target_resource(target): 1})(
            _race_task)

    def build_many(self, model_files: Mapping[str, bytes], model: str,
                   jobs: Mapping[str, Any]) -> dict[str, dict[str, bytes] | str]:
        """Build every job (name -> OptimizeOptions) in parallel: name -> files, or an error."""
        files_ref = self.ray.put(dict(model_files))
        futures = {name: self._build.remote(files_ref, model, options) for name, options in jobs.items()}
        return {name: self.ray.get(future) for name, future in futures.items()}

    def race(self, entries: Sequence[RaceEntry], feeds: Sequence[Mapping[str, Any]],
             references: Sequence[Mapping[str, Any]], seconds: float, budget: Any) -> dict[str, dict[str, Any]]:
        return self.ray.get(self._race.remote(list(entries), list(feeds), list(references), seconds, budget))

    def close(self) -> None:
        self.ray.shutdown()


def _build_task(model_files: Mapping[str, bytes], model: str, options: Any) -> dict[str, bytes] | str:
    """One recipe's build on a worker: the build folder's files (relative paths, INT8
    variants included), or a one-line error."""
    from hwopt.optimize import optimize

    with tempfile.TemporaryDirectory(prefix="hwopt-tune-build-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for name, data in model_files.items():
            (source / name).write_bytes(data)
        out = Path(tmp) / "build"
        try:
            optimize(source / model, dataclasses.replace(options, output_dir=out))
        except HwoptError as exc:
            return one_line(exc)
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _race_task(entries: Sequence[RaceEntry], feeds: Sequence[Mapping[str, Any]],
               references: Sequence[Mapping[str, Any]], seconds: float, budget: Any) -> dict[str, dict[str, Any]]:
    """One race on a worker: each entry's accuracy check, then all timed interleaved."""
    results: dict[str, dict[str, Any]] = {}
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="hwopt-tune-race-") as tmp:
        for index, entry in enumerate(entries):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            for name, data in entry.files.items():
                (folder / name).write_bytes(data)
            session, outcome = open_and_check(folder / entry.model, folder, entry.session_options, entry.providers,
                                              feeds, references, budget)
            results[entry.id] = outcome
            if session is not None:
                sessions[entry.id] = session
        for cid, stats in time_sessions(sessions, feeds[0], seconds).items():
            results[cid]["stats"] = dataclasses.asdict(stats)
    return results
