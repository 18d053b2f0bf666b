"""Reading a video with PyAV (FFmpeg's libraries ship in its wheel; nothing is downloaded): what it
holds (`probe`) and its frames sampled at a few per second, one at a time (`sample_frames`).

Frames are decoded in order and only the sampled ones are converted, already scaled down to the
size the face detector needs (by area averaging, which swscale does about 3 times faster than its
default bilinear at this ratio), so memory stays flat whatever the video's length. Rotation metadata
is applied (a phone video filmed upright comes out upright) and variable frame rates are sampled
by each frame's own timestamp.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import FacetuneError, InputError

#: The one line that tells a user of the light install how to get video support.
VIDEO_EXTRA = "pip install 'facetune[video]'"
#: Container suffixes `soundtrack` reads in folders and writes.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
#: Sampling this many times fewer frames than the video has skips decoding non-reference frames.
SKIP_BELOW = 4
#: Decoder options when sampling sparsely: no deblocking filter (a fifth less decoding; it smooths
#: block edges, which changes a pixel by 0.7 levels on average at the analysis size, below what
#: the face detector or classifier notices) and FFmpeg's faster, not bit-exact, shortcuts.
SPARSE_DECODING = {"skip_loop_filter": "all", "flags2": "fast"}
#: Pictures that end this many seconds before the stated duration mean a truncated file.
TRUNCATED_GAP = 1.0


def need_av() -> Any:
    """PyAV, or one line saying how to install it."""
    try:
        import av
    except ImportError:
        raise FacetuneError(f"soundtrack needs PyAV to read and write video: {VIDEO_EXTRA}") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: its coded picture size, length and start in seconds, and whether it has sound."""

    path: str
    width: int
    height: int
    duration: float
    start: float
    frame_rate: float
    has_audio: bool
    codec: str


@dataclass(frozen=True)
class Sample:
    """One sampled frame: its time in seconds from the video's start, the RGB image (scaled so its
    longer side is at most the analysis size) and how many video pixels one image pixel is."""

    time: float
    image: np.ndarray
    scale: float


def _open(path: Path) -> Any:
    """The container, or one InputError naming the file and what is wrong with it."""
    av = need_av()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not a video")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a video FFmpeg can read ({_why(exc)})") from None


def _why(exc: Exception) -> str:
    text = str(getattr(exc, "strerror", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe(path: str | Path) -> VideoInfo:
    """The video's facts, or one InputError (no such file, empty, not a video, no video stream)."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            what = "audio only" if container.streams.audio else "no streams FFmpeg can play"
            raise InputError(f"{path}: has no video stream ({what})")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        info = VideoInfo(str(path), width, height, duration, start, rate, bool(container.streams.audio), stream.codec_context.name)
    if not width or not height:
        raise InputError(f"{path}: the video stream has no picture size")
    return info


def decode_threads() -> int:
    """FFmpeg's decoding threads: one core fewer than the machine has, as the faces are looked at
    on another thread meanwhile. On 2 cores that is one: FFmpeg's frame threads there took a
    quarter more CPU time (11.2 against 8.7 CPU-s for a 5-minute 720p soundtrack's frames and faces)
    and fought the face detector for the cores."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def _analysis_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def _turn(image: np.ndarray, rotation: int) -> np.ndarray:
    """The decoded picture turned as the rotation metadata says it is shown."""
    return np.ascontiguousarray(np.rot90(image, rotation // 90)) if rotation else image


def sample_frames(path: str | Path, fps: float = 2.0, max_side: int = 480) -> Iterator[Sample]:
    """The frame on screen at every 1/fps seconds (the first frame at or after each time), streamed.

    When the video has at least `SKIP_BELOW` times more frames than are sampled, frames no other
    frame refers to (B-frames) are not decoded at all: about half the decoding, and a sampled frame
    lies at most a few frames after its time. A decoding failure part way (a truncated or damaged
    file) is one InputError that says when."""
    av = need_av()
    path = Path(path)
    info = probe(path)
    step = 1.0 / fps
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decode_threads()
        if info.frame_rate >= SKIP_BELOW * fps:
            stream.codec_context.options = SPARSE_DECODING
            stream.codec_context.skip_frame = "NONREF"
        size = None
        due = 0.0
        last = seen = -1.0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - info.start
                seen = max(seen, t)
                if t + 1e-6 < due:
                    continue
                if size is None:
                    size = _analysis_size(frame.width, frame.height, max_side)
                rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                image = _turn(frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA"), rotation)
                last = t
                yield Sample(t, image, frame.width / size[0])
                while due <= t + 1e-6:
                    due += step
        except av.FFmpegError as exc:
            raise InputError(f"{path}: the video is damaged after {max(last, 0.0):.1f} s ({_why(exc)})") from None
    if last < 0:
        raise InputError(f"{path}: no picture could be decoded from the video stream")
    if info.duration and seen < info.duration - TRUNCATED_GAP:
        raise InputError(f"{path}: the pictures end at {seen:.1f} s though the video says it lasts {info.duration:.1f} s (a truncated file?)")
