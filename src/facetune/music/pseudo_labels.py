"""Emotion pseudo-labels for unlabelled songs (POP909), from a small model fitted on labelled ones.

POP909's melodies are the sung tunes the generator should learn from, but they carry no emotion
label, and the emotion condition is what makes a sad melody differ from a calm one. So
`prepare-data music` fits two logistic regressions (valence and arousal) on song-level features
that mean the same thing in every source — the major/minor lean of melody and chords, the share of
minor chords, melody onsets per second, mean melody pitch and the share of rests — using the
labelled sources' training clips (EMOPIA), checks them on the labelled validation clips, and labels
an unlabelled song with a quadrant only when both regressions are sure (probability at least
`0.5 + margin` one way). The others stay "unknown" (quadrant index 4), a condition of its own.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .pianoroll import LOW_PITCH

FEATURES = ("mode_lean", "minor_chords", "onsets_per_second", "mean_pitch", "rest_share")
UNKNOWN = 4
#: Valence and arousal sign of each quadrant Q1..Q4.
_VALENCE = np.array([1, 0, 0, 1])
_AROUSAL = np.array([1, 1, 0, 0])


def song_features(pitch: np.ndarray, onset: np.ndarray, chords: np.ndarray, bpm: float) -> np.ndarray:
    """The five features of one song's bars (untransposed)."""
    from .chords import NO_CHORD, chord_pitch_classes, mode_score

    sounding = pitch >= 0
    hist = np.bincount((pitch[sounding].astype(int) + LOW_PITCH) % 12, minlength=12).astype(float)
    for c in chords:
        for pc in chord_pitch_classes(int(c)):
            hist[pc] += 8.0
    named = chords[chords != NO_CHORD]
    onsets_per_bar = float((onset * sounding).sum(1).mean())
    return np.array([
        mode_score(hist),
        float((named >= 12).mean()) if len(named) else 0.5,
        onsets_per_bar * max(bpm, 1.0) / 240.0,
        float(pitch[sounding].mean() + LOW_PITCH) if sounding.any() else 60.0,
        float(1 - sounding.mean()),
    ])


def _fit(x: np.ndarray, y: np.ndarray, steps: int = 4000, lr: float = 0.2, l2: float = 1e-3) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        w -= lr * (xb.T @ (p - y) / len(y) + l2 * w)
    return w


def _prob(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.hstack([x, np.ones((len(x), 1))]) @ w))


def label_songs(items: Sequence[tuple[Any, dict[str, Any]]], margin: float = 0.15) -> dict[str, Any]:
    """Set `clip.quadrant` of unlabelled clips (quadrant == UNKNOWN) where the model is sure; returns a summary.

    `items` pairs each clip (with `.quadrant` and `.split`) with its loaded bars
    (`pitch`, `onset`, `chord` and `info["bpm"]`).
    """
    feats = np.array([song_features(it["pitch"], it["onset"], it["chord"], float(it["info"].get("bpm") or 120.0)) for _, it in items]) if items else np.zeros((0, len(FEATURES)))
    quad = np.array([c.quadrant for c, _ in items], dtype=int)
    split = np.array([c.split for c, _ in items], dtype=int)
    train = (quad < UNKNOWN) & (split == 0)
    todo = np.flatnonzero(quad == UNKNOWN)
    summary: dict[str, Any] = {"features": list(FEATURES), "margin": margin, "unlabelled": int(len(todo))}
    if len(todo) == 0:
        return summary
    if train.sum() < 8 or len(set(quad[train])) < 4:
        summary["note"] = "too few labelled training clips to fit a labeller: every unlabelled song stays unknown"
        return summary
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-9
    z = (feats - mu) / sd
    w_v = _fit(z[train], _VALENCE[quad[train]])
    w_a = _fit(z[train], _AROUSAL[quad[train]])
    val = (quad < UNKNOWN) & (split == 1)
    if val.any():
        pv, pa = _prob(w_v, z[val]) > 0.5, _prob(w_a, z[val]) > 0.5
        summary["labelled_val"] = {
            "clips": int(val.sum()),
            "valence_accuracy": round(float((pv == _VALENCE[quad[val]]).mean()), 3),
            "arousal_accuracy": round(float((pa == _AROUSAL[quad[val]]).mean()), 3),
        }
    pv, pa = _prob(w_v, z[todo]), _prob(w_a, z[todo])
    sure = (np.abs(pv - 0.5) >= margin) & (np.abs(pa - 0.5) >= margin)
    table = {(1, 1): 0, (0, 1): 1, (0, 0): 2, (1, 0): 3}
    counts = {q: 0 for q in ("Q1", "Q2", "Q3", "Q4", "unknown")}
    for i, ok, v, a in zip(todo, sure, pv, pa):
        if ok:
            q = table[(int(v > 0.5), int(a > 0.5))]
            items[i][0].quadrant = q
            counts[f"Q{q + 1}"] += 1
        else:
            counts["unknown"] += 1
    summary["counts"] = counts
    summary["weights"] = {"valence": [round(float(x), 4) for x in w_v], "arousal": [round(float(x), 4) for x in w_a], "mean": mu.round(4).tolist(), "scale": sd.round(4).tolist()}
    return summary
