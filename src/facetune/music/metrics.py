"""Objective melody metrics, with muspy's definitions, computed in numpy on the step grid.

facetune does not need muspy at run time (it pulls in music21 and slows start-up); the
tests check these functions against muspy's own on the same MIDI.

- pitch-class entropy: log2 entropy of the pitch-class histogram of the notes (max log2 12 ≈ 3.585)
- scale consistency: the largest share of notes inside one of the 24 major / natural-minor scales
- empty-beat rate: share of beats with no note sounding (muspy's counting, see the function)
- polyphony: mean number of pitches sounding, over the steps with any
- groove consistency: 1 − mean Hamming distance between consecutive bars' onset patterns / steps per bar
- rhythm / motif repeat, phrase similarity (ours, not muspy's): how much of the first 16 bars repeats
  an earlier bar's onset pattern, an earlier bar up to transposition, or an earlier 4-bar phrase
- phrase novelty: the share of generated 4-bar phrases found, up to transposition, in training melodies
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


def minor_ninth_share(melody: Sequence[Note], accompaniment: Sequence[Note]) -> float:
    """The share of the melody's sounding steps at which the accompaniment sounds a pitch class a
    semitone below the melody's (a minor ninth or minor second under it): the rub a held tune
    note makes with a chord tone beneath it. NaN for a melody with no sounding step."""
    if not melody:
        return float("nan")
    n_steps = max(n.end for n in (*melody, *accompaniment))
    below = np.zeros((n_steps, 12), dtype=bool)
    for n in accompaniment:
        below[max(0, n.start) : n.end, (n.pitch + 1) % 12] = True
    hits = total = 0
    for n in melody:
        span = below[max(0, n.start) : n.end, n.pitch % 12]
        hits += int(span.sum())
        total += len(span)
    return hits / total if total else float("nan")


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
        "rhythm_repeat": rhythm_repeat(notes, n_bars),
        "motif_repeat": motif_repeat(notes, n_bars),
        "phrase_similarity": phrase_similarity(notes, n_bars),
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


def _stat(values: list[float], fn: Callable[[np.ndarray], Any]) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return round(float(fn(v)), 4) if len(v) else None


def aggregate(items: list[tuple[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean and standard deviation of each metric per group, plus an 'all' group.

    NaN values (a metric undefined for a piece, e.g. phrase similarity of a 4-bar clip) are left
    out; `valid` counts the pieces each mean is over, and a mean over none is None."""
    groups: dict[str, list[dict[str, float]]] = {}
    for g, m in items:
        groups.setdefault(g, []).append(m)
    if len(groups) > 1:
        groups["all"] = [m for _, m in items]
    out = {}
    for g in sorted(groups, key=lambda k: (k == "all", k)):
        rows = groups[g]
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        cols = {k: [r[k] for r in rows] for k in keys}
        out[g] = {
            "n": len(rows),
            "mean": {k: _stat(c, np.mean) for k, c in cols.items()},
            "std": {k: _stat(c, np.std) for k, c in cols.items()},
            "valid": {k: int(np.isfinite(np.asarray(c, dtype=float)).sum()) for k, c in cols.items()},
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


# --- repetition and structure ---------------------------------------------------------------
#
# Computed on a monophonic melody over a window of at most WINDOW_BARS bars that starts at the
# first bar holding a note. Each step of the window is a pitch (−1 = rest) and an onset flag;
# overlapping notes are cut as on the melody grid (a later note cuts an earlier one).

WINDOW_BARS = 16
PHRASE_BARS = 4
MAX_TRANSPOSE = 24
_REST_CODE = -32768


def _step_grid(notes: Sequence[Note], n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """(pitch, onset) per step over the whole melody: pitch −1 for rest, onset only where a note starts."""
    notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    last = max((n.end for n in notes), default=0)
    steps = max(int(n_bars), -(-last // STEPS_PER_BAR), 0) * STEPS_PER_BAR
    pitch = np.full(steps, -1, dtype=np.int64)
    onset = np.zeros(steps, dtype=bool)
    for n in notes:
        s, e = max(0, n.start), min(steps, n.end)
        if e <= s:
            continue
        pitch[s:e] = n.pitch
        onset[s] = True
    return pitch, onset & (pitch >= 0)


def _window(notes: Sequence[Note], n_bars: int, max_bars: int | None = WINDOW_BARS) -> tuple[np.ndarray, np.ndarray]:
    """(pitch, onset) as (bars, 16) arrays for up to `max_bars` bars from the first bar with a note."""
    pitch, onset = _step_grid(notes, n_bars)
    sounding = np.flatnonzero(pitch >= 0)
    if not len(sounding):
        return np.zeros((0, STEPS_PER_BAR), np.int64), np.zeros((0, STEPS_PER_BAR), bool)
    first = sounding[0] // STEPS_PER_BAR * STEPS_PER_BAR
    end = len(pitch) if max_bars is None else min(len(pitch), first + max_bars * STEPS_PER_BAR)
    return pitch[first:end].reshape(-1, STEPS_PER_BAR), onset[first:end].reshape(-1, STEPS_PER_BAR)


def _repeat_share(notes: Sequence[Note], n_bars: int, with_pitch: bool) -> float:
    pitch, onset = _window(notes, n_bars)
    seen: set[Any] = set()
    hits = total = 0
    for b in range(len(pitch)):
        steps = np.flatnonzero(onset[b])
        key: Any = steps.tobytes()
        if with_pitch and len(steps):
            p = pitch[b, steps]
            key = (key, (p - p[0]).tobytes())
        if b > 0 and len(steps) >= 2:
            total += 1
            hits += key in seen
        seen.add(key)
    return hits / total if total else float("nan")


def rhythm_repeat(notes: Sequence[Note], n_bars: int) -> float:
    """Share of the window's bars (from the 2nd, with at least 2 onsets) whose onset steps equal an earlier bar's."""
    return _repeat_share(notes, n_bars, with_pitch=False)


def motif_repeat(notes: Sequence[Note], n_bars: int) -> float:
    """As `rhythm_repeat`, but the bar must equal an earlier one up to transposition: same onset steps
    and the same interval of each onset's pitch from the bar's first onset (durations ignored)."""
    return _repeat_share(notes, n_bars, with_pitch=True)


def _agreement(a: np.ndarray, b: np.ndarray) -> int:
    """Steps where a and b agree under the best transposition T in ±MAX_TRANSPOSE: both rest, or a == b + T."""
    both_rest = int(((a < 0) & (b < 0)).sum())
    both = (a >= 0) & (b >= 0)
    d = a[both] - b[both]
    d = d[np.abs(d) <= MAX_TRANSPOSE]
    return both_rest + (int(np.bincount(d + MAX_TRANSPOSE).max()) if len(d) else 0)


def phrase_similarity(notes: Sequence[Note], n_bars: int) -> float:
    """Mean over the window's 4-bar phrases 2..4 of the best step-by-step pitch agreement with any
    earlier phrase under any transposition (rests must meet rests); NaN with fewer than 2 whole phrases."""
    pitch, _ = _window(notes, n_bars)
    n_phr = len(pitch) // PHRASE_BARS
    if n_phr < 2:
        return float("nan")
    phrases = pitch[: n_phr * PHRASE_BARS].reshape(n_phr, -1)
    width = phrases.shape[1]
    return float(np.mean([max(_agreement(phrases[i], phrases[j]) for j in range(i)) / width for i in range(1, n_phr)]))


def _phrase_key(pitch: np.ndarray, onset: np.ndarray) -> bytes | None:
    """A transposition-invariant, hashable 4-bar window: per step the pitch relative to the window's
    first sounding pitch (or rest) and the onset flag. None for an all-rest window."""
    sounding = pitch >= 0
    if not sounding.any():
        return None
    rel = np.where(sounding, pitch - pitch[sounding.argmax()], _REST_CODE).astype(np.int32)
    return np.stack([rel, onset.astype(np.int32)], 1).tobytes()


def _melody_grid(melody: Any) -> tuple[np.ndarray, np.ndarray]:
    """A melody given as notes, or as (notes, n_bars), → (bars, 16) pitch and onset arrays from bar 0."""
    if isinstance(melody, tuple) and len(melody) == 2 and isinstance(melody[1], (int, np.integer)):
        notes, n_bars = melody
    else:
        notes, n_bars = melody, 0
    pitch, onset = _step_grid(list(notes), int(n_bars))
    return pitch.reshape(-1, STEPS_PER_BAR), onset.reshape(-1, STEPS_PER_BAR)


def build_phrase_index(melodies: Any) -> set[bytes]:
    """Every 4 consecutive bars (starting at any bar line) of the melodies, transposition-invariant.

    A melody is a list of notes, or (notes, n_bars) to fix its length (trailing rest bars)."""
    index: set[bytes] = set()
    for melody in melodies:
        pitch, onset = _melody_grid(melody)
        for b in range(len(pitch) - PHRASE_BARS + 1):
            key = _phrase_key(pitch[b : b + PHRASE_BARS].ravel(), onset[b : b + PHRASE_BARS].ravel())
            if key is not None:
                index.add(key)
    return index


def phrase_keys(notes: Sequence[Note], n_bars: int = 0) -> list[bytes]:
    """The keys of the (up to four) whole 4-bar phrases of a melody's 16-bar window, all-rest ones left out."""
    pitch, onset = _window(notes, n_bars)
    keys = []
    for b in range(0, len(pitch) - PHRASE_BARS + 1, PHRASE_BARS):
        key = _phrase_key(pitch[b : b + PHRASE_BARS].ravel(), onset[b : b + PHRASE_BARS].ravel())
        if key is not None:
            keys.append(key)
    return keys


def phrase_novelty(generated: Sequence[Sequence[Note]], training_index: set[bytes]) -> float:
    """Share of the generated 4-bar phrases (four per 16-bar window) that occur, up to transposition,
    as 4 consecutive bars of a training melody (see `build_phrase_index`); NaN with no phrases.

    Despite the name, higher means *more copying*: 0 = every phrase is new."""
    keys = [k for notes in generated for k in phrase_keys(notes)]
    return sum(k in training_index for k in keys) / len(keys) if keys else float("nan")
