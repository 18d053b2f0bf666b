from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from facetune.errors import InputError, NoFaceError
from facetune.faces.photos import FER_LANDMARKS, _iou, align_face, crop_face, find_faces, iter_image_files, load_image, locate_faces, to_gray

from conftest import ASTRONAUT, CHELSEA, REPO, face_image

needs_photos = pytest.mark.skipif(not ASTRONAUT.exists(), reason="shared photos not present")


def _save(img: Image.Image, path, fmt=None, **kw):
    img.save(path, format=fmt, **kw)
    return path


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_formats(tmp_path, fmt, ext):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    arr = load_image(_save(img, tmp_path / f"a.{ext}", fmt))
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA", "1"])
def test_modes(tmp_path, mode):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.arange(480).reshape(20, 24) * 100).astype(np.uint16))
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    arr = load_image(_save(img, tmp_path / f"m.{fmt.lower()}", fmt))
    assert arr.shape == (20, 24, 3)
    if mode == "I;16":
        assert arr.max() == 255 and arr.min() == 0  # 16-bit range scaled, not clipped


def test_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif)
    assert load_image(path).shape == (40, 20, 3)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    arr = load_image(path)
    assert arr[0, 0, 0] > 200 and arr[0, 0, 1] < 50


def test_inputs_as_bytes_pil_and_arrays():
    img = Image.fromarray(face_image(0, np.random.default_rng(0)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    a = load_image(buf.getvalue())
    assert (load_image(img) == a).all() and (load_image(np.asarray(img)) == a).all()
    assert load_image(np.asarray(img) / 255.0).shape == (48, 48, 3)


@pytest.mark.parametrize(
    "maker, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
        (lambda p: p.write_bytes(_jpeg_bytes()[:300]), "damaged or truncated"),
        (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "too small"),
        (lambda p: Image.new("L", (3, 100000)).save(p, format="PNG"), "too small"),
    ],
)
def test_bad_images(tmp_path, maker, message):
    path = tmp_path / "bad.jpg"
    maker(path)
    with pytest.raises(InputError, match=message) as err:
        load_image(path)
    assert "bad.jpg" in str(err.value) and "\n" not in str(err.value)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, format="PNG")
    path = tmp_path / "t.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="t.png"):
        load_image(path)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(InputError, match="too large"):
        load_image(path)


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


@needs_photos
def test_astronaut_face_found():
    boxes = [f.box for f in locate_faces(load_image(ASTRONAUT))]
    assert len(boxes) >= 1
    x, y, w, h = boxes[0]
    assert 100 < x + w / 2 < 400 and y + h / 2 < 256 and w > 60


@needs_photos
def test_cat_has_no_human_face():
    with pytest.raises(NoFaceError, match="chelsea.png"):
        find_faces(CHELSEA)


def test_small_crop_used_whole():
    crop = np.full((48, 48), 128, np.uint8)
    [face] = find_faces(crop)
    assert face.box is None and face.crop.shape == (48, 48)


def test_no_detect_uses_whole_image():
    img = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    [face] = find_faces(img, detect=False)
    assert face.box is None and face.crop.shape == (48, 48)
    with pytest.raises(NoFaceError):
        find_faces(img)


def test_crop_at_the_border():
    img = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    assert crop_face(img, (80, 80, 30, 30), size=64).shape == (64, 64)


def test_iter_image_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/x.jpg", "a/b/y.png", "a/notes.txt", "a/.hidden.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    found = iter_image_files([tmp_path / "a", str(tmp_path / "a" / "*.jpg"), tmp_path / "missing.png"])
    assert [(str(r)) for _, r in found] == ["b/y.png", "x.jpg", "x.jpg", "missing.png"]


@settings(max_examples=30, deadline=None)
@given(st.integers(8, 64), st.integers(8, 64), st.sampled_from(["L", "RGB"]), st.integers(0, 2**32 - 1))
def test_png_round_trip(h, w, mode, seed):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out = load_image(buf.getvalue())
    expect = np.repeat(arr[:, :, None], 3, 2) if mode == "L" else arr
    assert out.shape == (h, w, 3) and (out == expect).all()


EXAMPLE = REPO / "examples" / "photos" / "astronaut.png"


def test_fer_landmarks_align_to_the_identity():
    rgb = np.random.default_rng(2).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    aligned = align_face(rgb, FER_LANDMARKS, 48)
    assert np.abs(aligned.astype(int) - to_gray(rgb).astype(int)).max() <= 1


def _rotate(rgb: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    import cv2

    m = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_a_tilted_face_is_found_and_levelled():
    rgb = load_image(EXAMPLE)
    [upright] = find_faces(rgb)
    x, y, w, h = upright.box
    tilted = _rotate(rgb, 25, (x + w / 2, y + h / 2))
    [found] = find_faces(tilted)
    box_crop = crop_face(tilted, found.box, 0.12, 48)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])

    assert corr(found.crop, upright.crop) > 0.9
    assert corr(found.crop, upright.crop) > corr(box_crop, upright.crop) + 0.1


def test_cascades_are_a_second_look_that_mtcnn_vets(monkeypatch):
    from facetune.faces import mtcnn
    from facetune.faces import photos as faces

    rgb = load_image(EXAMPLE)
    [direct] = locate_faces(rgb)
    monkeypatch.setattr(mtcnn, "detect", lambda *a, **k: [])
    [second] = locate_faces(rgb)
    assert second.landmarks is not None and _iou(second.box, direct.box) > 0.5
    noise = np.random.default_rng(3).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    monkeypatch.setattr(faces, "_haar_boxes", lambda gray: [(100, 100, 80, 80)])
    assert locate_faces(noise) == []


def test_thumbnails_skip_detection(monkeypatch):
    from facetune.faces import photos as faces

    calls = []
    monkeypatch.setattr(faces, "locate_faces", lambda rgb: calls.append(rgb.shape) or [])
    [face] = find_faces(np.full((64, 64, 3), 120, np.uint8))
    assert face.box is None and calls == []
    find_faces(np.full((64, 64, 3), 120, np.uint8), detect=True)
    find_faces(np.full((65, 65, 3), 120, np.uint8))
    assert calls == [(64, 64, 3), (65, 65, 3)]


def test_a_second_look_at_a_turned_photo_maps_back():
    from facetune.faces import mtcnn
    from facetune.faces.photos import _detect_tilted

    rgb = load_image(EXAMPLE)
    [upright] = mtcnn.detect(rgb)
    [turned_back] = _detect_tilted(rgb, 30.0, 20)
    assert np.abs(turned_back.landmarks - upright.landmarks).max() < 6
    x1, y1, x2, y2 = turned_back.box
    assert x1 <= upright.landmarks[:, 0].min() and upright.landmarks[:, 0].max() <= x2
    assert y1 <= upright.landmarks[:, 1].min() and upright.landmarks[:, 1].max() <= y2


# --- hostile inputs (issue 23): only regular files, never more than max_bytes, never a hang -------


def hostile_entries(d) -> dict[str, str]:
    """Inputs that must each be one error, made cheaply: name → the reason expected."""
    import os

    d.mkdir(parents=True, exist_ok=True)
    os.mkfifo(d / "fifo.jpg")
    os.symlink("/dev/zero", d / "zero.jpg")
    (d / "folder.jpg").mkdir()
    with open(d / "sparse.jpg", "wb") as fh:  # 10 GB on paper, nothing on disk
        fh.truncate(10 * 1024**3)
    os.symlink(d / "gone.png", d / "dangling.png")
    os.symlink(d / "loop_b.png", d / "loop_a.png")
    os.symlink(d / "loop_a.png", d / "loop_b.png")
    return {
        "fifo.jpg": "not a regular file (a FIFO)", "zero.jpg": "not a regular file (a character device)", "folder.jpg": "not a regular file (a folder)",
        "sparse.jpg": "10,737,418,240 bytes, over the 67,108,864-byte limit", "dangling.png": "dangling symlink", "loop_a.png": "symlink loop", "loop_b.png": "symlink loop",
    }


def test_hostile_inputs_are_refused_quickly_without_reading(tmp_path):
    import time

    from facetune.faces.photos import DEFAULT_MAX_BYTES, read_image_bytes

    assert DEFAULT_MAX_BYTES == 64 * 1024**2  # the README and --max-bytes's default say 64M
    for name, reason in hostile_entries(tmp_path).items():
        start = time.monotonic()
        with pytest.raises(InputError) as err:
            load_image(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ") and reason in str(err.value), str(err.value)
        with pytest.raises(InputError):
            read_image_bytes(tmp_path / name)
        assert time.monotonic() - start < 1.0, name


def test_max_bytes_is_a_cap_for_paths_and_bytes(tmp_path):
    from facetune.faces.photos import read_source

    Image.fromarray(face_image(0, np.random.default_rng(0))).save(tmp_path / "f.png")
    size = (tmp_path / "f.png").stat().st_size
    assert load_image(tmp_path / "f.png", max_bytes=size).shape == (48, 48, 3)
    with pytest.raises(InputError, match="--max-bytes raises it"):
        load_image(tmp_path / "f.png", max_bytes=size - 1)
    with pytest.raises(InputError, match="over the 10-byte limit"):
        read_source(b"x" * 11, 10)


def test_a_folder_lists_every_hostile_entry(tmp_path):
    """Dangling symlinks, loops, FIFOs, devices and folders named like images are listed, so each
    gets its own error record; a symlinked folder cycle ends; hidden files stay out."""
    import os

    expected = hostile_entries(tmp_path / "in" / "sub")
    Image.fromarray(face_image(0, np.random.default_rng(0))).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"x")
    os.symlink(tmp_path / "in", tmp_path / "in" / "sub" / "cycle")
    rels = sorted(rel.as_posix() for _, rel in iter_image_files([tmp_path / "in"]))
    assert rels == sorted(["good.png", *(f"sub/{n}" for n in expected)])


def test_gray_files_skip_the_rgb_copy_with_the_same_crop(tmp_path):
    """A gray JPEG comes back gray with gray_ok; its crop equals the one made through RGB, resized or not."""
    from facetune.faces.photos import whole_image_crop

    rng = np.random.default_rng(3)
    for side in (48, 60):
        path = _save(Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8), "L"), tmp_path / f"g{side}.jpg")
        gray, rgb = load_image(path, gray_ok=True), load_image(path)
        assert gray.ndim == 2 and rgb.shape == (side, side, 3) and np.array_equal(gray, to_gray(rgb))
        assert np.array_equal(whole_image_crop(gray), whole_image_crop(rgb))
        [face] = find_faces(path)
        assert np.array_equal(face.crop, whole_image_crop(rgb)) and face.crop.flags.writeable
    assert load_image(_save(Image.new("RGB", (30, 30)), tmp_path / "c.png"), gray_ok=True).shape == (30, 30, 3)
