from __future__ import annotations

import math

import numpy as np
import pytest

from facetune.music import metrics as M
from facetune.music.pianoroll import Note

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_scale_melody_metrics():
    notes = [Note(p, 2 * i, 2 * i + 2) for i, p in enumerate(C_MAJOR)]
    s = M.summarize(notes, 1)
    assert s["scale_consistency"] == 1.0 and s["key"] == "C major" and s["mode_score"] > 0
    assert s["empty_beat_rate"] == 0.0 and s["polyphony"] == 1.0 and s["pitch_range"] == 12
    assert s["notes_per_bar"] == 8 and s["onsets_per_beat"] == 2


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
