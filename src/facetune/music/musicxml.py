"""MusicXML lead sheets: the melody with chord symbols, key, tempo and 4/4, for notation programs.

A small writer rather than music21: music21 would pull matplotlib and more into the light
install and takes seconds to import, while our songs need only one part of single notes on a
sixteenth-note grid, one key, one tempo and one chord per bar. The file is MusicXML 4.0
score-partwise with `divisions` 4 (a sixteenth note is 1). Notes that cross a barline, or
last a value no single note can show (5, 7, 11 sixteenths...), are split into notatable values
that keep the beats visible and tied together. Pitches are spelled by the key (`KeySpelling`);
chord symbols keep the spelling of the names they are given. The same song always gives the
same bytes (no encoding date).
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import atomic_write_bytes
from ..errors import FacetuneError, refuse_overwrite
from .chords import LETTERS, MAJOR_SCALE, MINOR_SCALE
from .chords import NATURAL_PITCH_CLASS as NATURAL_PC
from .pianoroll import STEPS_PER_BAR

__all__ = ["KeySpelling", "check_musicxml", "musicxml_bytes", "parse_chord_symbol", "split_duration", "write_musicxml"]

DIVISIONS = 4
BAR = STEPS_PER_BAR
HEADER = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
    '"http://www.musicxml.org/dtds/partwise.dtd">\n'
)
#: Fifths of the major key on each natural letter; a sharp adds 7, a flat takes 7 away.
LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
SCALES = {"major": MAJOR_SCALE, "minor": MINOR_SCALE}
#: Sixteenths → (MusicXML type, dotted): every length one note can show in 4/4 without tuplets.
NOTE_TYPES = {16: ("whole", False), 12: ("half", True), 8: ("half", False), 6: ("quarter", True), 4: ("quarter", False), 3: ("eighth", True), 2: ("eighth", False), 1: ("16th", False)}
ACCIDENTALS = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}
NO_CHORD_NAMES = ("", "N", "N.C.", "NC")
_ROOT = re.compile(r"([A-G])([#b]*)")
_KEY = re.compile(r"\s*([A-G][#b]*)\s+(major|minor)\s*", re.IGNORECASE)
_CHORD = re.compile(r"\s*([A-G][#b]*)(m?)\s*")


def _alter(pc: int, letter: str) -> int:
    """Semitones from the natural `letter` to pitch class `pc`, in -6..5."""
    return (pc - NATURAL_PC[letter] + 6) % 12 - 6


def _root(text: str) -> tuple[str, int]:
    """'Bb' → ('B', -1), 'F#' → ('F', 1): a letter and its sharps (+) or flats (-)."""
    m = _ROOT.fullmatch(text)
    if not m:
        raise FacetuneError(f"cannot read the note name {text!r}")
    return m.group(1), m.group(2).count("#") - m.group(2).count("b")


@dataclass(frozen=True)
class KeySpelling:
    """A key's signature and how it spells each of the 12 pitch classes.

    Diatonic notes take the scale's letters (Cb in Eb minor, E# in F# major). In minor, the raised
    6th and 7th are the natural-minor degrees sharpened (D natural in Eb minor, Fx in G# minor), as
    a reader expects of a leading tone. Other chromatic notes take the spelling with the fewest
    accidentals, and on a tie sharps in sharp keys (and C major, A minor) and flats in flat keys.
    """

    step: str
    alter: int
    mode: str
    fifths: int
    spelling: tuple[tuple[str, int], ...]

    @classmethod
    def from_name(cls, name: str) -> KeySpelling:
        """'Bb major', 'G# minor', ... → the key's signature and spelling."""
        m = _KEY.fullmatch(str(name))
        if not m:
            raise FacetuneError(f"cannot read the key {name!r} (expected, for example, 'Bb major' or 'G# minor')")
        step, alter = _root(m.group(1))
        mode = m.group(2).lower()
        fifths = LETTER_FIFTHS[step] + 7 * alter - (3 if mode == "minor" else 0)
        return cls(step, alter, mode, fifths, _spell_all(step, alter, mode, fifths))

    def signature(self) -> dict[str, int]:
        """Letter → the alteration the key signature gives it."""
        return {s: a for s, a in (self.spelling[pc] for pc in self.diatonic())}

    def diatonic(self) -> tuple[int, ...]:
        """The scale's pitch classes, tonic first."""
        tonic = (NATURAL_PC[self.step] + self.alter) % 12
        return tuple((tonic + i) % 12 for i in SCALES[self.mode])

    def pitch(self, midi: int) -> tuple[str, int, int]:
        """A MIDI pitch → (step, alter, octave); the octave follows the letter (B#3 is C4's sound)."""
        step, alter = self.spelling[midi % 12]
        return step, alter, (midi - alter - NATURAL_PC[step]) // 12 - 1


def _spell_all(step: str, alter: int, mode: str, fifths: int) -> tuple[tuple[str, int], ...]:
    """The (letter, alteration) of every pitch class in a key: see `KeySpelling`."""
    tonic = (NATURAL_PC[step] + alter) % 12
    first = LETTERS.index(step)
    out: dict[int, tuple[str, int]] = {}
    for i, interval in enumerate(SCALES[mode]):
        letter = LETTERS[(first + i) % 7]
        out[(tonic + interval) % 12] = (letter, _alter((tonic + interval) % 12, letter))
    diatonic = dict(out)
    if mode == "minor":
        for degree in (8, 10):
            letter, a = diatonic[(tonic + degree) % 12]
            out[(tonic + degree + 1) % 12] = (letter, a + 1)
    for pc in range(12):
        if pc in out:
            continue
        up = (diatonic[(pc - 1) % 12][0], diatonic[(pc - 1) % 12][1] + 1)
        down = (diatonic[(pc + 1) % 12][0], diatonic[(pc + 1) % 12][1] - 1)
        prefer, other = (up, down) if fifths >= 0 else (down, up)
        out[pc] = other if abs(other[1]) < abs(prefer[1]) else prefer
    return tuple(out[pc] for pc in range(12))


def parse_chord_symbol(name: str | None) -> tuple[str, int, str] | None:
    """'Bbm' → ('B', -1, 'minor'), 'F#' → ('F', 1, 'major'); None for no chord ('N.C.', 'N')."""
    if name is None or str(name).strip().upper() in NO_CHORD_NAMES:
        return None
    m = _CHORD.fullmatch(str(name))
    if not m:
        raise FacetuneError(f"cannot read the chord {name!r} (expected, for example, 'Bb', 'F#m' or 'N.C.')")
    step, alter = _root(m.group(1))
    return step, alter, "minor" if m.group(2) else "major"


def _fits(pos: int, length: int) -> bool:
    """Whether one note of `length` sixteenths may start at `pos` in a 4/4 bar and keep the beats
    readable: nothing shorter than a half note crosses the middle of the bar, notes shorter than a
    quarter stay inside their beat, and longer values start on a beat (or an off-beat eighth)."""
    end = pos + length
    if end > BAR:
        return False
    if length < 8 and pos < BAR // 2 < end:
        return False
    if length < 4:
        return pos // 4 == (end - 1) // 4
    if length in (16, 12):
        return pos in ((0,) if length == 16 else (0, 4))
    return pos % 4 == 0 or (length in (4, 6) and pos % 2 == 0)


def split_duration(pos: int, end: int) -> list[int]:
    """Sixteenths [pos, end) of one bar as notatable lengths, longest first where the beats allow."""
    if not 0 <= pos < end <= BAR:
        raise ValueError(f"[{pos}, {end}) is not inside one bar")
    out = []
    while pos < end:
        length = next(n for n in NOTE_TYPES if n <= end - pos and _fits(pos, n))
        out.append(length)
        pos += length
    return out


@dataclass(frozen=True)
class _Piece:
    """One written note or rest: its bar, position and length in sixteenths, and its ties."""

    bar: int
    pos: int
    length: int
    pitch: int | None
    tie_stop: bool = False
    tie_start: bool = False


def _segments(melody: Sequence[Any], bars: int) -> Iterator[tuple[int, int, int | None]]:
    """(start, end, pitch or None for a rest) covering bars × 16 sixteenths without gaps."""
    t = 0
    for n in sorted(melody, key=lambda n: (n.start, n.end)):
        start, end, pitch = int(n.start), int(n.end), int(n.pitch)
        if start < t or end <= start or not 0 <= pitch <= 127:
            raise FacetuneError(f"the melody cannot be written as one line (note {pitch} at {start}–{end} overlaps or is empty)")
        if start > t:
            yield t, start, None
        yield start, end, pitch
        t = end
    if t < bars * BAR:
        yield t, bars * BAR, None


def _pieces(melody: Sequence[Any], bars: int) -> list[_Piece]:
    """Every note and rest cut at the barlines and into notatable lengths; a note's pieces are tied."""
    out: list[_Piece] = []
    for start, end, pitch in _segments(melody, bars):
        lengths = []
        t = start
        while t < end:
            bar, pos = divmod(t, BAR)
            stop = min(end - bar * BAR, BAR)
            lengths += [(bar, p, n) for p, n in _positions(pos, split_duration(pos, stop))]
            t = bar * BAR + stop
        for i, (bar, pos, n) in enumerate(lengths):
            tied = pitch is not None
            out.append(_Piece(bar, pos, n, pitch, tied and i > 0, tied and i < len(lengths) - 1))
    return out


def _positions(pos: int, lengths: list[int]) -> list[tuple[int, int]]:
    """(position, length) of consecutive lengths from `pos`."""
    out = []
    for n in lengths:
        out.append((pos, n))
        pos += n
    return out


def _sub(parent: ET.Element, tag: str, value: Any = None, /, **attrib: str) -> ET.Element:
    """A child element with optional text (ElementTree's SubElement, with the text in the same call)."""
    el = ET.SubElement(parent, tag, attrib)
    if value is not None:
        el.text = str(value)
    return el


def _number(x: float) -> str:
    """A tempo as written: two decimals at most, no trailing zeros (126, 72.5)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _clef(melody: Sequence[Any]) -> bool:
    """Whether to use the treble clef an octave down: only when most notes lie below middle C."""
    return sum(int(n.pitch) < 60 for n in melody) * 2 > len(melody)


def _attributes(measure: ET.Element, key: KeySpelling, octave_down: bool) -> None:
    """Measure 1's divisions, key signature, 4/4 and treble clef."""
    attributes = _sub(measure, "attributes")
    _sub(attributes, "divisions", DIVISIONS)
    k = _sub(attributes, "key")
    _sub(k, "fifths", key.fifths)
    _sub(k, "mode", key.mode)
    time = _sub(attributes, "time")
    _sub(time, "beats", 4)
    _sub(time, "beat-type", 4)
    clef = _sub(attributes, "clef")
    _sub(clef, "sign", "G")
    _sub(clef, "line", 2)
    if octave_down:
        _sub(clef, "clef-octave-change", -1)


def _tempo(measure: ET.Element, tempo: float) -> None:
    """A metronome mark (quarter = tempo) that programs also play back at (`<sound tempo>`)."""
    direction = _sub(measure, "direction", placement="above")
    metronome = _sub(_sub(direction, "direction-type"), "metronome", parentheses="no")
    _sub(metronome, "beat-unit", "quarter")
    _sub(metronome, "per-minute", _number(tempo))
    _sub(direction, "sound", tempo=_number(tempo))


def _harmony(measure: ET.Element, name: str | None) -> None:
    """The bar's chord symbol; 'N.C.' for a bar without a chord (so the last chord does not carry on)."""
    chord = parse_chord_symbol(name)
    harmony = _sub(measure, "harmony", **{"print-frame": "no"})
    root = _sub(harmony, "root")
    if chord is None:
        _sub(root, "root-step", "C", text="")
        _sub(harmony, "kind", "none", text="N.C.")
        return
    step, alter, kind = chord
    _sub(root, "root-step", step)
    if alter:
        _sub(root, "root-alter", alter)
    _sub(harmony, "kind", kind, **({"text": "m"} if kind == "minor" else {}))


def _note(measure: ET.Element, piece: _Piece, key: KeySpelling, shown: dict[tuple[str, int], int]) -> None:
    """One note or rest. `shown` holds this bar's alterations so far, so accidentals are printed
    only where the key signature or an earlier note of the bar does not already give them."""
    note = _sub(measure, "note")
    kind, dotted = NOTE_TYPES[piece.length]
    if piece.pitch is None:
        _sub(note, "rest", **({"measure": "yes"} if piece.length == BAR else {}))
    else:
        step, alter, octave = key.pitch(piece.pitch)
        pitch = _sub(note, "pitch")
        _sub(pitch, "step", step)
        if alter:
            _sub(pitch, "alter", alter)
        _sub(pitch, "octave", octave)
    _sub(note, "duration", piece.length)
    for kind_of_tie in ("stop", "start"):
        if getattr(piece, f"tie_{kind_of_tie}"):
            _sub(note, "tie", type=kind_of_tie)
    _sub(note, "voice", 1)
    if not (piece.pitch is None and piece.length == BAR):
        _sub(note, "type", kind)
    if dotted:
        _sub(note, "dot")
    if piece.pitch is not None:
        _accidental(note, step, alter, octave, piece, key, shown)
    if piece.tie_stop or piece.tie_start:
        notations = _sub(note, "notations")
        for kind_of_tie in ("stop", "start"):
            if getattr(piece, f"tie_{kind_of_tie}"):
                _sub(notations, "tied", type=kind_of_tie)


def _accidental(note: ET.Element, step: str, alter: int, octave: int, piece: _Piece, key: KeySpelling, shown: dict[tuple[str, int], int]) -> None:
    """Print an accidental where it is needed; a note tied over the barline does not repeat it."""
    if piece.tie_stop and piece.pos == 0:
        return
    if alter in ACCIDENTALS and shown.get((step, octave), key.signature()[step]) != alter:
        _sub(note, "accidental", ACCIDENTALS[alter])
        shown[(step, octave)] = alter


def _score_header(score: ET.Element, comp: Any) -> None:
    """Title, creator, encoding software, a few facts about the song, and the one part."""
    _sub(_sub(score, "work"), "work-title", f"facetune: {comp.emotion}, seed {comp.seed}")
    ident = _sub(score, "identification")
    _sub(ident, "creator", "facetune", type="composer")
    _sub(_sub(ident, "encoding"), "software", "facetune")
    misc = _sub(ident, "miscellaneous")
    for field in ("emotion", "quadrant", "key", "form", "seed"):
        value = getattr(comp, field, "")
        if value not in ("", None):
            _sub(misc, "miscellaneous-field", value, name=field)
    part = _sub(_sub(score, "part-list"), "score-part", id="P1")
    _sub(part, "part-name", "Melody")
    _sub(_sub(part, "score-instrument", id="P1-I1"), "instrument-name", "Piano")
    midi = _sub(part, "midi-instrument", id="P1-I1")
    _sub(midi, "midi-channel", 1)
    _sub(midi, "midi-program", 1)


def _check_tempo(tempo: Any) -> float:
    """The tempo as a positive finite number, or a one-line error."""
    try:
        bpm = float(tempo)
    except (TypeError, ValueError):
        raise FacetuneError(f"the tempo must be a number, got {tempo!r}") from None
    if not (math.isfinite(bpm) and bpm > 0):
        raise FacetuneError(f"the tempo must be positive, got {tempo!r}")
    return bpm


def musicxml_bytes(comp: Any) -> bytes:
    """The song as a MusicXML 4.0 lead sheet (UTF-8): melody, one chord symbol a bar, key, tempo, 4/4.

    `comp` is a `composer.Composition` or anything with its `melody`, `chords`, `key`, `tempo`,
    `bars`, `emotion` and `seed`. The score has as many bars as `bars`, or more if notes run past it.
    """
    key = KeySpelling.from_name(comp.key)
    tempo = _check_tempo(comp.tempo)
    melody = list(comp.melody)
    bars = max(int(comp.bars), -(-max((int(n.end) for n in melody), default=0) // BAR), 1)
    pieces = _pieces(melody, bars)
    score = ET.Element("score-partwise", version="4.0")
    _score_header(score, comp)
    part = _sub(score, "part", id="P1")
    by_bar: list[list[_Piece]] = [[] for _ in range(bars)]
    for piece in pieces:
        by_bar[piece.bar].append(piece)
    for b, bar_pieces in enumerate(by_bar):
        measure = _sub(part, "measure", number=str(b + 1))
        if b == 0:
            _attributes(measure, key, _clef(melody))
            _tempo(measure, tempo)
        if b < len(comp.chords):
            _harmony(measure, comp.chords[b])
        shown: dict[tuple[str, int], int] = {}
        for piece in bar_pieces:
            _note(measure, piece, key, shown)
        if b == bars - 1:
            _sub(_sub(measure, "barline", location="right"), "bar-style", "light-heavy")
    ET.indent(score, space="  ")
    return (HEADER + ET.tostring(score, encoding="unicode") + "\n").encode("utf-8")


def check_musicxml(data: bytes, bars: int) -> None:
    """Read the file back with the standard library's parser: it parses, has the bars asked for,
    and every bar holds exactly four quarter notes of notes and rests. A one-line error if not."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise FacetuneError(f"the written MusicXML does not parse ({exc})") from None
    measures = root.findall("./part/measure")
    if root.tag != "score-partwise" or len(measures) < bars:
        raise FacetuneError(f"the written MusicXML has {len(measures)} bars, expected {bars}")
    for m in measures:
        total = sum(int(d.text or 0) for d in m.findall("./note/duration"))
        if total != BAR:
            raise FacetuneError(f"bar {m.get('number')} of the written MusicXML lasts {total} sixteenths, not {BAR}")


def write_musicxml(comp: Any, path: str | Path, *, force: bool = False) -> Path:
    """Write the lead sheet atomically after reading it back; an existing file only with `force`."""
    path = Path(path)
    refuse_overwrite(path, force)
    data = musicxml_bytes(comp)
    check_musicxml(data, int(comp.bars))
    atomic_write_bytes(path, data, durable=False)
    return path
