"""POP909 readers on tiny hand-written songs in both layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetune.errors import DataError, InputError
from facetune.music.pop909 import (
    find_songs,
    parse_phrase_labels,
    parse_harte,
    parse_key,
    read_raw_song,
    read_song,
    read_structure_song,
    song_layout,
)


@pytest.mark.parametrize(
    "label, expected",
    [
        ("B:maj", 11),
        ("Gb:min7", 12 + 6),
        ("C:sus4", 0),
        ("A:7", 9),
        ("E:maj/3", 4),
        ("C#:min/b3", 12 + 1),
        ("Bb:hdim7", 12 + 10),
        ("F#:dim", 12 + 6),
        ("D:maj(9)", 2),
        ("Ab:sus4(b7,9)", 8),
        ("C:(1,b3,5)", 12),
        ("G", 7),
        ("N", 24),
        ("X", 24),
    ],
)
def test_parse_harte(label: str, expected: int) -> None:
    assert parse_harte(label) == expected


@pytest.mark.parametrize("label", ["H:maj", "C:foo", "C:maj(9", "", ":maj"])
def test_parse_harte_rejects_junk(label: str) -> None:
    with pytest.raises(InputError):
        parse_harte(label)


def test_parse_key() -> None:
    assert parse_key("Gb:maj") == 6
    assert parse_key("C:min") == 12
    assert parse_key("G#:min") == 20
    assert parse_key(" A:maj\n") == 9
    for junk in ("Gb", "Q:maj", "C:dorian", ""):
        with pytest.raises(InputError):
            parse_key(junk)


def test_parse_form() -> None:
    assert parse_phrase_labels("i4A8B8A8o3") == [("i", 0, 4), ("A", 4, 8), ("B", 12, 8), ("A", 20, 8), ("o", 28, 3)]
    assert parse_phrase_labels("X12\n") == [("X", 0, 12)]
    for junk in ("i4A", "4A", "i4 A8", "A0"):
        with pytest.raises(InputError):
            parse_phrase_labels(junk)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


STRUCTURE = {
    # bar 0: rest 4 | C4 (60) 4 | D4 (62) 2 | D4 again 2 | rest 4
    # bar 1: C5 (72) 8 | rest 4 | E7 (100, folded down an octave to 88) 4 | trailing rest bar
    "melody.txt": "0 4\n60 4\n62 2\n62 2\n0 4\n72 8\n0 4\n100 4\n0 16\n",
    # bar 0: C (1 beat) then A minor (3 beats) -> A minor
    # bar 1: G (1), F (1), E minor (1), F/3 (1) -> F, the two F spans add up
    "finalized_chord.txt": (
        "C:maj [0, 4, 7] 0 1 \n"
        "A:min [0, 4, 9] 9 3 \n"
        "G:maj [2, 7, 11] 7 1 \n"
        "F:maj [0, 5, 9] 5 1 \n"
        "E:min [4, 7, 11] 4 1 \n"
        "F:maj/3 [0, 5, 9] 5 1 \n"
        "N []  4 \n"
    ),
    "analyzed_key.txt": "Eb:min\n\n",
    "tempo.txt": "90",
    "human_label1.txt": "i1A1\n",
    "human_label2.txt": "A2\n",
}


def test_read_structure_song(tmp_path: Path) -> None:
    song = read_structure_song(_write(tmp_path / "007", STRUCTURE))
    r = -1
    assert song.name == "007"
    assert song.pitch.dtype == np.int8 and song.onset.dtype == np.uint8 and song.chords.dtype == np.int8
    np.testing.assert_array_equal(
        song.pitch,
        [
            [r, r, r, r, 12, 12, 12, 12, 14, 14, 14, 14, r, r, r, r],
            [24, 24, 24, 24, 24, 24, 24, 24, r, r, r, r, 40, 40, 40, 40],
        ],
    )
    np.testing.assert_array_equal(
        song.onset,
        [
            [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        ],
    )
    assert song.chords.tolist() == [12 + 9, 5]
    assert song.key == 12 + 3
    assert song.tempo == 90.0
    assert song.phrases == [("i", 0, 1), ("A", 1, 1)]


def test_structure_song_without_labels_and_with_a_damaged_extension(tmp_path: Path) -> None:
    files = {k: v for k, v in STRUCTURE.items() if not k.startswith("human_label")}
    files["finalized_chord.txt"] = "D:sus4(b7 [2, 7, 9] 2 4 \nF:sus4(b7)\x01 [0, 5, 7] 5 4\n"
    song = read_structure_song(_write(tmp_path / "008", files))
    assert song.phrases == []
    assert song.chords.tolist() == [2, 5]


@pytest.mark.parametrize(
    "name, text",
    [
        ("melody.txt", "60 4\n62 x\n"),
        ("melody.txt", "0 16\n"),
        ("finalized_chord.txt", "Ab:maj [0, 3, 8] 8 4 2\n"),
        ("finalized_chord.txt", "Q:maj [0, 3, 8] 8 4\n"),
        ("analyzed_key.txt", "\n"),
        ("tempo.txt", "fast\n"),
        ("human_label1.txt", "i4A\n"),
    ],
)
def test_malformed_structure_file_names_the_file(tmp_path: Path, name: str, text: str) -> None:
    folder = _write(tmp_path / "009", {**STRUCTURE, name: text})
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        read_structure_song(folder)


def _beat_times() -> list[float]:
    """Beats every 0.5 s from 0.5 s for 8 beats, then every 0.6 s (a tempo change to interpolate on)."""
    return [0.5 + 0.5 * i for i in range(8)] + [4.5 + 0.6 * i for i in range(8)]


def _write_raw(folder: Path, with_melody: bool = True) -> Path:
    import pretty_midi

    folder.mkdir(parents=True)
    t = _beat_times()
    # Column 3 (4/4 downbeats) starts at beat 2, t = 1.5 s; column 2 (2-beat bars) at beat 0.
    beats = "".join(
        f"{time} {1.0 if i % 2 == 0 else 0.0} {1.0 if i % 4 == 2 else 0.0}\n" for i, time in enumerate(t)
    )
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    tracks = {name: pretty_midi.Instrument(0, name=name) for name in ("MELODY", "BRIDGE", "PIANO")}
    melody = [
        (55, t[0], t[1]),  # before the first downbeat: dropped
        (60, t[2], t[3]),  # bar 0, steps 0-3
        (64, (t[3] + t[4]) / 2, t[4]),  # beat 3.5: steps 6-7
        (67, t[6], t[9]),  # bar 1 from step 0, cut at step 4 by the next note for good
        (65, t[7], t[8]),  # bar 1, steps 4-7
        (84, t[9] + 0.3, t[10]),  # beat 9.5 on the 0.6 s beats: bar 1, steps 14-15
    ]
    for p, s, e in melody:
        tracks["MELODY"].notes.append(pretty_midi.Note(100, p, s, e))
    tracks["BRIDGE"].notes.append(pretty_midi.Note(100, 90, t[2], t[12]))
    tracks["PIANO"].notes.append(pretty_midi.Note(100, 40, t[2], t[12]))
    midi.instruments = [tr for name, tr in tracks.items() if with_melody or name != "MELODY"]
    midi.write(str(folder / f"{folder.name}.mid"))
    chords = [
        (t[0], t[2], "N"),
        (t[2], t[3], "C:maj"),  # bar 0: 1 beat of C
        (t[3], t[6], "A:min7"),  # bar 0: 3 beats of A minor
        (t[6], t[8], "G:7"),  # bar 1: 2 beats of G, first
        (t[8], t[10], "E:min/b3"),  # bar 1: 2 beats of E minor
    ]
    (folder / "beat_midi.txt").write_text(beats)
    (folder / "chord_midi.txt").write_text("".join(f"{s}\t{e}\t{c}\n" for s, e, c in chords))
    (folder / "key_audio.txt").write_text(f"{t[0]}\t{t[8]}\tD:maj\n{t[8]}\t{t[-1]}\tB:min\n")
    return folder


def test_read_raw_song_with_a_late_first_downbeat(tmp_path: Path) -> None:
    song = read_raw_song(_write_raw(tmp_path / "012"))
    r = -1
    np.testing.assert_array_equal(
        song.pitch,
        [
            [12, 12, 12, 12, r, r, 16, 16, r, r, r, r, r, r, r, r],
            [19, 19, 19, 19, 17, 17, 17, 17, r, r, r, r, r, r, 36, 36],
        ],
    )
    np.testing.assert_array_equal(
        song.onset,
        [
            [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        ],
    )
    assert song.chords.tolist() == [12 + 9, 7]
    assert song.key == 2
    assert song.tempo == pytest.approx(120.0)
    assert song.phrases == []


def test_raw_song_without_melody_track_names_the_midi(tmp_path: Path) -> None:
    folder = _write_raw(tmp_path / "013", with_melody=False)
    with pytest.raises(InputError, match=r"013\.mid.*MELODY"):
        read_raw_song(folder)


def test_raw_song_with_bad_beats_names_the_file(tmp_path: Path) -> None:
    folder = _write_raw(tmp_path / "014")
    (folder / "beat_midi.txt").write_text("0.5 1.0 1.0\nsoon 0.0 0.0\n")
    with pytest.raises(InputError, match=r"beat_midi\.txt"):
        read_raw_song(folder)


def test_find_songs_and_dispatch(tmp_path: Path) -> None:
    _write(tmp_path / "002", STRUCTURE)
    _write_raw(tmp_path / "001")
    (tmp_path / "notes").mkdir()
    (tmp_path / "SOURCE.md").write_text("x")
    songs = find_songs(tmp_path)
    assert [p.name for p in songs] == ["001", "002"]
    assert [song_layout(p) for p in songs] == ["raw", "structure"]
    assert song_layout(tmp_path / "notes") is None
    assert read_song(songs[0]).phrases == [] and read_song(songs[0]).key == 2
    assert read_song(songs[1]).phrases == [("i", 0, 1), ("A", 1, 1)]
    with pytest.raises(InputError, match="notes"):
        read_song(tmp_path / "notes")


def test_find_songs_without_songs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        find_songs(tmp_path)
    with pytest.raises(DataError):
        find_songs(tmp_path / "missing")
