"""video.timeline: per-frame probabilities → emotion segments (Viterbi with a switching cost, a minimum length in bars)."""
from __future__ import annotations

import numpy as np
import pytest

from facetune.errors import NoFaceError
from facetune.video.timeline import FrameReading, SmoothSettings, filled_probabilities, segments, viterbi

CLASSES = ("happy", "sad", "angry")


def readings(labels, fps=2.0, sure=0.9):
    out = []
    for i, label in enumerate(labels):
        if label is None:
            out.append(FrameReading(i / fps, None, {}))
            continue
        rest = (1 - sure) / (len(CLASSES) - 1)
        out.append(FrameReading(i / fps, [0, 0, 10, 10], {c: sure if c == label else rest for c in CLASSES}))
    return out


def test_viterbi_needs_evidence_to_switch():
    lp = np.log(np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] + [[0.9, 0.1]] * 5))
    assert viterbi(lp, 6.0).tolist() == [0] * 11
    assert viterbi(lp, 0.0).tolist() == [0] * 5 + [1] + [0] * 5
    lp = np.log(np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 6))
    assert viterbi(lp, 6.0).tolist() == [0] * 5 + [1] * 6


def test_changes_found_within_a_frame_and_flicker_ignored():
    labels = ["happy"] * 16 + ["sad"] * 24 + ["angry"] * 20
    labels[7] = "angry"  # one frame (a blink, a grimace)
    segs = segments(readings(labels), CLASSES, 30.0, "clip")
    assert [s.emotion for s in segs] == ["happy", "sad", "angry"]
    assert abs(segs[1].start - 8.0) <= 0.5 and abs(segs[2].start - 20.0) <= 0.5
    assert segs[0].start == 0.0 and segs[-1].end == 30.0
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))


def test_faceless_frames_hold_the_last_emotion():
    labels = [None, None] + ["sad"] * 10 + [None] * 6 + ["sad"] * 4
    probs = filled_probabilities(readings(labels), CLASSES, "clip")
    assert np.all(probs.argmax(1) == 1)
    assert [s.emotion for s in segments(readings(labels), CLASSES, 11.0, "clip")] == ["sad"]


def test_no_face_at_all_is_one_error():
    with pytest.raises(NoFaceError, match="clip: no face found in any of the 4 frames"):
        segments(readings([None] * 4), CLASSES, 2.0, "clip")


def test_short_segments_merge_into_a_neighbour():
    labels = ["happy"] * 20 + ["sad"] * 4 + ["happy"] * 20  # 2 s of sad: under 2 bars at 66 BPM (7.3 s)
    segs = segments(readings(labels, sure=0.99), CLASSES, 22.0, "clip", SmoothSettings(switch_cost=1.0))
    assert [s.emotion for s in segs] == ["happy"]
    segs = segments(readings(labels, sure=0.99), CLASSES, 22.0, "clip", SmoothSettings(switch_cost=1.0, min_bars=0.0))
    assert [s.emotion for s in segs] == ["happy", "sad", "happy"]


def test_timeline_records():
    segs = segments(readings(["happy"] * 4), CLASSES, 2.0, "clip")
    assert segs[0].to_dict() == {"start": 0.0, "end": 2.0, "emotion": "happy", "confidence": 0.9}
    assert FrameReading(0.5, None, {}).to_dict() == {"time": 0.5, "face": None, "probabilities": None}
