"""melody_line: every measure on hand-made melodies whose values are known (no shared data)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from facetune.music import melody_line as ML
from facetune.music.pianoroll import Note


def line(pitches, length=2, start=0):
    """Consecutive notes of one length from `start`."""
    return [Note(p, start + i * length, start + (i + 1) * length) for i, p in enumerate(pitches)]


def test_scale_is_all_steps():
    notes = line([60, 62, 64, 65, 67, 69, 71, 72])  # one bar of eighths
    s = ML.melody_line_stats(notes, 1)
    assert 1 <= s["mean_interval"] <= 2 and s["mean_interval"] == pytest.approx(12 / 7)
    assert s["steps"] == 1 and s["leaps"] == 0 and s["octave_leaps"] == 0 and s["spikes"] == 0
    assert s["range"] == 12 and s["largest_leap"] == 2 and s["mean_pitch"] == pytest.approx(np.mean([60, 62, 64, 65, 67, 69, 71, 72]))
    assert s["note_count"] == 8 and s["mean_ioi_beats"] == 0.5
    assert s["offbeat_and"] == 0.5 and s["and_of_2"] == 1 / 8 and s["and_of_4"] == 1 / 8
    assert s["longest_pitch_run"] == 1 and s["polyphony_max"] == 1
    assert math.isnan(s["leap_recovery"]) and math.isnan(s["below_accompaniment"]) and math.isnan(s["literal_copies"])
    assert s["silent_bars"] == 0 and s["notes_per_bar_sd"] == 0


def test_octave_blip_is_a_spike_and_a_recovered_leap_is_not():
    blip = ML.melody_line_stats(line([60, 62, 76, 64, 65]), 1)
    assert blip["spikes"] == pytest.approx(1 / 3)  # 76 is 14 above 62 and 12 above 64
    assert blip["octave_leaps"] == pytest.approx(1 / 4) and blip["largest_leap"] == 14
    assert blip["leaps"] == pytest.approx(2 / 4) and blip["leap_recovery"] == 0.5  # 62→76 is followed by a leap, 76→64 by a step up
    # A leap up a sixth, then a step down: no spike (the next note is only 2 below), leap recovered.
    sixth = ML.melody_line_stats(line([60, 69, 67, 65]), 1)
    assert sixth["spikes"] == 0 and sixth["leap_recovery"] == 1 and sixth["leaps"] == pytest.approx(1 / 3)
    # A dip: both neighbours a fifth or more above is a spike too.
    assert ML.melody_line_stats(line([67, 60, 67]), 1)["spikes"] == 1
    # Neighbours on opposite sides (a run up by fifths) are not spikes.
    assert ML.melody_line_stats(line([48, 55, 62, 69]), 1)["spikes"] == 0


def test_copied_bar_is_a_literal_copy_and_four_copies_loop():
    bar = line([60, 64, 67, 64], length=4)
    moved = [Note(n.pitch + 2, n.start, n.end) for n in bar]  # transposed: a motif repeat, not a literal copy
    def at(b, notes):
        return [Note(n.pitch, n.start + 16 * b, n.end + 16 * b) for n in notes]
    s = ML.melody_line_stats(bar + at(1, bar) + at(2, moved) + at(3, bar), 4)
    assert s["literal_copies"] == pytest.approx(2 / 3) and s["looped_phrases"] == 0
    loop = ML.melody_line_stats(bar + at(1, bar) + at(2, bar) + at(3, bar), 4)
    assert loop["literal_copies"] == 1 and loop["looped_phrases"] == 1
    assert loop["longest_pitch_run"] == 1 and loop["notes_per_bar_sd"] == 0


def test_accompaniment_above_the_melody_counts():
    melody = line([60, 62, 64, 65], length=4)
    low = [Note(48, 0, 16), Note(52, 0, 16)]
    high = [Note(48, 0, 8), Note(67, 0, 8)]  # above the first two melody notes only
    assert ML.melody_line_stats(melody, 1, accompaniment=low)["below_accompaniment"] == 0
    assert ML.melody_line_stats(melody, 1, accompaniment=high)["below_accompaniment"] == 0.5
    assert ML.melody_line_stats(melody, 1, accompaniment=[])["below_accompaniment"] == 0


def test_window_silence_runs_and_polyphony():
    # The window starts at the first bar with a note (bar 2 here); bar 3 of the window is silent.
    notes = [Note(60, 32, 36), Note(60, 36, 40), Note(60, 40, 44), Note(62, 48, 64), Note(64, 80, 84)]
    s = ML.melody_line_stats(notes, 6)
    assert s["note_count"] == 5 and s["silent_bars"] == pytest.approx(1 / 4)
    assert s["longest_pitch_run"] == 3 and s["mean_interval"] == pytest.approx(1.0)
    assert s["notes_per_bar_sd"] == pytest.approx(np.std([3, 1, 0, 1]))
    assert s["mean_ioi_beats"] == pytest.approx((80 - 32) / 4 / 4)
    held = ML.melody_line_stats([Note(60, 0, 32), Note(64, 20, 22)], 2)  # a note held over bar 2 (not silent), a second voice
    assert held["silent_bars"] == 0 and held["polyphony_max"] == 2
    # Only the first 16 bars from the first note are measured.
    long = [Note(60 + (b % 2) * 12, 16 * b, 16 * b + 4) for b in range(20)]
    assert ML.melody_line_stats(long, 20)["note_count"] == 16


def test_empty_melody_is_nan_not_an_error():
    s = ML.melody_line_stats([], 16)
    assert s["note_count"] == 0 and math.isnan(s["mean_interval"]) and math.isnan(s["range"])


def test_yang_lerch_features():
    notes = line([60, 62, 62, 67], length=2) + [Note(72, 8, 16)]
    f = ML.yang_lerch_features(notes, 1)
    assert list(f) == list(ML.YL_NAMES) and len(f) == 13
    assert f["pitch_count"][0] == 4 and f["pitch_range"][0] == 12 and f["note_count"][0] == 5
    assert f["mean_interval"][0] == pytest.approx((2 + 0 + 5 + 5) / 4)
    assert f["pitch_class_histogram"].shape == (12,) and f["pitch_class_histogram"].sum() == pytest.approx(1)
    assert f["pitch_class_histogram"][0] == pytest.approx(2 / 5) and f["pitch_class_histogram"][2] == pytest.approx(2 / 5)
    assert f["pitch_class_transition"].shape == (144,) and f["pitch_class_transition"][2 * 12 + 2] == pytest.approx(1 / 4)
    nlh = f["note_length_histogram"]
    assert nlh.shape == (8,) and nlh[1] == pytest.approx(4 / 5) and nlh[5] == pytest.approx(1 / 5)  # four 8ths, one half note
    assert f["note_length_transition"].shape == (64,) and f["note_length_transition"][1 * 8 + 5] == pytest.approx(1 / 4)
    assert f["step_share"][0] == 0.5 and f["leap_share"][0] == 0.5 and f["longest_pitch_run"][0] == 2
    assert f["mean_ioi"][0] == pytest.approx(0.5)


def test_overlap_area_same_and_different_sets():
    rng = np.random.default_rng(0)
    def melodies(lo, hi, k):
        return [ML.yang_lerch_features(line(rng.integers(lo, hi, 12).tolist()), 2) for _ in range(k)]
    a, b = melodies(60, 72, 60), melodies(60, 72, 60)
    same = ML.overlap_area(a, b)
    assert set(same) == set(ML.YL_NAMES) | {"mean"} and same["mean"] > 0.8
    far = ML.overlap_area(melodies(30, 90, 60), b)
    assert far["mean"] < same["mean"] and far["pitch_range"] < 0.3
    # Two identical point masses overlap fully; two distant ones not at all.
    assert ML.distribution_overlap(np.zeros(10), np.zeros(10)) == pytest.approx(1, abs=1e-3)
    assert ML.distribution_overlap(np.zeros(10), np.full(10, 5.0)) == pytest.approx(0, abs=1e-6)
    x = rng.normal(0, 1, 500)
    assert ML.distribution_overlap(x, x + 0.0) == pytest.approx(1, abs=1e-6)


def test_kde_on_grid_matches_the_direct_sum():
    rng = np.random.default_rng(1)
    x = rng.gamma(2, 1, 300)
    bw = ML._scott(x)
    grid = np.linspace(-2, 15, 4096)
    direct = np.exp(-0.5 * ((grid[:, None] - x[None]) / bw) ** 2).sum(1) / (len(x) * bw * math.sqrt(2 * math.pi))
    assert np.abs(ML._kde_on_grid(x, grid, bw) - direct).max() < 1e-3


def test_pop909_reference_reads_the_structure_layout(tmp_path):
    for k, rows in enumerate(["0 16\n60 4\n62 4\n64 8\n", "67 16\n65 16\n", "72 4\n0 4\n72 8\n"]):
        d = tmp_path / f"{k + 1:03d}"
        d.mkdir()
        (d / "melody.txt").write_text(rows)
    (tmp_path / "004").mkdir()  # no melody.txt: not a song
    ref = ML.pop909_reference(tmp_path, n=2, seed=0)
    other = ML.pop909_reference(tmp_path, n=2, seed=0, skip=2)
    assert len(ref) == 2 and len(other) == 1 and not {r[0] for r in ref} & {r[0] for r in other}
    assert [r[0] for r in ref] == sorted(r[0] for r in ref)
    notes, bars = ML.pop909_melody(tmp_path / "001")
    assert notes == [Note(60, 16, 20), Note(62, 20, 24), Note(64, 24, 32)] and bars == 2
    s = ML.melody_line_stats(notes, bars)
    assert s["note_count"] == 3 and s["silent_bars"] == 0  # the window starts at bar 1, the first with a note
