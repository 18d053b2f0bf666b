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
    the face detector, the smallest face looked for as a share of the frame's shorter side (a
    video's main face is larger than a passer-by's, and the detector is several times faster for
    it), crops classified together, and how the main face is followed."""

    fps: float = 2.0
    analysis_side: int = 480
    min_face_share: float = 0.12
    batch_size: int = 32
    track: TrackSettings = TrackSettings()
    #: Between full detections (every this many sampled frames: 4 s at 2 fps), the followed face is
    #: only checked where it was, by the detector's last network (about 1 ms instead of 15-80 ms a
    #: frame); a face it no longer confirms there is looked for in the whole frame at once. Full
    #: detections were a third of a 5-minute soundtrack's face work at every 4 frames.
    redetect_every: int = 8


def _faces(sample: Sample, min_share: float, thorough: bool = True) -> list[tuple[Box, Any]]:
    """Every face in a sampled frame: its box in video pixels and its located landmarks, largest
    first. `thorough` adds the photo search's second looks where MTCNN finds nothing (the frame
    turned by ±30°, then Haar cascades): about 0.8 s for a 480-px frame without a face, so a video
    with a faceless minute would spend most of its time there."""
    from ..faces import mtcnn
    from ..faces.photos import locate_faces

    h, w = sample.image.shape[:2]
    min_face = round(min_share * min(h, w))
    if thorough:
        found = locate_faces(sample.image, min_face=min_face)
    else:
        found = sorted(filter(None, (_located(d, w, h) for d in mtcnn.detect(sample.image, min_face=max(12, min_face)))), key=lambda f: f.box[2] * f.box[3], reverse=True)
    return [(_in_video(f.box, sample.scale), f) for f in found]


def _located(d: Any, w: int, h: int) -> Any:
    """A detection as a `Located` face, its box clipped to the `w` x `h` frame; None if nothing is left."""
    from ..faces.photos import Located

    x1, y1, x2, y2 = max(0.0, d.box[0]), max(0.0, d.box[1]), min(float(w), d.box[2]), min(float(h), d.box[3])
    found = Located((round(x1), round(y1), round(x2 - x1), round(y2 - y1)), d.landmarks)
    return found if found.box[2] >= 1 and found.box[3] >= 1 else None


def _in_video(box: Box, scale: float) -> Box:
    return (round(box[0] * scale), round(box[1] * scale), round(box[2] * scale), round(box[3] * scale))


def _confirmed(sample: Sample, box: Box) -> list[tuple[Box, Any]]:
    """The followed face where it was (`box`, in video pixels), refined, if the detector's last
    network still sees a face there; else nothing."""
    from ..faces import mtcnn
    from .tracking import overlap

    s = sample.scale
    local = (round(box[0] / s), round(box[1] / s), round(box[2] / s), round(box[3] / s))
    h, w = sample.image.shape[:2]
    for d in mtcnn.verify(sample.image, [local]):
        found = _located(d, w, h)
        if found is not None and overlap(found.box, local) > 0.3:
            return [(_in_video(found.box, s), found)]
    return []


def _crop(sample: Sample, face: Any, size: int, margin: float) -> np.ndarray:
    """The face aligned by its landmarks to FER2013's framing, or its widened box if they are degenerate."""
    from ..faces.photos import align_face, crop_face

    aligned = align_face(sample.image, face.landmarks, size)
    return aligned if aligned is not None else crop_face(sample.image, face.box, margin, size)


def _tracked(path: Path, settings: ReadSettings, size: int, margin: float) -> Iterator[tuple[float, Box | None, np.ndarray | None]]:
    """(time, the followed face's box, its crop) per sampled frame; None, None without a face.
    Frames are decoded in a background thread while faces are found in the ones before. Of a run
    of frames without a face, only the first and every `redetect_every`-th are searched thoroughly."""
    from ..api import _prefetched

    previous: Box | None = None
    since = misses = 0
    for sample in _prefetched(sample_frames(path, settings.fps, settings.analysis_side), depth=4):
        found = _confirmed(sample, previous) if previous is not None and since < settings.redetect_every else []
        since += 1
        if not found:
            found, since = _faces(sample, settings.min_face_share, misses % settings.redetect_every == 0), 1
        h, w = sample.image.shape[:2]
        pick = main_face([b for b, _ in found], previous, (round(w * sample.scale), round(h * sample.scale)), settings.track)
        if pick is None:
            misses += 1
            yield sample.time, None, None
            continue
        misses = 0
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
