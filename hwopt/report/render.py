"""Rendering reports: every report is turned into titled tables and notes, which this module
draws as rich tables on a terminal, plain text when output is not a terminal, or Markdown.

Reports keep their data structured (that is what ``--json`` prints); the tables here are only
views of it, built by each report's ``tables()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from hwopt.progress import PhaseTime


@dataclasses.dataclass
class Table:
    """A titled table of already-formatted cells, with optional notes printed beneath it."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]]
    notes: list[str] = dataclasses.field(default_factory=list)
    # Columns whose cells are numbers (right-aligned).
    numeric: Sequence[str] = ()


@dataclasses.dataclass
class Document:
    """A heading, a few key-value lines, tables, and warnings: everything a report shows."""

    heading: str
    facts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


def render_console(doc: Document, console: Console) -> None:
    console.print(Text(doc.heading, style="bold"))
    for key, value in doc.facts:
        console.print(Text.assemble((f"{key}: ", "bold"), value))
    for table in doc.tables:
        rich_table = RichTable(
            title=table.title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold"
        )
        for column in table.columns:
            rich_table.add_column(column, justify="right" if column in table.numeric else "left")
        for row in table.rows:
            rich_table.add_row(*[Text(str(cell)) for cell in row])
        console.print(rich_table)
        for note in table.notes:
            console.print(Text(f"  {note}", style="dim"))
    for warning in doc.warnings:
        console.print(Text.assemble(("warning: ", "bold yellow"), warning))


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.heading}", ""]
    for key, value in doc.facts:
        lines.append(f"- **{key}**: {_md_escape(value)}")
    if doc.facts:
        lines.append("")
    for table in doc.tables:
        lines += [f"## {table.title}", ""]
        lines.append("| " + " | ".join(_md_escape(c) for c in table.columns) + " |")
        lines.append(
            "|" + "|".join("---:" if c in table.numeric else "---" for c in table.columns) + "|"
        )
        for row in table.rows:
            lines.append("| " + " | ".join(_md_escape(str(cell)) for cell in row) + " |")
        lines.append("")
        for note in table.notes:
            lines.append(f"> {_md_escape(note)}")
        if table.notes:
            lines.append("")
    if doc.warnings:
        lines += ["## Warnings", ""]
        lines += [f"- {_md_escape(w)}" for w in doc.warnings]
        lines.append("")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_count(n: int | None) -> str:
    """12345678 -> '12.3M'; small counts as they are."""
    if n is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}x"


def fmt_error(err: float | None) -> str:
    if err is None:
        return "-"
    return "0" if err == 0 else f"{err:.2e}"


def fmt_change(before: float, after: float) -> str:
    if before == 0:
        return "-"
    change = (after - before) / before * 100
    return f"{change:+.1f}%"


def timing_table(timings: Sequence[PhaseTime]) -> Table:
    """Seconds per phase, with each phase's share of the run."""
    total = sum(t.seconds for t in timings) or 1.0
    several = len({t.target for t in timings if t.target}) > 1
    rows = [((f"[{t.target}] " if several and t.target else "") + t.name, f"{t.seconds:.1f}",
             f"{t.seconds / total:.0%}") for t in timings]
    rows.append(("total", f"{total:.1f}", "100%"))
    return Table(title="Time", columns=("phase", "seconds", "share"), numeric=("seconds", "share"), rows=rows)
