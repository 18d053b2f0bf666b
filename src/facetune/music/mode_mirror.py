"""The parallel-mode copy of a training set: every song also in the other mode on the same tonic.

Why: POP909 is mostly major, and its minor-key songs sing a pentatonic line (1, 2, ♭3, 4, 5 and
♭7, rarely ♭6) that reads as minor or as its relative major alike. A network that learns the
tune's mode from them cannot write a tune that leans clearly minor, however far the composer
asks (a sad tune leaned −0.08 when asked for −0.8). Mirroring a major song into its parallel
minor (the 3rd, 6th and 7th lowered: the tonic, its triad's emphasis, the contour and rhythm
kept) is what a musician does to set a tune in minor, and it gives the network minor tunes that
centre on the tonic as the major ones do; the minor songs mirrored into major add the other way.

Each copy keeps its bars, rhythm, form and split; its pitches and chords are mapped, its key
is the parallel one, and it is a new clip (so the label rule reads its mode afresh and its
lean is measured on its own notes).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .chords import NO_CHORD
from .pianoroll import LOW_PITCH, N_PITCHES

#: Scale degree (semitones above the tonic) → the degree it becomes, major to parallel minor.
TO_MINOR = {4: 3, 9: 8, 11: 10}
#: The same, minor to parallel major.
TO_MAJOR = {3: 4, 8: 9, 10: 11}


def degree_maps() -> np.ndarray:
    """(2, 12) semitone shifts by degree: row 0 for a major key (to minor), row 1 for a minor key."""
    shifts = np.zeros((2, 12), np.int64)
    for row, table in enumerate((TO_MINOR, TO_MAJOR)):
        for degree, to in table.items():
            shifts[row, degree] = to - degree
    return shifts


def _triads() -> np.ndarray:
    """(24, 12) pitch-class membership of the 24 triads (0–11 major, 12–23 minor)."""
    out = np.zeros((24, 12), bool)
    for c in range(24):
        root, third = c % 12, (4 if c < 12 else 3)
        out[c, [root, (root + third) % 12, (root + 7) % 12]] = True
    return out


def mirror_chord(chord: int, tonic: int, to_minor: bool) -> int:
    """A chord in the other mode: its tones moved as the melody's are, then the triad of the
    vocabulary that keeps most of them and whose tones all lie in the new scale, preferring one
    that keeps the root (ii in major becomes ♭VII, ♭VII in minor becomes V)."""
    if chord == NO_CHORD:
        return NO_CHORD
    triads = _triads()
    shift = degree_maps()[0 if to_minor else 1]
    mapped = {(pc + shift[(pc - tonic) % 12]) % 12 for pc in np.flatnonzero(triads[chord])}
    root = chord % 12
    root = (root + shift[(root - tonic) % 12]) % 12
    scale = {(tonic + d) % 12 for d in ((0, 2, 3, 5, 7, 8, 10) if to_minor else (0, 2, 4, 5, 7, 9, 11))}
    best, best_key = NO_CHORD, (-1, False, False)
    for c in range(24):
        tones = set(np.flatnonzero(triads[c]).tolist())
        key = (len(tones & mapped), tones <= scale, root in tones)
        if key > best_key:
            best, best_key = c, key
    return best


def mirror_arrays(arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The cache's arrays with a parallel-mode copy of every row appended (links between rows,
    `prev` and `ref`, moved to the copies), and the manifest with the copies' clips appended."""
    n = len(arrays["pitch"])
    key = arrays["key"].astype(np.int64)
    tonic, minor = key % 12, key >= 12
    pitch = arrays["pitch"].astype(np.int64)
    degree = (pitch + LOW_PITCH - tonic[:, None]) % 12
    moved = pitch + degree_maps()[minor.astype(np.int64)[:, None], degree]
    moved = np.where((pitch >= 0) & (moved >= 0) & (moved < N_PITCHES), moved, pitch)
    table = np.array([[mirror_chord(c, t, m == 0) for c in range(NO_CHORD + 1)] for m in (0, 1) for t in range(12)], np.int64)
    chord = table[minor.astype(np.int64) * 12 + tonic, arrays["chord"].astype(np.int64)]
    copy = dict(arrays)
    copy["pitch"] = moved.astype(arrays["pitch"].dtype)
    copy["chord"] = chord.astype(arrays["chord"].dtype)
    copy["key"] = np.where(minor, key - 12, key + 12).astype(arrays["key"].dtype)
    for link in ("prev", "ref"):
        copy[link] = np.where(arrays[link] >= 0, arrays[link] + n, -1).astype(arrays[link].dtype)
    clips = list(manifest.get("clips", []))
    copy["clip"] = (arrays["clip"] + max(len(clips), int(arrays["clip"].max()) + 1)).astype(arrays["clip"].dtype)
    out = {k: np.concatenate([v, copy[k]]) for k, v in arrays.items()}
    mirrored = [dict(c, name=f"{c.get('name', '')} (parallel mode)") for c in clips]
    pad = [{} for _ in range(int(copy["clip"].min()) - len(clips))] if clips else []
    return out, {**manifest, "clips": clips + pad + mirrored}
