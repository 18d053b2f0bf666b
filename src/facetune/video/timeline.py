"""From per-frame emotion probabilities to emotion segments: a hidden-Markov smoothing (Viterbi over
the classes, with a cost for every switch) and a minimum segment length in bars, so a blink or a
passing grimace does not change the music but a held expression does.

Frames without a face hold the last emotion seen (the first face's emotion before it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import NoFaceError


@dataclass(frozen=True)
class SmoothSettings:
    """`switch_cost`: log-likelihood (nats) a change of emotion must win back, so a one-frame
    flicker never switches; `min_bars`: the shortest segment, in bars of its emotion's tempo;
    `floor`: the smallest probability a frame gives any class (one confident frame cannot veto)."""

    switch_cost: float = 6.0
    min_bars: float = 2.0
    floor: float = 0.02


@dataclass
class FrameReading:
    """One sampled frame: its time (s), the followed face's box in video pixels (None: no face) and
    its class probabilities (empty without a face)."""

    time: float
    face: list[int] | None
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "face": self.face, "probabilities": self.probabilities or None}


@dataclass
class Segment:
    """A stretch of one emotion, in seconds of the video, with its mean probability over the stretch."""

    start: float
    end: float
    emotion: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "emotion": self.emotion, "confidence": round(self.confidence, 4)}


def viterbi(log_probs: np.ndarray, switch_cost: float) -> np.ndarray:
    """The most likely class per frame when every change of class costs `switch_cost` nats."""
    n, k = log_probs.shape
    score = log_probs[0].copy()
    back = np.zeros((n, k), dtype=np.int64)
    for t in range(1, n):
        best = int(score.argmax())
        switch = score[best] - switch_cost
        stay = score >= switch
        back[t] = np.where(stay, np.arange(k), best)
        score = np.where(stay, score, switch) + log_probs[t]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def filled_probabilities(readings: Sequence[FrameReading], classes: Sequence[str], name: str) -> np.ndarray:
    """(frames, classes) probabilities, faceless frames holding the last face's (the first face's
    before any); NoFaceError when no frame has a face."""
    rows: list[np.ndarray | None] = [np.array([r.probabilities[c] for c in classes], float) if r.probabilities else None for r in readings]
    seen = [row for row in rows if row is not None]
    if not seen:
        raise NoFaceError(f"{name}: no face found in any of the {len(readings)} frames looked at")
    last = seen[0]
    out = []
    for row in rows:
        last = row if row is not None else last
        out.append(last)
    return np.stack(out)


def _runs(path: np.ndarray) -> list[tuple[int, int, int]]:
    """(first frame, end frame, class) of each run of one class."""
    cuts = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(path)]])
    return [(int(a), int(b), int(path[a])) for a, b in zip(starts, ends)]


def _merge_short(path: np.ndarray, probs: np.ndarray, edges: np.ndarray, min_seconds: Sequence[float]) -> np.ndarray:
    """Give each run shorter than its class's minimum to the neighbour whose class the run's frames
    favour more, shortest first, until none is left (or one run remains)."""
    path = path.copy()
    while True:
        runs = _runs(path)
        short = [(edges[b] - edges[a], i) for i, (a, b, c) in enumerate(runs) if edges[b] - edges[a] < min_seconds[c]]
        if len(runs) == 1 or not short:
            return path
        _, i = min(short)
        a, b, _ = runs[i]
        options = [runs[j][2] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        path[a:b] = max(options, key=lambda c: probs[a:b, c].sum())


def segments(readings: Sequence[FrameReading], classes: Sequence[str], duration: float, name: str, settings: SmoothSettings = SmoothSettings()) -> list[Segment]:
    """The emotion segments covering 0..`duration` s. A frame stands for the time from halfway
    after the frame before to halfway before the frame after."""
    from ..emotions import quadrant_of
    from ..music.composer import STYLES

    probs = filled_probabilities(readings, classes, name)
    times = np.array([r.time for r in readings])
    edges = np.concatenate([[0.0], (times[1:] + times[:-1]) / 2, [max(duration, times[-1])]])
    log_probs = np.log(np.maximum(probs, settings.floor))
    path = viterbi(log_probs, settings.switch_cost)
    min_seconds = [settings.min_bars * 240.0 / STYLES[quadrant_of(c)].tempo for c in classes]
    path = _merge_short(path, probs, edges, min_seconds)
    return [Segment(float(edges[a]), float(edges[b]), classes[c], float(probs[a:b, c].mean())) for a, b, c in _runs(path)]
