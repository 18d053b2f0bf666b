"""All terminal output: Rich consoles, progress bars, and the verbosity switches.

Results go to stdout; progress, logs and errors go to stderr, so a shell script can
pipe stdout. Progress bars and colour appear only on a terminal, and NO_COLOR is
respected (Rich reads it).
"""
from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.markup import escape

_state = {"quiet": False, "verbose": False}
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    _state["quiet"], _state["verbose"] = quiet, verbose


def is_quiet() -> bool:
    return _state["quiet"]


def info(message: str) -> None:
    """A log line on stderr, hidden by --quiet."""
    if not _state["quiet"]:
        err.print(escape(message), highlight=False)


def debug(message: str) -> None:
    """A detail shown only with --verbose."""
    if _state["verbose"] and not _state["quiet"]:
        err.print(f"[dim]{escape(message)}[/dim]", highlight=False)


def warn(message: str) -> None:
    if not _state["quiet"]:
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def error(message: str) -> None:
    """One-line error on stderr; never hidden."""
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second, which TransferSpeedColumn would print as bytes."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f}/s" if speed else "–/s", style="cyan")

    return RateColumn()


def progress(*, metrics: bool = False, transient: bool = False) -> Any:
    """A Rich progress display on stderr: count, rate, ETA (and a metrics field for training).

    It is disabled when stderr is not a terminal or with --quiet, so logs and pipes stay clean.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _rate_column(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    if metrics:
        columns.append(TextColumn("{task.fields[metrics]}"))
    disable = _state["quiet"] or not err.is_terminal or os.environ.get("FACETUNE_NO_PROGRESS") == "1"
    return Progress(*columns, console=err, transient=transient, disable=disable, refresh_per_second=4)
