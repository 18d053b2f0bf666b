"""`evaluate music` with the repetition measures, several references and phrase novelty, on tiny
synthetic caches and a stand-in composer (so every figure is known in advance)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from facetune.music import evaluate as E
from facetune.cli import main
from facetune.music.pianoroll import ONSET, REST, Note

from conftest import notes_to_rolls
from conftest import random_bars

BAR = [Note(72, 0, 4), Note(76, 4, 6), Note(79, 8, 12), Note(77, 12, 16)]


def repeated(n_bars: int, transpose: int = 0) -> list[Note]:
    return [Note(n.pitch + transpose, n.start + 16 * b, n.end + 16 * b) for b in range(n_bars) for n in BAR]


def write_cache(root: Path, clips: list[tuple[int, str, list[Note], int]]) -> Path:
    """A music cache as `prepare-data music` writes it: (quadrant, split, notes, bars) per clip, each in
    transpositions 0 and +2; arrays this test does not care about are zeros, plus one extra array."""
    from facetune.training.cache import write_arrays, write_manifest
    from facetune.music.dataset import ARRAYS, MUSIC_CACHE_VERSION, SPLIT_NAMES

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("pitch", "onset", "quadrant", "split", "clip", "transpose", "prev")}
    n_rows = 0
    for ci, (q, split, notes, n_bars) in enumerate(clips):
        for t in (0, 2):
            roll = notes_to_rolls([Note(n.pitch + t, n.start, n.end) for n in notes], n_bars)
            col = roll[..., : REST + 1].argmax(-1)
            cols["pitch"].append(np.where(col == REST, -1, col).astype(np.int8))
            cols["onset"].append(roll[..., ONSET].astype(np.uint8))
            cols["quadrant"].append(np.full(n_bars, q, np.int8))
            cols["split"].append(np.full(n_bars, SPLIT_NAMES.index(split), np.int8))
            cols["clip"].append(np.full(n_bars, ci, np.int32))
            cols["transpose"].append(np.full(n_bars, t, np.int8))
            cols["prev"].append(np.concatenate([[-1], np.arange(n_rows, n_rows + n_bars - 1)]).astype(np.int32))
            n_rows += n_bars
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    for k in ARRAYS:
        arrays.setdefault(k, np.zeros(n_rows, np.int8))
    arrays["something_new"] = np.arange(n_rows)
    write_arrays(root, arrays)
    write_manifest(root, {"format_version": MUSIC_CACHE_VERSION, "kind": "music", "rows": n_rows, "clips": []})
    return root


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval_caches")
    emo = write_cache(
        base / "emo",
        [
            (0, "train", random_bars(10, 8), 8),  # the phrases the stand-in composer copies for "happy"
            (1, "train", random_bars(11, 8), 8),
            (0, "test", repeated(16), 16),  # every bar the same: all three measures 1.0
            (0, "test", repeated(16, transpose=-3), 16),
            (1, "test", random_bars(12, 8), 8),
            (3, "test", repeated(4), 4),  # one phrase: phrase similarity undefined
        ],
    )
    pop = write_cache(base / "pop", [(4, "test", repeated(8), 8), (4, "test", random_bars(13, 8), 8), (4, "train", repeated(8), 8)])
    return emo, pop


@pytest.fixture()
def stand_in_composer(monkeypatch):
    """happy: the first training clip of the `emo` cache; sad: fresh low random bars per seed."""
    import facetune.music.composer as composer
    from facetune.emotions import normalize_emotion, quadrant_of

    calls = []

    def compose_emotion(emotion, gen, *, bars=16, seed=0):
        calls.append((emotion, bars, seed))
        name = normalize_emotion(emotion)
        notes = random_bars(10, 8) if name == "happy" else random_bars(100 + seed, 8, low=40)
        return SimpleNamespace(emotion=name, quadrant=quadrant_of(name), melody=notes)

    monkeypatch.setattr(composer, "load_generator", lambda path=None: None)
    monkeypatch.setattr(composer, "compose_emotion", compose_emotion)
    monkeypatch.setattr(composer, "compose_emotions", lambda songs, gen, *, bars=16: [compose_emotion(e, gen, bars=bars, seed=s) for e, s in songs])
    return calls


def test_cache_rows_become_the_same_notes_as_the_training_path(caches):
    from facetune.music.dataset import load_music_cache
    from facetune.music.pianoroll import rolls_to_notes
    from facetune.music.train import bars_tensor

    _, a = load_music_cache(caches[0])
    for clip in range(6):
        r = np.flatnonzero((a["clip"] == clip) & (a["transpose"] == 0))
        expected = rolls_to_notes(bars_tensor(a["pitch"][r], a["onset"][r])[:, 0].numpy())
        assert E._rows_to_notes(a["pitch"][r], a["onset"][r]) == expected


def test_quadrant_labels():
    assert [E.quadrant_label(q) for q in (0, 3, 4, -1)] == ["Q1", "Q4", "unlabelled", "unlabelled"]


def test_evaluate_music_per_quadrant_with_two_references_and_novelty(caches, stand_in_composer):
    emo, pop = caches
    res = E.evaluate_music([], generate=2, emotions=["happy", "sad"], reference=[emo, pop], novelty=emo)
    assert sorted(stand_in_composer) == [("happy", 16, 0), ("happy", 16, 1), ("sad", 16, 0), ("sad", 16, 1)]
    assert list(res["groups"]) == ["generated", "reference emo (test)", "reference pop (test)"]
    gen = res["groups"]["generated"]
    assert list(gen) == ["happy (Q1)", "sad (Q3)", "all"] and gen["all"]["n"] == 4
    assert {"rhythm_repeat", "motif_repeat", "phrase_similarity", "groove_consistency"} <= set(gen["all"]["mean"])

    ref = res["groups"]["reference emo (test)"]
    assert {g: ref[g]["n"] for g in ref} == {"Q1": 2, "Q2": 1, "Q4": 1, "all": 4}  # transposed rows left out
    assert ref["Q1"]["mean"]["rhythm_repeat"] == 1.0 and ref["Q1"]["mean"]["motif_repeat"] == 1.0
    assert ref["Q1"]["mean"]["phrase_similarity"] == 1.0
    assert ref["Q4"]["mean"]["phrase_similarity"] is None and ref["Q4"]["valid"]["phrase_similarity"] == 0
    assert ref["Q4"]["mean"]["motif_repeat"] == 1.0
    assert ref["all"]["valid"]["phrase_similarity"] == 3

    other = res["groups"]["reference pop (test)"]
    assert list(other) == ["unlabelled"] and other["unlabelled"]["n"] == 2

    nov = res["novelty"]
    assert nov["split"] == "train" and nov["training_phrases"] > 0
    assert nov["groups"]["happy (Q1)"] == {"phrases": 4, "found": 4, "phrase_novelty": 1.0}
    assert nov["groups"]["sad (Q3)"] == {"phrases": 4, "found": 0, "phrase_novelty": 0.0}
    assert nov["all"]["phrase_novelty"] == 0.5
    json.dumps(res, allow_nan=False)  # strict JSON: undefined means are null, not NaN


def test_references_with_the_same_folder_name_stay_apart(caches, tmp_path):
    import shutil

    twin = tmp_path / "x" / "emo"
    shutil.copytree(caches[0], twin)
    res = E.evaluate_music([], reference=[caches[0], twin], split="train")
    assert list(res["groups"]) == ["reference emo (train)", "reference emo #2 (train)"]
    assert res["groups"]["reference emo (train)"]["Q1"]["n"] == 1


def test_novelty_needs_generated_melodies(caches):
    from facetune.errors import FacetuneError

    with pytest.raises(FacetuneError, match="--generate"):
        E.evaluate_music([], reference=[caches[0]], novelty=caches[0])


def invoke(*args):
    return CliRunner().invoke(main, ["evaluate", "music", *map(str, args)], catch_exceptions=False)


def test_cli_json_csv_and_table(caches, stand_in_composer):
    emo, pop = caches
    args = ("--generate", 1, "--emotions", "happy,sad", "--reference", emo, "--reference", pop, "--novelty", emo)
    r = invoke(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res["groups"]) == {"generated", "reference emo (test)", "reference pop (test)"}
    assert res["groups"]["reference emo (test)"]["Q1"]["mean"]["phrase_similarity"] == 1.0
    assert res["groups"]["reference pop (test)"]["unlabelled"]["n"] == 2
    assert res["novelty"]["groups"]["happy (Q1)"]["phrase_novelty"] == 1.0

    r = invoke(*args, "--format", "csv")
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    hit = [x for x in rows if x["source"] == "reference emo (test)" and x["group"] == "Q1" and x["metric"] == "motif_repeat"]
    assert len(hit) == 1 and float(hit[0]["mean"]) == 1.0 and hit[0]["n"] == "2"
    undefined = [x for x in rows if x["group"] == "Q4" and x["metric"] == "phrase_similarity"]
    assert undefined[0]["mean"] == "" and undefined[0]["valid"] == "0"
    nov = [x for x in rows if x["metric"] == "phrase_novelty"]
    assert {x["group"]: float(x["mean"]) for x in nov} == {"happy (Q1)": 1.0, "sad (Q3)": 0.0, "all": 0.5}

    r = invoke(*args)
    assert r.exit_code == 0
    for text in ("rhythm_repeat", "motif_repeat", "phrase_similarity", "unlabelled", "happy (Q1)", "phrase novelty"):
        assert text in r.stdout


def test_cli_usage_errors(caches):
    assert invoke("--novelty", caches[0], "--reference", caches[0]).exit_code == 2
    assert invoke().exit_code == 2


@pytest.fixture()
def tiny_pop909(tmp_path) -> Path:
    """Three songs in POP909's structure layout (melody.txt: pitch and 16th duration per line, 0 = rest)."""
    for k, rows in enumerate(["0 16\n" + "60 4\n62 4\n64 4\n65 4\n" * 4, "67 8\n79 8\n" * 8, "72 4\n0 4\n72 8\n" * 4]):
        d = tmp_path / "pop909" / f"{k + 1:03d}"
        d.mkdir(parents=True)
        (d / "melody.txt").write_text(rows)
    return tmp_path / "pop909"


def test_melody_line_measures_beside_pop909(stand_in_composer, tiny_pop909):
    res = E.evaluate_music([], generate=2, emotions=["happy", "sad"], pop909=tiny_pop909)
    gen = res["groups"]["generated"]
    assert list(gen) == ["happy (Q1)", "sad (Q3)", "all", "POP909"] and gen["POP909"]["n"] == 3 and gen["all"]["n"] == 4
    assert {"mean_interval", "spikes", "leaps", "steps", "literal_copies", "offbeat_and", "below_accompaniment", "rhythm_repeat"} <= set(gen["POP909"]["mean"])
    # 001: four notes up, copied every bar (largest leap 5 back down); 002: octave leaps; 003: one pitch.
    assert gen["POP909"]["mean"]["octave_leaps"] == 0 and gen["POP909"]["mean"]["largest_leap"] == pytest.approx((5 + 12 + 0) / 3, abs=1e-4)
    assert gen["POP909"]["mean"]["literal_copies"] == 1.0 and gen["POP909"]["mean"]["polyphony_max"] == 1
    assert gen["POP909"]["valid"]["below_accompaniment"] == 0  # POP909's structure layout has no accompaniment
    json.dumps(res, allow_nan=False)

    alone = E.evaluate_music([], pop909=tiny_pop909)
    assert list(alone["groups"]) == ["POP909 melodies"] and alone["groups"]["POP909 melodies"]["POP909"]["n"] == 3


def test_cli_pop909(tiny_pop909):
    r = invoke("--pop909", tiny_pop909, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["groups"]["POP909 melodies"]["POP909"]["mean"]["steps"] is not None
    r = invoke("--pop909", tiny_pop909)
    assert r.exit_code == 0 and "mean_interval" in r.stdout and "POP909" in r.stdout


def test_evaluate_music_on_a_folder_without_midi_says_nothing_to_do(tmp_path):
    from click.testing import CliRunner

    from facetune.cli import main

    (tmp_path / "notes.txt").write_text("no music here")
    result = CliRunner().invoke(main, ["evaluate", "music", str(tmp_path)])
    assert result.exit_code == 1 and "no MIDI files" in result.output and "nothing to do" in result.output
