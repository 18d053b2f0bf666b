from __future__ import annotations


import pretty_midi
import pytest

from facetune.music.composer import compose_emotion, load_generator, write_midi
from facetune.errors import FacetuneError
from facetune.music.chords import chord_pitch_classes, scale_pitch_classes, KEY_NAMES

from conftest import parse_chord
from facetune.music.pianoroll import BAR_WIDTH, STEPS_PER_BAR


@pytest.fixture(scope="module")
def gen(tiny_generator):
    return load_generator(str(tiny_generator))


def test_sixteen_real_bars_of_four_four(gen, tmp_path):
    comp = compose_emotion("happy", gen, seed=3)
    assert comp.rolls.shape == (16, STEPS_PER_BAR, BAR_WIDTH) and len(comp.chords) == 16
    out = write_midi(comp, tmp_path / "a.mid")
    pm = pretty_midi.PrettyMIDI(str(out))
    assert [i.name for i in pm.instruments] == ["Melody", "Chords"]
    assert (pm.time_signature_changes[0].numerator, pm.time_signature_changes[0].denominator) == (4, 4)
    bar = 4 * 60.0 / comp.tempo
    assert pm.get_end_time() == pytest.approx(16 * bar, abs=1e-3)  # the chord track fills all 16 bars
    assert max(n.end for n in pm.instruments[0].notes) <= 16 * bar + 1e-6


def test_seed_gives_byte_identical_midi(gen):
    a = compose_emotion("sad", gen, seed=7).midi_bytes()
    b = compose_emotion("sad", gen, seed=7).midi_bytes()
    c = compose_emotion("sad", gen, seed=8).midi_bytes()
    assert a == b and a != c


def test_melody_stays_in_key_over_the_chords(gen):
    for emotion in ("happy", "sad", "angry", "calm"):
        comp = compose_emotion(emotion, gen, seed=1)
        key = KEY_NAMES.index(comp.key)
        scale = set(scale_pitch_classes(key))
        for n in comp.melody:
            assert n.pitch % 12 in scale
        tonic, mode = comp.key.split()
        assert comp.chords[-1] == tonic + ("m" if mode == "minor" else "")
        assert comp.key.endswith("major") == (emotion in ("happy", "calm"))


def test_chord_track_plays_the_progression(gen):
    comp = compose_emotion("angry", gen, seed=2)
    for b, name in enumerate(comp.chords):
        tones = set(chord_pitch_classes(parse_chord(name)))
        in_bar = [n for n in comp.accompaniment if b * STEPS_PER_BAR <= n.start < (b + 1) * STEPS_PER_BAR]
        assert in_bar and {n.pitch % 12 for n in in_bar} <= tones


def test_emotion_sets_tempo_and_bars(gen):
    assert compose_emotion("sad", gen).tempo < compose_emotion("happy", gen).tempo
    assert compose_emotion("Q2", gen, bars=4, tempo=99).tempo == 99
    assert compose_emotion("neutral", gen, bars=4).quadrant == "Q4"
    with pytest.raises(FacetuneError):
        compose_emotion("bored", gen)


def test_existing_output_needs_force(gen, tmp_path):
    comp = compose_emotion("happy", gen, bars=2)
    target = tmp_path / "x.mid"
    target.write_bytes(b"keep")
    with pytest.raises(FacetuneError, match="--force"):
        write_midi(comp, target)
    assert target.read_bytes() == b"keep"
    write_midi(comp, target, force=True)
    assert pretty_midi.PrettyMIDI(str(target)).instruments


def _last_note_in_bar(comp, bar):
    inside = [n for n in comp.melody if bar * STEPS_PER_BAR <= n.start < (bar + 1) * STEPS_PER_BAR]
    return max(inside, key=lambda n: n.start) if inside else None


@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "calm"])
def test_song_ends_on_a_tonic_chord_tone_and_holds_it(gen, emotion):
    for seed in range(4):
        comp = compose_emotion(emotion, gen, seed=seed)
        last = _last_note_in_bar(comp, 15)
        tonic = parse_chord(comp.chords[-1])
        assert last is not None and last.pitch % 12 in chord_pitch_classes(tonic)
        assert last.end == 16 * STEPS_PER_BAR  # held to the end of the song
        assert comp.key.split()[0] == comp.chords[-1].rstrip("m")


def test_half_cadence_in_the_middle(gen):
    for seed in range(4):
        comp = compose_emotion("happy", gen, seed=seed)
        key_root = KEY_NAMES.index(comp.key) % 12
        assert parse_chord(comp.chords[7]) == (key_root + 7) % 12  # V, major
        last = _last_note_in_bar(comp, 7)
        assert last is None or last.pitch % 12 in chord_pitch_classes(parse_chord(comp.chords[7]))


def test_form_is_chosen_per_seed_and_can_be_set(gen):
    from facetune.music.form import FORMS

    forms = {compose_emotion("sad", gen, seed=s, bars=16).form for s in range(12)}
    assert len(forms) >= 2 and forms <= set(FORMS)
    comp = compose_emotion("sad", gen, seed=1, form="ABAB'")
    assert comp.form == "ABAB'"
    assert comp.chords[8:11] == comp.chords[0:3] and comp.chords[4:7] == comp.chords[12:15]
    with pytest.raises(FacetuneError, match="form"):
        compose_emotion("sad", gen, seed=1, form="A?")


def test_network_emotion_changes_only_the_melody(gen):
    a = compose_emotion("sad", gen, seed=5)
    b = compose_emotion("sad", gen, seed=5, network_emotion="happy")
    assert (a.key, a.chords, a.tempo, a.form) == (b.key, b.chords, b.tempo, b.form)


def test_raw_network_without_scale_mask_reports_no_changes(gen):
    from facetune.music.composer import DecodeSettings

    comp = compose_emotion("angry", gen, seed=2, settings=DecodeSettings(scale_mask=False, cadences=False))
    assert comp.mask_changes == 0
    masked = compose_emotion("angry", gen, seed=2)
    assert masked.mask_changes >= 0


@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "calm"])
def test_the_melody_is_the_top_voice(gen, emotion):
    comp = compose_emotion(emotion, gen, seed=4)
    for n in comp.melody:
        under = [a.pitch for a in comp.accompaniment if a.start <= n.start < a.end]
        assert all(p < n.pitch for p in under), (n, under)


def test_voicing_stays_under_a_low_melody():
    from facetune.music.composer import LOWEST_CHORD_TONE, _voicing

    assert _voicing(0) == (52, 55, 60)  # C major nearest the centre (A3) when the melody is high
    low = _voicing(0, ceiling=55)
    assert max(low) < 55 and min(low) >= LOWEST_CHORD_TONE and sorted(p % 12 for p in low) == [0, 4, 7]
    assert all(p < 44 for p in _voicing(0, ceiling=44))  # no triad fits: only the tones below the melody


def test_voicing_leaves_out_a_chord_tone_the_held_tune_rubs():
    from facetune.music.composer import _melody_by_bar, _yield_to_tune
    from facetune.music.pianoroll import Note

    g_major = (55, 59, 62)  # G B D, root G
    assert _yield_to_tune(g_major, 7, {0}) == (55, 62)  # C held over G: the third B goes (a sus chord)
    assert _yield_to_tune(g_major, 7, {8}) == g_major  # G# over G: the root stays
    assert _yield_to_tune(g_major, 7, {2, 7}) == g_major  # chord tones held: nothing rubs
    low, held = _melody_by_bar([Note(60, 0, 3), Note(62, 4, 6), Note(74, 8, 10), Note(64, 14, 20)], 2)
    assert held == [{2}, {4}]  # D sounds 4 steps in all (two octaves), C 3; E 2 in bar 0 and 4 in bar 1
    assert low == [60, 64]  # the lowest pitch sounding in each bar
    assert _melody_by_bar([Note(64, 12, 20)], 2) == ([64, 64], [{4}, {4}])  # a note across the bar line counts in both
    assert _melody_by_bar([Note(64, 0, 4)], 2)[0] == [64, 128]  # a bar where the melody rests


def test_accompaniment_never_sounds_a_semitone_under_a_held_tune_note(gen):
    from facetune.music.composer import HELD_STEPS

    for emotion in ("happy", "angry", "sad", "calm"):
        comp = compose_emotion(emotion, gen, seed=3)
        for b in range(comp.bars):
            o = b * STEPS_PER_BAR
            steps = [0] * 12
            for n in comp.melody:
                steps[n.pitch % 12] += max(0, min(n.end, o + STEPS_PER_BAR) - max(n.start, o))
            root = parse_chord(comp.chords[b])
            root = None if root is None else chord_pitch_classes(root)[0]
            chord = {a.pitch % 12 for a in comp.accompaniment if o <= a.start < o + STEPS_PER_BAR} - {root}
            assert not {pc for pc in range(12) if steps[pc] >= HELD_STEPS} & {(c + 1) % 12 for c in chord}, (emotion, b)


def test_the_network_is_asked_for_the_emotion_register_and_density(gen):
    from facetune.music.composer import CONTROL_JITTER, STYLES, _plan_song

    for emotion, q in (("happy", "Q1"), ("sad", "Q3")):
        plan = _plan_song(emotion, bars=16, seed=3, tempo=None, form=None, network_emotion=None)
        assert abs(plan.controls[0] - STYLES[q].register) <= CONTROL_JITTER[0]
        assert abs(plan.controls[1] - STYLES[q].density) <= CONTROL_JITTER[1]
    told = _plan_song("sad", bars=16, seed=3, tempo=None, form=None, network_emotion="happy")
    assert abs(told.controls[0] - STYLES["Q1"].register) <= CONTROL_JITTER[0]  # the ablation tells the network another emotion
    assert STYLES["Q3"].register <= STYLES["Q1"].register - 3


def test_happy_is_played_detached_and_sad_legato():
    import numpy as np

    from facetune.music.composer import STYLES, _perform
    from facetune.music.pianoroll import Note

    written = [Note(60, 0, 2), Note(62, 2, 6), Note(64, 6, 7), Note(65, 7, 15), Note(67, 16, 18), Note(65, 18, 20), Note(64, 20, 22)]
    happy = _perform(written, STYLES["Q1"], np.random.default_rng(0))
    sad = _perform(written, STYLES["Q3"], np.random.default_rng(0))
    assert [(n.pitch, n.start) for n in happy] == [(n.pitch, n.start) for n in written]
    # half of an off-beat note of up to a beat sounds (at least one step); notes on a beat, a long
    # note and the last one are held
    assert [n.end - n.start for n in happy] == [2, 2, 1, 8, 2, 1, 2]
    assert [(n.start, n.end) for n in sad] == [(n.start, n.end) for n in written]
