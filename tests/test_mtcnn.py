"""The MTCNN detector: its box arithmetic, and what it finds on a real photo and on faceless noise."""
from __future__ import annotations

import numpy as np
import pytest

from facetune.faces import mtcnn
from facetune.faces.photos import load_image

from conftest import REPO

EXAMPLE = REPO / "examples" / "photos" / "astronaut.png"


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [50, 50, 60, 60, 0.5]], dtype=float)
    assert sorted(mtcnn._nms(boxes, 0.5).tolist()) == [1, 2]
    inner = np.array([[0, 0, 20, 20, 0.9], [5, 5, 10, 10, 0.8]], dtype=float)
    assert mtcnn._nms(inner, 0.5, "union").tolist() == [0, 1]
    assert mtcnn._nms(inner, 0.5, "min").tolist() == [0]
    assert mtcnn._nms(np.empty((0, 5)), 0.5).size == 0


def test_square_keeps_the_centre():
    sq = mtcnn._square(np.array([[10.0, 20.0, 30.0, 80.0, 1.0]]))
    x1, y1, x2, y2 = sq[0, :4]
    assert x2 - x1 == pytest.approx(y2 - y1) == pytest.approx(60.0)
    assert (x1 + x2) / 2 == pytest.approx(20.0) and (y1 + y2) / 2 == pytest.approx(50.0)


def test_finds_the_face_and_its_landmarks():
    [face] = mtcnn.detect(load_image(EXAMPLE))
    x1, y1, x2, y2 = face.box
    assert face.score > 0.95
    assert 150 < x1 < 200 and 40 < y1 < 80 and 70 < x2 - x1 < 110 and 90 < y2 - y1 < 140
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < nx < rex and mlx < mrx
    assert max(ley, rey) < ny < min(mly, mry)
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2) & (face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))


def test_no_face_in_noise():
    rng = np.random.default_rng(0)
    assert mtcnn.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []
    assert mtcnn.detect(np.full((200, 200, 3), 128, np.uint8)) == []


def test_verify_confirms_faces_and_rejects_clutter():
    rgb = load_image(EXAMPLE)
    [face] = mtcnn.detect(rgb)
    x1, y1, x2, y2 = face.box
    [confirmed] = mtcnn.verify(rgb, [(int(x1), int(y1), int(x2 - x1), int(y2 - y1))])
    assert confirmed.score > 0.9
    assert np.abs(confirmed.landmarks - face.landmarks).max() < 8
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert mtcnn.verify(noise, [(50, 50, 80, 80)]) == []
    assert mtcnn.verify(rgb, []) == []
