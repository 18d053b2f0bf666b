from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from facetune.music.metrics import midi_to_notes
from facetune.music.pianoroll import BAR_WIDTH, HIGH_PITCH, LOW_PITCH, ONSET, REST, STEPS_PER_BAR, Note, fold_pitch, rolls_to_notes

from conftest import notes_to_rolls


def test_roll_shape_and_one_hot():
    rolls = notes_to_rolls([Note(60, 0, 4), Note(64, 4, 8), Note(67, 10, 16)], 2)
    assert rolls.shape == (2, STEPS_PER_BAR, BAR_WIDTH)
    assert (rolls[..., : REST + 1].sum(-1) == 1).all()
    assert rolls[0, 8, REST] == 1 and rolls[1].sum() == STEPS_PER_BAR  # gap is rest; bar 2 all rest
    assert rolls[0, :, ONSET].tolist()[:11] == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]


def test_repeated_note_keeps_its_onset():
    notes = [Note(60, 0, 2), Note(60, 2, 4)]
    assert rolls_to_notes(notes_to_rolls(notes, 1)) == [Note(60, 0, 2, 96), Note(60, 2, 4, 96)]


def test_notes_from_scores_start_at_pitch_changes_and_onsets():
    """Scores, not one-hot: each step's likeliest column; a new note at a pitch change without an
    onset and at an onset on the same pitch, none across a rest; no bars, no notes."""
    rolls = np.zeros((1, STEPS_PER_BAR, BAR_WIDTH), np.float32)
    for t, c in enumerate([REST, 12, 12, 14, 14, REST, 14] + [20] * 9):
        rolls[0, t, c], rolls[0, t, (c + 1) % (REST + 1)] = 0.9, 0.1
    rolls[0, 2, ONSET], rolls[0, 3, ONSET] = 0.7, 0.2
    assert rolls_to_notes(rolls, 70) == [Note(60, 1, 2, 70), Note(60, 2, 3, 70), Note(62, 3, 5, 70), Note(62, 6, 7, 70), Note(68, 7, 16, 70)]
    assert all(type(v) is int for n in rolls_to_notes(rolls) for v in (n.pitch, n.start, n.end))
    assert rolls_to_notes(np.zeros((0, STEPS_PER_BAR, BAR_WIDTH))) == []


def test_fold_pitch_keeps_pitch_class():
    for p in (0, 20, 47, 96, 127):
        f = fold_pitch(p)
        assert LOW_PITCH <= f <= HIGH_PITCH and f % 12 == p % 12


@st.composite
def melodies(draw):
    n_bars = draw(st.integers(1, 4))
    total = n_bars * STEPS_PER_BAR
    cuts = sorted(set(draw(st.lists(st.integers(1, total - 1), max_size=12))))
    bounds = [0, *cuts, total]
    notes = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        if draw(st.booleans()):
            notes.append(Note(draw(st.integers(LOW_PITCH, HIGH_PITCH)), s, e))
    return notes, n_bars


@settings(max_examples=60, deadline=None)
@given(melodies())
def test_roll_round_trip(case):
    notes, n_bars = case
    assert rolls_to_notes(notes_to_rolls(notes, n_bars)) == [Note(n.pitch, n.start, n.end, 96) for n in notes]


@settings(max_examples=25, deadline=None)
@given(melodies(), st.sampled_from([60.0, 96.0, 133.0]))
def test_roll_midi_round_trip(case, tempo):
    """notes → pretty_midi → bytes → back onto the grid gives the same notes."""
    import pretty_midi

    notes, n_bars = case
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(0)
    step = 60.0 / tempo / 4
    inst.notes = [pretty_midi.Note(96, n.pitch, n.start * step, n.end * step) for n in notes]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    if not notes:
        return
    back, bars = midi_to_notes(buf.getvalue(), track=0)
    assert sorted((n.pitch, n.start, n.end) for n in back) == sorted((n.pitch, n.start, n.end) for n in notes)
    assert bars <= n_bars
