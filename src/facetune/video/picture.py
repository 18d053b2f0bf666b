"""A picture of a soundtrack: the faces' emotions over time above the piano roll of the music,
on one time axis (seconds of the video), so one sees the music change where the faces do."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

#: Colours of the emotions (and their quadrants' default words).
EMOTION_RGB = {"happy": (250, 190, 60), "surprise": (250, 150, 60), "angry": (215, 60, 50), "fear": (170, 80, 160), "disgust": (120, 140, 60), "sad": (70, 110, 200), "neutral": (150, 170, 150), "calm": (110, 190, 150)}
OTHER_RGB = (160, 160, 160)
MELODY_RGB, CHORD_RGB = (230, 90, 60), (70, 120, 200)
WIDTH = 1600


def _x(seconds: float, duration: float, left: int, width: int) -> int:
    return left + round(seconds / max(duration, 1e-9) * width)


def _draw_emotions(draw: Any, result: Any, box: tuple[int, int, int, int], font: Any) -> None:
    """The segments as coloured bands with their names, and each class's probability per frame as a line."""
    left, top, width, height = box
    band = 22
    for s in result.segments:
        x0, x1 = _x(s.start, result.duration, left, width), _x(s.end, result.duration, left, width)
        draw.rectangle([x0, top, max(x0 + 1, x1 - 1), top + band], fill=EMOTION_RGB.get(s.emotion, OTHER_RGB), outline=(90, 90, 90))
        draw.text((x0 + 3, top + 5), f"{s.emotion} {s.confidence:.2f}", fill=(20, 20, 20), font=font)
    graph_top, graph_h = top + band + 6, height - band - 6
    draw.rectangle([left, graph_top, left + width, graph_top + graph_h], outline=(200, 200, 200))
    classes = sorted({c for f in result.frames for c in f.probabilities})
    for c in classes:
        points = [(_x(f.time, result.duration, left, width), graph_top + round((1 - f.probabilities[c]) * graph_h)) for f in result.frames if f.probabilities]
        if len(points) > 1:
            draw.line(points, fill=EMOTION_RGB.get(c, OTHER_RGB), width=2)
    for f in result.frames:
        if not f.probabilities:
            x = _x(f.time, result.duration, left, width)
            draw.line([x, graph_top, x, graph_top + graph_h], fill=(225, 225, 225))


def _draw_roll(draw: Any, result: Any, box: tuple[int, int, int, int], font: Any) -> None:
    """The melody and chords placed by the MIDI's own clock, with bar lines and each segment's key and tempo."""
    left, top, width, height = box
    score = result.score
    times = score.step_times()
    notes = [(n, MELODY_RGB) for n in score.melody] + [(n, CHORD_RGB) for n in score.accompaniment]
    pitches = [n.pitch for n, _ in notes] or [60]
    lo, hi = min(pitches) - 1, max(pitches) + 1
    row = max(1.0, (height - 16) / (hi - lo + 1))
    for b in range(score.bars + 1):
        x = _x(float(times[min(b * 16, len(times) - 1)]), result.duration, left, width)
        draw.line([x, top, x, top + height - 16], fill=(215, 215, 215))
    for s in score.segments:
        x = _x(s.start, result.duration, left, width)
        draw.line([x, top, x, top + height], fill=(60, 60, 60), width=2)
        draw.text((x + 3, top + height - 13), f"{s.key_name} · {s.tempo:.0f} BPM", fill=(40, 40, 40), font=font)
    for n, rgb in notes:
        x0 = _x(float(times[n.start]), result.duration, left, width)
        x1 = _x(float(times[min(n.end, len(times) - 1)]), result.duration, left, width)
        y = top + round((hi - n.pitch) * row)
        draw.rectangle([x0, y, max(x0 + 1, x1 - 1), y + max(1, round(row) - 1)], fill=rgb)


def timeline_png(result: Any, path: str | Path) -> Path:
    """Write the picture (PNG, atomically): emotions on top, the piano roll below, seconds along."""
    from PIL import Image, ImageDraw, ImageFont

    from ..checkpoints import atomic_write_bytes

    left, width = 50, WIDTH - 70
    img = Image.new("RGB", (WIDTH, 520), (250, 250, 247))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((left, 8), f"{Path(result.input).name} · {result.duration:.1f} s · {len(result.segments)} segment(s) · seed {result.score.seed}", fill=(20, 20, 20), font=font)
    _draw_emotions(draw, result, (left, 30, width, 150), font)
    _draw_roll(draw, result, (left, 200, width, 290), font)
    step = max(1, int(np.ceil(result.duration / 20)))
    for t in range(0, int(result.duration) + 1, step):
        x = _x(t, result.duration, left, width)
        draw.text((x - 4, 500), f"{t}s", fill=(90, 90, 90), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue(), durable=False)
    return Path(path)
