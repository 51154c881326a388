"""What a long command is doing: its phases with their times, and the steps inside them.

Library code marks where it is with :func:`phase` (load, passes, precision search, memory,
benchmark, ...) and :func:`step` (the pass or variant at hand, with done/total). A
:class:`Tracker` made active for the length of a command (``with Tracker(listener):``) records
every top-level phase's time, which the report's timing section shows, and tells its listener
(the command line's display on a terminal) as things happen. With no tracker active both calls
cost a context-variable lookup and do nothing, so nothing is threaded through signatures and a
library caller who does not ask for progress pays nothing for it.

Phases nest: a phase begun inside another (the memory probes inside the memory phase) is shown
to the listener but timed as part of its parent, so the timing section adds up to the run.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class PhaseTime:
    """One top-level phase of a run: its name, the target it served (None for shared work) and
    its wall-clock seconds."""

    name: str
    seconds: float
    target: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Listener(Protocol):
    def begin(self, name: str, target: str | None, depth: int) -> None: ...

    def step(self, label: str, done: int | None, total: int | None) -> None: ...

    def end(self, name: str, target: str | None, depth: int, seconds: float) -> None: ...


class Tracker:
    """Records a command's phase times and forwards phases and steps to ``listener``."""

    def __init__(self, listener: Listener | None = None):
        self.listener = listener
        self.phases: list[PhaseTime] = []
        self.target: str | None = None
        self._depth = 0
        self._token: contextvars.Token | None = None

    def __enter__(self) -> Tracker:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    @property
    def total_seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        depth, target = self._depth, self.target
        if self.listener is not None:
            self.listener.begin(name, target, depth)
        self._depth += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self._depth -= 1
            if depth == 0:
                self.phases.append(PhaseTime(name, seconds, target))
            if self.listener is not None:
                self.listener.end(name, target, depth, seconds)

    def step(self, label: str, done: int | None = None, total: int | None = None) -> None:
        if self.listener is not None:
            self.listener.step(label, done, total)


_ACTIVE: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("hwopt_progress", default=None)


def active() -> Tracker | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a phase of the active tracker's run (nothing without one)."""
    tracker = _ACTIVE.get()
    if tracker is None:
        yield
        return
    with tracker.phase(name):
        yield


def step(label: str, done: int | None = None, total: int | None = None) -> None:
    """Say what the current phase is working on, with how far it is when it knows."""
    tracker = _ACTIVE.get()
    if tracker is not None:
        tracker.step(label, done, total)


@contextlib.contextmanager
def for_target(name: str) -> Iterator[None]:
    """Phases begun inside are the work of target ``name`` (a run with several targets)."""
    tracker = _ACTIVE.get()
    if tracker is None:
        yield
        return
    previous, tracker.target = tracker.target, name
    try:
        yield
    finally:
        tracker.target = previous
