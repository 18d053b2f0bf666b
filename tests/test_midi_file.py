"""Our direct MIDI writer/reader against pretty_midi and mido: same song, same reading, much cheaper."""
from __future__ import annotations

import io
import struct

import mido
import numpy as np
import pretty_midi
import pytest

from facetune.music.midi_file import KEY_SIGNATURES, MidiSummary, midi_bytes, read_back
from facetune.music.pianoroll import STEPS_PER_BAR, Note

TEMPOS = (60.0, 66.5, 90.0, 120.0, 126.0, 137.3, 180.0)


def random_melody(rng: np.random.Generator, bars: int) -> list[Note]:
    """Monophonic notes and rests on the step grid, some repeated pitches back to back."""
    notes, t, end = [], int(rng.integers(0, 4)), bars * STEPS_PER_BAR
    pitch = int(rng.integers(55, 80))
    while t < end - 1:
        d = int(rng.choice([1, 2, 2, 3, 4, 4, 6, 8]))
        if rng.random() > 0.15:
            pitch = pitch if rng.random() < 0.2 else int(np.clip(pitch + rng.integers(-5, 6), 0, 127))
            notes.append(Note(pitch, t, min(t + d, end), int(rng.integers(1, 128))))
        t += d
    return notes


def random_chords(rng: np.random.Generator, bars: int) -> list[Note]:
    """Overlapping chord notes (no pitch overlaps itself), in shuffled order."""
    busy: dict[int, int] = {}
    notes = []
    for _ in range(bars * 6):
        start = int(rng.integers(0, bars * STEPS_PER_BAR - 1))
        stop = min(bars * STEPS_PER_BAR, start + int(rng.integers(1, 17)))
        for pitch in rng.choice(np.arange(30, 80), size=int(rng.integers(2, 5)), replace=False).tolist():
            if busy.get(pitch, -1) <= start:
                notes.append(Note(pitch, start, stop, int(rng.integers(1, 128))))
                busy[pitch] = stop
    order = rng.permutation(len(notes))
    return [notes[i] for i in order]


def realistic_song() -> list[tuple[str, list[Note]]]:
    """16 bars: ~70 melody notes, a bass whole note plus a triad on every beat (208 chord notes)."""
    rng = np.random.default_rng(2024)
    melody, t = [], 0
    while t < 16 * STEPS_PER_BAR:
        d = int(rng.choice([2, 4, 4, 4, 6]))
        melody.append(Note(int(rng.integers(60, 80)), t, min(t + d, 16 * STEPS_PER_BAR), int(rng.integers(70, 110))))
        t += d
    chords = []
    for b in range(16):
        root = int(rng.integers(0, 12))
        o = b * STEPS_PER_BAR
        chords.append(Note(36 + root, o, o + STEPS_PER_BAR, 74))
        chords += [Note(52 + (root + i) % 12, o + 4 * beat, o + 4 * beat + 4, 64) for beat in range(4) for i in (0, 4, 7)]
    return [("Melody", melody), ("Chords", chords)]


def pretty_midi_bytes(tracks: list[tuple[str, list[Note]]], tempo: float, key_number: int) -> bytes:
    """What facetune's Composition.to_midi + write did before (pretty_midi's own writer)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(tempo))
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    step = 60.0 / tempo / 4
    for name, notes in tracks:
        inst = pretty_midi.Instrument(program=0, name=name)
        inst.notes = [pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=n.start * step, end=n.end * step) for n in notes]
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def pm_notes(inst: pretty_midi.Instrument) -> list[tuple[float, int, float, int]]:
    return sorted((n.start, n.pitch, n.end, n.velocity) for n in inst.notes)


def usec(tempo: float) -> int:
    return round(60e6 / tempo)


def assert_same_reading(ours: pretty_midi.PrettyMIDI, theirs: pretty_midi.PrettyMIDI, tempo: float) -> None:
    """Same instruments and notes; times agree up to the 1 µs/beat by which the two tempo events may differ."""
    assert [(i.name, i.program, i.is_drum) for i in ours.instruments] == [(i.name, i.program, i.is_drum) for i in theirs.instruments]
    rel = 1.01 / usec(tempo)
    for a, b in zip(ours.instruments, theirs.instruments):
        na, nb = pm_notes(a), pm_notes(b)
        assert [(p, v) for _, p, _, v in na] == [(p, v) for _, p, _, v in nb]
        np.testing.assert_allclose([(s, e) for s, _, e, _ in na], [(s, e) for s, _, e, _ in nb], rtol=rel, atol=1e-12)
    assert [(k.key_number, k.time) for k in ours.key_signature_changes] == [(k.key_number, k.time) for k in theirs.key_signature_changes]
    assert [(t.numerator, t.denominator, t.time) for t in ours.time_signature_changes] == [(t.numerator, t.denominator, t.time) for t in theirs.time_signature_changes]


def mido_notes(track: mido.MidiTrack) -> tuple[set[int], list[tuple[int, int, int, int]]]:
    """(channels used, notes in ticks) of one track, pairing note-ons and offs first in, first out."""
    tick, opened, notes, channels = 0, {}, [], set()
    for msg in track:
        tick += msg.time
        if msg.type in ("note_on", "note_off", "program_change"):
            channels.add(msg.channel)
        if msg.type == "note_on" and msg.velocity > 0:
            opened.setdefault(msg.note, []).append((tick, msg.velocity))
        elif msg.type in ("note_on", "note_off"):
            start, vel = opened[msg.note].pop(0)
            notes.append((msg.note, start, tick, vel))
    return channels, sorted(notes, key=lambda n: (n[1], n[0], n[2], n[3]))


def expected_ticks(notes: list[Note], ticks_per_beat: int) -> list[tuple[int, int, int, int]]:
    k = ticks_per_beat // 4
    return sorted(((n.pitch, n.start * k, n.end * k, n.velocity) for n in notes), key=lambda n: (n[1], n[0], n[2], n[3]))


@pytest.mark.parametrize("key_number", range(24))
def test_random_songs_read_the_same_everywhere(key_number):
    rng = np.random.default_rng(key_number)
    tempo = TEMPOS[key_number % len(TEMPOS)]
    tpb = (480, 220, 96, 960)[key_number % 4]
    bars = int(rng.integers(1, 9))
    tracks = [("Melody", random_melody(rng, bars))] + ([("Chords", random_chords(rng, bars))] if key_number % 5 else [])
    data = midi_bytes(tracks, tempo=tempo, key_number=key_number, ticks_per_beat=tpb)

    ours = pretty_midi.PrettyMIDI(io.BytesIO(data))
    theirs = pretty_midi.PrettyMIDI(io.BytesIO(pretty_midi_bytes(tracks, tempo, key_number)))
    assert_same_reading(ours, theirs, tempo)
    assert [k.key_number for k in ours.key_signature_changes] == [key_number]
    assert ours.get_tempo_changes()[1].tolist() == [pytest.approx(60e6 / usec(tempo), rel=1e-12)]
    step = 60.0 / tempo / 4
    for (name, notes), inst in zip(tracks, ours.instruments):
        exact = sorted((n.start * step, n.pitch, n.end * step, n.velocity) for n in notes)
        got = pm_notes(inst)
        assert [(p, v) for _, p, _, v in got] == [(p, v) for _, p, _, v in exact]
        np.testing.assert_allclose([(s, e) for s, _, e, _ in got], [(s, e) for s, _, e, _ in exact], rtol=0.51 / usec(tempo), atol=1e-12)

    mid = mido.MidiFile(file=io.BytesIO(data))
    assert mid.type == 1 and mid.ticks_per_beat == tpb and len(mid.tracks) == len(tracks) + 1
    meta = {m.type: m for m in mid.tracks[0]}
    assert meta["set_tempo"].tempo == usec(tempo)
    ts = meta["time_signature"]
    assert (ts.numerator, ts.denominator, ts.clocks_per_click, ts.notated_32nd_notes_per_beat) == (4, 4, 24, 8)
    reference = mido.MidiFile(file=io.BytesIO(pretty_midi_bytes(tracks, tempo, key_number)))
    theirs = {m.type: m for m in reference.tracks[0]}["key_signature"].key
    # pretty_midi spells key 15 as D# minor; facetune names it Eb minor and writes that
    assert meta["key_signature"].key == ("Ebm" if key_number == 15 else theirs)
    summary = read_back(data)
    assert (summary.ticks_per_beat, summary.microseconds_per_beat, summary.time_signature, summary.key_number) == (tpb, usec(tempo), (4, 4), key_number)
    assert summary.tempo == pytest.approx(tempo, rel=0.51 / usec(tempo))
    assert [name for name, _ in summary.tracks] == [name for name, _ in tracks]
    for (name, notes), (_, got), track, ref in zip(tracks, summary.tracks, mid.tracks[1:], reference.tracks[1:]):
        channels, from_mido = mido_notes(track)
        assert got == from_mido == expected_ticks(notes, tpb)
        assert channels == mido_notes(ref)[0]  # the same channel pretty_midi gives that track
        assert track[0] == mido.MetaMessage("track_name", name=name)


def test_same_input_gives_identical_bytes_in_any_note_order():
    tracks = realistic_song()
    a = midi_bytes(tracks, tempo=126.0, key_number=9)
    shuffled = [(name, list(reversed(notes))) for name, notes in tracks]
    assert a == midi_bytes(tracks, tempo=126.0, key_number=9) == midi_bytes(shuffled, tempo=126.0, key_number=9)
    assert a != midi_bytes(tracks, tempo=126.0, key_number=10)


def test_offs_come_before_ons_at_the_same_tick_then_by_pitch():
    data = midi_bytes([("m", [Note(64, 0, 4, 90), Note(60, 0, 4, 80), Note(60, 4, 8, 70), Note(67, 4, 8, 60)])], tempo=120, key_number=0, ticks_per_beat=4)
    track = mido.MidiFile(file=io.BytesIO(data)).tracks[1]
    events = [(m.time, m.note, m.velocity) for m in track if m.type == "note_on"]
    assert events == [(0, 60, 80), (0, 64, 90), (4, 60, 0), (0, 64, 0), (0, 60, 70), (0, 67, 60), (4, 60, 0), (0, 67, 0)]
    assert [n.pitch for n in pretty_midi.PrettyMIDI(io.BytesIO(data)).instruments[0].notes].count(60) == 2


def test_realistic_song_matches_pretty_midis_writer():
    tracks = realistic_song()
    assert 60 <= len(tracks[0][1]) <= 80 and len(tracks[1][1]) == 208
    for tempo in (66.5, 126.0):
        ours = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(tracks, tempo=tempo, key_number=14)))
        theirs = pretty_midi.PrettyMIDI(io.BytesIO(pretty_midi_bytes(tracks, tempo, 14)))
        assert_same_reading(ours, theirs, tempo)
        assert ours.get_end_time() == pytest.approx(theirs.get_end_time(), rel=1.01 / usec(tempo))
        assert ours.get_end_time() == pytest.approx(16 * 4 * 60.0 / tempo, rel=0.51 / usec(tempo))
        assert [len(i.notes) for i in ours.instruments] == [len(n) for _, n in tracks]


def test_key_signatures_match_pretty_midi_for_all_24_keys():
    for key_number, (sf, minor) in enumerate(KEY_SIGNATURES):
        data = midi_bytes([("m", [Note(60, 0, 1)])], tempo=100, key_number=key_number)
        assert pretty_midi.PrettyMIDI(io.BytesIO(data)).key_signature_changes[0].key_number == key_number
        assert read_back(data).key_number == key_number
        assert struct.pack(">bB", sf, minor) in data


@pytest.mark.parametrize("key", ["Cb", "C#", "Gb", "Abm", "A#m", "Ebm", "F"])
def test_read_back_key_agrees_with_pretty_midi_on_other_spellings(key):
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("key_signature", key=key)]))
    buf = io.BytesIO()
    mid.save(file=buf)
    assert read_back(buf.getvalue()).key_number == pretty_midi.PrettyMIDI(io.BytesIO(buf.getvalue())).key_signature_changes[0].key_number


def test_empty_track_and_channels_past_the_drum_channel():
    tracks = [(f"t{i}", [Note(40 + i, i, i + 2, 50)]) for i in range(11)] + [("empty", [])]
    data = midi_bytes(tracks, tempo=90, key_number=3, program=5)
    mid = mido.MidiFile(file=io.BytesIO(data))
    assert [mido_notes(t)[0] for t in mid.tracks[1:]] == [{c} for c in (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12)]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert [i.name for i in pm.instruments] == [f"t{i}" for i in range(11)] and {i.program for i in pm.instruments} == {5}
    assert not any(i.is_drum for i in pm.instruments)
    assert read_back(data).tracks[-1] == ("empty", [])


def test_read_back_handles_what_other_writers_emit():
    """Running status, note-off (0x80) messages, sysex, text and controller events, long deltas, alien chunks."""
    body = (
        b"\x00\xff\x03\x04lead" + b"\x00\xf0\x03\x7e\x7f\xf7" + b"\x00\xff\x01\x02hi"
        + b"\x00\x91\x3c\x64" + b"\x00\x40\x50"  # note-on, then running status
        + b"\x00\xb1\x07\x64" + b"\x00\xc1\x05" + b"\x00\xe1\x00\x40" + b"\x00\xd1\x10"
        + b"\x83\x60\x81\x3c\x00" + b"\x00\x40\x00"  # 480 ticks later: note-offs, the second in running status
        + b"\x81\x80\x80\x00\x91\x3e\x20" + b"\x10\xf7\x01\x00" + b"\x00\x81\x3e\x00"  # a 4-byte delta; a sysex escape
        + b"\x00\xff\x2f\x00"
    )
    conductor = b"\x00\xff\x51\x03\x07\xa1\x20\x00\xff\x58\x04\x03\x03\x18\x08\x00\xff\x2f\x00"
    data = (b"MThd" + struct.pack(">IHHH", 6, 1, 2, 96) + b"XTRA" + struct.pack(">I", 3) + b"abc"
            + b"MTrk" + struct.pack(">I", len(conductor)) + conductor + b"MTrk" + struct.pack(">I", len(body)) + body)
    summary = read_back(data)
    assert isinstance(summary, MidiSummary)
    assert (summary.ticks_per_beat, summary.tempo, summary.time_signature, summary.key_number) == (96, 120.0, (3, 8), None)
    start = 480 + 0x200000
    assert summary.tracks == [("lead", [(60, 0, 480, 100), (64, 0, 480, 80), (62, start, start + 16, 32)])]
    assert summary.end_tick == start + 16 and summary.seconds(96) == pytest.approx(0.5)
    without_alien_chunk = data[:14] + data[25:]
    assert read_back(without_alien_chunk) == summary
    assert summary.tracks[0][1] == mido_notes(mido.MidiFile(file=io.BytesIO(without_alien_chunk)).tracks[1])[1]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(without_alien_chunk))
    assert pm_notes(pm.instruments[0]) == sorted((summary.seconds(s), p, summary.seconds(e), v) for p, s, e, v in summary.tracks[0][1])


def test_runs_of_notes_in_running_status_read_as_mido_reads_them():
    """`read_back` reads a run of notes in running status in a tighter loop while each delta time
    has one or two bytes: runs broken by three-byte deltas, note-offs (0x80), a meta event, another
    channel and a note left sounding, and overlapping notes of one pitch (first in, first out),
    read as mido does, with every delta's tick."""
    body = (
        b"\x00\x90\x3c\x40" + b"\x00\x3e\x41" + b"\x78\x3c\x00"  # on, on in running status, off
        + b"\x81\x00\x3c\x42" + b"\x81\x00\x3c\x43" + b"\x82\x80\x00\x3c\x00"  # two-byte deltas, overlapping Cs; a three-byte delta
        + b"\x00\xff\x01\x01x" + b"\x00\x3c\x00" + b"\x05\x40\x44"  # running status goes on after a meta event
        + b"\x7f\x80\x3e\x00" + b"\x83\x00\x40\x00"  # note-offs (0x80), the second in running status
        + b"\x00\x92\x45\x46" + b"\x10\x45\x00" + b"\x01\x47\x50"  # channel 2, one note left sounding
        + b"\x00\xff\x2f\x00"
    )
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480) + b"MTrk" + struct.pack(">I", len(body)) + body
    got = read_back(data).tracks[0][1]
    assert got == mido_notes(mido.MidiFile(file=io.BytesIO(data)).tracks[0])[1]
    assert got == [(60, 0, 120, 64), (62, 0, 33276, 65), (60, 248, 33144, 66), (60, 376, 33144, 67), (64, 33149, 33660, 68), (69, 33660, 33676, 70)]


def test_malformed_input_raises_value_error():
    good = midi_bytes(realistic_song(), tempo=126.0, key_number=2)
    for cut in list(range(40)) + list(range(40, len(good), 37)) + [len(good) - 1]:
        with pytest.raises(ValueError):
            read_back(good[:cut])
    bad = [
        b"RIFF" + good[4:],
        good[:4] + struct.pack(">I", 2) + good[8:],
        good[:8] + struct.pack(">H", 3) + good[10:],
        good[:12] + b"\xe7\x28" + good[14:],  # SMPTE division
        good[:10] + struct.pack(">H", 9) + good[12:],  # more tracks than there are
        good + b"\x00",  # trailing junk is fine, so check the next ones fail for the right reason
    ]
    for data in bad[:-1]:
        with pytest.raises(ValueError):
            read_back(data)
    read_back(bad[-1])
    track = lambda body: b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(body)) + body
    for body in (b"\x00\x3c\x40", b"\x00\xf3\x01", b"\xff\xff\xff\xff\x7f\x90\x3c\x40", b"\x00\x90\x3c", b"\x00\x90\x3c\xc0",
                 b"\x00\xff\x51\x02\x00\x00", b"\x00\xff\x51\x03\x00\x00\x00", b"\x00\xff\x59\x02\x09\x00", b"\x00\xff\x03\x09ab", b"\x00\xff",
                 b"\x00\x90\x3c\x40\x00\xf0\x01\xf7\x00\x3c\x00"):  # running status does not survive a sysex
        with pytest.raises(ValueError):
            read_back(track(body))


def test_random_corruption_never_raises_anything_but_value_error():
    good = midi_bytes(realistic_song(), tempo=90.0, key_number=20)
    rng = np.random.default_rng(0)
    for _ in range(300):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[pos] = int(rng.integers(0, 256))
        try:
            assert isinstance(read_back(bytes(data)), MidiSummary)
        except ValueError:
            pass


@pytest.mark.parametrize(
    "kwargs, tracks",
    [
        ({}, [("m", [Note(128, 0, 1)])]),
        ({}, [("m", [Note(-1, 0, 1)])]),
        ({}, [("m", [Note(60, 0, 1, 0)])]),
        ({}, [("m", [Note(60, 0, 1, 128)])]),
        ({}, [("m", [Note(60, 2, 2)])]),
        ({}, [("m", [Note(60, -1, 2)])]),
        ({}, [("m", [Note(60, 0.5, 2)])]),
        ({}, [("m", [Note(60.0, 0, 2)])]),
        ({}, [("m", [Note(60, 0, 10**9)])]),
        ({}, [("мелодия", [Note(60, 0, 1)])]),
        ({"key_number": 24}, [("m", [])]),
        ({"tempo": 0}, [("m", [])]),
        ({"tempo": float("nan")}, [("m", [])]),
        ({"tempo": 1.0}, [("m", [])]),
        ({"ticks_per_beat": 90}, [("m", [])]),
        ({"program": 128}, [("m", [])]),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, tracks):
    with pytest.raises(ValueError):
        midi_bytes(tracks, **{"tempo": 120.0, "key_number": 0, **kwargs})


def test_numpy_integers_are_accepted():
    notes = [Note(np.int64(60), np.int32(0), np.int64(4), np.uint8(90))]
    assert midi_bytes([("m", notes)], tempo=np.float64(120), key_number=np.int64(0)) == midi_bytes([("m", [Note(60, 0, 4, 90)])], tempo=120.0, key_number=0)


def test_fast_and_checked_event_paths_write_the_same_bytes():
    """Plain ints take the writer's inline checks, anything else `_checked_events`: the same bytes,
    including a song with a numpy integer in its last note (so the fast path gives up half way)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        tracks = [("Melody", random_melody(rng, 8)), ("Chords", random_melody(rng, 8))]
        mixed = [(name, notes[:-1] + [Note(np.int64(notes[-1].pitch), notes[-1].start, notes[-1].end, notes[-1].velocity)]) for name, notes in tracks]
        assert midi_bytes(tracks, tempo=126.0, key_number=3) == midi_bytes(mixed, tempo=126.0, key_number=3)


def test_a_bad_note_after_good_ones_names_the_first_bad_field():
    with pytest.raises(ValueError, match="velocity"):
        midi_bytes([("m", [Note(60, 0, 4, 90), Note(61, 4, 8, 0), Note(200, 8, 9, 90)])], tempo=120.0, key_number=0)


def test_a_numpy_bool_is_refused_as_before():
    """Not an integer to `operator.index`, so the writer refuses it, fast path or not."""
    with pytest.raises(ValueError, match="start"):
        midi_bytes([("m", [Note(60, np.True_, 4, 90)])], tempo=120.0, key_number=0)
