"""Following the main face from frame to frame: the face that overlaps the last one most, else the
largest and most central, so the music follows one person rather than whoever is nearest."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TrackSettings:
    """How a face is scored against the one followed so far: overlap with its box, nearness of its
    centre (in frame diagonals), and size relative to the largest face in the frame; centrality
    counts only when no face is followed yet."""

    overlap: float = 3.0
    nearness: float = 1.0
    size: float = 1.0
    centrality: float = 0.5


def overlap(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def main_face(boxes: Sequence[Box], previous: Box | None, frame: tuple[int, int], settings: TrackSettings = TrackSettings()) -> int | None:
    """The index of the face to follow in this frame (None when there is none)."""
    if not boxes:
        return None
    w, h = frame
    diag = (w * w + h * h) ** 0.5 or 1.0
    largest = max(b[2] * b[3] for b in boxes) or 1

    def score(box: Box) -> float:
        cx, cy = _centre(box)
        s = settings.size * box[2] * box[3] / largest
        if previous is None:
            return s - settings.centrality * ((cx - w / 2) ** 2 + (cy - h / 2) ** 2) ** 0.5 / diag
        px, py = _centre(previous)
        return s + settings.overlap * overlap(box, previous) - settings.nearness * ((cx - px) ** 2 + (cy - py) ** 2) ** 0.5 / diag

    return max(range(len(boxes)), key=lambda i: score(boxes[i]))
