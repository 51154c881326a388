"""The command line's view of a run in progress (a :class:`hwopt.progress.Listener`).

On a terminal's stderr: a live line with the phase, the pass or variant at hand with done/total,
and the phase's elapsed time; each finished top-level phase leaves one line with its time in the
scroll-back. Off a terminal (a CI log, a pipe) and with ``--quiet`` or ``--json`` it shows
nothing: the report's timing section carries the same figures.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class TerminalProgress:
    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("starting", total=None)
        self.stack: list[str] = []
        self.started = time.perf_counter()

    def begin(self, name: str, target: str | None, depth: int) -> None:
        if depth == 0:
            self.bar.reset(self.task, total=None)
        self.stack.append(escape(f"[{target}] {name}" if target and depth == 0 else name))
        self._show("")

    def step(self, label: str, done: int | None, total: int | None) -> None:
        count = f" ({done}/{total})" if done is not None and total else ""
        self._show(escape(f": {label}{count}"))

    def end(self, name: str, target: str | None, depth: int, seconds: float) -> None:
        shown = self.stack.pop() if self.stack else name
        if depth == 0:
            self.console.print(f"[green]done[/green] {shown} [dim]{seconds:.1f} s[/dim]", highlight=False)
        self._show("")

    def _show(self, detail: str) -> None:
        where = " > ".join(self.stack) if self.stack else "working"
        self.bar.update(self.task, description=f"[bold]{where}[/bold]{detail}")


@contextlib.contextmanager
def terminal_progress(hidden: bool) -> Iterator[TerminalProgress | None]:
    """A live view on stderr while the block runs, or None off a terminal or when ``hidden``."""
    if hidden or not sys.stderr.isatty():
        yield None
        return
    view = TerminalProgress(Console(stderr=True, highlight=False))
    with view.bar:
        yield view
    view.console.print(f"[dim]finished in {time.perf_counter() - view.started:.1f} s[/dim]", highlight=False)
