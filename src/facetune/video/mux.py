"""The scored video: a copy of the input whose video stream is copied packet for packet (never
re-encoded) and whose sound is the music, alone or over the original sound at a level.

Audio is encoded in blocks while the video packets are copied, each block a little ahead of the
video, so the file is interleaved and memory stays flat. The music's first sample sits at the
video's first frame (its start time), and the sound lasts exactly as long as the video.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import FacetuneError, OutputError
from .frames import VideoInfo, need_av

#: Muxer and audio codec per output suffix.
CONTAINERS = {".mp4": ("mp4", "aac"), ".m4v": ("mp4", "aac"), ".mov": ("mov", "aac"), ".mkv": ("matroska", "aac"), ".webm": ("webm", "libopus")}
#: Video codecs a WebM file may hold (the others take what FFmpeg can put in them).
WEBM_VIDEO = ("vp8", "vp9", "av1")
#: FFmpeg's AAC encoder settings (see `_audio_stream`).
AAC_OPTIONS = {"aac_coder": "fast", "aac_ms": "0"}
AAC_CHANNEL_RATE = 80000
#: Samples per encoded block, and how far (s) audio is written ahead of the video packets.
BLOCK = 4096
LEAD_SECONDS = 1.0
#: The fade (s) at the end of the music, where it is cut to the video's length, and the music's
#: peak level (as `music.audio.render_wav` writes it: -0.9 dBFS).
FADE_SECONDS = 0.05
MUSIC_PEAK = 0.9


def container_for(path: Path) -> tuple[str, str]:
    """(muxer, audio codec) for an output name, or one FacetuneError naming the suffixes known."""
    try:
        return CONTAINERS[path.suffix.lower()]
    except KeyError:
        raise FacetuneError(f"{path}: cannot write a video with suffix {path.suffix!r} (use {', '.join(CONTAINERS)})") from None


def check_target(target: Path, info: VideoInfo) -> None:
    """The scored copy can hold the input's video stream as it is (it is copied, not re-encoded):
    else one FacetuneError before any work."""
    container_for(target)
    if target.suffix.lower() == ".webm" and info.codec not in WEBM_VIDEO:
        raise FacetuneError(f"{target}: a WebM file cannot hold {info.path}'s {info.codec} video, which is copied as it is, not re-encoded; write .mp4, .mkv or .mov")


def _peak(samples: np.ndarray, total: int) -> float:
    """The loudest sample of the first `total` frames, read block by block."""
    return max((float(np.max(np.abs(samples[k : min(total, k + 65536)]))) for k in range(0, min(total, len(samples)), 65536)), default=0.0)


def _music_blocks(samples: np.ndarray, rate: int, total: int, channels: int) -> Iterator[np.ndarray]:
    """The music as (channels, n) float32 blocks, exactly `total` frames (silence after its end),
    its peak at MUSIC_PEAK and faded out where it is cut; `samples` (frames, channels) may be a
    file read one block at a time (`music.audio.RawSamples`)."""
    peak = _peak(samples, total)
    gain = MUSIC_PEAK / peak if peak > 0 else 1.0
    fade = max(1, round(FADE_SECONDS * rate))
    for done in range(0, total, BLOCK):
        n = min(BLOCK, total - done)
        block = np.asarray(samples[done : done + n], np.float32) * gain
        if len(block) < n:
            block = np.concatenate([block, np.zeros((n - len(block), block.shape[1]), np.float32)])
        block = np.repeat(block, channels, axis=1) if block.shape[1] == 1 else block[:, :channels]
        ramp = np.clip((total - np.arange(done, done + n)) / fade, 0.0, 1.0).astype(np.float32)
        yield (block * ramp[:, None]).T.copy()


def _original_blocks(av: Any, src: Path, rate: int, channels: int) -> Iterator[np.ndarray]:
    """The input's own sound, resampled to the music's rate and channels, as (channels, n) float32 blocks."""
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(src)) as container:
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                yield out.to_ndarray()
        for out in resampler.resample(None):
            yield out.to_ndarray()


class _Mixer:
    """Music blocks, with the original sound under them at `level` (None: the music alone)."""

    def __init__(self, music: Iterator[np.ndarray], original: Iterator[np.ndarray] | None, level: float) -> None:
        self.music, self.original, self.level = music, original, level
        self.buffer = np.zeros((0, 0), np.float32)

    def _take(self, n: int, channels: int) -> np.ndarray:
        parts = [self.buffer] if self.buffer.size else []
        have = self.buffer.shape[1] if self.buffer.size else 0
        while have < n and self.original is not None:
            chunk = next(self.original, None)
            if chunk is None:
                self.original = None
                break
            parts.append(chunk.astype(np.float32))
            have += chunk.shape[1]
        joined = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.float32)
        self.buffer = joined[:, n:]
        out = joined[:, :n]
        return np.pad(out, ((0, 0), (0, n - out.shape[1])))

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.music:
            if self.original is not None or self.buffer.size:
                block = np.clip(block + self.level * self._take(block.shape[1], block.shape[0]), -1.0, 1.0)
            yield block


def _audio_stream(out: Any, codec: str, rate: int, channels: int) -> Any:
    """The sound's stream: FFmpeg's AAC encoder with its fast coder (2.5 times faster than the
    default two-loop search; music sounds the same) and left/right stereo coding (its mid/side
    search took a third of the encoding time, and 80 kbit/s a channel needs no such saving), else
    the container's codec. The encoder's time grows with the bit rate: 80 kbit/s a channel (160
    stereo, above the 128 a streaming site serves) took 0.91 CPU-s per 2 minutes of FluidSynth music
    against 1.30 at 96, and kept a signal-to-noise ratio of 51 dB (55 at 96)."""
    stream = out.add_stream(codec, rate=rate, options=AAC_OPTIONS if codec == "aac" else {})
    stream.layout = "stereo" if channels == 2 else "mono"
    if codec == "aac":
        stream.bit_rate = AAC_CHANNEL_RATE * channels
    return stream


def _mux(av: Any, src: Path, music_in: tuple[np.ndarray, int], tmp: Path, info: VideoInfo, muxer: str, codec: str, rate: int, mix: float | None) -> None:
    """Copy the video packets and encode the sound between them, audio kept `LEAD_SECONDS` ahead."""
    samples, music_rate = music_in
    channels = min(2, samples.shape[1])
    total = round(info.duration * rate)
    music = _music_blocks(samples, music_rate, round(info.duration * music_rate), channels)
    if music_rate != rate:
        music = _resampled(av, music, music_rate, rate, channels)
    original = _original_blocks(av, src, rate, channels) if mix is not None and info.has_audio else None
    blocks = iter(_Mixer(music, original, mix or 0.0))
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(src)) as source, av.open(str(tmp), "w", format=muxer) as out:
        video_in = source.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        audio = _audio_stream(out, codec, rate, channels)
        offset = round(info.start * rate)
        written = 0

        def audio_until(seconds: float) -> None:
            nonlocal written
            while written < total and written / rate < seconds:
                block = next(blocks, None)
                if block is None:
                    block = np.zeros((channels, total - written), np.float32)
                block = block[:, : total - written]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout=layout)
                frame.sample_rate, frame.pts = rate, offset + written
                written += block.shape[1]
                out.mux(audio.encode(frame))

        for packet in source.demux(video_in):
            if not packet.size:  # the demuxer's closing empty packet (a real one may lack a dts: Matroska keeps none)
                continue
            audio_until((float(packet.pts * packet.time_base) if packet.pts is not None else 0.0) - info.start + LEAD_SECONDS)
            packet.stream = video_out
            out.mux(packet)
        audio_until(float("inf"))
        out.mux(audio.encode(None))


def _resampled(av: Any, blocks: Iterator[np.ndarray], source_rate: int, rate: int, channels: int) -> Iterator[np.ndarray]:
    """Blocks at another sample rate (Opus takes 48 kHz), through FFmpeg's resampler."""
    layout = "stereo" if channels == 2 else "mono"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    for block in blocks:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout=layout)
        frame.sample_rate = source_rate
        for out in resampler.resample(frame):
            yield out.to_ndarray()
    for out in resampler.resample(None):
        yield out.to_ndarray()


@contextmanager
def temporary_beside(target: Path) -> Iterator[Path]:
    """A temporary file beside `target` (named and registered as `checkpoints.atomic_write_bytes`
    names them, so an interrupted run's is removed), renamed onto `target` when the block succeeds."""
    import os
    import secrets

    from ..checkpoints import PENDING_TEMPS

    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    PENDING_TEMPS.add(str(tmp))
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(target, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
        PENDING_TEMPS.discard(str(tmp))


def write_scored_video(src: Path, samples: np.ndarray, sample_rate: int, target: Path, info: VideoInfo, *, mix: float | None) -> None:
    """Copy `src`'s video stream into `target` (written to a temporary file and renamed) with the
    music `samples` (frames, channels) as its sound, over the original sound at level `mix`
    (None: replaced)."""
    av = need_av()
    muxer, codec = container_for(target)
    rate = 48000 if codec == "libopus" and sample_rate not in (8000, 12000, 16000, 24000, 48000) else sample_rate
    with temporary_beside(target) as tmp:
        try:
            _mux(av, src, (samples, sample_rate), tmp, info, muxer, codec, rate, mix)
        except (av.FFmpegError, ValueError) as exc:
            raise FacetuneError(f"{target}: FFmpeg could not write it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
