"""The MusicXML lead sheet: read back in music21 it gives the melody, chords, key, meter and tempo
of the song (and of its MIDI); without music21 it parses, adds up bar by bar, and is written safely."""
from __future__ import annotations

import itertools
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from facetune.errors import FacetuneError
from facetune.music import musicxml
from facetune.music.musicxml import (
    NOTE_TYPES,
    KeySpelling,
    musicxml_bytes,
    parse_chord_symbol,
    split_duration,
    write_musicxml,
)
from facetune.music.pianoroll import Note

MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
KEY_NAMES = [f"{t} major" for t in MAJOR_TONICS] + [f"{t} minor" for t in MINOR_TONICS]
#: Chord names with flats, sharps and no chord, as the composer may spell them.
CHORDS = ["Bb", "Gm", "F#m", "Db", "Cb", "G#m", "Fb", "N.C.", "Ebm", "C#", "A", "Abm"]
EMOTION_SEEDS = [(e, s) for e in ("happy", "sad", "angry", "calm") for s in (0, 1, 2)]
PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def song(key: str = "C major", chords: list[str] | None = None, melody: list[Note] | None = None, bars: int = 4, tempo: float = 100.0) -> SimpleNamespace:
    """A hand-made composition with the attributes the writer reads."""
    return SimpleNamespace(melody=melody or [], chords=chords if chords is not None else ["C"] * bars, key=key, tempo=tempo, bars=bars, emotion="test", quadrant="Q1", form="AABA", seed=7)


def tricky_melody(offset: int = 0) -> list[Note]:
    """Notes across barlines, lengths of 5, 7, 11 and 13 sixteenths, rests, a whole-bar note, two
    empty bars (6 and 7) and every pitch class, over eight bars."""
    spans = [(0, 5), (5, 12), (14, 27), (27, 40), (41, 48), (48, 64), (64, 65), (66, 67), (67, 78)]
    spans += [(112, 113), (113, 115), (115, 118), (118, 122), (122, 128)]
    return [Note(60 + offset + (i * 5) % 12 + 12 * (i % 2), s, e) for i, (s, e) in enumerate(spans)]


def expected_notes(melody: list[Note]) -> list[tuple[int, float, float]]:
    return [(n.pitch, n.start / 4, (n.end - n.start) / 4) for n in sorted(melody, key=lambda n: n.start)]


def m21_root(name: str) -> str:
    """Our spelling → music21's ('Bb' → 'B-', 'F#' → 'F#')."""
    return name[0] + name[1:].replace("b", "-")


def tonic_pc(name: str) -> int:
    return (PC[name[0]] + name.count("#") - name[1:].count("b")) % 12


# ---------------------------------------------------------------- without music21


def measures(data: bytes) -> list[ET.Element]:
    return ET.fromstring(data).findall("./part/measure")


@pytest.mark.parametrize("key", KEY_NAMES)
def test_every_key_parses_and_every_bar_holds_four_beats_of_notatable_values(key: str) -> None:
    comp = song(key, (CHORDS * 2)[:8], tricky_melody(), bars=8)
    data = musicxml_bytes(comp)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"')
    assert b"<!DOCTYPE score-partwise PUBLIC \"-//Recordare//DTD MusicXML 4.0 Partwise//EN\"" in data
    root = ET.fromstring(data)
    assert root.tag == "score-partwise" and root.get("version") == "4.0"
    assert root.findtext("./part-list/score-part/part-name") == "Melody"
    assert root.findtext(".//divisions") == "4"
    bars = measures(data)
    assert [m.get("number") for m in bars] == [str(i) for i in range(1, 9)]
    by_length = {n: t for n, t in NOTE_TYPES.items()}
    for m in bars:
        notes = m.findall("note")
        assert sum(int(n.findtext("duration")) for n in notes) == 16
        assert m.find("harmony") is not None and list(m).index(m.find("harmony")) < list(m).index(notes[0])
        for n in notes:
            length = int(n.findtext("duration"))
            assert length in by_length
            if n.find("rest") is not None and n.find("rest").get("measure") == "yes":
                assert length == 16
                continue
            assert (n.findtext("type"), n.find("dot") is not None) == by_length[length]


def test_ties_pair_up_and_rebuild_the_melody() -> None:
    melody = tricky_melody()
    data = musicxml_bytes(song("Eb minor", ["Ebm"] * 8, melody, bars=8))
    t, open_note, got = 0, None, []
    for m in measures(data):
        for n in m.findall("note"):
            length, ties = int(n.findtext("duration")), {x.get("type") for x in n.findall("tie")}
            assert ties == {x.get("type") for x in n.findall("notations/tied")}
            if n.find("rest") is None:
                step, alter, octave = n.findtext("pitch/step"), int(n.findtext("pitch/alter") or 0), int(n.findtext("pitch/octave"))
                pitch = 12 * (octave + 1) + PC[step] + alter
                if "stop" in ties:
                    assert open_note is not None and open_note[0] == pitch and open_note[2] == t
                    open_note[2] += length
                else:
                    assert open_note is None
                    open_note = [pitch, t, t + length]
                if "start" not in ties:
                    got.append(Note(open_note[0], open_note[1], open_note[2]))
                    open_note = None
            else:
                assert not ties
            t += length
    assert [(n.pitch, n.start, n.end) for n in got] == [(n.pitch, n.start, n.end) for n in melody]


def test_split_duration_gives_notatable_values_that_keep_the_beats() -> None:
    for pos in range(16):
        for end in range(pos + 1, 17):
            lengths = split_duration(pos, end)
            assert sum(lengths) == end - pos and all(n in NOTE_TYPES for n in lengths)
            t = pos
            for n in lengths:
                assert not (n < 8 and t < 8 < t + n), (pos, end, lengths)  # the middle of the bar stays visible
                assert n >= 4 or t // 4 == (t + n - 1) // 4, (pos, end, lengths)  # short notes stay in their beat
                t += n
    assert split_duration(0, 16) == [16]
    assert split_duration(0, 12) == [12]
    assert split_duration(0, 5) == [4, 1]
    assert split_duration(0, 7) == [6, 1]
    assert split_duration(0, 11) == [8, 3]
    assert split_duration(0, 13) == [12, 1]
    assert split_duration(1, 16) == [3, 12]
    assert split_duration(4, 8) == [4]
    assert split_duration(6, 10) == [2, 2]
    with pytest.raises(ValueError):
        split_duration(8, 17)


def test_key_spelling_follows_the_key() -> None:
    def name(key: str, midi: int) -> str:
        step, alter, octave = KeySpelling.from_name(key).pitch(midi)
        return f"{step}{'#' * alter if alter > 0 else 'b' * -alter}{octave}"

    assert name("Eb minor", 71) == "Cb5"  # the 6th degree, an octave number above B4's
    assert name("C# minor", 60) == "B#3"  # the raised 7th, an octave number below C4's
    assert name("G# minor", 67) == "F##4"  # the leading tone of G# minor
    assert name("Eb minor", 62) == "D4"  # raised 7th in a flat minor key: a natural
    assert name("F# major", 65) == "E#4"
    assert name("F# major", 67) == "G4"  # chromatic: fewest accidentals (not F##)
    assert name("Bb major", 66) == "Gb4" and name("D major", 63) == "D#4"  # flat keys flats, sharp keys sharps
    assert name("C major", 61) == "C#4" and name("C minor", 64) == "E4"
    fifths = {k: KeySpelling.from_name(k).fifths for k in KEY_NAMES}
    assert fifths["Db major"] == -5 and fifths["B major"] == 5 and fifths["Eb minor"] == -6 and fifths["G# minor"] == 5
    assert sorted(fifths[f"{t} major"] for t in MAJOR_TONICS) == list(range(-5, 7))
    assert sorted(fifths[f"{t} minor"] for t in MINOR_TONICS) == list(range(-6, 6))


def test_chord_symbols_keep_their_spelling() -> None:
    assert parse_chord_symbol("Bb") == ("B", -1, "major")
    assert parse_chord_symbol("F#m") == ("F", 1, "minor")
    assert parse_chord_symbol("Cb") == ("C", -1, "major")
    assert parse_chord_symbol("N.C.") is None and parse_chord_symbol("N") is None
    data = musicxml_bytes(song("Eb minor", ["Ebm", "Cb", "N.C.", "Bb"]))
    harmonies = [m.find("harmony") for m in measures(data)]
    assert [(h.findtext("root/root-step"), h.findtext("root/root-alter"), h.findtext("kind")) for h in harmonies] == [
        ("E", "-1", "minor"), ("C", "-1", "major"), ("C", None, "none"), ("B", "-1", "major")]
    assert harmonies[2].find("kind").get("text") == "N.C." and harmonies[2].find("root/root-step").get("text") == ""


def test_header_tempo_and_clef() -> None:
    comp = song("A minor", ["Am"], [Note(69, 0, 16)], bars=1, tempo=72.5)
    root = ET.fromstring(musicxml_bytes(comp))
    assert root.findtext("./work/work-title") == "facetune: test, seed 7"
    assert root.findtext("./identification/encoding/software") == "facetune"
    assert root.findtext(".//metronome/per-minute") == "72.5" and root.find(".//sound").get("tempo") == "72.5"
    assert (root.findtext(".//clef/sign"), root.findtext(".//clef/line"), root.find(".//clef/clef-octave-change")) == ("G", "2", None)
    low = ET.fromstring(musicxml_bytes(song("A minor", ["Am"], [Note(45, 0, 8), Note(52, 8, 16)], bars=1)))
    assert low.findtext(".//clef/clef-octave-change") == "-1"
    assert root.findtext(".//barline/bar-style") == "light-heavy"


def test_accidentals_are_printed_where_needed() -> None:
    melody = [Note(61, 0, 4), Note(61, 4, 8), Note(60, 8, 12), Note(61, 12, 20), Note(61, 20, 24)]
    bars = measures(musicxml_bytes(song("C major", ["C", "C"], melody, bars=2)))
    shown = [[n.findtext("accidental") for n in m.findall("note")] for m in bars]
    assert shown == [["sharp", None, "natural", "sharp"], [None, "sharp", None]]


def test_output_is_deterministic_and_needs_no_heavy_imports() -> None:
    comp = song("G major", ["G", "Em", "C", "D"], tricky_melody(7)[:6])
    assert musicxml_bytes(comp) == musicxml_bytes(comp)
    code = "import sys, facetune.music.musicxml; print(sorted({'torch', 'music21', 'pretty_midi', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("bad", [
    {"key": "H major"}, {"chords": ["Q7"]}, {"tempo": 0}, {"tempo": "fast"},
    {"melody": [Note(60, 0, 8), Note(62, 4, 12)]}, {"melody": [Note(60, 4, 4)]},
])
def test_bad_songs_are_one_line_errors(bad: dict[str, Any]) -> None:
    comp = song(**{"chords": ["C"], "bars": 1, **bad})
    with pytest.raises(FacetuneError) as info:
        musicxml_bytes(comp)
    assert "\n" not in str(info.value)


def test_notes_past_the_last_bar_get_their_own_bars() -> None:
    bars = measures(musicxml_bytes(song("C major", ["C"], [Note(60, 12, 20)], bars=1)))
    assert len(bars) == 2 and bars[1].find("harmony") is None


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    comp = song("F major", ["F", "Bb", "C", "F"], tricky_melody(5)[:6])
    path = write_musicxml(comp, tmp_path / "song.musicxml")
    assert path.read_bytes() == musicxml_bytes(comp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.musicxml"]
    path.write_bytes(b"keep me")
    with pytest.raises(FacetuneError, match="already exists"):
        write_musicxml(comp, path)
    assert path.read_bytes() == b"keep me"
    write_musicxml(comp, path, force=True)
    assert path.read_bytes() == musicxml_bytes(comp)

    monkeypatch.setattr(musicxml, "musicxml_bytes", lambda comp: b"<score-partwise><part>")
    with pytest.raises(FacetuneError, match="does not parse") as info:
        write_musicxml(comp, tmp_path / "broken.musicxml")
    assert "\n" not in str(info.value)
    empty_bars = b"<score-partwise><part>" + b"<measure/>" * 4 + b"</part></score-partwise>"
    monkeypatch.setattr(musicxml, "musicxml_bytes", lambda comp: empty_bars)
    with pytest.raises(FacetuneError, match="lasts 0 sixteenths"):
        write_musicxml(comp, tmp_path / "short.musicxml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.musicxml"]


# ---------------------------------------------------------------- read back in music21


def parse(data: bytes, tmp_path: Path, name: str = "song.musicxml") -> Any:
    music21 = pytest.importorskip("music21")
    path = tmp_path / name
    path.write_bytes(data)
    return music21.converter.parse(str(path), format="musicxml")


def melody_back(score: Any) -> list[tuple[int, float, float]]:
    """(MIDI pitch, onset, length) in quarter notes of every note, tied notes merged."""
    from music21 import note

    notes = list(score.parts[0].recurse().getElementsByClass(note.Note))
    for a, b in itertools.pairwise(notes):
        if a.tie is not None and a.tie.type in ("start", "continue"):
            assert b.tie is not None and b.tie.type in ("continue", "stop") and b.pitch.midi == a.pitch.midi
    # matchByPitch=False: music21 takes a B with a printed natural and the same B tied on without
    # one for different pitches and would leave them unmerged; the tie pairs are checked above.
    part = score.parts[0].stripTies(matchByPitch=False)
    return [(n.pitch.midi, float(n.getOffsetInHierarchy(part)), float(n.quarterLength)) for n in part.recurse().getElementsByClass(note.Note)]


def chords_back(score: Any) -> list[Any]:
    """Each bar's first chord symbol (None where a bar has none)."""
    from music21 import harmony

    out = []
    for m in score.parts[0].getElementsByClass("Measure"):
        found = list(m.getElementsByClass(harmony.ChordSymbol))
        out.append(found[0] if found else None)
    return out


def check_score(score: Any, comp: Any) -> None:
    """Everything the lead sheet promises, read back through music21."""
    from music21 import harmony, key, meter, tempo

    part = score.parts[0]
    bars = list(part.getElementsByClass("Measure"))
    assert len(bars) == comp.bars
    assert all(float(m.duration.quarterLength) == 4.0 for m in bars)
    assert melody_back(score) == expected_notes(comp.melody)
    [ks] = part.recurse().getElementsByClass(key.KeySignature)
    tonic, mode = comp.key.split()
    assert isinstance(ks, key.Key) and ks.mode == mode and ks.tonic.name == m21_root(tonic)
    assert ks.sharps == KeySpelling.from_name(comp.key).fifths
    [ts] = part.recurse().getElementsByClass(meter.TimeSignature)
    assert ts.ratioString == "4/4"
    [mm] = part.recurse().getElementsByClass(tempo.MetronomeMark)
    assert mm.number == pytest.approx(comp.tempo) and mm.referent.quarterLength == 1.0
    for name, cs in zip(comp.chords, chords_back(score)):
        if parse_chord_symbol(name) is None:
            assert isinstance(cs, harmony.NoChord)
            continue
        assert cs is not None and not isinstance(cs, harmony.NoChord)
        minor = name.endswith("m")
        assert cs.root().pitchClass == tonic_pc(name.rstrip("m"))
        assert cs.chordKind == ("minor" if minor else "major")
        assert cs.figure == m21_root(name)


@pytest.mark.parametrize("key", KEY_NAMES)
def test_music21_reads_back_hand_made_songs_in_every_key(key: str, tmp_path: Path) -> None:
    offset = tonic_pc(key.split()[0])
    comp = song(key, (CHORDS * 2)[offset % 4: offset % 4 + 8], tricky_melody(offset), bars=8, tempo=60 + offset * 7.5)
    score = parse(musicxml_bytes(comp), tmp_path)
    check_score(score, comp)
    spelling = KeySpelling.from_name(key)
    for n in score.parts[0].recurse().getElementsByClass("Note"):
        step, alter, octave = spelling.pitch(n.pitch.midi)
        assert (n.pitch.step, int(n.pitch.alter), n.pitch.octave) == (step, alter, octave)


@pytest.mark.parametrize("key", KEY_NAMES)
def test_scale_spelling_agrees_with_music21(key: str) -> None:
    music21 = pytest.importorskip("music21")
    tonic, mode = key.split()
    spelling = KeySpelling.from_name(key)
    m21 = music21.key.Key(m21_root(tonic), mode)
    assert m21.sharps == spelling.fifths
    ours = [spelling.spelling[pc] for pc in spelling.diatonic()]
    assert [m21_root(s + ("#" * a if a > 0 else "b" * -a)) for s, a in ours] == [p.name for p in m21.pitches[:7]]
    if mode == "minor":
        harmonic = music21.scale.HarmonicMinorScale(m21_root(tonic)).pitches[6]
        melodic = music21.scale.MelodicMinorScale(m21_root(tonic)).pitches[5]
        for p in (harmonic, melodic):
            s, a = spelling.spelling[p.pitchClass]
            assert (s, a) == (p.step, int(p.alter))


def test_music21_reads_the_empty_and_the_full_bar(tmp_path: Path) -> None:
    melody = [Note(62, 0, 16), Note(66, 40, 72), Note(69, 74, 79)]  # a full bar, an empty one, a note over two barlines
    comp = song("D major", ["D", "N.C.", "G", "A", "D"], melody, bars=5)
    score = parse(musicxml_bytes(comp), tmp_path)
    check_score(score, comp)
    bar2 = score.parts[0].getElementsByClass("Measure")[1]
    assert not list(bar2.getElementsByClass("Note"))
    [rest] = list(bar2.getElementsByClass("Rest"))
    assert rest.quarterLength == 4.0


@pytest.mark.parametrize("emotion,seed", EMOTION_SEEDS)
def test_composed_songs_read_back_as_their_midi(emotion: str, seed: int, tmp_path: Path) -> None:
    from facetune.music.composer import compose_emotion
    from facetune.music.midi_file import read_back

    comp = compose_emotion(emotion, seed=seed)
    path = write_musicxml(comp, tmp_path / "song.musicxml")
    score = parse(path.read_bytes(), tmp_path, "copy.musicxml")
    check_score(score, comp)

    midi = read_back(comp.midi_bytes())
    [(_name, notes)] = [t for t in midi.tracks if t[0] == "Melody"]
    tpb = midi.ticks_per_beat
    assert melody_back(score) == [(p, s / tpb, (e - s) / tpb) for p, s, e, _ in notes]
    # the MIDI tempo event holds whole microseconds a beat, so its tempo is the song's to 1e-6
    assert score.parts[0].recurse().getElementsByClass("MetronomeMark")[0].number == pytest.approx(midi.tempo, rel=1e-5)
    tonic, mode = comp.key.split()
    assert midi.key_number == tonic_pc(tonic) + (12 if mode == "minor" else 0)
    [(_, accompaniment)] = [t for t in midi.tracks if t[0] == "Chords"]
    bass = {}
    for p, s, _, _ in accompaniment:
        bar = s // (4 * tpb)
        bass[bar] = min(bass.get(bar, 128), p)
    for bar, cs in enumerate(chords_back(score)):
        if bar in bass:
            assert cs.root().pitchClass == bass[bar] % 12
