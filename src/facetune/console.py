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
#: Off a terminal (a pipe, a file, CI's log) Rich would fit tables into 80 columns and fold a long
#: path mid-name; there, tables take their natural width instead ($COLUMNS still wins).
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 100_000


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
    """Classification records as a Rich table, for people (off a terminal at its natural width, see `out`)."""
    from rich.table import Table

    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("face \\[x y w h]")
    table.add_column("emotion")
    for c in classes:
        table.add_column(c, justify="right")
    for r in records:
        name = escape(r["input"])
        if r["error"]:
            table.add_row(name, "", "[red]failed[/red]")
            continue
        face = " ".join(map(str, r["face"])) if r["face"] else "whole image"
        table.add_row(name, face, f"[bold]{r['emotion']}[/bold]", *(f"{r['probabilities'][c]:.2f}" for c in classes))
    return table


def counts_table(manifest: dict[str, Any]) -> Any:
    """A prepared cache's examples per class and split."""
    from rich.table import Table

    counts = manifest["counts"]
    splits = list(counts)
    table = Table(title=f"{manifest['kind']} cache: counts per class and split")
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    labels = list(next(iter(counts.values())).keys())
    for c in labels:
        table.add_row(c, *(f"{counts[s].get(c, 0):,}" for s in splits))
    table.add_row("[bold]total", *(f"[bold]{sum(counts[s].values()):,}" for s in splits))
    return table


def music_counts_table(manifest: dict[str, Any]) -> Any:
    """A music cache's clips and bars per quadrant and split."""
    from rich.table import Table

    table = Table(title="music cache: clips / bars (before transposition) per quadrant and split")
    table.add_column("quadrant")
    for s in manifest["counts"]:
        table.add_column(s, justify="right")
    for q in ("Q1", "Q2", "Q3", "Q4", "unknown"):
        table.add_row(q, *(f"{manifest['counts'][s][q]['clips']} / {manifest['counts'][s][q]['bars']:,}" for s in manifest["counts"]))
    return table


def compose_summary(res: Any) -> Any:
    """One composition, for people: the face and its reading, then what was composed."""
    from rich.table import Table

    from .emotions import QUADRANT_INFO

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if res.input:
        table.add_row("photo", escape(res.input))
        table.add_row("face", " ".join(map(str, res.face)) if res.face else "whole image")
        table.add_row("probabilities", "  ".join(f"{k} {v:.2f}" for k, v in res.probabilities.items()))
    table.add_row("emotion", f"{res.emotion} → {res.quadrant} ({QUADRANT_INFO[res.quadrant].mood})")
    table.add_row("key", res.key)
    table.add_row("form", f"{res.form}  (4-bar phrases)")
    table.add_row("chords", " | ".join(" ".join(res.chords[i : i + 4]) for i in range(0, len(res.chords), 4)))
    table.add_row("tempo", f"{res.tempo:g} BPM, {plural(res.bars, 'bar')} of 4/4, seed {res.seed}")
    table.add_row("output", escape(res.output or "stdout"))
    return table


def plural(n: int, word: str) -> str:
    """`1 bar`, `16 bars`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fit_preview(text: Any, width: int, label: int = 5, bar: int = 9) -> Any:
    """The terminal piano roll (`music.render.terminal_preview`: a title, then one row per pitch of a
    `label`-wide name and `bar` characters per bar) folded into blocks of as many bars as fit in
    `width` columns, each block under a `bars a–b` line, instead of rows the terminal wraps."""
    from rich.text import Text

    title, *rows = text.split("\n")
    rows = [r for r in rows if r.plain]
    bars = max((len(r.plain) - label) // bar for r in rows) if rows else 0
    per = max(1, (width - label) // bar)
    if bars <= per:
        return text
    out = Text()
    out.append_text(title)
    for first in range(0, bars, per):
        last = min(bars, first + per)
        out.append(f"\nbars {first + 1}–{last}\n", style="dim")
        for r in rows:
            out.append_text(r[:label])
            out.append_text(r[label + first * bar : label + last * bar])
            out.append("\n")
    return out


def compose_csv(records: list[dict[str, Any]], header: bool = True) -> str:
    """Compose records (`api.compose_record`, all with the same fields) as CSV for scripts: the
    fields in order, the face as `x y w h`,
    one `p_<class>` column per class in the records, and the chords as one `|`-separated field."""
    import csv
    import io

    classes = sorted({c for r in records for c in (r.get("probabilities") or {})})
    columns = [f for f in records[0] if f != "probabilities"] if records else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns[:5] + [f"p_{c}" for c in classes] + columns[5:])
    for r in records:
        cells = {f: r.get(f) for f in columns} | {"face": " ".join(map(str, r["face"])) if r.get("face") else None, "chords": " | ".join(r["chords"]) if r.get("chords") else None}
        row = [cells[f] for f in columns]
        w.writerow(["" if v is None else v for v in row[:5] + [(r.get("probabilities") or {}).get(c) for c in classes] + row[5:]])
    return buf.getvalue()


def compose_line(rec: dict[str, Any]) -> str:
    """One batch compose record as a line for people (stdout): what became of the input. A failure's
    reason goes to stderr as an error line, so it is not said twice on a terminal."""
    if rec["status"] == "done":
        return f"{rec['input']} → {rec['output']}  {rec['emotion']} ({rec['quadrant']}), {rec['key']}, {rec['form']}"
    if rec["status"] == "skipped":
        return f"{rec['input']} → {rec['output']}  skipped (exists; --force remakes it)"
    return f"{rec['input']}  failed (the reason is on stderr)"


def batch_table(out_dir: Any, counts: dict[str, int], emotions: dict[str, int]) -> Any:
    """A batch compose in one row: done, skipped, failed, and how many songs per emotion."""
    from rich.table import Table

    table = Table(title=f"compose → {escape(str(out_dir))}")
    for col in ("done", "skipped", "failed", *sorted(emotions)):
        table.add_column(col, justify="right")
    table.add_row(*(str(counts.get(k, 0)) for k in ("done", "skipped", "failed")), *(str(emotions[e]) for e in sorted(emotions)))
    return table


def classifier_report(result: dict[str, Any]) -> list[Any]:
    """`evaluate classifier` for people: headline line, per-class table, confusion matrix."""
    from rich.table import Table

    head = f"[bold]{escape(str(result['data']))}[/bold]: {result['n']:,} images, accuracy [bold]{result['accuracy']:.4f}[/bold], macro F1 {result['macro_f1']:.4f}"
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, m in result["per_class"].items():
        table.add_row(c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    cm = Table(title="confusion (rows: true, columns: predicted)")
    cm.add_column("")
    for c in result["classes"]:
        cm.add_column(c, justify="right")
    for c, row in zip(result["classes"], result["confusion"]):
        cm.add_row(c, *map(str, row))
    return [head, table, cm]


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def music_report(result: dict[str, Any]) -> list[Any]:
    """`evaluate music` for people: one table of means per source (groups as columns), then novelty."""
    from rich.table import Table

    out: list[Any] = []
    for source, groups in result["groups"].items():
        if not groups:
            continue
        metrics = list(next(iter(groups.values()))["mean"])
        table = Table(title=f"{escape(source)}: means per group")
        table.add_column("metric", no_wrap=True)
        for g in groups:
            table.add_column(f"{g}\nn={groups[g]['n']}", justify="right")
        for m in metrics:
            table.add_row(m, *(_cell(groups[g]["mean"][m]) for g in groups))
        out.append(table)
    nov = result.get("novelty")
    if nov:
        table = Table(title=f"phrase novelty: generated 4-bar phrases found in {escape(str(nov['cache']))} (train, {nov['training_phrases']:,} distinct phrases)")
        for col in ("group", "phrases", "found", "share found"):
            table.add_column(col, justify="left" if col == "group" else "right")
        for g, v in {**nov["groups"], "all": nov["all"]}.items():
            table.add_row(g, str(v["phrases"]), str(v["found"]), _cell(v["phrase_novelty"]))
        out.append(table)
    return out


def music_csv(result: dict[str, Any]) -> str:
    """`evaluate music` for scripts: one row per source, group and metric (novelty rows last)."""
    import csv
    import io

    blank = lambda v: "" if v is None else v  # noqa: E731
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "group", "n", "metric", "mean", "std", "valid"])
    for source, groups in result["groups"].items():
        for g, agg in groups.items():
            for m, mean in agg["mean"].items():
                w.writerow([source, g, agg["n"], m, blank(mean), blank(agg["std"][m]), agg["valid"][m]])
    nov = result.get("novelty")
    if nov:
        for g, v in {**nov["groups"], "all": nov["all"]}.items():
            w.writerow([f"novelty vs {nov['cache']} (train)", g, v["phrases"], "phrase_novelty", blank(v["phrase_novelty"]), "", v["phrases"]])
    return buf.getvalue()


def models_table(found: list[dict[str, Any]]) -> Any:
    """`facetune models` for people: one block per model, so a path is never folded mid-name."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="models", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for k, m in enumerate(found):
        if k:
            table.add_row("", "")
        table.add_row(m["kind"], Text(m["name"], style="bold"))
        table.add_row("  describes", m["describes"])
        table.add_row("  figures", m["figures"] or "–")
        table.add_row("  path", Text(m["path"], no_wrap=True, overflow="ignore"))
    return table
