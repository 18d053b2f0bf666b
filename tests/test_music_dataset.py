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
