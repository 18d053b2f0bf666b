"""video.tracking: the main face is followed by overlap, size and position."""
from facetune.video.tracking import main_face, overlap


def test_overlap():
    assert overlap((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert overlap((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(overlap((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_first_frame_takes_the_largest_central_face():
    assert main_face([(0, 0, 40, 40), (300, 160, 60, 60)], None, (640, 360)) == 1
    assert main_face([], None, (640, 360)) is None


def test_the_followed_face_is_kept_when_a_larger_one_appears():
    followed = (500, 100, 50, 50)
    boxes = [(100, 100, 70, 70), (505, 102, 50, 50)]
    assert main_face(boxes, followed, (640, 360)) == 1
