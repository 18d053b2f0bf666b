from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import facetune
import facetune.music.composer  # noqa: F401  (importing the module must not hide facetune.compose)
from facetune.api import ComposeResult, FaceEmotion, stable_seed
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


def test_stable_seed_depends_on_path_not_order():
    assert stable_seed(0, "a/b.png") == stable_seed(0, "a/b.png") != stable_seed(0, "a/c.png")
    assert stable_seed(1, "a/b.png") != stable_seed(0, "a/b.png")


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
    assert done["form"] == "AABA" and done["seed"] == stable_seed(5, "f0.png")
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
