from __future__ import annotations

import json

import numpy as np
import pytest

from facetune.faces.data import FacePrepConfig, load_faces_cache, prepare_faces
from facetune.errors import DataError

from conftest import CLASSES, face_image


def test_folder_cache(faces_cache):
    manifest, splits = load_faces_cache(faces_cache)
    assert manifest["classes"] == list(CLASSES)
    assert manifest["dropped"]["test_identical_to_train"] == 1
    assert manifest["dropped"]["near_blank_test"] == 1
    assert sum(manifest["counts"]["test"].values()) == 18
    x_tr, _ = splits["train"]
    x_va, y_va = splits["val"]
    assert x_tr.dtype == np.uint8 and x_tr.shape[1:] == (48, 48)
    assert sorted(np.bincount(y_va).tolist()) == [3, 3, 3]  # stratified 20% of 16 per class
    train_rows = {r.tobytes() for r in x_tr}
    assert not any(r.tobytes() in train_rows for r in x_va)


def test_rerun_is_no_op(fer_tree, faces_cache):
    before = {p.name: p.stat().st_mtime_ns for p in faces_cache.iterdir()}
    m = prepare_faces(fer_tree, faces_cache, FacePrepConfig(classes=CLASSES, val_fraction=0.2))
    assert m["up_to_date"] and before == {p.name: p.stat().st_mtime_ns for p in faces_cache.iterdir()}


def _csv(path, rows):
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{' '.join(map(str, px))},{u}\n" for e, px, u in rows))
    return path


def test_fer2013_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        e = (3, 4, 0)[i % 3]  # happy, sad, angry in FER numbering
        rows.append((e, face_image(i % 3, rng).ravel().tolist(), "Training" if i < 24 else ("PublicTest" if i < 27 else "PrivateTest")))
    rows.append((6, face_image(0, rng).ravel().tolist(), "Training"))  # neutral: not asked for
    m = prepare_faces(_csv(tmp_path / "fer2013.csv", rows), tmp_path / "c", FacePrepConfig(val_fraction=0.25))
    assert m["layout"] == "fer2013.csv"
    assert {k: sum(v.values()) for k, v in m["counts"].items()} == {"train": 18, "val": 6, "test": 6}
    m7 = prepare_faces(tmp_path / "fer2013.csv", tmp_path / "c7", FacePrepConfig(classes=("angry", "happy", "sad", "neutral"), val_fraction=0.25))
    assert m7["counts"]["train"]["neutral"] + m7["counts"]["val"]["neutral"] == 1


@pytest.mark.parametrize(
    "text, message",
    [("emotion,Usage\n3,Training\n", "missing column"), ("emotion,pixels,Usage\n9,1 2 3 4,Training\n", ":2: unknown emotion"), ("emotion,pixels,Usage\n3,1 2 x,Training\n", ":2: malformed")],
)
def test_bad_csv(tmp_path, text, message):
    (tmp_path / "f.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        prepare_faces(tmp_path / "f.csv", tmp_path / "out")


def test_missing_class_folder(fer_tree, tmp_path):
    with pytest.raises(DataError, match="no folder for class 'fear'"):
        prepare_faces(fer_tree, tmp_path / "o", FacePrepConfig(classes=("happy", "fear")))


def test_cache_from_another_version_is_refused(faces_cache, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(faces_cache, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = 0
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="rerun `facetune prepare-data faces"):
        load_faces_cache(copy)
