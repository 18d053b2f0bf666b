from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import facetune
import facetune.music.composer  # noqa: F401  (importing the module must not hide facetune.compose)
from facetune.api import ComposeResult, FaceEmotion, content_seed, stable_seed
from facetune.faces.photos import source_digest
from facetune.errors import FacetuneError, NoFaceError

from conftest import CHELSEA, face_image


def test_public_api_is_callable():
    assert callable(facetune.compose) and callable(facetune.classify)


def test_classify_takes_paths_pil_and_arrays(tmp_path, tiny_classifier):
    img = face_image(0, np.random.default_rng(0))
    Image.fromarray(img).save(tmp_path / "f.png")
    recs = facetune.classify([tmp_path / "f.png", Image.fromarray(img), img, tmp_path / "nope.png"], classifier=str(tiny_classifier))
    assert all(isinstance(r, FaceEmotion) for r in recs) and len(recs) == 4
    assert recs[0].probabilities == recs[1].probabilities == recs[2].probabilities
    assert recs[3].error and "nope.png" in recs[3].error and recs[3].emotion is None


def test_the_first_faces_found_while_the_classifier_loads_are_cut_for_it(tmp_path, tiny_classifier, monkeypatch):
    """The first readable input's faces are found at the default crop size while the classifier
    loads; a classifier that asks for another size gets them cut again at its size, as every later
    input is, so the overlap never changes an answer."""
    import copy

    import facetune.api as api

    clf = copy.copy(api.load_classifier(str(tiny_classifier)))
    clf.crop_size = 40
    monkeypatch.setattr(api, "load_classifier", lambda *a, **k: clf)
    sizes: list[int] = []
    detect = api._detect
    monkeypatch.setattr(api, "_detect", lambda src, *args: sizes.append(args[2]) or detect(src, *args))
    img = face_image(0, np.random.default_rng(0), size=64)
    recs = facetune.classify([img, img])
    assert sizes == [48, 40, 40] and recs[0].probabilities == recs[1].probabilities


def test_compose_api(tmp_path, tiny_classifier, tiny_generator):
    img = face_image(1, np.random.default_rng(1))
    res = facetune.compose(img, tmp_path / "a.mid", seed=2, classifier=str(tiny_classifier), generator=str(tiny_generator))
    assert isinstance(res, ComposeResult) and (tmp_path / "a.mid").exists() and res.bars == 16
    assert res.emotion in res.probabilities and res.quadrant in ("Q1", "Q2", "Q3")
    only = facetune.compose(emotion="calm", seed=2, bars=4, generator=str(tiny_generator))
    assert only.output is None and only.composition.to_midi().instruments and only.quadrant == "Q4"
    with pytest.raises(FacetuneError):
        facetune.compose()
    if CHELSEA.exists():
        with pytest.raises(NoFaceError):
            facetune.compose(CHELSEA, classifier=str(tiny_classifier), generator=str(tiny_generator))


def test_models_are_cached(tiny_classifier):
    assert facetune.load_classifier(str(tiny_classifier)) is facetune.load_classifier(str(tiny_classifier))


def test_stable_seed_depends_on_key_not_order():
    assert stable_seed(0, "a/b.png") == stable_seed(0, "a/b.png") != stable_seed(0, "a/c.png")
    assert stable_seed(1, "a/b.png") != stable_seed(0, "a/b.png")


def test_content_seed_is_the_documented_rule():
    """seed = first 31 bits of BLAKE2b-32("{base}:{BLAKE2b-128 hex of the file's bytes}")."""
    import hashlib

    data = b"any photo's bytes"
    content = hashlib.blake2b(data, digest_size=16).hexdigest()
    expected = int.from_bytes(hashlib.blake2b(f"7:{content}".encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF
    assert source_digest(data) == content and content_seed(7, content) == expected
    assert content_seed(0, content) != expected and 0 <= expected < 2**31


def test_same_photo_same_song_as_path_bytes_or_renamed(tmp_path, tiny_classifier, tiny_generator):
    img = face_image(0, np.random.default_rng(4))
    Image.fromarray(img).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "renamed.png").write_bytes((tmp_path / "a.png").read_bytes())
    kw = dict(classifier=str(tiny_classifier), generator=str(tiny_generator))
    songs = [facetune.compose(src, **kw) for src in (tmp_path / "a.png", str(tmp_path / "sub" / "renamed.png"), (tmp_path / "a.png").read_bytes())]
    assert len({s.seed for s in songs}) == 1 and len({s.composition.midi_bytes() for s in songs}) == 1
    Image.fromarray(face_image(0, np.random.default_rng(5))).save(tmp_path / "b.png")
    other = facetune.compose(tmp_path / "b.png", **kw)
    assert other.seed != songs[0].seed and other.composition.midi_bytes() != songs[0].composition.midi_bytes()
    assert facetune.compose(tmp_path / "a.png", seed=3, **kw).seed == content_seed(3, source_digest((tmp_path / "a.png").read_bytes()))


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_a_bad_seed_is_one_facetune_error(tiny_generator, seed):
    with pytest.raises(FacetuneError, match="seed must be a whole number"):
        facetune.compose(emotion="sad", seed=seed, generator=str(tiny_generator))


def test_compose_many_is_the_single_path_in_a_loop(tmp_path, tiny_classifier, tiny_generator):
    """Batch records come without Click; a batch song equals the single song of the same emotion and seed."""
    from pathlib import Path

    from facetune.api import ComposeSettings, compose_many
    from facetune.music.composer import compose_emotion, load_generator

    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(face_image(i % 3, rng)).save(src / f"f{i}.png")
    (src / "bad.png").write_text("not an image")
    items = [(p, str(p), Path(p.name)) for p in sorted(src.iterdir())]
    settings = ComposeSettings(seed=5, classifier=str(tiny_classifier), generator=str(tiny_generator), detect=False, form="AABA")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f1.mid").write_bytes(b"done before")
    recs = list(compose_many(items, tmp_path / "out", settings))
    assert [r["status"] for r in recs] == ["skipped", "failed", "done", "done"]  # skipped first, then input order
    assert [Path(r["input"]).name for r in recs] == ["f1.png", "bad.png", "f0.png", "f2.png"]
    assert "bad.png" in recs[1]["error"]
    done = recs[2]
    assert done["form"] == "AABA" and done["seed"] == content_seed(5, source_digest((src / "f0.png").read_bytes()))
    single = compose_emotion(done["emotion"], load_generator(str(tiny_generator)), seed=done["seed"], form="AABA")
    assert (tmp_path / "out" / "f0.mid").read_bytes() == single.midi_bytes()


@pytest.mark.slow
def test_worker_processes_give_the_same_records_in_the_same_order(tmp_path):
    from PIL import Image

    from facetune import api

    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        p = tmp_path / f"face{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(p)
        paths.append(p)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    sources = [paths[0], broken, *paths[1:]]
    alone = [(i, [r.to_dict() for r in recs]) for i, recs in api.iter_classify(sources, batch_size=4)]
    pooled = [(i, [r.to_dict() for r in recs]) for i, recs in api.iter_classify(sources, batch_size=4, workers=2)]
    assert pooled == alone and [i for i, _ in alone] == list(range(7))
    assert alone[1][1][0]["error"] and not alone[0][1][0]["error"]


def test_each_input_is_reported_as_read_before_its_batch_is_classified(tmp_path, tiny_classifier):
    """The progress bar moves from the first input, and failures show as they happen: `on_read`
    comes for every input of a batch before the batch's first record."""
    from facetune.api import iter_classify

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        Image.fromarray(face_image(i % 3, rng)).save(tmp_path / f"f{i}.png")
        paths.append(tmp_path / f"f{i}.png")
    (tmp_path / "bad.png").write_text("no")
    events = []
    for i, _ in iter_classify([paths[0], tmp_path / "bad.png", *paths[1:]], classifier=str(tiny_classifier), batch_size=128, on_read=lambda i, e: events.append(("read", i, e))):
        events.append(("record", i, None))
    reads = [e for e in events if e[0] == "read"]
    assert [e[1] for e in reads] == list(range(6)) and events.index(("record", 0, None)) == 6
    assert reads[1][2] and "bad.png" in reads[1][2] and not reads[0][2]


def test_a_first_batch_of_its_own_gives_the_same_records_sooner(tmp_path, tiny_classifier):
    """`first_batch`: the first crops are classified as a batch of their own (the first record
    comes once they are read, not once a whole batch is), and every record is the same."""
    from facetune.api import iter_classify

    rng = np.random.default_rng(1)
    paths = []
    for i in range(10):
        Image.fromarray(face_image(i % 3, rng)).save(tmp_path / f"f{i}.png")
        paths.append(tmp_path / f"f{i}.png")
    runs = {}
    for first in (None, 4):
        events: list[tuple[str, int]] = []
        recs = []
        for i, got in iter_classify(paths, classifier=str(tiny_classifier), batch_size=8, first_batch=first, on_read=lambda i, e: events.append(("read", i))):
            events.append(("record", i))
            recs.append((i, [r.to_dict() for r in got]))
        runs[first] = recs
        reads_before_first_record = events.index(("record", 0))
        assert reads_before_first_record == (8 if first is None else 4)
    assert runs[4] == runs[None]


def test_chunks_split_a_shared_run_evenly():
    """With a song worker, a run is cut into an even number of chunks of at most GENERATION_BATCH,
    as even as can be (no last chunk for one process alone); without one, GENERATION_BATCH."""
    from facetune.api import GENERATION_BATCH, _chunk_size

    assert _chunk_size(200, False) == GENERATION_BATCH
    for songs in (64, 65, 200, 1000, 3812):
        size = _chunk_size(songs, True)
        chunks = -(-songs // size)
        assert size <= GENERATION_BATCH and chunks % 2 == 0 and songs - (chunks - 1) * size >= size - chunks
    assert _chunk_size(200, True) == 50


def test_failed_inputs_are_not_retried_while_unchanged(tmp_path, tiny_classifier, tiny_generator):
    import json
    from pathlib import Path

    from facetune.api import FAILURES_FILE, ComposeSettings, compose_many

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(face_image(0, np.random.default_rng(0))).save(src / "good.png")
    Image.fromarray(np.random.default_rng(1).integers(90, 110, (300, 300, 3), dtype=np.uint8)).save(src / "noface.png")
    items = [(p, str(p), Path(p.name)) for p in sorted(src.iterdir())]
    settings = ComposeSettings(classifier=str(tiny_classifier), generator=str(tiny_generator))
    first = {Path(r["input"]).name: r for r in compose_many(items, out, settings)}
    assert first["noface.png"]["status"] == "failed" and "no face found" in first["noface.png"]["error"]
    record = (out / FAILURES_FILE).read_bytes()
    assert set(json.loads(record)["failed"]) == {"noface.mid"}
    again = {Path(r["input"]).name: r for r in compose_many(items, out, settings)}
    assert again["good.png"]["status"] == "skipped" and again["noface.png"]["status"] == "failed"
    assert "failed before with the same content; --retry-failed tries again" in again["noface.png"]["error"]
    assert again["noface.png"]["seed"] == first["noface.png"]["seed"] and (out / FAILURES_FILE).read_bytes() == record
    retried = {Path(r["input"]).name: r for r in compose_many(items, out, ComposeSettings(classifier=str(tiny_classifier), generator=str(tiny_generator), retry_failed=True))}
    assert "failed before" not in retried["noface.png"]["error"] and "no face found" in retried["noface.png"]["error"]
    Image.fromarray(face_image(1, np.random.default_rng(2))).save(src / "noface.png")  # fixed: a face now
    fixed = {Path(r["input"]).name: r for r in compose_many(items, out, settings)}
    assert fixed["noface.png"]["status"] == "done" and not (out / FAILURES_FILE).exists()


def test_a_rerun_removes_a_killed_runs_temporaries_and_names_do_not_change_the_record(tmp_path, tiny_classifier, tiny_generator, monkeypatch):
    from pathlib import Path

    from facetune.api import FAILURES_FILE, ComposeSettings, compose_many

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "bad.png").write_text("not an image")
    Image.fromarray(face_image(0, np.random.default_rng(0))).save(src / "good.png")
    (out / "sub").mkdir(parents=True)
    (out / ".good.mid.a1b2c3d4.tmp").write_bytes(b"half a song")  # what kill -9 mid-write leaves
    (out / "sub" / ".other.mid.e5f6g7h8.tmp").write_bytes(b"another run's song, being written")
    settings = ComposeSettings(classifier=str(tiny_classifier), generator=str(tiny_generator))
    list(compose_many([(p, str(p), Path(p.name)) for p in sorted(src.iterdir())], out, settings))
    assert [p.name for p in out.rglob("*.tmp")] == [".other.mid.e5f6g7h8.tmp"]  # not this run's output: another shard's, perhaps
    record = (out / FAILURES_FILE).read_bytes()
    (out / FAILURES_FILE).unlink()
    monkeypatch.chdir(tmp_path)
    list(compose_many([(Path("in") / p.name, f"in/{p.name}", Path(p.name)) for p in sorted(src.iterdir())], out, settings))
    assert (out / FAILURES_FILE).read_bytes() == record


def test_shards_together_compose_what_one_run_does(tmp_path, tiny_classifier, tiny_generator):
    """Every input belongs to exactly one shard; the shards' songs and records are the unsharded
    run's; names that collide across shards (x.png, x.jpg) are the unsharded run's too."""
    from pathlib import Path

    from facetune.api import ComposeSettings, compose_many, failures_file, shard_owns

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):
        Image.fromarray(face_image(i % 3, rng)).save(src / f"f{i:02d}.png")
    Image.fromarray(face_image(1, rng)).save(src / "x.jpg")
    Image.fromarray(face_image(2, rng)).save(src / "x.png")
    (src / "broken.png").write_text("not an image")
    items = [(p, p.name, Path(p.name)) for p in sorted(src.iterdir())]
    owners = [[k for k in range(1, 4) if shard_owns(rel, (k, 3))] for _, _, rel in items]
    assert all(len(o) == 1 for o in owners) and len({o[0] for o in owners}) == 3
    base = ComposeSettings(classifier=str(tiny_classifier), generator=str(tiny_generator))
    whole = sorted(map(str, [r for r in compose_many(items, tmp_path / "whole", base)]))
    parts = []
    for k in (1, 2, 3):
        parts += [r for r in compose_many(items, tmp_path / "sharded", replace(base, shard=(k, 3)))]
    assert sorted(str({**r, "output": (r["output"] or "").replace("sharded", "whole") or None}) for r in parts) == whole
    songs = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.mid")}  # noqa: E731
    assert songs(tmp_path / "sharded") == songs(tmp_path / "whole") and "x.png.mid" in songs(tmp_path / "whole")
    assert failures_file(tmp_path / "sharded", (1, 3)).name == ".facetune-failed.1-of-3.json"
    again = [r["status"] for k in (1, 2, 3) for r in compose_many(items, tmp_path / "sharded", replace(base, shard=(k, 3)))]
    assert again.count("skipped") == 14 and "done" not in again  # a rerun of each shard skips what it owns
