from __future__ import annotations

import math

import numpy as np
import pytest

from facetune.music import metrics as M
from facetune.music.pianoroll import Note
from conftest import random_bars

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_scale_melody_metrics():
    notes = [Note(p, 2 * i, 2 * i + 2) for i, p in enumerate(C_MAJOR)]
    s = M.summarize(notes, 1)
    assert s["scale_consistency"] == 1.0 and s["key"] == "C major" and s["mode_score"] > 0
    assert s["empty_beat_rate"] == 0.0 and s["polyphony"] == 1.0 and s["pitch_range"] == 12
    assert s["notes_per_bar"] == 8 and s["onsets_per_beat"] == 2


def test_minor_ninth_share_counts_steps_over_a_semitone_below():
    chord = [Note(47, 0, 16), Note(55, 0, 8)]  # B2 for the bar, G3 for its first half
    assert M.minor_ninth_share([Note(72, 0, 8)], chord) == 1.0  # C5 over B: a minor ninth
    assert M.minor_ninth_share([Note(72, 8, 16)], chord) == 1.0
    assert M.minor_ninth_share([Note(56, 0, 4), Note(56, 8, 12)], chord) == 0.5  # G#3 over G only while G sounds
    assert M.minor_ninth_share([Note(71, 0, 16)], chord) == 0.0  # the chord's own tone
    assert M.minor_ninth_share([Note(70, 0, 16)], chord) == 0.0  # a semitone below B: not counted
    assert math.isnan(M.minor_ninth_share([], chord))


def test_minor_melody_leans_minor():
    a_minor = [57, 60, 64, 57, 59, 60, 62, 64, 57, 60, 64, 65, 64, 62, 60, 57]
    notes = [Note(p, i * 2, i * 2 + 2) for i, p in enumerate(a_minor)]
    assert M.summarize(notes, 2)["mode_score"] < 0


def test_entropy_of_chromatic_melody():
    notes = [Note(60 + i, i, i + 1) for i in range(12)]
    assert M.pitch_class_entropy(notes) == pytest.approx(math.log2(12))
    assert M.pitch_class_entropy([Note(60, 0, 4)] * 3) == 0


def test_empty_beats_and_groove():
    one_bar = [Note(60, s, s + 1) for s in (0, 4, 8, 12)]
    two_bars = one_bar + [Note(60, s + 16, s + 17) for s in (0, 4, 8, 12)]
    assert M.groove_consistency(two_bars, 2) == 1.0
    assert M.empty_beat_rate([Note(60, 0, 4), Note(60, 16, 20)], 2) == pytest.approx(2 / 6)  # muspy counts the beat a note ends on
    shifted = one_bar + [Note(60, s + 16, s + 17) for s in (2, 6, 10, 14)]
    assert M.groove_consistency(shifted, 2) == pytest.approx(1 - 8 / 16)


def test_midi_errors_name_the_file(tmp_path):
    from facetune.errors import InputError

    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00garbage")
    with pytest.raises(InputError, match="bad.mid"):
        M.midi_to_notes(bad)


def test_agrees_with_muspy(tmp_path):
    muspy = pytest.importorskip("muspy")
    import pretty_midi

    rng = np.random.default_rng(0)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    t = 0
    notes = []
    while t < 64:
        dur = int(rng.choice([1, 2, 4]))
        if rng.random() < 0.85:
            p = int(rng.choice(C_MAJOR + [61, 66]))
            inst.notes.append(pretty_midi.Note(90, p, t * 0.125, (t + dur) * 0.125))
            notes.append(Note(p, t, t + dur))
        t += dur
    pm.instruments.append(inst)
    path = tmp_path / "m.mid"
    pm.write(str(path))
    music = muspy.read_midi(str(path)).adjust_resolution(4)
    ours, bars = M.midi_to_notes(path)
    assert sorted(ours) == sorted(Note(n.pitch, n.start, n.end, 90) for n in notes)
    assert M.pitch_class_entropy(ours) == pytest.approx(muspy.pitch_class_entropy(music), abs=1e-6)
    assert M.scale_consistency(ours) == pytest.approx(muspy.scale_consistency(music), abs=1e-6)
    assert M.polyphony(ours, bars) == pytest.approx(muspy.polyphony(music), abs=1e-6)
    assert M.empty_beat_rate(ours, bars) == pytest.approx(muspy.empty_beat_rate(music), abs=1e-6)
    assert M.groove_consistency(ours, bars) == pytest.approx(muspy.groove_consistency(music, 16), abs=1e-6)


# --- repetition and structure ---------------------------------------------------------------


def shift(notes, steps=0, transpose=0, dur=None):
    return [Note(n.pitch + transpose, n.start + steps, (n.start + steps + dur) if dur else (n.end + steps)) for n in notes]


BAR = [Note(60, 0, 4), Note(64, 4, 6), Note(67, 8, 12), Note(65, 12, 16)]


def bars(*bar_list):
    """Bars laid one after another, each given with its steps relative to its own bar line."""
    return [n for b, bar in enumerate(bar_list) for n in shift(bar, 16 * b)]


def test_identical_bars_repeat_fully():
    melody = bars(*[BAR] * 16)
    assert M.rhythm_repeat(melody, 16) == 1.0
    assert M.motif_repeat(melody, 16) == 1.0
    assert M.phrase_similarity(melody, 16) == 1.0
    s = M.summarize(melody, 16)
    assert (s["rhythm_repeat"], s["motif_repeat"], s["phrase_similarity"]) == (1.0, 1.0, 1.0)


def test_rhythm_and_motif_repeat_of_known_bars():
    changed_interval = [Note(60, 0, 4), Note(64, 4, 6), Note(69, 8, 12), Note(65, 12, 16)]  # 7 → 9 semitones
    other_rhythm = [Note(60, 0, 2), Note(62, 2, 16)]
    melody = bars(
        BAR,
        shift(BAR, transpose=5),  # transposed copy: rhythm and motif repeat
        changed_interval,  # rhythm repeats, motif does not
        other_rhythm,  # neither
        shift(changed_interval, transpose=-3, dur=1),  # repeats bar 3 up to transposition; durations ignored
        [Note(70, 0, 16)],  # one onset: not counted
        [],  # no onset: not counted
    )
    assert M.rhythm_repeat(melody, 7) == pytest.approx(3 / 4)
    assert M.motif_repeat(melody, 7) == pytest.approx(2 / 4)
    # a bar whose only change is one pitch keeps its rhythm but loses the motif
    assert M.motif_repeat(bars(BAR, [Note(60, 0, 4), Note(64, 4, 6), Note(67, 8, 12), Note(66, 12, 16)]), 2) == 0.0
    assert M.rhythm_repeat(bars(BAR, [Note(60, 0, 4), Note(64, 4, 6), Note(67, 8, 12), Note(66, 12, 16)]), 2) == 1.0


def test_repeat_is_nan_without_countable_bars():
    assert math.isnan(M.rhythm_repeat(bars(BAR), 1))  # only one bar
    assert math.isnan(M.motif_repeat(bars(BAR, [Note(60, 0, 16)], [Note(60, 0, 8)]), 3))  # later bars have one onset
    assert math.isnan(M.rhythm_repeat([], 16)) and math.isnan(M.phrase_similarity([], 16))


def test_window_starts_at_the_first_note_and_holds_16_bars():
    lead_in = shift(bars(*[BAR] * 16), steps=2 * 16)  # two empty bars first
    assert M.phrase_similarity(lead_in, 18) == 1.0  # phrases counted from bar 2, not bar 0
    tail = bars(*[BAR] * 16) + shift(bars(*[[Note(50 + k, 0, 3), Note(55, 5 + k, 6 + k)] for k in range(8)]), steps=16 * 16)
    assert M.rhythm_repeat(tail, 24) == 1.0 and M.motif_repeat(tail, 24) == 1.0 and M.phrase_similarity(tail, 24) == 1.0
    # the tail alone is all new material, so it would count if the window were longer
    assert M.rhythm_repeat(tail[-16:], 24) == 0.0 and M.motif_repeat(tail[-16:], 24) == 0.0


def test_phrase_similarity_rests_must_meet_rests():
    phrase = bars(BAR, shift(BAR, transpose=2), [Note(72, 0, 8), Note(71, 8, 16)], [Note(67, 0, 12)])  # ends with 4 rest steps
    transposed = shift(phrase, steps=64, transpose=7)
    assert M.phrase_similarity(phrase + transposed, 8) == 1.0
    # shorten one note by 4 steps: 4 steps where the first phrase sounds and the second rests
    shorter = [Note(n.pitch, n.start, n.end - 4) if n.start == 64 + 32 else n for n in transposed]
    assert M.phrase_similarity(phrase + shorter, 8) == pytest.approx(60 / 64)
    # sound through the first phrase's final rest: 4 steps where it rests and the second sounds
    longer = [Note(n.pitch, n.start, n.end + 4) if n.start == 64 + 48 else n for n in transposed]
    assert M.phrase_similarity(phrase + longer, 8) == pytest.approx(60 / 64)
    # under 2 whole phrases: undefined
    assert math.isnan(M.phrase_similarity(phrase + shift(phrase, 64)[:3], 7))


def test_phrase_similarity_averages_best_earlier_match():
    sounding = bars(*[BAR] * 4)
    # phrase 2 is all rest: it agrees with phrase 1 only on BAR's 2 rest steps a bar (8 of 64);
    # phrase 3 is a transposed phrase 1 (all 64 agree)
    melody = sounding + shift(sounding, steps=128, transpose=3)
    assert M.phrase_similarity(melody, 12) == pytest.approx((8 / 64 + 1) / 2)
    # a transposition beyond two octaves is not tried: only the rests agree
    far = sounding + shift(sounding, steps=64, transpose=25)
    assert M.phrase_similarity(far, 8) == pytest.approx(8 / 64)
    assert M.phrase_similarity(sounding + shift(sounding, steps=64, transpose=-24), 8) == 1.0


def test_phrase_novelty_finds_copied_phrases():
    rng = np.random.default_rng(0)
    training = random_bars(rng, 20)
    index = M.build_phrase_index([training, (random_bars(rng, 6), 10)])
    copied = [Note(n.pitch, n.start - 48, n.end - 48) for n in training if 48 <= n.start < 112]  # bars 3..6
    assert M.phrase_novelty([copied], index) == 1.0
    assert M.phrase_novelty([shift(copied, transpose=-5)], index) == 1.0  # up to transposition
    moved = [Note(n.pitch, n.start + 2, n.end + 2) for n in copied[:-1]] + [Note(copied[-1].pitch, copied[-1].start + 2, copied[-1].end)]
    assert M.phrase_novelty([moved], index) == 0.0  # same pitches two steps later: a new phrase
    one_pitch = [Note(n.pitch + (n is copied[3]), n.start, n.end) for n in copied]
    assert M.phrase_novelty([one_pitch], index) == 0.0
    fresh = random_bars(np.random.default_rng(1), 4, low=40)
    assert M.phrase_novelty([fresh], index) == 0.0
    # a 16-bar window has four phrases: two copied, one fresh, one all rest (left out)
    piece = copied + shift(fresh, 64) + shift(copied, 128, transpose=2)
    assert M.phrase_novelty([piece], index) == pytest.approx(2 / 3)
    assert math.isnan(M.phrase_novelty([[]], index))


def test_aggregate_leaves_out_undefined_values():
    items = [("Q1", {"a": 1.0, "b": float("nan")}), ("Q1", {"a": 3.0, "b": float("nan")}), ("Q2", {"a": 2.0, "b": 0.5})]
    agg = M.aggregate(items)
    assert agg["Q1"]["mean"] == {"a": 2.0, "b": None} and agg["Q1"]["valid"] == {"a": 2, "b": 0}
    assert agg["all"]["mean"]["b"] == 0.5 and agg["all"]["valid"]["b"] == 1 and agg["all"]["n"] == 3


def test_repetition_metrics_are_fast():
    import time

    melody = random_bars(np.random.default_rng(2), 16)
    t0 = time.perf_counter()
    for _ in range(20):
        M.rhythm_repeat(melody, 16), M.motif_repeat(melody, 16), M.phrase_similarity(melody, 16)
    assert (time.perf_counter() - t0) / 20 < 0.005
