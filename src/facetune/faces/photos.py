"""Photos in, face crops out: load any common image, find faces and crop them (the network's input is made in `classifier.preprocess`).

Pillow decodes (it handles EXIF orientation, 16-bit, palette, CMYK and guards
against decompression bombs). Faces are found by the MTCNN CNN detector, whose 2 MB of
weights ship inside facetune (see `mtcnn`), with OpenCV's Haar cascades (inside the
opencv-python-headless 4.x wheel) as a second look; nothing is downloaded. Each face is
aligned by its landmarks to FER2013's framing, the classifier's training data.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import InputError, NoFaceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")
#: Images no larger than this on their longest side count as possible ready-made face crops.
TIGHT_CROP_MAX_SIDE = 160
#: Images this small are face crops without looking: a face the detector could find in them (20 px
#: or more) but that did not fill them would be too small to classify, and skipping detection keeps
#: folders of FER2013-sized crops fast.
THUMBNAIL_MAX_SIDE = 64
#: When MTCNN finds no face, it looks again with the photo turned by these angles (degrees), and
#: O-Net must be surer there (0.9, not 0.7): on faceless backgrounds the turned looks otherwise
#: add false faces (threshold chosen on FER2013 training faces in benchmarks/face_pipeline.py's photos).
RETRY_TILTS = (30.0, -30.0)
RETRY_SCORE = 0.9
#: A face this wide relative to the image means the image is already a face crop (FER2013's faces fill ~85%).
TIGHT_CROP_FACE_SHARE = 0.7
MIN_SIDE = 8
MAX_ASPECT = 20.0

ImageLike = Union[str, Path, bytes, "np.ndarray", Any]


@dataclass(frozen=True)
class Face:
    """One face: its box `[x, y, w, h]` in the original image (None when the whole image was used)."""

    box: tuple[int, int, int, int] | None
    crop: np.ndarray  # uint8 grayscale, square


#: Bytes read from one input at most unless raised (`--max-bytes`): well above any camera's photo,
#: far below what would hurt (a symlink to /dev/zero, a sparse 10 GB file is refused by its size).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _kind(mode: int) -> str:
    import stat

    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "a special file"


def _stat_reason(path: Path, exc: OSError) -> str:
    """Why `os.stat(path)` failed, in a few words."""
    import errno
    import os

    if exc.errno == errno.ENOENT:
        return "dangling symlink (its target does not exist)" if os.path.islink(path) else "no such file"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOTDIR:
        return "no such file (a folder in its path is a file)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot read file ({exc.strerror or exc})"


def _too_big(name: str, size: int, max_bytes: int) -> InputError:
    return InputError(f"{name}: file is {size:,} bytes, over the {max_bytes:,}-byte limit per input (--max-bytes raises it)")


def read_image_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of one input file, read so that nothing can hang or exhaust memory.

    Only a regular file is read: a folder, a FIFO, a device (a symlink to /dev/zero) or a socket
    is refused by `os.stat` before it is opened (and it is opened with O_NONBLOCK, so a file
    swapped for a FIFO in between cannot block either). A file over `max_bytes` is refused by its
    size before any byte is read, and no more than `max_bytes` + 1 bytes are ever read. A missing
    file, a dangling symlink, a symlink loop or a permission problem is an InputError naming it.
    """
    import os
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"{path}: {_stat_reason(path, exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file ({_kind(st.st_mode)})")
    if st.st_size > max_bytes:
        raise _too_big(str(path), st.st_size, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(f"{path}: {_stat_reason(path, exc)}") from None
    chunks: list[bytes] = []
    total = 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file ({_kind(os.fstat(fd).st_mode)})")
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise _too_big(str(path), total, max_bytes)
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_source(src: Any, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None) -> tuple[Any, str]:
    """An input as (bytes, name) for a path or bytes (read with `read_image_bytes`, or checked
    against `max_bytes`), or unchanged with its type's name for a PIL image or a numpy array."""
    name = name or _describe(src)
    if isinstance(src, (str, Path)):
        return read_image_bytes(src, max_bytes), name
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) > max_bytes:
            raise _too_big(name, len(src), max_bytes)
        return bytes(src), name
    if isinstance(src, np.ndarray) or hasattr(src, "getdata"):
        return src, name
    raise InputError(f"{name}: not an image (expected a path, bytes, PIL image or numpy array)")


def source_digest(data: Any) -> str:
    """The content's fingerprint (BLAKE2b-128, hex): of the file's bytes for a path or bytes (what
    `read_source` gives), of the pixels, shape and type for a numpy array or PIL image."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    if isinstance(data, (bytes, bytearray)):
        h.update(data)
        return h.hexdigest()
    arr = np.ascontiguousarray(np.asarray(data))
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _describe(src: Any) -> str:
    return str(src) if isinstance(src, (str, Path)) else type(src).__name__


def load_image(src: ImageLike, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None, gray_ok: bool = False) -> np.ndarray:
    """Decode an image to an RGB uint8 array (H, W, 3), honouring EXIF orientation.

    Accepts a path, raw bytes, a PIL image or a numpy array (gray, RGB or RGBA). A path is read
    with `read_image_bytes` (regular files only, at most `max_bytes`). Raises InputError with a
    message naming the file (`name`, default: the path or the type) and the problem. `gray_ok`:
    a gray (mode L) file comes back as it is, (H, W), skipping the RGB copy the caller would
    turn back into gray (FER2013's crops are gray JPEGs).
    """
    from PIL import Image, ImageOps

    name = name or _describe(src)
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src, name)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src, name)
    data, _ = read_source(src, max_bytes, name)
    if not data:
        raise InputError(f"{name}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(
                f"{name}: image is too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels)"
            ) from None
        except Image.UnidentifiedImageError:
            raise InputError(f"{name}: not an image file, or an unsupported format") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{name}: damaged or truncated image ({msg})") from None
    if gray_ok and img.mode == "L":
        return _check_size(np.asarray(img), name)
    return _pil_to_rgb(img, name)


def _pil_to_rgb(img: Any, name: str) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return _array_to_rgb(arr.astype(np.uint8), name)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        from PIL import Image

        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return _array_to_rgb(np.asarray(img.convert("RGB")), name)


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{name}: unsupported image array shape {arr.shape}")
    return _check_size(arr, name)


def _check_size(arr: np.ndarray, name: str) -> np.ndarray:
    """The decoded image, contiguous, unless it is too small or too narrow to hold a face."""
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name}: image is too small ({w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} needed)")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        raise InputError(f"{name}: image is too narrow to hold a face ({w}×{h} pixels)")
    return np.ascontiguousarray(arr)


@lru_cache(maxsize=None)
def _cascade(name: str) -> Any:
    import cv2

    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV cascade {path} could not be loaded; is opencv-python-headless<5 installed?")
    return cascade


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as FER2013's grayscale images were made."""
    if rgb.ndim == 2:
        return rgb
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(rgb.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)


#: FER2013's average landmarks in its 48×48 frame (left eye, right eye, nose, mouth corners), measured
#: with O-Net on 4,000 training faces and made left-right symmetric: aligned crops are framed as FER2013's.
FER_LANDMARKS = np.array([[15.1, 17.85], [32.9, 17.85], [24.0, 28.25], [16.5, 37.45], [31.5, 37.45]], dtype=np.float64)


@dataclass(frozen=True)
class Located:
    """A face found in a photo: its box `(x, y, w, h)` and its five landmarks (5, 2) as (x, y)."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray


def locate_faces(rgb: np.ndarray, max_side: int = 800, min_face: int | None = None) -> list[Located]:
    """Faces in an RGB photo, largest first, in original-image pixels.

    The MTCNN detector goes first: it scores its boxes, so clutter is rarely taken for a
    face, and its landmarks let the crop be aligned. When it finds nothing it looks again
    at the photo turned by ±30°, for strongly tilted heads. Failing that, OpenCV's Haar
    cascades (frontal, then the permissive `alt2`, then profile on the image and its
    mirror) propose boxes, and MTCNN's last network keeps those it judges to be faces:
    on textured backgrounds the cascades alone report a face in about 3 photos of 10.
    `min_face` (pixels of the scaled photo; default 5% of its shorter side, at least 20) is the
    smallest face looked for: a video's main face is larger, and a larger minimum is much faster.
    """
    import cv2

    from . import mtcnn

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    min_face = max(20, int(min(small.shape[:2]) * 0.05)) if min_face is None else max(12, min_face)
    detections = mtcnn.detect(small, min_face=min_face)
    for degrees in () if detections else RETRY_TILTS:
        detections = _detect_tilted(small, degrees, min_face)
        if detections:
            break
    detections = detections or mtcnn.verify(small, _haar_boxes(to_gray(small)))
    found = []
    for d in detections:
        x1, y1 = max(0.0, d.box[0] / scale), max(0.0, d.box[1] / scale)
        x2, y2 = min(float(w), d.box[2] / scale), min(float(h), d.box[3] / scale)
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            found.append(Located((round(x1), round(y1), round(x2 - x1), round(y2 - y1)), d.landmarks / scale))
    found.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
    return found


def _detect_tilted(rgb: np.ndarray, degrees: float, min_face: int) -> list[Any]:
    """MTCNN on the image turned by `degrees`, its boxes and landmarks turned back.

    MTCNN finds heads tilted up to about 30°; this second look finds those tilted further.
    """
    import cv2

    from . import mtcnn

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    m[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    turned = cv2.warpAffine(rgb, m, (nw, nh), borderMode=cv2.BORDER_REPLICATE)
    back = cv2.invertAffineTransform(m)
    out = []
    for d in mtcnn.detect(turned, min_face=min_face, thresholds=(0.6, 0.7, RETRY_SCORE)):
        x1, y1, x2, y2 = d.box
        corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]) @ back[:, :2].T + back[:, 2]
        box = (*corners.min(0), *corners.max(0))
        out.append(mtcnn.Detection(tuple(float(v) for v in box), d.score, d.landmarks @ back[:, :2].T + back[:, 2]))
    return out


def _haar_boxes(small: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The Haar cascades' boxes `(x, y, w, h)` in a grayscale image."""
    import cv2

    small = cv2.equalizeHist(small)
    min_size = max(20, int(min(small.shape) * 0.06))
    boxes: list[tuple[int, int, int, int]] = []
    for cascade_name, neighbours in (("haarcascade_frontalface_default.xml", 5), ("haarcascade_frontalface_alt2.xml", 3)):
        found = _cascade(cascade_name).detectMultiScale(small, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_size, min_size))
        boxes = [tuple(int(v) for v in b) for b in found]
        if boxes:
            break
    if not boxes:
        profile = _cascade("haarcascade_profileface.xml")
        found = profile.detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(min_size, min_size))
        boxes = [tuple(int(v) for v in b) for b in found]
        flipped = profile.detectMultiScale(small[:, ::-1].copy(), scaleFactor=1.1, minNeighbors=4, minSize=(min_size, min_size))
        sw = small.shape[1]
        boxes += [(int(sw - x - bw), int(y), int(bw), int(bh)) for x, y, bw, bh in flipped]
    boxes = _suppress_overlaps(boxes)
    return boxes


def _suppress_overlaps(boxes: list[tuple[int, int, int, int]], threshold: float = 0.3) -> list[tuple[int, int, int, int]]:
    """Drop boxes that mostly overlap a larger one (the cascades report some faces twice)."""
    kept: list[tuple[int, int, int, int]] = []
    for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        x, y, w, h = b
        if all(_iou((x, y, w, h), k) < threshold for k in kept):
            kept.append(b)
    return kept


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.12, size: int = 48) -> np.ndarray:
    """Square grayscale crop around `box`, widened by `margin` on each side to match FER2013's framing.

    Parts of the square outside the image are filled by edge replication, so faces at
    the border keep their position in the crop.
    """
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0 + 0.02 * h
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    gray = to_gray(rgb)
    pad = max(0, -x0, -y0, x0 + s - gray.shape[1], y0 + s - gray.shape[0])
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0 += pad
        y0 += pad
    crop = gray[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares 2×3 similarity transform (rotation, uniform scale, shift) taking src points to dst."""
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    denom = float((src_c**2).sum())
    if denom < 1e-6:
        return None
    a = (src_c * dst_c).sum() / denom
    b = (src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum() / denom
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = dst.mean(0) - m[:, :2] @ src.mean(0)
    return m


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 48) -> np.ndarray | None:
    """Grayscale crop whose eyes, nose and mouth land where FER2013's do on average.

    A similarity transform from the five landmarks to `FER_LANDMARKS` levels a tilted head
    and frames the face as the classifier saw its training faces; the border is filled by
    edge replication. A large face is first shrunk with area averaging, so the small crop
    does not alias. None if the landmarks are degenerate.
    """
    import cv2

    gray = to_gray(rgb)
    src = np.asarray(landmarks, dtype=np.float64)
    dst = FER_LANDMARKS * (size / 48.0)
    m = _similarity(src, dst)
    if m is None:
        return None
    shrink = 2.0 * float(np.hypot(m[0, 0], m[1, 0]))
    if shrink < 1.0:
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * shrink)), max(1, round(gray.shape[0] * shrink))), interpolation=cv2.INTER_AREA)
        src = src * np.array([gray.shape[1] / rgb.shape[1], gray.shape[0] / rgb.shape[0]])
        m = _similarity(src, dst)
        if m is None:
            return None
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _crop(rgb: np.ndarray, face: Located, margin: float, size: int) -> np.ndarray:
    """The aligned crop, or the margin-widened box should the landmarks be degenerate."""
    aligned = align_face(rgb, face.landmarks, size)
    return aligned if aligned is not None else crop_face(rgb, face.box, margin, size)


def whole_image_crop(rgb: np.ndarray, size: int = 48) -> np.ndarray:
    """Use the whole image (RGB, or already gray) as the face: centre-square it and resize (for ready-made crops)."""
    gray = to_gray(rgb)
    h, w = gray.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = gray[y0 : y0 + s, x0 : x0 + s]
    if s == size:  # what cv2.resize returns for its own size, without importing OpenCV (~30 ms)
        return sq.copy()
    import cv2

    return cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def find_faces(
    src: ImageLike,
    *,
    detect: bool | None = None,
    all_faces: bool = False,
    size: int = 48,
    margin: float = 0.12,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> list[Face]:
    """Load an image and return its face crop(s).

    `detect=None` (the default) uses images of at most 64 px whole, such as FER2013's 48×48
    crops; it looks for faces in larger ones and, when a small image (at most 160 px) has
    none, treats it as a ready-made face crop. An image whose face fills most of it is a
    crop too, and is used whole. `detect=True` looks even in the tiniest images;
    `detect=False` always uses the whole image. A real photo with no face raises NoFaceError.
    """
    rgb = src if isinstance(src, np.ndarray) and src.ndim == 3 and src.dtype == np.uint8 and src.shape[2] == 3 else load_image(src, max_bytes=max_bytes, name=name, gray_ok=True)
    if detect is False or (detect is None and max(rgb.shape[:2]) <= THUMBNAIL_MAX_SIDE):
        return [Face(None, whole_image_crop(rgb, size))]
    if rgb.ndim == 2:  # a gray file, for the detector as PIL would have made it RGB
        rgb = np.ascontiguousarray(np.repeat(rgb[:, :, None], 3, axis=2))
    found = locate_faces(rgb)
    if found and found[0].box[2] >= TIGHT_CROP_FACE_SHARE * min(rgb.shape[:2]):
        return [Face(None, whole_image_crop(rgb, size))]
    if not found:
        if max(rgb.shape[:2]) <= TIGHT_CROP_MAX_SIDE:
            return [Face(None, whole_image_crop(rgb, size))]
        h, w = rgb.shape[:2]
        raise NoFaceError(f"{name or _describe(src)}: no face found in this {w}×{h} photo (use --no-detect if it is already a face crop)")
    if not all_faces:
        found = found[:1]
    return [Face(f.box, _crop(rgb, f, margin, size)) for f in found]


def _walk_images(root: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Every entry with an image suffix under `root` (hidden names left out), whatever it is: a
    regular file, but also a FIFO, a device, a dangling symlink, a symlink loop or a folder named
    like an image (`x.jpg/`), so that each of those gets its own error record ("not a regular
    file") when read instead of vanishing from the batch. Other folders are entered, symlinked
    ones too, each real folder once (a symlink cycle of folders ends)."""
    import os

    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if entry.name.startswith(".") and not is_dir:
                continue
            if path.suffix.lower() in suffixes:
                found.append(path)
            elif is_dir:
                stack.append(path)
    return found


def iter_image_files(inputs: list[str | Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursively: files with one of `suffixes`) and globs into (file, path
    relative to its root) pairs.

    Missing inputs are returned too, so the caller reports each as its own error record.
    Order is stable (sorted within each folder) so batch runs are reproducible.
    """
    import glob

    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in sorted(_walk_images(p, suffixes))]
        elif p.exists() or str(item) == "-":
            out.append((p, Path(p.name)))
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            fixed = []
            for part in p.parts:
                if any(ch in part for ch in "*?["):
                    break
                fixed.append(part)
            root = Path(*fixed) if fixed else Path(".")
            for m in matches:
                if m.is_file():
                    try:
                        rel = m.relative_to(root)
                    except ValueError:
                        rel = Path(m.name)
                    out.append((m, rel))
            if not matches:
                out.append((p, Path(p.name)))
        else:
            out.append((p, Path(p.name)))
    return out
