"""Photos in, face crops out: load any common image, find faces, crop and preprocess.

Pillow decodes (it handles EXIF orientation, 16-bit, palette, CMYK and guards
against decompression bombs); OpenCV's Haar cascades, which ship inside the
opencv-python-headless 4.x wheel, find faces offline with no download.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import InputError, NoFaceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")
#: Images no larger than this on their longest side count as possible ready-made face crops.
TIGHT_CROP_MAX_SIDE = 160
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


def _describe(src: Any) -> str:
    return str(src) if isinstance(src, (str, Path)) else type(src).__name__


def load_image(src: ImageLike) -> np.ndarray:
    """Decode an image to an RGB uint8 array (H, W, 3), honouring EXIF orientation.

    Accepts a path, raw bytes, a PIL image or a numpy array (gray, RGB or RGBA).
    Raises InputError with a message naming the file and the problem.
    """
    from PIL import Image, ImageOps

    name = _describe(src)
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src, name)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src, name)
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    elif isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        raise InputError(f"{name}: not an image (expected a path, bytes, PIL image or numpy array)")
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


def detect_faces(rgb: np.ndarray, max_side: int = 800) -> list[tuple[int, int, int, int]]:
    """Face boxes `(x, y, w, h)` in original-image pixels, largest first.

    Tries the frontal cascade first, then the more permissive `alt2` cascade, then
    a profile cascade on the image and its mirror, so unusual poses are still found.
    """
    import cv2

    gray = to_gray(rgb)
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else gray
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
    out = [(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale)) for x, y, bw, bh in boxes]
    out.sort(key=lambda b: b[2] * b[3], reverse=True)
    return out


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


def whole_image_crop(rgb: np.ndarray, size: int = 48) -> np.ndarray:
    """Use the whole image as the face: centre-square it and resize (for ready-made crops)."""
    import cv2

    gray = to_gray(rgb)
    h, w = gray.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = gray[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def find_faces(
    src: ImageLike,
    *,
    detect: bool | None = None,
    all_faces: bool = False,
    size: int = 48,
    margin: float = 0.12,
) -> list[Face]:
    """Load an image and return its face crop(s).

    `detect=None` (the default) looks for faces and, when a small image has none,
    treats it as a ready-made face crop such as FER2013's 48×48 images.
    An image whose face fills most of it is a crop too, and is used whole.
    `detect=False` always uses the whole image. A real photo with no face raises NoFaceError.
    """
    rgb = src if isinstance(src, np.ndarray) and src.ndim == 3 and src.dtype == np.uint8 and src.shape[2] == 3 else load_image(src)
    if detect is False:
        return [Face(None, whole_image_crop(rgb, size))]
    boxes = detect_faces(rgb)
    if boxes and boxes[0][2] >= TIGHT_CROP_FACE_SHARE * min(rgb.shape[:2]):
        return [Face(None, whole_image_crop(rgb, size))]
    if not boxes:
        if max(rgb.shape[:2]) <= TIGHT_CROP_MAX_SIDE:
            return [Face(None, whole_image_crop(rgb, size))]
        h, w = rgb.shape[:2]
        raise NoFaceError(f"{_describe(src)}: no face found in this {w}×{h} photo (use --no-detect if it is already a face crop)")
    if not all_faces:
        boxes = boxes[:1]
    return [Face(tuple(int(v) for v in b), crop_face(rgb, b, margin, size)) for b in boxes]


def preprocess(crops: np.ndarray, input_size: int) -> Any:
    """uint8 grayscale crops (N, H, W) → normalised float tensor (N, 3, S, S) for the classifier.

    The gray channel is repeated three times so ImageNet-initialised stems apply, and
    scaled to [-1, 1] as EfficientNet-Lite expects.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(crops)).float().div_(127.5).sub_(1.0).unsqueeze(1)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=False)
    return x.expand(-1, 3, -1, -1).contiguous()


def iter_image_files(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursively) and globs into (file, path relative to its root) pairs.

    Missing inputs are returned too, so the caller reports each as its own error record.
    Order is stable (sorted within each folder) so batch runs are reproducible.
    """
    import glob

    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            out += [(f, f.relative_to(p)) for f in files]
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
