"""All output: Rich consoles, progress bars, verbosity switches, and the result writers (table, JSON Lines, CSV).

Results go to stdout; progress, logs and errors go to stderr, so a shell script can
pipe stdout. Progress bars and colour appear only on a terminal, and NO_COLOR is
respected (Rich reads it).
"""
from __future__ import annotations

import os
import time
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

    It is disabled when stderr is not a terminal or with --quiet, so logs and pipes stay clean;
    off a terminal, a training display (`metrics=True`) logs a plain line every minute instead.
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
    hidden = _state["quiet"] or os.environ.get("FACETUNE_NO_PROGRESS") == "1"
    if metrics and not hidden and not err.is_terminal:
        return _logged_progress(columns, _log_interval())
    disable = hidden or not err.is_terminal
    return Progress(*columns, console=err, transient=transient, disable=disable, refresh_per_second=4)


def _logged_progress(columns: list[Any], every: float) -> Any:
    """Training progress for a log file (`nohup ... > train.log`): a plain line every `every` seconds.

    With no terminal to draw a bar on, a long run would otherwise log nothing between epochs.
    """
    from rich.progress import Progress

    class LoggedProgress(Progress):
        def __init__(self) -> None:
            super().__init__(*columns, console=err, disable=True)
            self._last = time.monotonic()

        def update(self, task_id: Any, **kwargs: Any) -> None:
            super().update(task_id, **kwargs)
            now = time.monotonic()
            if now - self._last < every:
                return
            self._last = now
            task = self._tasks[task_id]
            eta = task.time_remaining
            line = f"{task.description}: step {task.completed:,.0f}/{task.total:,.0f}"
            line += f"  {_clock(task.elapsed or 0)} elapsed  ETA {_clock(eta) if eta is not None else '?'}"
            info(f"{line}  {task.fields.get('metrics', '')}".rstrip())

    return LoggedProgress()


def _log_interval() -> float:
    """Seconds between training log lines off a terminal: $FACETUNE_LOG_EVERY, 60 by default."""
    try:
        return max(0.0, float(os.environ.get("FACETUNE_LOG_EVERY", "60")))
    except ValueError:
        return 60.0


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def records_text(records: list[dict[str, Any]], fmt: str, classes: list[str]) -> str:
    """Classification records as JSON Lines or CSV (one column per class), for scripts."""
    import csv
    import io
    import json

    if fmt == "json":
        return "".join(json.dumps(r) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "face", "emotion", *[f"p_{c}" for c in classes], "quadrant", "error"])
    for r in records:
        face = " ".join(map(str, r["face"])) if r["face"] else ""
        writer.writerow([r["input"], face, r["emotion"] or "", *[r["probabilities"].get(c, "") for c in classes], r.get("quadrant") or "", r["error"] or ""])
    return buf.getvalue()


def classify_table(records: list[dict[str, Any]], classes: list[str]) -> Any:
    """Classification records as a Rich table, for people."""
    from rich.table import Table

    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("face [x y w h]")
    table.add_column("emotion")
    for c in classes:
        table.add_column(c, justify="right")
    for r in records:
        if r["error"]:
            table.add_row(escape(r["input"]), "", "[red]failed[/red]")
            continue
        face = " ".join(map(str, r["face"])) if r["face"] else "whole image"
        table.add_row(escape(r["input"]), face, f"[bold]{r['emotion']}[/bold]", *(f"{r['probabilities'][c]:.2f}" for c in classes))
    return table
