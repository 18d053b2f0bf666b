"""Look and listen: a piano-roll PNG, a terminal preview, and WAV audio of a composition."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..checkpoints import atomic_write_bytes
from .pianoroll import STEPS_PER_BAR

MELODY_RGB = (230, 90, 60)
CHORD_RGB = (70, 120, 200)


#: Fill colours of the phrase-form band, one per letter (A, B, C, ...).
FORM_RGB = ((250, 214, 165), (178, 214, 238), (200, 230, 190), (230, 200, 230))


def _title(comp: Any) -> str:
    form = f" · form {comp.form}" if getattr(comp, "form", "") else ""
    return f"{comp.emotion} ({comp.quadrant}) · {comp.key} · {comp.tempo:g} BPM{form} · seed {comp.seed}"


def _phrase_labels(form: str) -> list[str]:
    from .form import parse_form

    return [p.label for p in parse_form(form)] if form else []


def piano_roll_png(comp: Any, path: str | Path, *, chords: bool = True, step_px: int = 6, pitch_px: int = 5) -> Path:
    """Draw melody and chords on a pitch × time grid with bar lines, chord names and the emotion in the title."""
    from PIL import Image, ImageDraw, ImageFont

    notes = [(n, MELODY_RGB) for n in comp.melody] + ([(n, CHORD_RGB) for n in comp.accompaniment] if chords else [])
    pitches = [n.pitch for n, _ in notes] or [60]
    lo, hi = min(pitches) - 2, max(pitches) + 2
    left, top, bottom = 40, 50, 22
    width = left + comp.bars * STEPS_PER_BAR * step_px + 10
    height = top + (hi - lo + 1) * pitch_px + bottom
    img = Image.new("RGB", (width, height), (250, 250, 247))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for p in range(lo, hi + 1):
        y = top + (hi - p) * pitch_px
        if p % 12 in (1, 3, 6, 8, 10):
            draw.rectangle([left, y, width - 10, y + pitch_px - 1], fill=(238, 238, 233))
        if p % 12 == 0:
            draw.text((4, y - 4), f"C{p // 12 - 1}", fill=(90, 90, 90), font=font)
    for b in range(comp.bars + 1):
        x = left + b * STEPS_PER_BAR * step_px
        draw.line([x, top, x, height - bottom], fill=(150, 150, 150) if b % 4 else (60, 60, 60), width=1)
        if b < comp.bars and b < len(comp.chords):
            draw.text((x + 2, height - bottom + 4), comp.chords[b], fill=CHORD_RGB, font=font)
    phrase_px = 4 * STEPS_PER_BAR * step_px
    for i, label in enumerate(_phrase_labels(getattr(comp, "form", ""))):
        x0 = left + i * phrase_px
        x1 = min(left + comp.bars * STEPS_PER_BAR * step_px, x0 + phrase_px) - 1
        draw.rectangle([x0, 26, x1, 42], fill=FORM_RGB[(ord(label[0]) - ord("A")) % len(FORM_RGB)], outline=(120, 120, 120))
        draw.text((x0 + 4, 29), f"{label}  (bars {4 * i + 1}-{min(comp.bars, 4 * i + 4)})", fill=(20, 20, 20), font=font)
    for n, rgb in notes:
        x0 = left + n.start * step_px
        x1 = left + n.end * step_px - 1
        y = top + (hi - n.pitch) * pitch_px
        draw.rectangle([x0, y, max(x0 + 1, x1), y + pitch_px - 1], fill=rgb, outline=tuple(int(c * 0.6) for c in rgb))
    draw.text((left, 8), _title(comp), fill=(20, 20, 20), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue(), durable=False)
    return path


def terminal_preview(comp: Any, *, chords: bool = True) -> Any:
    """A Rich renderable: the piano roll in text, two steps per character, melody over chords."""
    from rich.text import Text

    notes = [(n, "bold red") for n in comp.melody] + ([(n, "blue") for n in comp.accompaniment] if chords else [])
    if not notes:
        return Text("(silence)")
    lo, hi = min(n.pitch for n, _ in notes), max(n.pitch for n, _ in notes)
    cols = comp.bars * STEPS_PER_BAR // 2
    grid = [[(" ", "") for _ in range(cols)] for _ in range(hi - lo + 1)]
    for n, style in notes:
        row = hi - n.pitch
        for c in range(n.start // 2, max(n.start // 2 + 1, (n.end + 1) // 2)):
            if c < cols and (grid[row][c][1] != "bold red" or style == "bold red"):
                grid[row][c] = ("█" if c == n.start // 2 else "▬", style)
    text = Text(_title(comp) + "\n", style="bold")
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    for i, row in enumerate(grid):
        p = hi - i
        text.append(f"{names[p % 12] + str(p // 12 - 1):>4} ", style="dim")
        for c, (ch, style) in enumerate(row):
            if c % (STEPS_PER_BAR // 2) == 0:
                text.append("│", style="dim")
            text.append(ch, style=style)
        text.append("\n")
    return text


def render_wav(comp: Any, path: str | Path, *, chords: bool = True, soundfont: str | None = None) -> str:
    """Render a song to audio (`music.audio`): FluidSynth with a General MIDI SoundFont when both
    are there, the melody on piano and the chords on a softer electric piano; else a built-in
    piano-like synth, after one line that says how to install FluidSynth. Returns the renderer used."""
    from .. import console
    from .audio import FALLBACK_NAME, audio_midi, fallback_notice
    from .audio import render_wav as render

    used = render(audio_midi(comp, chords), path, soundfont=soundfont)
    if used.startswith(FALLBACK_NAME):
        console.warn(fallback_notice())
    return used


def write_extras(comp: Any, extras: list[Path], chords: bool = True, *, soundfont: str | None = None, force: bool = False) -> None:
    """The `--png` picture, `--wav` audio and `--musicxml` lead sheet beside a song, each by its suffix."""
    from .. import console

    for extra in extras:
        if extra.suffix == ".png":
            piano_roll_png(comp, extra, chords=chords)
            console.info(f"wrote {extra}")
        elif extra.suffix == ".musicxml":
            from .musicxml import write_musicxml

            write_musicxml(comp, extra, force=force)
            console.info(f"wrote {extra} (lead sheet: melody, chord symbols, key, tempo)")
        else:
            used = render_wav(comp, extra, chords=chords, soundfont=soundfont)
            console.info(f"wrote {extra} ({used})")
