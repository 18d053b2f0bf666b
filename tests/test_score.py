"""music.score: one piece over a timeline of moods; changes on bar lines, in key and tempo on both sides."""
from __future__ import annotations

import numpy as np
import pytest

from facetune.errors import FacetuneError
from facetune.music.chords import scale_pitch_classes
from facetune.music.composer import STYLES
from facetune.music.midi_file import read_back
from facetune.music.score import Mood, ScoreSettings, compose_score, fit_tempos, pivot_chord
from facetune.music.pianoroll import STEPS_PER_BAR

MOODS = [Mood("happy", 0, 8), Mood("sad", 8, 20), Mood("angry", 20, 30)]


@pytest.fixture(scope="module")
def score():
    return compose_score(MOODS, 30.0, settings=ScoreSettings(seed=3))


def test_length_is_the_duration_within_a_beat(score):
    assert abs(score.duration - 30.0) < 0.01
    midi = read_back(score.midi_bytes())
    assert abs(midi.seconds(score.bars * STEPS_PER_BAR * midi.ticks_per_beat // 4) - 30.0) < 0.01


def test_changes_fall_on_bar_lines_within_a_bar_of_the_faces(score):
    assert [s.emotion for s in score.segments] == ["happy", "sad", "angry"]
    for seg, mood in zip(score.segments[1:], MOODS[1:]):
        bar = 240.0 / STYLES[seg.quadrant].tempo
        before = 240.0 / score.segments[score.segments.index(seg) - 1].tempo
        assert abs(seg.start - mood.start) <= max(bar, before)
        assert seg.first_bar == sum(s.bars for s in score.segments[: score.segments.index(seg)])
    midi = read_back(score.midi_bytes())
    ticks_per_bar = 4 * midi.ticks_per_beat
    assert [t for t, _ in midi.key_map] == [s.first_bar * ticks_per_bar for s in score.segments]
    assert [k for _, k in midi.key_map] == [s.key for s in score.segments]


def _tempo_at(midi, tick):
    return 60e6 / [u for t, u in sorted(midi.tempo_map) if t <= tick][-1]


def test_the_bars_on_both_sides_are_in_their_keys_and_tempos(score):
    midi = read_back(score.midi_bytes())
    tpb = 4 * midi.ticks_per_beat
    melody = dict(midi.tracks)["Melody"]
    for a, b in zip(score.segments, score.segments[1:]):
        edge = b.first_bar * tpb
        assert abs(_tempo_at(midi, edge - tpb) - a.tempo) < 0.05  # the last bar starts at the old tempo (then ramps)
        assert abs(_tempo_at(midi, edge) - b.tempo) < 0.05
        assert abs(_tempo_at(midi, edge + tpb) - b.tempo) < 0.05
        before = {p % 12 for p, s, _, _ in melody if edge - tpb <= s < edge}
        after = {p % 12 for p, s, _, _ in melody if edge <= s < edge + tpb}
        assert before and after
        assert before <= set(scale_pitch_classes(a.key)) and after <= set(scale_pitch_classes(b.key))
        assert len(set(scale_pitch_classes(a.key)) & set(scale_pitch_classes(b.key))) >= 6


def test_tempo_ramps_over_the_last_bar_before_a_change(score):
    sad = score.segments[1]
    edge = sad.first_bar * STEPS_PER_BAR
    ramp = score.step_tempos[edge - STEPS_PER_BAR : edge]
    assert ramp[0] == score.segments[0].tempo and np.all(np.diff(ramp) < 0) and ramp[-1] > sad.tempo


def test_pivot_chord_belongs_to_both_keys(score):
    from facetune.music.chords import chord_pitch_classes

    for a, b in zip(score.segments, score.segments[1:]):
        pivot = pivot_chord(a.key, b.key)
        assert pivot is not None
        assert set(chord_pitch_classes(pivot)) <= set(scale_pitch_classes(a.key)) & set(scale_pitch_classes(b.key))


def test_the_melody_continues_across_the_change(score, monkeypatch):
    """The network writing a segment reads the bars before it: without them, the first bar of the next segment comes out otherwise."""
    from facetune.music import generate
    from facetune.music.generate import SongRequest

    seen = []

    original = generate.MelodyGenerator.generate_many

    def spy(self, requests, settings):
        seen.extend(len(r.before) for r in requests)
        return original(self, requests, settings)

    monkeypatch.setattr(generate.MelodyGenerator, "generate_many", spy)
    compose_score(MOODS, 30.0, settings=ScoreSettings(seed=3))
    assert seen[0] == 0 and all(n > 0 for n in seen[1:])
    assert SongRequest("Q1", [0], 0, 0).before == ()


def test_same_seed_same_bytes_other_seed_other_music(score):
    again = compose_score(MOODS, 30.0, settings=ScoreSettings(seed=3))
    assert again.midi_bytes() == score.midi_bytes()
    assert compose_score(MOODS, 30.0, settings=ScoreSettings(seed=4)).midi_bytes() != score.midi_bytes()


def test_one_mood_and_a_short_piece():
    one = compose_score([Mood("calm", 0, 5)], 5.0)
    assert len(one.segments) == 1 and abs(one.duration - 5.0) < 0.01


def test_fit_tempos_keeps_emotion_tempos_but_the_last():
    tempos, counts, steps = fit_tempos(MOODS, 30.0)
    assert tempos[:2] == [STYLES["Q1"].tempo, STYLES["Q3"].tempo]
    assert len(steps) == sum(counts) * STEPS_PER_BAR


def test_bad_requests():
    with pytest.raises(FacetuneError):
        compose_score([], 10.0)
    with pytest.raises(FacetuneError):
        compose_score(MOODS, 0.0)
