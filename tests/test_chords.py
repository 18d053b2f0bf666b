from __future__ import annotations

import numpy as np
import pytest

from facetune.music import chords as C

from conftest import parse_chord


def hist(*pcs):
    h = np.zeros(12)
    for p in pcs:
        h[p % 12] += 1
    return h


def test_estimate_triads_and_no_chord():
    assert C.chord_name(C.estimate_chord(hist(0, 4, 7))) == "C"
    assert C.chord_name(C.estimate_chord(hist(9, 0, 4))) == "Am"
    assert C.chord_name(C.estimate_chord(hist(7, 11, 2, 7))) == "G"
    assert C.estimate_chord(np.zeros(12)) == C.NO_CHORD
    assert C.estimate_chord(hist(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)) == C.NO_CHORD


def test_names_parse_and_transpose():
    for i in range(C.N_CHORDS):
        assert parse_chord(C.chord_name(i)) == i
        assert C.transpose_chord(C.transpose_chord(i, 5), -5) == i
    assert C.chord_name(C.transpose_chord(parse_chord("Am"), 3)) == "Cm"
    with pytest.raises(ValueError):
        parse_chord("H7")


def test_key_estimation_and_mode():
    c_major = hist(0, 0, 2, 4, 4, 5, 7, 7, 9, 11)
    a_minor = hist(9, 9, 11, 0, 0, 2, 4, 4, 5, 7, 9)
    assert C.KEY_NAMES[C.estimate_key(c_major)[0]] == "C major"
    assert C.KEY_NAMES[C.estimate_key(a_minor)[0]] == "A minor"
    assert C.mode_score(c_major) > 0 > C.mode_score(a_minor)


@pytest.mark.parametrize("quadrant", ["Q1", "Q2", "Q3", "Q4"])
def test_progressions_fit_their_mode(quadrant):
    rng = np.random.default_rng(3)
    cad = {7: "half", 15: "full"}
    prog = C.progression(quadrant, 2, list("AABA"), 16, rng, cad)
    assert len(prog) == 16
    mode = C.quadrant_mode(quadrant)
    tonic = C.chord_index(2, "maj" if mode == "major" else "min")
    assert prog[-1] == tonic and prog[0] in (tonic, C.chord_index(2 + 5, "min"), C.chord_index(2 + 5, "maj"))
    assert prog == C.progression(quadrant, 2, list("AABA"), 16, np.random.default_rng(3), cad)
    assert prog[7] == C.chord_index(2 + 7, "maj")  # half cadence in the middle
    assert prog[:3] == prog[4:7] == prog[12:15]  # a restated phrase keeps its chords
    assert prog[8:12] != prog[:4]
    scale = set(C.scale_pitch_classes(C.key_index(2, mode)))
    for ch in prog:
        outside = [pc for pc in C.chord_pitch_classes(ch) if pc not in scale]
        # minor keys borrow the raised 7th for V and the flat 2nd for the Phrygian bII
        assert len(outside) <= 1



def test_masks():
    key = C.key_index(9, "minor")
    assert C.allowed_pitch_mask(key, 60, 12).tolist() == [pc in (9, 11, 0, 2, 4, 5, 7) for pc in range(12)]
    assert C.chord_tone_mask(parse_chord("E"), 60, 12).tolist() == [pc in (4, 8, 11) for pc in range(12)]


def _progression_chords(key: int) -> set[int]:
    """Every chord a song in `key` can have: its quadrants' progressions and the cadence chords."""
    root = key % 12
    quadrants = ("Q1", "Q4") if key < 12 else ("Q2", "Q3")
    out = {C.chord_index(root + r, q) for quad in quadrants for prog in C.PROGRESSIONS[quad] for r, q in prog}
    return out | {C.chord_index(root + 7, "maj"), C.chord_index(root, "maj" if key < 12 else "min")}


@pytest.mark.parametrize("key", range(24))
def test_chords_are_spelled_in_their_key(key):
    sig = C.key_signature(key)
    scale_names = {pc: C.spell_root(pc, key) for pc in C.scale_pitch_classes(key)}
    assert len({n[0] for n in scale_names.values()}) == 7  # one letter per scale degree
    for chord in _progression_chords(key):
        name = C.chord_name(chord, key)
        root = name[:-1] if name.endswith("m") else name
        assert parse_chord(name) == chord
        if chord % 12 in scale_names:
            assert root == scale_names[chord % 12]
        # no accidental against the signature: no flat in a sharp key, no sharp in a flat key
        assert not (sig > 0 and "b" in root) and not (sig < 0 and "#" in root), (C.KEY_NAMES[key], name)


def test_the_misspellings_users_saw_are_gone():
    names = lambda key_name, *chords: [C.chord_name(parse_chord(c), C.KEY_NAMES.index(key_name)) for c in chords]  # noqa: E731
    assert names("F# major", "Abm", "D#m") == ["G#m", "D#m"]
    assert names("Ab major", "C#") == ["Db"]
    assert names("B major", "Abm", "Ebm") == ["G#m", "D#m"]
    assert names("Eb minor", "B") == ["Cb"]
    assert names("G# minor", "F#", "E") == ["F#", "E"]  # the key a musician writes for Ab minor
    assert "C# major" not in C.KEY_NAMES and "Db major" in C.KEY_NAMES and "Ab minor" not in C.KEY_NAMES
    assert [C.key_signature(C.KEY_NAMES.index(k)) for k in ("Db major", "F# major", "Eb minor", "G# minor", "A minor")] == [-5, 6, -6, 5, 0]


def test_the_midi_key_signature_is_the_key_as_named():
    from facetune.music.midi_file import KEY_SIGNATURES, midi_bytes, read_back

    for key, name in enumerate(C.KEY_NAMES):
        assert KEY_SIGNATURES[key] == (C.key_signature(key), int(name.endswith("minor"))), name
        assert read_back(midi_bytes([("Melody", [])], tempo=100, key_number=key)).key_number == key


def test_mode_scores_of_many_histograms_equal_one_at_a_time():
    rng = np.random.default_rng(0)
    hists = np.vstack([rng.integers(0, 40, (50, 12)), np.zeros((1, 12)), np.full((1, 12), 3)]).astype(float)
    assert np.allclose(C.mode_scores(hists), [C.mode_score(h) for h in hists], atol=1e-12)
