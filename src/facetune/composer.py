"""Generation and export: emotion → key, chord progression, GAN melody, accompaniment → MIDI.

The GAN writes one bar at a time from fresh noise, the emotion quadrant, that bar's
chord and the previous bars it wrote. Decoding (see `MelodyGenerator.generate`) keeps
only the pitches of the chosen key's scale and favours the bar's chord tones, so the
melody stays in key over the progression. Tempo, loudness,
mode and accompaniment pattern follow the emotion (see STYLES).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import atomic_write_bytes, load_checkpoint
from .emotions import QUADRANT_EMOTION, QUADRANTS, normalize_emotion, quadrant_of
from .errors import CheckpointError, FacetuneError
from .music.pianoroll import BAR_WIDTH, LOW_PITCH, N_PITCHES, ONSET, REST, STEPS_PER_BAR, Note, rolls_to_notes

DEFAULT_GENERATOR = Path(__file__).parent / "weights" / "generator.pt"
#: Logit bonuses that make the melody outline the harmony: chord tones on and off the beat,
#: and the key's tonic and fifth everywhere. Those two are what separate a key from its relative
#: (Krumhansl–Kessler profiles): leaning on them makes a minor-key melody read as minor and not as
#: its relative major, and a major one as major. The third is left alone: it is the relative key's tonic.
CHORD_TONE_BONUS = 2.0
OFFBEAT_CHORD_TONE_BONUS = 1.0
TONIC_BONUS = 2.0
DOMINANT_BONUS = 0.75
#: Softmax temperature when drawing a note's pitch; 1.0 keeps the generator's own distribution.
TEMPERATURE = 1.0


@dataclass(frozen=True)
class Style:
    """How an emotion sounds beyond its notes: tempo (BPM), loudness and accompaniment pattern."""

    tempo: int
    velocity: int
    accompaniment: str
    onset_threshold: float


#: Russell's quadrants as performance choices: arousal sets tempo, loudness and
#: accompaniment density; valence sets the mode (see music.chords.quadrant_mode).
STYLES: dict[str, Style] = {
    "Q1": Style(tempo=126, velocity=92, accompaniment="pulse", onset_threshold=0.2),
    "Q2": Style(tempo=144, velocity=108, accompaniment="drive", onset_threshold=0.15),
    "Q3": Style(tempo=66, velocity=56, accompaniment="sustain", onset_threshold=0.85),
    "Q4": Style(tempo=76, velocity=60, accompaniment="arpeggio", onset_threshold=0.5),
}


@dataclass
class Composition:
    """A finished piece: what was asked, what was chosen, and the notes on the 16-steps-per-bar grid."""

    emotion: str
    quadrant: str
    key: str
    chords: list[str]
    tempo: float
    seed: int
    bars: int
    melody: list[Note]
    accompaniment: list[Note] = field(default_factory=list)
    rolls: Any = None

    def to_midi(self, chords: bool = True) -> Any:
        """A pretty_midi object: 4/4, the key signature, a melody track and (optionally) a chord track."""
        import pretty_midi

        from .music.chords import KEY_NAMES

        pm = pretty_midi.PrettyMIDI(initial_tempo=float(self.tempo))
        pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        pm.key_signature_changes.append(pretty_midi.KeySignature(KEY_NAMES.index(self.key), 0.0))
        step = 60.0 / self.tempo / 4
        tracks = [("Melody", self.melody)] + ([("Chords", self.accompaniment)] if chords else [])
        for name, notes in tracks:
            inst = pretty_midi.Instrument(program=0, name=name)
            inst.notes = [pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch), start=n.start * step, end=n.end * step) for n in notes]
            pm.instruments.append(inst)
        return pm

    def midi_bytes(self, chords: bool = True) -> bytes:
        buf = io.BytesIO()
        self.to_midi(chords).write(buf)
        return buf.getvalue()


class MelodyGenerator:
    """A loaded generator network with the metadata of its checkpoint."""

    def __init__(self, model: Any, dims: Any, payload: dict[str, Any], path: str) -> None:
        self.model = model
        self.dims = dims
        self.path = path
        self.info = {k: v for k, v in payload.items() if k != "state_dict"}

    def generate(self, quadrant: str, chords: list[int], key: int, seed: int) -> np.ndarray:
        """One bar per chord, each from fresh noise, the chord and the bars written before it.

        Decoding: a note starts where the generator's onset probability passes the emotion's
        threshold or its most likely pitch changes; its pitch is drawn (seeded) from the
        generator's distribution at that step, restricted to the key's scale (natural minor in
        minor keys: a raised 7th over V would leave the scale), with the chord's tones favoured;
        it is held until the next note starts.
        Returns (n_bars, 16, BAR_WIDTH) one-hot bars.
        """
        import torch

        from .music.chords import allowed_pitch_mask, chord_tone_mask
        from .music.gan import condition

        d = self.dims
        style = STYLES[quadrant]
        gen = torch.Generator().manual_seed(int(seed))
        beat = torch.zeros(STEPS_PER_BAR, dtype=torch.bool)
        beat[::4] = True
        root, fifth = key % 12, (key + 7) % 12
        tonic = torch.tensor([TONIC_BONUS * ((LOW_PITCH + i) % 12 == root) + DOMINANT_BONUS * ((LOW_PITCH + i) % 12 == fifth) for i in range(N_PITCHES)])
        q = torch.tensor([QUADRANTS.index(quadrant)])
        history: list[torch.Tensor] = []
        held = REST
        with torch.inference_mode():
            for chord in chords:
                prev = [history[-1 - i] if i < len(history) else torch.zeros(STEPS_PER_BAR, BAR_WIDTH) for i in range(d.prev_bars)]
                z = torch.randn(1, d.z_dim, generator=gen)
                y = condition(q, torch.tensor([chord]), d)
                lg = self.model.logits(z, y, torch.stack(prev)[None])[0, 0]
                allowed = torch.from_numpy(allowed_pitch_mask(key, LOW_PITCH, N_PITCHES))
                scores = lg[:, : REST + 1].clone()
                scores[:, :REST][:, ~allowed] = float("-inf")
                tones = torch.from_numpy(chord_tone_mask(chord, LOW_PITCH, N_PITCHES)) & allowed
                scores[:, :REST] += torch.where(beat, CHORD_TONE_BONUS, OFFBEAT_CHORD_TONE_BONUS)[:, None] * tones[None, :]
                scores[:, :REST] += tonic[None, :]
                best = scores.argmax(1).tolist()
                onset_likely = (torch.sigmoid(lg[:, ONSET]) > style.onset_threshold).tolist()
                draws = torch.multinomial(torch.softmax(scores / TEMPERATURE, 1), 1, generator=gen)[:, 0].tolist()
                ok = allowed.tolist() + [True]
                bar = torch.zeros(STEPS_PER_BAR, BAR_WIDTH)
                for t in range(STEPS_PER_BAR):
                    changed = best[t] != best[t - 1] if t else held == REST
                    if onset_likely[t] or changed or not ok[held]:
                        held = draws[t]
                        bar[t, ONSET] = float(held != REST)
                    bar[t, held] = 1
                history.append(bar)
        return torch.stack(history).numpy()


@lru_cache(maxsize=8)
def load_generator(path: str | Path | None = None) -> MelodyGenerator:
    """Rebuild the generator from its checkpoint (the shipped default when `path` is None); cached."""
    from .music.gan import Generator, dims_from_dict

    path = Path(path) if path else DEFAULT_GENERATOR
    payload = load_checkpoint(path, "generator")
    try:
        dims = dims_from_dict(payload["dims"])
        model = Generator(dims)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: generator checkpoint does not match its declared dimensions ({str(exc).splitlines()[0][:100]})") from None
    model.eval()
    return MelodyGenerator(model, dims, payload, str(path))


def _voicing(chord: int, center: int = 57) -> list[int]:
    """The chord's triad in the inversion nearest `center`, plus nothing else: clear, close voicing."""
    from .music.chords import chord_pitch_classes

    pcs = chord_pitch_classes(chord)
    best: list[int] = []
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        notes = [center - 7 + (order[0] - (center - 7)) % 12]
        for pc in order[1:]:
            notes.append(notes[-1] + 1 + (pc - notes[-1] - 1) % 12)
        if not best or abs(np.mean(notes) - center) < abs(np.mean(best) - center):
            best = notes
    return best


def accompaniment(chords: list[int], style: Style) -> list[Note]:
    """A simple left-hand part per bar: bass root plus the triad, in the emotion's pattern."""
    from .music.chords import NO_CHORD, chord_pitch_classes

    v = max(30, style.velocity - 22)
    out: list[Note] = []
    for b, chord in enumerate(chords):
        if chord == NO_CHORD:
            continue
        o = b * STEPS_PER_BAR
        bass = 36 + chord_pitch_classes(chord)[0]
        triad = _voicing(chord)
        if style.accompaniment == "pulse":
            out += [Note(bass, o, o + 8, v + 6), Note(bass, o + 8, o + 16, v + 2)]
            out += [Note(p, o + s, o + s + 3, v if s % 8 == 0 else v - 8) for s in (0, 4, 8, 12) for p in triad]
        elif style.accompaniment == "drive":
            out += [Note(bass, o + s, o + s + 2, v + (8 if s % 4 == 0 else 0)) for s in range(0, 16, 2)]
            out += [Note(p, o + s, o + s + 2, v + 4) for s in (0, 3, 6, 10, 12) for p in triad]
        elif style.accompaniment == "sustain":
            out += [Note(bass, o, o + 16, v)] + [Note(p, o, o + 16, v - 6) for p in triad]
        else:
            order = [triad[0], triad[2], triad[1], triad[2]]
            out += [Note(bass, o, o + 16, v)] + [Note(p, o + 4 * i, o + 4 * i + 4, v - 4) for i, p in enumerate(order)]
    return out


def _velocities(notes: list[Note], style: Style, rng: np.random.Generator) -> list[Note]:
    """Accent the beats, soften the rest, with a little seeded variation, as a player would."""
    jitter = rng.integers(-4, 5, size=len(notes)).tolist()
    out = []
    for n, j in zip(notes, jitter):
        accent = 8 if n.start % 4 == 0 else (0 if n.start % 2 == 0 else -6)
        out.append(Note(n.pitch, n.start, n.end, max(1, min(127, style.velocity + accent + j))))
    return out


def compose_emotion(emotion: str, generator: MelodyGenerator | None = None, *, bars: int = 16, seed: int = 0, tempo: float | None = None) -> Composition:
    """Compose `bars` bars for an emotion word or quadrant, deterministically for a seed."""
    from .music.chords import KEY_NAMES, chord_name, key_index, progression, quadrant_mode

    try:
        name = normalize_emotion(emotion)
    except ValueError as exc:
        raise FacetuneError(str(exc)) from None
    quadrant = quadrant_of(name)
    if name in QUADRANTS:
        name = QUADRANT_EMOTION[name]
    if bars < 1:
        raise FacetuneError("--bars must be at least 1")
    gen = generator or load_generator()
    style = STYLES[quadrant]
    rng = np.random.default_rng([int(seed), QUADRANTS.index(quadrant)])
    root = int(rng.integers(12))
    key = key_index(root, quadrant_mode(quadrant))
    chords = progression(quadrant, root, bars, rng)
    rolls = gen.generate(quadrant, chords, key, seed)
    melody = _velocities(rolls_to_notes(rolls), style, rng)
    return Composition(
        emotion=name,
        quadrant=quadrant,
        key=KEY_NAMES[key],
        chords=[chord_name(c) for c in chords],
        tempo=float(tempo or style.tempo),
        seed=int(seed),
        bars=bars,
        melody=melody,
        accompaniment=accompaniment(chords, style),
        rolls=rolls,
    )


def write_midi(comp: Composition, path: str | Path, *, chords: bool = True, force: bool = False) -> Path:
    """Write the MIDI atomically, read it back and check it, and only then put it in place."""
    import pretty_midi

    path = Path(path)
    if path.exists() and not force:
        raise FacetuneError(f"{path}: already exists (use --force to overwrite)")
    data = comp.midi_bytes(chords)
    try:
        back = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as exc:
        raise FacetuneError(f"{path}: the written MIDI could not be read back ({type(exc).__name__})") from None
    check_midi(back, comp, chords)
    atomic_write_bytes(path, data, durable=False)
    return path


def check_midi(pm: Any, comp: Composition, chords: bool = True) -> None:
    """The MIDI holds exactly the melody (and chords) asked for, in 4/4, `bars` bars long."""
    names = [i.name for i in pm.instruments]
    expected = ["Melody"] + (["Chords"] if chords else [])
    if names != expected:
        raise FacetuneError(f"written MIDI has tracks {names}, expected {expected}")
    if len(pm.instruments[0].notes) != len(comp.melody):
        raise FacetuneError("written MIDI lost melody notes")
    ts = pm.time_signature_changes
    if not ts or (ts[0].numerator, ts[0].denominator) != (4, 4):
        raise FacetuneError("written MIDI is not in 4/4")
    bar_seconds = 4 * 60.0 / comp.tempo
    if pm.get_end_time() > comp.bars * bar_seconds + 1e-3:
        raise FacetuneError("written MIDI is longer than the bars asked for")
