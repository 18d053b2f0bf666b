"""A score for a timeline of moods: one continuous piece whose key, mode, tempo, accompaniment and
melody follow a list of (emotion, start, end) segments, such as a video's faces give.

Each segment is a song of its own in whole bars (its emotion's key, style and tempo, a form and a
chord progression, as `composer` chooses them), and the segments join on bar lines:

- a change falls on the bar line nearest the change in the moods (at most half a bar away);
- the last bar before a change ramps the tempo, step by step, from the old tempo to the new one,
  and its chord is a pivot, a triad that belongs to both keys (the new key is a close one, sharing
  six or seven of the old key's notes, so there always is one);
- the melody carries on: the network writing the new segment reads the old segment's last bars as
  the bars before (`generate.SongRequest.before`);
- the last segment's tempo is fitted so that the piece ends exactly at `duration`.

Everything comes from the seed: the same moods, duration and seed give the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..emotions import QUADRANTS, quadrant_of
from ..errors import FacetuneError
from .pianoroll import STEPS_PER_BAR, STEPS_PER_BEAT, Note

#: Steps of the tempo ramp before a change: one bar.
RAMP_STEPS = STEPS_PER_BAR
#: The slowest and fastest tempo the last segment may be fitted to (BPM).
TEMPO_RANGE = (20.0, 400.0)


@dataclass(frozen=True)
class Mood:
    """One stretch of the timeline: an emotion (word or quadrant) from `start` to `end` seconds."""

    emotion: str
    start: float
    end: float


@dataclass(frozen=True)
class ScoreSettings:
    """What the whole piece shares: the base seed and whether the chord track is written."""

    seed: int = 0
    chords: bool = True


@dataclass
class ScoreSegment:
    """One segment as composed: where it lies in bars and seconds, and its musical choices."""

    emotion: str
    quadrant: str
    key: int
    key_name: str
    tempo: float
    first_bar: int
    bars: int
    start: float
    end: float
    form: str
    chords: list[str]


@dataclass
class Score:
    """The finished piece: segments, notes on the step grid, and the tempo of every step."""

    segments: list[ScoreSegment]
    melody: list[Note]
    accompaniment: list[Note]
    step_tempos: np.ndarray
    seed: int
    bars: int = 0
    rolls: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def duration(self) -> float:
        """Seconds from the first downbeat to the end of the last bar."""
        return float(self.step_times()[-1])

    def step_times(self) -> np.ndarray:
        """The start of every step in seconds (and the end of the last), as the MIDI file times it."""
        usec = np.round(60e6 / self.step_tempos)
        return np.concatenate([[0.0], np.cumsum(usec / STEPS_PER_BEAT / 1e6)])

    def tempo_changes(self) -> list[tuple[int, float]]:
        """(step, BPM) wherever the tempo changes after step 0."""
        t = self.step_tempos
        return [(int(s), float(t[s])) for s in np.flatnonzero(t[1:] != t[:-1]) + 1]

    def midi_bytes(self, chords: bool = True, programs: Sequence[int] | None = None) -> bytes:
        """A Standard MIDI File with a tempo map and a key signature per segment."""
        from .midi_file import midi_bytes

        tracks = [("Melody", self.melody)] + ([("Chords", self.accompaniment)] if chords else [])
        keys = [(s.first_bar * STEPS_PER_BAR, s.key) for s in self.segments[1:]]
        return midi_bytes(tracks, tempo=float(self.step_tempos[0]), key_number=self.segments[0].key, programs=programs[: len(tracks)] if programs else None, tempo_changes=self.tempo_changes(), key_changes=keys)


def _bar_seconds(tempo: float, ramp_to: float | None = None) -> float:
    """One bar's length: at `tempo`, or ramping step by step from `tempo` towards `ramp_to`."""
    steps = _ramp(tempo, ramp_to) if ramp_to is not None else np.full(STEPS_PER_BAR, tempo)
    return float(np.sum(np.round(60e6 / steps) / STEPS_PER_BEAT / 1e6))


def _ramp(start: float, end: float) -> np.ndarray:
    """The tempo of each step of a ramp bar: `start` on its downbeat, moving evenly towards `end`."""
    return start + (end - start) * np.arange(RAMP_STEPS) / RAMP_STEPS


def _bar_counts(moods: Sequence[Mood], tempos: list[float], duration: float) -> list[int]:
    """Whole bars per segment so that each change falls on the bar line nearest its time."""
    counts, t = [], 0.0
    for i, mood in enumerate(moods):
        last = i == len(moods) - 1
        target = duration if last else mood.end
        plain = _bar_seconds(tempos[i])
        ramp = 0.0 if last else _bar_seconds(tempos[i], tempos[i + 1])
        n = max(1, round((target - t - ramp) / plain) + (0 if last else 1))
        if not last:
            n = min((m for m in (n - 1, n, n + 1) if m >= 1), key=lambda m: abs(t + (m - 1) * plain + ramp - target))
        counts.append(n)
        t += (n - (0 if last else 1)) * plain + ramp
    return counts


def _step_tempos(tempos: list[float], counts: list[int]) -> np.ndarray:
    out = []
    for i, (tempo, n) in enumerate(zip(tempos, counts)):
        last = i == len(counts) - 1
        out.append(np.full((n - (0 if last else 1)) * STEPS_PER_BAR, tempo))
        if not last:
            out.append(_ramp(tempo, tempos[i + 1]))
    return np.concatenate(out)


def fit_tempos(moods: Sequence[Mood], duration: float) -> tuple[list[float], list[int], np.ndarray]:
    """Each segment's tempo and bars, and every step's tempo: the emotions' tempos, with the last
    one fitted (a few rounds, as the ramp into it moves with it) so the piece lasts `duration`."""
    from .composer import STYLES

    tempos = [float(STYLES[quadrant_of(m.emotion)].tempo) for m in moods]
    counts = _bar_counts(moods, tempos, duration)
    steps = _step_tempos(tempos, counts)
    for _ in range(8):
        before = float(np.sum(np.round(60e6 / steps[: -counts[-1] * STEPS_PER_BAR]) / STEPS_PER_BEAT / 1e6)) if len(moods) > 1 else 0.0
        left = duration - before
        if left <= 0:
            raise FacetuneError(f"the timeline's last segment starts after the end ({duration:.2f} s)")
        tempos[-1] = float(np.clip(counts[-1] * STEPS_PER_BAR * 60 / STEPS_PER_BEAT / left, *TEMPO_RANGE))
        steps = _step_tempos(tempos, counts)
    return tempos, counts, steps


def _close_key(old: int, quadrant: str, rng: np.random.Generator) -> int:
    """A key in the new quadrant's mode that shares six or seven notes with `old` (not `old` itself):
    the relative key or a key a fifth away, so a pivot chord exists and the change sounds near."""
    from .chords import key_index, quadrant_mode, scale_pitch_classes

    old_scale = set(scale_pitch_classes(old))
    mode = quadrant_mode(quadrant)
    near = [k for k in (key_index(r, mode) for r in range(12)) if k != old and len(old_scale & set(scale_pitch_classes(k))) >= 6]
    return near[int(rng.integers(len(near)))]


def pivot_chord(old: int, new: int) -> int | None:
    """A triad in both keys, the new key's predominant (IV/iv or ii) first, else any but the old tonic."""
    from .chords import chord_index, chord_pitch_classes, scale_pitch_classes

    both = set(scale_pitch_classes(old)) & set(scale_pitch_classes(new))
    root = new % 12
    minor = new >= 12
    wanted = [chord_index(root + 5, "min" if minor else "maj"), chord_index(root + 2, "min"), chord_index(root + 8, "maj") if minor else chord_index(root + 9, "min")]
    others = [c for c in range(24) if c != chord_index(old % 12, "min" if old >= 12 else "maj")]
    for c in wanted + others:
        if set(chord_pitch_classes(c)) <= both:
            return c
    return None


@dataclass
class _Part:
    """One segment's plan before the network writes it."""

    mood: Mood
    quadrant: str
    key: int
    chords: list[int]
    phrases: list[Any]
    rng: np.random.Generator
    seed: int


def _plan_parts(moods: Sequence[Mood], counts: list[int], seed: int) -> list[_Part]:
    """Key, form and chords of every segment; each change's last bar gets the pivot chord."""
    from .chords import key_index, progression, quadrant_mode
    from .form import cadence_bars, choose_form, fit_form

    parts: list[_Part] = []
    for i, (mood, n) in enumerate(zip(moods, counts)):
        quadrant = quadrant_of(mood.emotion)
        part_seed = int(np.random.default_rng([seed, i]).integers(2**31))
        rng = np.random.default_rng([part_seed, QUADRANTS.index(quadrant)])
        key = key_index(int(rng.integers(12)), quadrant_mode(quadrant)) if not parts else _close_key(parts[-1].key, quadrant, rng)
        phrases = fit_form(choose_form(rng), n)
        chords = progression(quadrant, key % 12, [p.letter for p in phrases], n, rng, cadence_bars(n))
        parts.append(_Part(mood, quadrant, key, chords, phrases, rng, part_seed))
    for a, b in zip(parts, parts[1:]):
        pivot = pivot_chord(a.key, b.key)
        if pivot is not None:
            a.chords[-1] = pivot
    return parts


def _shifted(notes: Sequence[Note], steps: int) -> list[Note]:
    return [Note(n.pitch, n.start + steps, n.end + steps, n.velocity) for n in notes]


def compose_score(moods: Sequence[Mood], duration: float, generator: Any = None, settings: ScoreSettings = ScoreSettings()) -> Score:
    """The piece for `moods` (in time order, covering 0..`duration` seconds), deterministic for the seed."""
    from .chords import KEY_NAMES, chord_name
    from .composer import STYLES, _perform, accompaniment, style_controls
    from .form import form_name, plan_bars
    from .generate import SongRequest, load_generator
    from .pianoroll import rolls_to_notes

    if not moods:
        raise FacetuneError("a score needs at least one mood")
    if not duration > 0:
        raise FacetuneError(f"a score needs a positive duration, not {duration}")
    gen = generator or load_generator()
    decode = gen.default_settings()
    tempos, counts, steps = fit_tempos(moods, duration)
    parts = _plan_parts(moods, counts, settings.seed)
    times = np.concatenate([[0.0], np.cumsum(np.round(60e6 / steps) / STEPS_PER_BEAT / 1e6)])
    melody: list[Note] = []
    chords: list[Note] = []
    segments: list[ScoreSegment] = []
    rolls: list[np.ndarray] = []
    first = 0
    for part, tempo, n in zip(parts, tempos, counts):
        style = STYLES[part.quadrant]
        controls = style_controls(style, part.rng)
        request = SongRequest(part.quadrant, part.chords, part.key, part.seed, plan_bars(part.phrases, n, decode.motif_reference), controls, style.onset_temperature, before=rolls[-gen.dims.prev_bars:])
        [(part_rolls, _)] = gen.generate_many([request], decode)
        rolls.extend(part_rolls)
        notes = rolls_to_notes(part_rolls)
        melody += _shifted(_perform(notes, style, part.rng), first * STEPS_PER_BAR)
        chords += _shifted(accompaniment(part.chords, style, notes), first * STEPS_PER_BAR)
        segments.append(ScoreSegment(
            emotion=part.mood.emotion, quadrant=part.quadrant, key=part.key, key_name=KEY_NAMES[part.key], tempo=tempo, first_bar=first, bars=n,
            start=float(times[first * STEPS_PER_BAR]), end=float(times[(first + n) * STEPS_PER_BAR]), form=form_name(part.phrases), chords=[chord_name(c, part.key) for c in part.chords],
        ))
        first += n
    return Score(segments, melody, chords, steps, settings.seed, bars=first, rolls=rolls)
