from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from click.testing import CliRunner
from PIL import Image

from facetune import __version__
from facetune.cli import main

from conftest import CHELSEA, REPO, face_image


@pytest.fixture()
def run():
    def _run(*args, input=None):
        result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
        return result

    return _run


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """20 face crops in nested folders, 3 of them broken."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    for i in range(17):
        d = root / ("a" if i < 9 else "b/c")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face_image(i % 3, rng)).save(d / f"face{i:02d}.png")
    (root / "a" / "text.jpg").write_text("not an image")
    (root / "b" / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(root / "b" / "tiny.png")
    return root


def test_help_and_version(run):
    r = run("--help")
    assert r.exit_code == 0 and "compose" in r.output and "classify" in r.output
    assert run("--version").output.strip().endswith(__version__)


def test_prepare_train_evaluate(run, fer_tree, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    r = run("prepare-data", "faces", fer_tree, "--out", cache, "--val-fraction", "0.2")
    assert r.exit_code == 0 and (cache / "manifest.json").exists()
    assert "dropped 1 test images identical" in r.stderr
    r = run("prepare-data", "faces", fer_tree, "--out", cache, "--val-fraction", "0.2")
    assert "up to date" in r.stderr
    r = run("train", "classifier", "--data", cache, "--out", out, "--tiny", "--init", "random", "--epochs", "1", "--batch-size", "8", "--input-size", "48")
    assert r.exit_code == 0 and (out / "model.pt").exists()
    r = run("evaluate", "classifier", cache, "--classifier", out / "model.pt", "--format", "json")
    res = json.loads(r.stdout)
    assert r.exit_code == 0 and res["n"] == 18 and len(res["confusion"]) == 3 and set(res["per_class"]) == {"happy", "sad", "angry"}
    r = run("evaluate", "classifier", fer_tree / "test", "--classifier", out / "model.pt")
    assert r.exit_code == 0 and "accuracy" in r.output


def test_train_classifier_with_teacher(run, faces_cache, tiny_classifier, tmp_path):
    out = tmp_path / "kd"
    args = ("train", "classifier", "--data", faces_cache, "--out", out, "--tiny", "--epochs", "1", "--batch-size", "8", "--input-size", "48")
    r = run(*args, "--init", tiny_classifier, "--teacher", tiny_classifier, "--distill", "0.6")
    assert r.exit_code == 0 and (out / "model.pt").exists()
    r = run(*args, "--init", "random", "--teacher", tmp_path / "nope.pt")
    assert r.exit_code == 1 and "nope.pt" in r.stderr and "Traceback" not in r.output + r.stderr
    r = run(*args, "--init", "random", "--teacher", tiny_classifier, "--distill", "1.5")
    assert r.exit_code == 2
    r = run(*args, "--init", "random", "--teacher", tiny_classifier, "--teacher-input", "blurred")
    assert r.exit_code == 2
    clean = tmp_path / "kd-clean"
    r = run("train", "classifier", "--data", faces_cache, "--out", clean, *args[6:], "--init", "random", "--teacher", tiny_classifier, "--teacher-input", "clean")
    assert r.exit_code == 0 and (clean / "teacher_targets.npz").exists() and (clean / "model.pt").exists()


def test_unknown_classes_is_a_usage_error(run, fer_tree, tmp_path):
    r = run("prepare-data", "faces", fer_tree, "--out", tmp_path / "c", "--classes", "happy,joy")
    assert r.exit_code == 2 and "joy" in r.output + r.stderr


def test_classify_json_with_bad_inputs(run, crops, tiny_classifier):
    r = run("classify", crops, crops / "missing.jpg", "--classifier", tiny_classifier, "--format", "json")
    assert r.exit_code == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 21
    assert all(set(x) >= {"input", "face", "emotion", "probabilities", "error"} for x in recs)
    bad = [x for x in recs if x["error"]]
    assert sorted(Path(x["input"]).name for x in bad) == ["empty.png", "missing.jpg", "text.jpg", "tiny.png"]
    good = [x for x in recs if not x["error"]]
    assert all(abs(sum(x["probabilities"].values()) - 1) < 1e-3 and x["emotion"] in x["probabilities"] for x in good)
    assert "Traceback" not in r.output + r.stderr


def test_classify_csv_to_file_and_no_overwrite(run, crops, tiny_classifier, tmp_path):
    out = tmp_path / "r.csv"
    r = run("classify", crops / "a", "--classifier", tiny_classifier, "--format", "csv", "-o", out)
    assert r.exit_code == 1  # text.jpg
    lines = out.read_text().splitlines()
    assert lines[0] == "input,face,emotion,p_happy,p_sad,p_angry,quadrant,error" and len(lines) == 11
    r = run("classify", crops / "a" / "face00.png", "--classifier", tiny_classifier, "--format", "csv", "-o", out)
    assert r.exit_code == 1 and "already exists" in r.stderr
    assert len(out.read_text().splitlines()) == 11


@pytest.mark.parametrize("name", ["tiny.png", "text.jpg", "empty.png"])
def test_one_line_errors(run, crops, tiny_classifier, name):
    path = next(crops.rglob(name))
    r = run("classify", path, "--classifier", tiny_classifier)
    assert r.exit_code == 1 and "Traceback" not in r.output + r.stderr
    assert name in r.output + r.stderr


@pytest.mark.skipif(not CHELSEA.exists(), reason="shared photos not present")
def test_no_face_photo(run, tiny_classifier, tiny_generator, tmp_path):
    r = run("compose", CHELSEA, "-o", tmp_path / "x.mid", "--classifier", tiny_classifier, "--generator", tiny_generator)
    assert r.exit_code == 1 and "no face found" in r.stderr and not (tmp_path / "x.mid").exists()
    assert len(r.stderr.strip().splitlines()) == 1


def test_compose_emotion_summary_and_seed(run, tiny_generator, tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    r = run("compose", "--emotion", "sad", "-o", a, "--seed", "4", "--generator", tiny_generator)
    assert r.exit_code == 0 and "Q3" in r.output and "minor" in r.output and "BPM" in r.output
    run("compose", "--emotion", "sad", "-o", b, "--seed", "4", "--generator", tiny_generator)
    assert a.read_bytes() == b.read_bytes()
    r = run("compose", "--emotion", "sad", "-o", a, "--generator", tiny_generator)
    assert r.exit_code == 1 and "--force" in r.stderr
    r = run("compose", "--emotion", "calm", "-o", a, "--no-chords", "--bars", "8", "--tempo", "90", "--force", "--generator", tiny_generator)
    pm = pretty_midi.PrettyMIDI(str(a))
    assert r.exit_code == 0 and [i.name for i in pm.instruments] == ["Melody"]
    assert pm.get_tempo_changes()[1][0] == pytest.approx(90, rel=1e-4)  # MIDI stores whole microseconds per beat


def test_compose_png_wav_preview(run, tiny_generator, tmp_path):
    out = tmp_path / "p.mid"
    r = run("compose", "--emotion", "happy", "-o", out, "--png", "--wav", "--preview", "--bars", "4", "--generator", tiny_generator)
    assert r.exit_code == 0 and "│" in r.output
    img = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))
    assert img.shape[1] > 4 * 16 * 6 and img.shape[0] > 100
    assert (np.abs(img.astype(int) - [230, 90, 60]).sum(-1) < 30).sum() > 50  # melody notes drawn
    assert (np.abs(img.astype(int) - [70, 120, 200]).sum(-1) < 30).sum() > 50  # chord notes drawn
    import wave

    with wave.open(str(out.with_suffix(".wav"))) as w:
        assert w.getnframes() > w.getframerate() * 4 * 4 * 60 / 126 * 0.9


def test_compose_to_stdout(run, tiny_generator):
    r = CliRunner().invoke(main, ["compose", "--emotion", "angry", "-o", "-", "--bars", "2", "--generator", str(tiny_generator)])
    assert r.exit_code == 0 and r.stdout_bytes.startswith(b"MThd")


def test_batch_compose(run, crops, tiny_classifier, tiny_generator, tmp_path):
    out = tmp_path / "songs"
    args = ["compose", crops, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--format", "json"]
    r = run(*args)
    assert r.exit_code == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 20 and sum(1 for x in recs if x["error"]) == 3
    mids = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert len([m for m in mids if m.endswith(".mid")]) == 17 and "b/c/face16.mid" in mids
    assert all(p.stat().st_size > 0 for p in out.rglob("*.mid")) and not [m for m in mids if ".tmp" in m]
    assert all({"input", "face", "emotion", "probabilities", "quadrant", "seed", "output", "error"} <= set(x) for x in recs)
    seeds = {Path(x["input"]).name: x["seed"] for x in recs}
    r2 = run(*args)
    recs2 = [json.loads(line) for line in r2.stdout.splitlines()]
    assert sum(1 for x in recs2 if x.get("status") == "skipped") == 17
    assert {Path(x["input"]).name: x["seed"] for x in recs2} == seeds


def test_models_lists_home(run, tiny_classifier, tmp_path, monkeypatch):
    import shutil

    shutil.copy(tiny_classifier, tmp_path / "classifier.pt")
    monkeypatch.setenv("FACETUNE_HOME", str(tmp_path))
    r = run("models", "--format", "json")
    found = json.loads(r.stdout)
    assert any(m["origin"] == "FACETUNE_HOME" and m["kind"] == "classifier" for m in found)


def test_train_ensemble(run, tiny_classifier, faces_cache, tmp_path, crops):
    out = tmp_path / "ens.pt"
    r = run("train", "ensemble", tiny_classifier, tiny_classifier, "--out", out, "--data", faces_cache)
    assert r.exit_code == 0 and out.exists() and "ensemble of 2: val acc" in r.output
    r = run("train", "ensemble", tiny_classifier, tiny_classifier, "--out", out)
    assert r.exit_code == 1 and "already exists" in r.stderr and "Traceback" not in r.output
    r = run("train", "ensemble", tiny_classifier, tmp_path / "missing.pt", "--out", tmp_path / "e2.pt")
    assert r.exit_code == 1 and "missing.pt" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("classify", crops / "b" / "c", "--classifier", out, "--format", "json")
    assert r.exit_code == 0 and len(r.stdout.strip().splitlines()) == 8


def test_readme_documents_every_option():
    """The README's CLI reference names every subcommand and option, so it cannot drift from --help."""
    import click

    text = (REPO / "README.md").read_text()

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd

    for path, cmd in walk(main, ["facetune"]):
        heading = re.search(rf"^### `{re.escape(' '.join(path))}\b.*$", text, re.M)
        assert heading, f"README lacks a section for {' '.join(path)}"
        section = text[heading.end() : text.find("\n### ", heading.end())]
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden:
                assert p.opts[-1] in section, f"README section {' '.join(path)} lacks {p.opts[-1]}"


def test_compose_form_is_settable_reported_and_drawn(run, tiny_generator, tmp_path):
    import json

    out = tmp_path / "f.mid"
    r = run("compose", "--emotion", "sad", "-o", out, "--form", "ABAB'", "--png", "--format", "json", "--generator", tiny_generator)
    assert r.exit_code == 0
    rec = json.loads(r.output.strip().splitlines()[-1])
    assert rec["form"] == "ABAB'" and rec["output"] == str(out)
    img = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))
    band = img[26:43]
    assert (np.abs(band.astype(int) - [250, 214, 165]).sum(-1) < 10).sum() > 500  # A phrases
    assert (np.abs(band.astype(int) - [178, 214, 238]).sum(-1) < 10).sum() > 500  # B phrases
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "g.mid", "--generator", tiny_generator)
    assert r.exit_code == 0 and "form" in r.output


@pytest.mark.parametrize("form", ["A?BA", "12", "A-B'x3"])
def test_malformed_form_is_a_usage_error(run, tiny_generator, tmp_path, form):
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "x.mid", "--form", form, "--generator", tiny_generator)
    assert r.exit_code == 2 and "form" in r.stderr and not (tmp_path / "x.mid").exists()


def test_training_commands_on_the_light_install_say_how_to_get_the_training_packages(run, music_cache, tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as on `pip install .`
    r = run("train", "gan", "--data", str(music_cache), "--out", str(tmp_path / "run"), "--tiny", "--epochs", "1")
    assert r.exit_code == 1
    assert "needs torch, one of the training packages: pip install 'facetune[train]'" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


# --- what a new user trips over (issue 18) ------------------------------------------------------


def test_empty_inputs_are_nothing_to_do_and_exit_1(run, tiny_classifier, tiny_generator, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("compose", empty, "--out-dir", tmp_path / "out", "--generator", tiny_generator, "--classifier", tiny_classifier)
    assert r.exit_code == 1 and "no images found in" in r.output and "nothing to do" in r.output
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("not a photo")
    r = run("classify", texts, "--classifier", tiny_classifier)
    assert r.exit_code == 1 and f"no images found in {texts}" in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, hint", [
    (["compose", "--emotion", "hapy", "-o", "x.mid"], "did you mean 'happy'"),
    (["compose", "--emotion", "joyful", "-o", "x.mid"], "unknown emotion 'joyful'"),
    (["classify", "x.png", "--classes", "happy,sadd"], "did you mean 'sad'"),
    (["compose", "x.png", "-o", "x.mid", "--classes", "happy,angri"], "did you mean 'angry'"),
    (["evaluate", "classifier", "data", "--classes", "hapy,sad"], "did you mean 'happy'"),
])
def test_unknown_emotion_or_class_names_are_usage_errors(run, tmp_path, args, hint):
    r = run(*args)
    assert r.exit_code == 2 and hint in r.output


def test_single_compose_record_has_status_and_the_music(run, tiny_generator, tmp_path):
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "s.mid", "--seed", "3", "--format", "json", "--generator", tiny_generator)
    rec = json.loads(r.stdout)
    assert rec["status"] == "done" and rec["emotion"] == "sad" and rec["quadrant"] == "Q3"
    assert rec["key"].endswith("minor") and len(rec["chords"]) == rec["bars"] == 16 and rec["tempo"] > 0 and rec["form"]
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "t.mid", "--seed", "3", "--format", "csv", "--generator", tiny_generator)
    [row] = list(csv.DictReader(io.StringIO(r.stdout)))
    assert row["status"] == "done" and row["key"] == rec["key"] and row["chords"].split(" | ") == rec["chords"] and row["form"] == rec["form"]


def test_batch_text_and_csv_put_every_result_on_stdout(run, crops, tiny_classifier, tiny_generator, tmp_path):
    base = ["compose", crops, "--classifier", tiny_classifier, "--generator", tiny_generator]
    r = run(*base, "--out-dir", tmp_path / "a")
    lines = r.stdout.splitlines()
    assert r.exit_code == 1 and len(lines) == 20
    assert sum(" → " in x and ("minor" in x or "major" in x) for x in lines) == 17 and sum("failed (the reason is on stderr)" in x for x in lines) == 3
    r = run(*base, "--out-dir", tmp_path / "b", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 20 and r.stdout.count("input,status,") == 1
    done = [x for x in rows if x["status"] == "done"]
    assert len(done) == 17 and all(x["key"] and len(x["chords"].split(" | ")) == 16 and x["form"] for x in done)
    assert {x["status"] for x in rows} == {"done", "failed"}


def test_png_says_it_was_written(run, tiny_generator, tmp_path):
    r = run("compose", "--emotion", "calm", "-o", tmp_path / "c.mid", "--png", "--bars", "4", "--generator", tiny_generator)
    assert r.exit_code == 0 and f"wrote {tmp_path / 'c.png'}" in r.output


@pytest.mark.slow
def test_binary_midi_is_not_written_to_a_terminal(tiny_generator):
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "facetune", "compose", "--emotion", "sad", "-o", "-", "--generator", str(tiny_generator)], stdout=follower, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert p.returncode == 2 and b"refusing to write binary MIDI to a terminal" in p.stderr


def test_paths_in_tables_never_wrap_mid_name_off_a_terminal(run, tiny_classifier, tmp_path):
    deep = tmp_path / "a_folder_with_a_long_name" / "and_another_long_folder_name"
    deep.mkdir(parents=True)
    img = deep / "IMG_20240101_123456_a_rather_long_photo_name.png"
    Image.fromarray(face_image(0, np.random.default_rng(0))).save(img)
    r = run("classify", img, "--classifier", tiny_classifier)
    assert r.exit_code == 0 and str(img) in r.stdout
    r = run("models")
    assert all(m["path"] in r.stdout for m in json.loads(run("models", "--format", "json").stdout))


def test_musicxml_lead_sheet_beside_the_midi_or_as_the_output(run, tiny_generator, tmp_path):
    music21 = pytest.importorskip("music21")
    r = run("compose", "--emotion", "happy", "-o", tmp_path / "h.mid", "--musicxml", "--seed", "2", "--generator", tiny_generator, "--format", "json")
    assert r.exit_code == 0 and f"wrote {tmp_path / 'h.musicxml'}" in r.output
    rec = json.loads(r.stdout)
    score = music21.converter.parse(str(tmp_path / "h.musicxml"))
    symbols = [h.figure for h in score.recurse().getElementsByClass("ChordSymbol")]
    assert len(symbols) == 16 and [s.replace("-", "b") for s in symbols] == rec["chords"]
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "h.mid"))
    notes = [n for n in score.stripTies(matchByPitch=False).recurse().notes if not n.isChord]
    assert [n.pitch.midi for n in notes] == [n.pitch for n in midi.instruments[0].notes]
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "s.musicxml", "--generator", tiny_generator)
    assert r.exit_code == 0 and (tmp_path / "s.musicxml").is_file() and not (tmp_path / "s.mid").exists()
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "s.musicxml", "--generator", tiny_generator)
    assert r.exit_code == 1 and "already exists" in r.output


def test_wav_uses_the_soundfont_given(run, tiny_generator, tmp_path):
    from facetune.music import audio

    font = audio.find_soundfont()
    if font is None or audio.shutil.which("fluidsynth") is None:
        pytest.skip("FluidSynth and a SoundFont are not installed (CI installs them)")
    r = run("compose", "--emotion", "calm", "-o", tmp_path / "c.mid", "--wav", "--soundfont", font, "--bars", "4", "--generator", tiny_generator)
    assert r.exit_code == 0 and f"FluidSynth with {font.name}" in r.output
    r = run("compose", "--emotion", "calm", "-o", tmp_path / "d.mid", "--wav", "--soundfont", tmp_path / "missing.sf2", "--generator", tiny_generator)
    assert r.exit_code == 1 and "missing.sf2" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "d.mid").exists()  # checked before anything was written


# --- output failures (issue 23): one line naming the path and the reason, nothing half-written ----


def _fail_writes_under(monkeypatch, folder, err: int, after: int = 0):
    """Make every temporary file under `folder` fail with `err` (ENOSPC, EROFS, EACCES) after
    `after` successful ones, as a full, read-only or forbidden disk would (this runs as root too)."""
    import os

    from facetune import checkpoints

    real = checkpoints._create_temporary
    made = []

    def create(tmp):
        if tmp.startswith(str(folder)):
            made.append(tmp)
            if len(made) > after:
                raise OSError(err, os.strerror(err))
        return real(tmp)

    monkeypatch.setattr(checkpoints, "_create_temporary", create)


def _one_clean_line(r, *words):
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.output and lines and lines[-1].startswith("error:"), r.output
    assert all(w in lines[-1] for w in words), lines[-1]


@pytest.mark.parametrize("err, reason", [(28, "no space left on the device"), (30, "read-only file system"), (13, "permission denied")])
def test_single_compose_output_failure_is_one_line_and_leaves_nothing(run, tiny_generator, tmp_path, monkeypatch, err, reason):
    out = tmp_path / "o" / "s.mid"
    _fail_writes_under(monkeypatch, tmp_path / "o", err)
    r = run("compose", "--emotion", "sad", "-o", out, "--png", "--generator", tiny_generator)
    assert r.exit_code == 1
    _one_clean_line(r, str(out.with_suffix(".png")), reason)
    assert not [p for p in (tmp_path / "o").iterdir()]


def test_a_failed_extra_takes_its_midi_and_other_extras_with_it(run, tiny_generator, tmp_path, monkeypatch):
    """All or nothing per song: the WAV fails on a full disk after the picture was written, so the
    picture goes too and no MIDI is written; the rerun does not stop at "already exists"."""
    out = tmp_path / "s.mid"
    _fail_writes_under(monkeypatch, tmp_path, 28, after=1)
    r = run("compose", "--emotion", "sad", "-o", out, "--png", "--wav", "--bars", "4", "--generator", tiny_generator)
    assert r.exit_code == 1 and not list(tmp_path.iterdir())
    _one_clean_line(r, str(out.with_suffix(".wav")), "no space left")
    monkeypatch.undo()
    r = run("compose", "--emotion", "sad", "-o", out, "--png", "--wav", "--bars", "4", "--generator", tiny_generator)
    assert r.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["s.mid", "s.png", "s.wav"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_output_that_is_a_folder_or_under_a_file(run, tiny_generator, tmp_path, force):
    (tmp_path / "dir").mkdir()
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "dir", *force, "--generator", tiny_generator)
    assert r.exit_code == 2 and f"{tmp_path / 'dir'} is a folder" in r.stderr and "Traceback" not in r.output
    (tmp_path / "file").write_text("x")
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "file" / "x.mid", *force, "--generator", tiny_generator)
    assert r.exit_code == 1
    _one_clean_line(r, str(tmp_path / "file"), "a file is in the way of a folder")
    r = run("compose", "--emotion", "sad", "--out-dir", tmp_path / "file", "--generator", tiny_generator)
    assert r.exit_code == 2  # --emotion takes -o; --out-dir naming a file is refused before that
    r = run("compose", tmp_path, "--out-dir", tmp_path / "file", *force, "--generator", tiny_generator)
    assert r.exit_code == 2 and f"{tmp_path / 'file'} is a file" in r.stderr
    r = run("classify", tmp_path, "-o", tmp_path / "dir", *force)
    assert r.exit_code == 2 and "is a folder" in r.stderr
    assert (tmp_path / "file").read_text() == "x" and not list((tmp_path / "dir").iterdir())


def test_batch_output_failure_of_one_input_is_its_record(run, crops, tiny_classifier, tiny_generator, tmp_path):
    out = tmp_path / "songs"
    (out / "face03.mid").mkdir(parents=True)  # a folder where one song should go
    r = run("compose", crops / "a", "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--format", "json")
    recs = {Path(x["input"]).name: x for x in map(json.loads, r.stdout.splitlines())}
    assert r.exit_code == 1 and len(recs) == 10 and recs["face03.png"]["status"] == "failed"
    assert "face03.mid: cannot write (it is a folder" in recs["face03.png"]["error"]
    assert sum(x["status"] == "done" for x in recs.values()) == 8  # and text.jpg failed to read


@pytest.mark.parametrize("err", [28, 30])
def test_batch_stops_cleanly_when_the_disk_is_full_or_read_only(run, crops, tiny_classifier, tiny_generator, tmp_path, monkeypatch, err):
    out = tmp_path / "songs"
    _fail_writes_under(monkeypatch, out, err, after=3)
    r = run("compose", crops, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "stopped:" in r.stderr and "input(s) not composed (rerun to resume)" in r.stderr and "done" in r.stderr  # the summary
    assert len(list(out.rglob("*.mid"))) == 3 and not [p for p in out.rglob(".*")]
    monkeypatch.undo()
    r = run("compose", crops, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--format", "json")
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and sum(x["status"] == "skipped" for x in recs) == 3 and sum(x["status"] == "done" for x in recs) == 14


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0, reason="root writes anywhere")
def test_real_read_only_folder(run, tiny_generator, crops, tiny_classifier, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run("compose", "--emotion", "sad", "-o", ro / "s.mid", "--generator", tiny_generator)
        assert r.exit_code == 1
        _one_clean_line(r, str(ro / "s.mid"), "permission denied")
        r = run("compose", crops / "a", "--out-dir", ro, "--classifier", tiny_classifier, "--generator", tiny_generator)
        assert r.exit_code == 1 and "stopped:" in r.stderr and "permission denied" in r.stderr
        assert not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


# --- seeds from content, collisions (issue 23) --------------------------------------------------


def test_same_photo_same_song_alone_in_a_folder_renamed_and_via_stdin(run, tiny_classifier, tiny_generator, tmp_path):
    import shutil

    Image.fromarray(face_image(1, np.random.default_rng(9))).save(tmp_path / "p.png")
    (tmp_path / "folder" / "deep").mkdir(parents=True)
    shutil.copy(tmp_path / "p.png", tmp_path / "folder" / "deep" / "renamed.png")
    Image.fromarray(face_image(1, np.random.default_rng(10))).save(tmp_path / "folder" / "other.png")
    models = ["--classifier", tiny_classifier, "--generator", tiny_generator]
    assert run("compose", tmp_path / "p.png", "-o", tmp_path / "alone.mid", *models).exit_code == 0
    r = CliRunner().invoke(main, ["compose", "-", "-o", str(tmp_path / "stdin.mid"), *map(str, models)], input=(tmp_path / "p.png").read_bytes())
    assert r.exit_code == 0
    assert run("compose", tmp_path / "folder", "--out-dir", tmp_path / "songs", *models).exit_code == 0
    alone = (tmp_path / "alone.mid").read_bytes()
    assert alone == (tmp_path / "stdin.mid").read_bytes() == (tmp_path / "songs" / "deep" / "renamed.mid").read_bytes()
    assert (tmp_path / "songs" / "other.mid").read_bytes() != alone
    r = run("compose", tmp_path / "p.png", "-o", tmp_path / "s7.mid", "--seed", "7", "--format", "json", *models)
    assert json.loads(r.stdout)["seed"] != json.loads(run("compose", tmp_path / "p.png", "-o", tmp_path / "s0.mid", "--format", "json", *models).stdout)["seed"]
    assert run("compose", tmp_path / "p.png", "-o", tmp_path / "s7b.mid", "--seed", "7", *models).exit_code == 0
    assert (tmp_path / "s7.mid").read_bytes() == (tmp_path / "s7b.mid").read_bytes() != alone


def test_different_photos_give_different_songs(tiny_generator):
    """100 photos' content seeds of one emotion: 100 different songs (the seed is all that differs)."""
    from facetune.api import content_seed, load_generator
    from facetune.faces.photos import source_digest
    from facetune.music.composer import compose_emotions

    seeds = [content_seed(0, source_digest(f"photo {i}".encode())) for i in range(100)]
    songs = compose_emotions([("sad", s) for s in seeds], load_generator(str(tiny_generator)))
    assert len(set(seeds)) == 100 and len({s.midi_bytes() for s in songs}) == 100


@pytest.mark.parametrize("args", [["compose", "--emotion", "sad", "-o", "x.mid"], ["compose", "p.png", "-o", "x.mid"], ["compose", "d", "--out-dir", "o"]])
def test_negative_seed_is_a_usage_error(run, tmp_path, args):
    r = run(*args, "--seed", "-1")
    assert r.exit_code == 2 and "--seed" in r.stderr and "Traceback" not in r.output


def test_colliding_names_keep_their_extensions_and_reruns_tell_the_truth(run, tiny_classifier, tiny_generator, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(face_image(0, np.random.default_rng(1))).save(src / "x.png")
    Image.fromarray(face_image(1, np.random.default_rng(2))).save(src / "x.jpg", quality=95)
    Image.fromarray(face_image(2, np.random.default_rng(3))).save(src / "y.png")
    args = ["compose", src, "--out-dir", tmp_path / "out", "--classifier", tiny_classifier, "--generator", tiny_generator, "--format", "json"]
    recs = [json.loads(x) for x in run(*args).stdout.splitlines()]
    assert sorted(Path(x["output"]).name for x in recs) == ["x.jpg.mid", "x.png.mid", "y.mid"] and {x["status"] for x in recs} == {"done"}
    songs = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert songs["x.jpg.mid"] != songs["x.png.mid"]
    recs = [json.loads(x) for x in run(*args).stdout.splitlines()]
    assert {x["status"] for x in recs} == {"skipped"} and len(recs) == 3
    assert run(*args, "--force").exit_code == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == songs  # --force never swaps a sibling's song


def test_same_name_from_two_folders_is_refused_up_front(run, tiny_classifier, tiny_generator, tmp_path):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        Image.fromarray(face_image(0, np.random.default_rng(len(d))).copy()).save(tmp_path / d / "a.png")
    r = run("compose", tmp_path / "d1" / "a.png", tmp_path / "d2" / "a.png", "--out-dir", tmp_path / "out", "--classifier", tiny_classifier, "--generator", tiny_generator)
    assert r.exit_code == 1 and "would both be written to" in r.stderr and "nothing was composed" in r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    r = run("compose", tmp_path / "d1", "--out-dir", tmp_path / "d1", "--png", "--no-detect", "--classifier", tiny_classifier, "--generator", tiny_generator)
    assert r.exit_code == 1 and "would overwrite the input" in r.stderr and sorted(p.name for p in (tmp_path / "d1").iterdir()) == ["a.png"]


def test_batch_failures_are_said_once_as_they_happen(run, crops, tiny_classifier, tiny_generator, tmp_path):
    r = run("compose", crops, "--out-dir", tmp_path / "s", "--classifier", tiny_classifier, "--generator", tiny_generator)
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 3 and len(set(errors)) == 3
    r = run("compose", crops, "--out-dir", tmp_path / "s", "--classifier", tiny_classifier, "--generator", tiny_generator)
    again = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert r.exit_code == 1 and len(again) == 3 and all("failed before with the same content" in x for x in again)


# --- smaller points of issue 23 -------------------------------------------------------------------


def test_one_photo_without_o_says_how_to_give_the_output(run, tmp_path):
    Image.fromarray(face_image(0, np.random.default_rng(0))).save(tmp_path / "p.png")
    r = run("compose", tmp_path / "p.png")
    assert r.exit_code == 2 and "say where to write the MIDI: -o FILE" in r.stderr and "several" not in r.stderr


@pytest.mark.parametrize("cmd", [["compose", "--emotion", "sad", "-o", "x.mid"], ["classify", "x.png"]])
def test_unknown_device_is_a_usage_error(run, cmd):
    r = run(*cmd, "--device", "tpu")
    assert r.exit_code == 2 and "unknown device 'tpu'" in r.stderr


def test_classify_to_a_csv_name_writes_csv(run, crops, tiny_classifier, tmp_path):
    assert run("classify", crops / "b" / "c", "--classifier", tiny_classifier, "-o", tmp_path / "r.csv").exit_code == 0
    assert (tmp_path / "r.csv").read_text().startswith("input,face,emotion,")
    assert run("classify", crops / "b" / "c", "--classifier", tiny_classifier, "-o", tmp_path / "r.jsonl").exit_code == 0
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["input"]


def test_preview_fits_80_columns_and_one_bar_is_singular(run, tiny_generator, tmp_path, monkeypatch):
    from facetune import console

    monkeypatch.setattr(console.out, "width", 80)
    r = run("compose", "--emotion", "happy", "-o", tmp_path / "p.mid", "--preview", "--generator", tiny_generator)
    assert r.exit_code == 0 and "bars 9–16" in r.stdout and max(len(x) for x in r.stdout.splitlines()) <= 80
    r = run("compose", "--emotion", "happy", "-o", tmp_path / "q.mid", "--bars", "1", "--generator", tiny_generator)
    assert "1 bar of 4/4" in r.stdout


def test_help_says_stdin_and_exit_codes_and_every_option_has_help(run):
    import click

    for cmd in ("classify", "compose"):
        text = " ".join(run(cmd, "--help").output.split())
        assert "- for an image on stdin" in text and "2 on a usage error" in text
    assert "130 Ctrl-C, 143 SIGTERM" in " ".join(run("--help").output.split())
    for name in ("classify", "compose", "train"):
        cmd = main.commands[name]
        for sub in cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]:
            assert all(p.help for p in sub.params if isinstance(p, click.Option) and not p.hidden), sub.name


def test_classify_shards_split_the_inputs_once(run, crops, tiny_classifier):
    whole = run("classify", crops, "--classifier", tiny_classifier, "--format", "json")
    parts = [run("classify", crops, "--classifier", tiny_classifier, "--format", "json", "--shard", f"{k}/3") for k in (1, 2, 3)]
    assert sorted(whole.stdout.splitlines()) == sorted(line for r in parts for line in r.stdout.splitlines())
    assert all("shard" in r.stderr for r in parts)


@pytest.mark.parametrize("bad", ["0/3", "4/3", "3", "a/b"])
def test_a_bad_shard_is_a_usage_error(run, bad):
    r = run("classify", "x.png", "--shard", bad)
    assert r.exit_code == 2 and "not a shard" in r.output + r.stderr


def test_a_shard_needs_a_batch(run, tmp_path):
    r = run("compose", "--emotion", "sad", "-o", tmp_path / "s.mid", "--shard", "1/2")
    assert r.exit_code == 2 and "--out-dir" in r.output + r.stderr
