"""`mode_mirror`: every song also in its parallel mode, with its chords, key, links and clip."""
from __future__ import annotations

import numpy as np

from facetune.music.chords import NO_CHORD, chord_index, mode_score
from facetune.music.mode_mirror import mirror_arrays, mirror_chord
from facetune.music.pianoroll import LOW_PITCH


def test_chords_move_to_the_parallel_mode_and_stay_in_its_scale():
    major_to_minor = {chord_index(r, q): chord_index(r2, q2) for (r, q), (r2, q2) in [
        ((0, "maj"), (0, "min")), ((5, "maj"), (5, "min")), ((7, "maj"), (7, "min")),
        ((9, "min"), (8, "maj")), ((4, "min"), (3, "maj")), ((2, "min"), (10, "maj")),
    ]}
    for chord, expected in major_to_minor.items():
        assert mirror_chord(chord, 0, to_minor=True) == expected
    assert mirror_chord(chord_index(8, "maj"), 0, to_minor=False) == chord_index(9, "min")  # bVI → vi
    assert mirror_chord(chord_index(7, "maj"), 0, to_minor=False) == chord_index(7, "maj")  # V stays V
    assert mirror_chord(chord_index(2, "maj"), 2, to_minor=True) == chord_index(2, "min")  # in D: I → i
    assert mirror_chord(NO_CHORD, 0, to_minor=True) == NO_CHORD


def _two_songs() -> tuple[dict[str, np.ndarray], dict]:
    """A C-major tune (C E G A B, two bars, the second restating the first) and an A-minor one."""
    pitch = np.full((3, 16), -1, np.int8)
    onset = np.zeros((3, 16), np.uint8)
    for row, notes in enumerate([(60, 64, 67, 69), (60, 64, 67, 71), (69, 72, 76, 79)]):
        pitch[row] = np.repeat(np.array(notes) - LOW_PITCH, 4)
        onset[row, ::4] = 1
    arrays = {
        "pitch": pitch, "onset": onset, "chord": np.array([0, 7, 21], np.int8), "key": np.array([0, 0, 21], np.int8),
        "prev": np.array([-1, 0, -1], np.int32), "ref": np.array([-1, 0, -1], np.int32), "clip": np.array([0, 0, 1], np.int32),
        "quadrant": np.full(3, 4, np.int8), "transpose": np.zeros(3, np.int8),
    }
    return arrays, {"clips": [{"name": "a", "bpm": 100}, {"name": "b", "bpm": 80}]}


def test_every_row_gets_a_parallel_copy_with_its_links_and_clip():
    arrays, manifest = _two_songs()
    out, man = mirror_arrays(arrays, manifest)
    assert all(len(v) == 6 for v in out.values())
    assert all(np.array_equal(out[k][:3], v) for k, v in arrays.items())  # the real songs unchanged
    assert out["prev"][3:].tolist() == [-1, 3, -1] and out["ref"][3:].tolist() == [-1, 3, -1]
    assert out["clip"][3:].tolist() == [2, 2, 3] and [c["bpm"] for c in man["clips"]] == [100, 80, 100, 80]
    assert out["key"][3:].tolist() == [12, 12, 9]  # C minor, C minor, A major
    assert out["chord"][3:].tolist() == [12, 19, 9]  # Cm, Gm, A
    assert np.array_equal(out["onset"][3:], arrays["onset"])  # rhythm kept
    midi = lambda row: (out["pitch"][row, ::4].astype(int) + LOW_PITCH).tolist()  # noqa: E731
    assert midi(3) == [60, 63, 67, 68] and midi(4) == [60, 63, 67, 70]  # E→Eb, A→Ab, B→Bb
    assert midi(5) == [69, 73, 76, 80]  # A minor → A major: C→C#, G→G#


def test_a_mirrored_major_tune_leans_minor():
    arrays, manifest = _two_songs()
    arrays["pitch"][:2] = np.array([60] * 8 + [64] * 4 + [67] * 4) - LOW_PITCH  # C (long) E G
    out, _ = mirror_arrays(arrays, manifest)
    hist = lambda rows: np.bincount((out["pitch"][rows].ravel().astype(int) + LOW_PITCH) % 12, minlength=12).astype(float)  # noqa: E731
    assert mode_score(hist([0, 1])) > 0.1 and mode_score(hist([3, 4])) < -0.1


def test_pitches_that_would_leave_the_range_stay():
    arrays, manifest = _two_songs()
    arrays["pitch"][2, :] = 47  # MIDI 95 = B, a 2nd above A in A minor: unmoved
    arrays["pitch"][0, :] = 4 + 12 * 3  # MIDI 88 = E in C major → Eb
    out, _ = mirror_arrays(arrays, manifest)
    assert (out["pitch"][5] == 47).all() and (out["pitch"][3] == 39).all()


def test_training_arrays_with_the_mirror_hold_both_modes_and_a_head_trains_on_them(music_cache, tiny_generator, tmp_path):
    from facetune.music.dataset import load_music_cache
    from facetune.music.train import GanConfig, training_arrays
    from facetune.music.train_note_head import NoteHeadConfig, train_note_head

    manifest, arrays = load_music_cache(music_cache)
    both = training_arrays(arrays, manifest, GanConfig(mode_mirror=True))
    n = len(arrays["pitch"])
    assert len(both["pitch"]) == 2 * n and len(both["controls"]) == 2 * n
    assert np.array_equal(both["key"][n:] >= 12, arrays["key"] < 12)  # every copy in the other mode
    result = train_note_head(music_cache, tiny_generator, tmp_path / "head", NoteHeadConfig(hidden=8, epochs=1, steps_per_epoch=2, batch_size=16, val_bars=32, mode_mirror=True))
    assert result["epochs"] == 1 and np.isfinite(result["history"][0]["val_ce"])
