"""The faces of a video over time: sample frames, find the faces in each, follow the main one and
classify it, in batches, streaming (only one batch of face crops is held at a time)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .frames import Sample, sample_frames
from .timeline import FrameReading
from .tracking import Box, TrackSettings, main_face


@dataclass(frozen=True)
class ReadSettings:
    """How a video is looked at: frames per second, the longer side (px) frames are scaled to for
    the face detector, crops classified together, and how the main face is followed."""

    fps: float = 2.0
    analysis_side: int = 480
    batch_size: int = 32
    track: TrackSettings = TrackSettings()


def _faces(sample: Sample) -> list[tuple[Box, Any]]:
    """Every face in a sampled frame: its box in video pixels and its located landmarks."""
    from ..faces.photos import locate_faces

    s = sample.scale
    return [((round(f.box[0] * s), round(f.box[1] * s), round(f.box[2] * s), round(f.box[3] * s)), f) for f in locate_faces(sample.image)]


def _crop(sample: Sample, face: Any, size: int, margin: float) -> np.ndarray:
    """The face aligned by its landmarks to FER2013's framing, or its widened box if they are degenerate."""
    from ..faces.photos import align_face, crop_face

    aligned = align_face(sample.image, face.landmarks, size)
    return aligned if aligned is not None else crop_face(sample.image, face.box, margin, size)


def _tracked(path: Path, settings: ReadSettings, size: int, margin: float) -> Iterator[tuple[float, Box | None, np.ndarray | None]]:
    """(time, the followed face's box, its crop) per sampled frame; None, None without a face."""
    previous: Box | None = None
    for sample in sample_frames(path, settings.fps, settings.analysis_side):
        found = _faces(sample)
        h, w = sample.image.shape[:2]
        pick = main_face([b for b, _ in found], previous, (round(w * sample.scale), round(h * sample.scale)), settings.track)
        if pick is None:
            yield sample.time, None, None
            continue
        previous, located = found[pick]
        yield sample.time, previous, _crop(sample, located, size, margin)


def read_faces(path: str | Path, classifier: Any, classes: Sequence[str], settings: ReadSettings = ReadSettings(), on_frame: Callable[[float], None] | None = None) -> list[FrameReading]:
    """One reading per sampled frame, in time order; `on_frame(time)` as each frame is read."""
    pending: list[tuple[float, Box | None, np.ndarray | None]] = []
    out: list[FrameReading] = []

    def flush() -> None:
        crops = [c for _, _, c in pending if c is not None]
        probs = classifier.predict(np.stack(crops), list(classes)) if crops else np.zeros((0, len(classes)))
        k = 0
        for t, box, crop in pending:
            if crop is None:
                out.append(FrameReading(t, None, {}))
                continue
            out.append(FrameReading(t, list(box) if box else None, {c: round(float(v), 4) for c, v in zip(classes, probs[k])}))
            k += 1
        pending.clear()

    for item in _tracked(Path(path), settings, classifier.crop_size, classifier.face_margin):
        pending.append(item)
        if on_frame is not None:
            on_frame(item[0])
        if sum(c is not None for _, _, c in pending) >= settings.batch_size:
            flush()
    flush()
    return out
