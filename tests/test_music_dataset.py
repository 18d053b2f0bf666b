from __future__ import annotations

import json

import numpy as np
import pretty_midi
import pytest

from facetune.errors import DataError
from facetune.music.dataset import MusicPrepConfig, clip_to_bars, load_music_cache, prepare_music, skyline, transpose_pitch
from facetune.music.pianoroll import LOW_PITCH, N_PITCHES

from conftest import write_midi_clip


def test_cache_counts_split_by_song(music_cache):
    manifest, arrays = load_music_cache(music_cache)
    clips = manifest["clips"]
    by_song = {}
    for c in clips:
        by_song.setdefault(c["song"], set()).add(c["split"])
    assert all(len(s) == 1 for s in by_song.values())
    assert {c["split"] for c in clips} == {"train", "val", "test"}
    assert sum(q["clips"] for s in manifest["counts"].values() for q in s.values()) == len(clips)
    # train bars are stored once per transposition, val/test once
    train = arrays["split"] == 0
    assert set(np.unique(arrays["transpose"][train])) == {0, 2}
    assert set(np.unique(arrays["transpose"][~train])) == {0}
    assert arrays["pitch"].shape[1] == 16 and arrays["pitch"].max() < N_PITCHES


def test_prev_links_stay_inside_a_clip(music_cache):
    _, a = load_music_cache(music_cache)
    has_prev = a["prev"] >= 0
    assert (a["clip"][a["prev"][has_prev]] == a["clip"][has_prev]).all()
    assert (a["transpose"][a["prev"][has_prev]] == a["transpose"][has_prev]).all()


def test_rerun_is_a_no_op(emopia_tree, music_cache):
    before = (music_cache / "pitch.npy").stat().st_mtime_ns
    m = prepare_music(emopia_tree, music_cache, MusicPrepConfig(grid="nominal", transpositions=(0, 2)))
    assert m.get("up_to_date") and (music_cache / "pitch.npy").stat().st_mtime_ns == before


def test_old_cache_version_is_refused(music_cache, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(music_cache, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = 999
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="prepare-data"):
        load_music_cache(copy)


def test_chords_and_melody_of_a_known_clip(tmp_path):
    path = write_midi_clip(tmp_path / "x.mid", 0, seed=1, bars=4)
    pitch, onset, chords, info = clip_to_bars(pretty_midi.PrettyMIDI(str(path)), "nominal")
    assert pitch.shape == (4, 16) and list(chords) == [0, 5, 7, 0]  # C F G C
    assert (pitch[:, ::4] >= 72 - LOW_PITCH).all()  # melody (>= C5) wins over the chord tones


def test_skyline_drops_lower_notes_under_a_held_melody_note():
    s = np.array([0, 2, 8]); e = np.array([8, 4, 12]); p = np.array([76, 60, 64])
    pitch, onset = skyline(s, e, p, 16)
    assert pitch[0] == 76 - LOW_PITCH and pitch[2] == 76 - LOW_PITCH  # 60 is more than a fourth below 76
    assert pitch[8] == 64 - LOW_PITCH and onset.tolist()[:9] == [1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_transpose_folds_into_register():
    p = np.array([[0, N_PITCHES - 1, -1]], dtype=np.int8)
    t = transpose_pitch(p, 3)
    assert t.tolist() == [[3, N_PITCHES - 1 + 3 - 12, -1]]


def test_labelled_folder_with_valence_arousal(tmp_path):
    root = tmp_path / "vg"
    (root / "m").mkdir(parents=True)
    for i, (v, a) in enumerate([(1, 1), (-1, 1), (-1, -1), (1, -1)]):
        write_midi_clip(root / "m" / f"piece{i}_0.mid", i, seed=i)
    (root / "labels.csv").write_text("midi,valence,arousal\n" + "".join(f"m/piece{i}_0.mid,{v},{a}\n" for i, (v, a) in enumerate([(1, 1), (-1, 1), (-1, -1), (1, -1)])))
    m = prepare_music(root, tmp_path / "out", MusicPrepConfig(transpositions=(0,), val_fraction=0.25, test_fraction=0.25))
    assert [c["quadrant"] for c in m["clips"]] == ["Q1", "Q2", "Q3", "Q4"] and m["grid"] == "nominal"


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("name,quadrant\nm/a_0.mid,Q1\n", "missing a file column"),
        ("file,quadrant\nm/a_0.mid,Q7\n", "unknown label"),
        ("file,quadrant\nm/missing.mid,Q1\n", "does not exist"),
        ("file,quadrant\n../../etc/passwd,Q1\n", "escapes the dataset folder"),
        ("file,mood\nm/a_0.mid,happy\n", "quadrant column"),
    ],
)
def test_bad_label_csvs(tmp_path, csv_text, message):
    root = tmp_path / "d"
    (root / "m").mkdir(parents=True)
    write_midi_clip(root / "m" / "a_0.mid", 0, seed=0)
    (root / "labels.csv").write_text(csv_text)
    with pytest.raises(DataError, match=message):
        prepare_music(root, tmp_path / "out", labels=root / "labels.csv")


def test_form_rows_from_phrase_labels():
    from facetune.music.dataset import _form_rows

    # intro 2 bars, A 4, B 2, A 4 (the second A restates the first), outro 1
    pos, end, ref = _form_rows([("i", 0, 2), ("A", 2, 4), ("B", 6, 2), ("A", 8, 4), ("o", 12, 1)], 13)
    assert pos.tolist() == [-1, -1, 0, 1, 2, 3, 0, 1, 0, 1, 2, 3, -1]
    assert end.tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0]
    assert ref.tolist() == [-1] * 8 + [2, 3, 4, 5, -1]


def test_pseudo_labels_only_where_the_labeller_is_sure():
    from types import SimpleNamespace

    from facetune.music.pseudo_labels import UNKNOWN, label_songs

    rng = np.random.default_rng(0)

    def song(major: bool, fast: bool):
        tonic = [0, 4, 7] if major else [0, 3, 7]
        pitch = np.full((8, 16), -1, np.int8)
        onset = np.zeros((8, 16), np.uint8)
        step = 2 if fast else 8
        for t in range(0, 16, step):
            pitch[:, t : t + step] = 24 + rng.choice(tonic)
            onset[:, t] = 1
        chords = np.full(8, 0 if major else 12, np.int8)
        return {"pitch": pitch, "onset": onset, "chord": chords, "info": {"bpm": 120.0}}

    items = []
    for q, (major, fast) in enumerate([(True, True), (False, True), (False, False), (True, False)]):
        for i in range(6):
            items.append((SimpleNamespace(quadrant=q, split=0 if i < 5 else 1), song(major, fast)))
    unlabelled = [(SimpleNamespace(quadrant=UNKNOWN, split=0), song(False, False)), (SimpleNamespace(quadrant=UNKNOWN, split=0), song(True, True))]
    summary = label_songs(items + unlabelled, margin=0.15)
    assert summary["labelled_val"]["valence_accuracy"] == 1.0 and summary["labelled_val"]["arousal_accuracy"] == 1.0
    assert [c.quadrant for c, _ in unlabelled] == [2, 0]  # slow minor → sad, fast major → happy
    assert sum(summary["counts"].values()) == 2


def test_pop909_and_emopia_in_one_cache(tmp_path, emopia_tree):
    from facetune.music.dataset import UNKNOWN

    pop = tmp_path / "pop909"
    for name in ("001", "002", "003"):
        d = pop / name
        d.mkdir(parents=True)
        (d / "melody.txt").write_text("0 16\n" + "60 4\n62 4\n64 8\n" * 8)
        (d / "finalized_chord.txt").write_text("C:maj [0, 4, 7] 0 4\nF:maj [0, 5, 9] 5 4\n" * 5)
        (d / "analyzed_key.txt").write_text("C:maj\n")
        (d / "tempo.txt").write_text("100\n")
        (d / "human_label1.txt").write_text("i1A4A4\n")
    m = prepare_music([pop, emopia_tree], tmp_path / "out", MusicPrepConfig(grid="nominal", transpositions=(0,)))
    _, a = load_music_cache(tmp_path / "out")
    assert [s["layout"] for s in m["sources"]] == ["pop909", "emopia"]
    first = a["source"] == 0
    assert (a["key"][first] == 0).all() and set(np.unique(a["quadrant"][first])) <= {0, 1, 2, 3, UNKNOWN}
    song = first & (a["clip"] == a["clip"][np.flatnonzero(first)[0]])
    rows = np.flatnonzero(song)
    assert a["pos"][rows].tolist() == [-1, 0, 1, 2, 3, 0, 1, 2, 3]
    assert (a["ref"][rows[5:]] == rows[1:5]).all()  # the second A restates the first, row by row
