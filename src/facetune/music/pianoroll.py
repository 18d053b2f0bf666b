"""Melody ↔ bar piano rolls ↔ MIDI.

One bar is 16 sixteenth-note steps of 4/4. A bar roll has `BAR_WIDTH` columns:
`N_PITCHES` pitch columns (MIDI `LOW_PITCH` upwards), one REST column, so every
step is one-hot over pitch-or-rest, and one ONSET column that marks where a note
starts, so repeated notes and held notes stay different (rhythm matters for arousal).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

STEPS_PER_BEAT = 4
BEATS_PER_BAR = 4
STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR
LOW_PITCH = 48
N_PITCHES = 48
HIGH_PITCH = LOW_PITCH + N_PITCHES - 1
REST = N_PITCHES
ONSET = N_PITCHES + 1
BAR_WIDTH = N_PITCHES + 2


class Note(NamedTuple):
    """A note on the step grid: `start` inclusive, `end` exclusive, in sixteenth-note steps.

    A named tuple, immutable, hashed and ordered by its fields as the frozen dataclass it was; made
    in half the time (a batch compose makes a few hundred a song: read from the rolls, played,
    and the accompaniment's)."""

    pitch: int
    start: int
    end: int
    velocity: int = 96


def fold_pitch(pitch: int, low: int = LOW_PITCH, high: int = HIGH_PITCH) -> int:
    """Move a pitch by octaves into [low, high], keeping its pitch class."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def rolls_to_notes(rolls: np.ndarray, velocity: int = 96) -> list[Note]:
    """(n_bars, 16, BAR_WIDTH) rolls (one-hot or scores) → notes; a note starts at an onset or a
    pitch change and lasts until the next start or rest. Found with array operations: a loop
    over the steps cost about as much as writing the song's MIDI."""
    flat = np.asarray(rolls, dtype=np.float32).reshape(-1, BAR_WIDTH)
    choice = flat[:, : REST + 1].argmax(axis=1)
    sounding = choice != REST
    changed = np.ones(len(choice), bool)
    changed[1:] = choice[1:] != choice[:-1]
    begins = sounding & (changed | (flat[:, ONSET] > 0.5))
    starts = np.flatnonzero(begins)
    bounds = np.append(np.flatnonzero(begins | ~sounding), len(choice))
    ends = bounds[np.searchsorted(bounds, starts, side="right")]
    pitches = (choice[starts] + LOW_PITCH).tolist()
    return [Note(p, s, e, velocity) for p, s, e in zip(pitches, starts.tolist(), ends.tolist())]
