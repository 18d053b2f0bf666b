"""video.reading: faces found in sampled frames, the photo search's costly second looks kept for
the first frame of a faceless run (and every `redetect_every`-th)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetune.video import reading
from facetune.video.frames import Sample
from facetune.video.reading import ReadSettings

FACES = Path(__file__).parent / "fixtures" / "faces"


def _frame_with_face() -> Sample:
    image = np.full((270, 480, 3), 100, np.uint8)
    image[40:240, 140:340] = np.asarray(Image.open(FACES / "happy.jpg").convert("RGB").resize((200, 200)))
    return Sample(0.0, image, 2.0)


@pytest.mark.parametrize("thorough", [True, False])
def test_a_face_is_found_with_and_without_the_second_looks(thorough):
    found = reading._faces(_frame_with_face(), 0.12, thorough)
    assert len(found) == 1
    (x, y, w, h), located = found[0]
    assert abs(x + w / 2 - 2 * 240) < 2 * 30 and abs(y + h / 2 - 2 * 140) < 2 * 40  # video pixels: scale 2
    assert located.landmarks.shape == (5, 2)


def test_a_faceless_run_is_searched_thoroughly_only_now_and_then(monkeypatch):
    blank = [Sample(i / 2, np.full((270, 480, 3), 90, np.uint8), 1.0) for i in range(20)]
    monkeypatch.setattr(reading, "sample_frames", lambda *args, **kwargs: iter(blank))
    looks: list[bool] = []
    monkeypatch.setattr(reading, "_faces", lambda sample, share, thorough=True: looks.append(thorough) or [])
    out = list(reading._tracked(Path("clip.mp4"), ReadSettings(redetect_every=8), 48, 0.2))
    assert [box for _, box, _ in out] == [None] * 20
    assert [i for i, thorough in enumerate(looks) if thorough] == [0, 8, 16]
