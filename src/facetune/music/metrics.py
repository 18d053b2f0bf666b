"""Objective melody metrics, with muspy's definitions, computed in numpy on the step grid.

facetune does not need muspy at run time (it pulls in music21 and slows start-up); the
tests check these functions against muspy's own on the same MIDI.

- pitch-class entropy: log2 entropy of the pitch-class histogram of the notes (max log2 12 ≈ 3.585)
- scale consistency: the largest share of notes inside one of the 24 major / natural-minor scales
- empty-beat rate: share of beats with no note sounding (muspy's counting, see the function)
- polyphony: mean number of pitches sounding, over the steps with any
- groove consistency: 1 − mean Hamming distance between consecutive bars' onset patterns / steps per bar
plus pitch range, notes per bar, onsets per beat, mean pitch, and the Krumhansl–Kessler key and
major-minor lean (`chords.mode_score`) of the duration-weighted pitch-class histogram.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from .chords import KEY_NAMES, estimate_key, mode_score as _mode_score
from .pianoroll import STEPS_PER_BAR, STEPS_PER_BEAT, Note

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


def pitch_class_entropy(notes: Sequence[Note]) -> float:
    if not notes:
        return float("nan")
    counts = np.bincount([n.pitch % 12 for n in notes], minlength=12).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def scale_consistency(notes: Sequence[Note]) -> float:
    if not notes:
        return float("nan")
    counts = np.bincount([n.pitch % 12 for n in notes], minlength=12)
    best = 0
    for root in range(12):
        for steps in (_MAJOR, _MINOR):
            best = max(best, int(sum(counts[(root + s) % 12] for s in steps)))
    return best / len(notes)


def _sounding(notes: Sequence[Note], n_steps: int) -> np.ndarray:
    count = np.zeros(n_steps, dtype=np.int64)
    for n in notes:
        count[max(0, n.start) : min(n_steps, n.end)] += 1
    return count


def empty_beat_rate(notes: Sequence[Note], n_bars: int) -> float:
    """muspy's algorithm exactly: beats from 0 to the last note end (inclusive), a beat counting as
    filled when a note spans it from its start beat to its end beat, both inclusive."""
    if not notes:
        return 1.0
    length = max(n.end for n in notes)
    n_beats = length // STEPS_PER_BEAT + 1
    filled = np.zeros(n_beats, dtype=bool)
    for n in notes:
        filled[n.start // STEPS_PER_BEAT : n.end // STEPS_PER_BEAT + 1] = True
    return float(1 - filled.mean())


def polyphony(notes: Sequence[Note], n_bars: int) -> float:
    s = _sounding(notes, n_bars * STEPS_PER_BAR)
    return float(s[s > 0].mean()) if (s > 0).any() else 0.0


def _onset_matrix(notes: Sequence[Note], n_bars: int) -> np.ndarray:
    on = np.zeros(n_bars * STEPS_PER_BAR, dtype=bool)
    for n in notes:
        if 0 <= n.start < len(on):
            on[n.start] = True
    return on.reshape(n_bars, STEPS_PER_BAR)


def groove_consistency(notes: Sequence[Note], n_bars: int) -> float:
    if n_bars < 2:
        return float("nan")
    on = _onset_matrix(notes, n_bars)
    return float(1 - (on[1:] != on[:-1]).sum(1).mean() / STEPS_PER_BAR)


def pc_histogram(notes: Sequence[Note], weighted: bool = True) -> np.ndarray:
    h = np.zeros(12)
    for n in notes:
        h[n.pitch % 12] += (n.end - n.start) if weighted else 1
    return h


def summarize(notes: Sequence[Note], n_bars: int) -> dict[str, Any]:
    """All the metrics for one melody (or piece) of `n_bars` bars."""
    notes = list(notes)
    pitches = [n.pitch for n in notes]
    hist = pc_histogram(notes)
    key, corr = estimate_key(hist) if notes else (0, float("nan"))
    return {
        "pitch_class_entropy": pitch_class_entropy(notes),
        "scale_consistency": scale_consistency(notes),
        "empty_beat_rate": empty_beat_rate(notes, n_bars),
        "polyphony": polyphony(notes, n_bars),
        "groove_consistency": groove_consistency(notes, n_bars),
        "pitch_range": float(max(pitches) - min(pitches)) if pitches else 0.0,
        "notes_per_bar": len(notes) / n_bars,
        "onsets_per_beat": len({n.start for n in notes}) / (n_bars * 4),
        "mean_pitch": float(np.mean(pitches)) if pitches else float("nan"),
        "mode_score": _mode_score(hist) if notes else float("nan"),
        "key_correlation": corr,
        "key": KEY_NAMES[key] if notes else "",
    }


def midi_to_notes(src: str | Path | Any, track: int | None = None, skip_drums: bool = True) -> tuple[list[Note], int]:
    """Read MIDI onto the step grid (4 steps per beat, by ticks); returns notes and the number of bars."""
    import pretty_midi

    name = str(src) if isinstance(src, (str, Path)) else "<midi>"
    if isinstance(src, (str, Path)) and not Path(src).is_file():
        raise InputError(f"{name}: no such file")
    if isinstance(src, pretty_midi.PrettyMIDI):
        pm = src
    else:
        try:
            pm = pretty_midi.PrettyMIDI(str(src)) if isinstance(src, (str, Path)) else pretty_midi.PrettyMIDI(io.BytesIO(src))
        except Exception as exc:
            raise InputError(f"{name}: not a readable MIDI file ({type(exc).__name__})") from None
    insts = [i for i in pm.instruments if not (skip_drums and i.is_drum)]
    if track is not None:
        if track >= len(pm.instruments):
            raise InputError(f"{name}: has no track {track} ({len(pm.instruments)} tracks)")
        insts = [pm.instruments[track]]
    per_step = pm.resolution / STEPS_PER_BEAT
    notes = [
        Note(n.pitch, int(round(pm.time_to_tick(n.start) / per_step)), max(int(round(pm.time_to_tick(n.start) / per_step)) + 1, int(round(pm.time_to_tick(n.end) / per_step))), n.velocity)
        for i in insts
        for n in i.notes
    ]
    if not notes:
        raise InputError(f"{name}: no notes" + (f" in track {track}" if track is not None else ""))
    n_bars = max(1, -(-max(n.end for n in notes) // STEPS_PER_BAR))
    return notes, int(n_bars)


def group_of(path: Path) -> str:
    """Q1..Q4 from an EMOPIA-style prefix, or the quadrant of an emotion word in the name or folder."""
    from ..emotions import EMOTION_QUADRANT

    stem = path.name
    if len(stem) > 2 and stem[0] in "qQ" and stem[1] in "1234" and not stem[2].isalnum():
        return f"Q{stem[1]}"
    text = f"{path.parent.name} {path.stem}".lower()
    for word, q in EMOTION_QUADRANT.items():
        if word in text:
            return q
    return "all"


def aggregate(items: list[tuple[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean and standard deviation of each metric per group, plus an 'all' group."""
    groups: dict[str, list[dict[str, float]]] = {}
    for g, m in items:
        groups.setdefault(g, []).append(m)
    if len(groups) > 1:
        groups["all"] = [m for _, m in items]
    out = {}
    for g in sorted(groups, key=lambda k: (k == "all", k)):
        rows = groups[g]
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out[g] = {
            "n": len(rows),
            "mean": {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in keys},
            "std": {k: round(float(np.nanstd([r[k] for r in rows])), 4) for k in keys},
        }
    return out


def evaluate_files(paths: Sequence[Path], *, melody_track: int | None = 0, group_by: Callable[[Path], str] = group_of) -> dict[str, Any]:
    """Metrics per file, aggregated per group; unreadable files are listed under 'errors'."""
    items, errors = [], []
    for p in paths:
        try:
            notes, bars = midi_to_notes(p, melody_track)
        except InputError as exc:
            errors.append({"file": str(p), "error": str(exc)})
            continue
        items.append((group_by(Path(p)), summarize(notes, bars)))
    return {"groups": aggregate(items) if items else {}, "errors": errors}
