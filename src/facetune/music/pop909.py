"""POP909 songs → bar-aligned melody arrays with one chord per bar, a key, a tempo and phrases.

Two layouts of the same 909 songs are read (see SOURCE.md next to each copy of the data):

- structure (`NNN/melody.txt`, `finalized_chord.txt`, `analyzed_key.txt`, `tempo.txt`,
  `human_label1.txt`): already quantised to 16th notes and aligned to the bar lines by its
  authors, so bar k simply starts at step 16·k. Preferred: it also carries phrase labels.
- raw (`NNN/NNN.mid`, `beat_midi.txt`, `chord_midi.txt`, `key_audio.txt`): the original
  arrangement in seconds; the MELODY track is put on a 16th grid by interpolating on the
  annotated beat times, with bar 0 at the first downbeat.

Arrays follow `pianoroll` and `dataset`: 16 steps per 4/4 bar, `pitch` int8 (n_bars, 16) holds
`fold_pitch(p) - LOW_PITCH` or -1 for a rest, `onset` uint8 marks where a note starts (only on
sounding steps), `chords` int8 per bar uses `chords.chord_index` (24 = no chord), `key` uses
`chords.key_index`. A song that cannot be read raises `InputError` naming the file, so a
caller can skip it and report it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from .chords import NO_CHORD, chord_index, key_index
from .pianoroll import LOW_PITCH, STEPS_PER_BAR, STEPS_PER_BEAT, fold_pitch

#: Column of beat_midi.txt (0-based) that is 1.0 on the downbeats of 4-beat bars. Checked on the
#: data: column 1 is 1.0 every 2 beats (97% of its gaps are 2 beats, a 2/4 reading), column 2
#: every 4 beats (95% of its gaps). Against the melody: with column 2 the raw MELODY track of
#: 14 of songs 001-020 has the same onset pattern as the bar-aligned structure layout in at
#: least 90% of its bars (up to a whole-bar offset); with column 1 only 8. Column 2 is not
#: regular everywhere: 86% of songs have at least one 2-, 3-, 5- or 6-beat gap; the reader keeps
#: a 4-beat grid from the first downbeat and does not follow those irregular bars.
DOWNBEAT_COLUMN = 2

_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ROOT = re.compile(r"^([A-Ga-g])([#b]*)$")
#: Harte shorthands reduced to a major triad: a major third (or no third at all) over the root.
_MAJOR_FAMILY = frozenset(
    {"", "maj", "7", "maj7", "maj6", "6", "9", "maj9", "11", "maj11", "13", "maj13", "aug",
     "sus2", "sus4", "5", "1"}
)
#: Harte shorthands reduced to a minor triad: a minor third over the root (diminished included).
_MINOR_FAMILY = frozenset(
    {"min", "min7", "minmaj7", "min6", "min9", "min11", "min13", "dim", "dim7", "hdim7"}
)
_FORM = re.compile(r"([A-Za-z])(\d+)")


@dataclass
class Song:
    """One POP909 song on the 16-steps-per-bar grid that the music model trains on."""

    name: str
    pitch: np.ndarray
    onset: np.ndarray
    chords: np.ndarray
    key: int
    tempo: float
    phrases: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def n_bars(self) -> int:
        return int(self.pitch.shape[0])


def _parse_root(text: str) -> int:
    m = _ROOT.match(text)
    if not m:
        raise InputError(f"unknown root {text!r}")
    letter, acc = m.groups()
    return (_LETTERS[letter.upper()] + acc.count("#") - acc.count("b")) % 12


def parse_harte(label: str) -> int:
    """A Harte/MIREX chord label → chord index 0..24, reduced to the 24 triads the model knows.

    Rule: the bass after "/" is ignored (an inversion keeps its chord); `N` and `X` are no chord.
    A shorthand with a minor third (min, min6, min7, minmaj7, min9, min11, min13, dim, dim7,
    hdim7) becomes the minor triad on the root; every other known shorthand (maj, 6, 7, maj7,
    9, 11, 13 and their maj forms, aug, sus2, sus4, 5, 1) has a major third or no third and becomes
    the major triad on the root. A bare root is major. An interval list alone, "C:(1,b3,5)", is
    minor when it holds b3, else major; added intervals after a shorthand, "C:maj(9)", are
    ignored. Anything else raises InputError.
    """
    text = label.strip()
    if text in ("N", "X"):
        return NO_CHORD
    head = text.split("/", 1)[0]
    root_text, _, quality = head.partition(":")
    root = _parse_root(root_text)
    short, paren, rest = quality.partition("(")
    if paren and not rest.endswith(")"):
        raise InputError(f"malformed chord label {label!r}")
    intervals = [s.strip() for s in rest[:-1].split(",")] if paren else []
    if short == "" and intervals:
        return chord_index(root, "min" if "b3" in intervals else "maj")
    if short in _MINOR_FAMILY:
        return chord_index(root, "min")
    if short in _MAJOR_FAMILY:
        return chord_index(root, "maj")
    raise InputError(f"unknown chord quality in {label!r}")


def parse_key(label: str) -> int:
    """A key label such as "Gb:maj" or "C:min" → key index (0..11 major, 12..23 minor)."""
    root_text, sep, mode = label.strip().partition(":")
    modes = {"maj": "major", "major": "major", "min": "minor", "minor": "minor"}
    if not sep or mode not in modes:
        raise InputError(f"malformed key {label!r} (expected e.g. 'Gb:maj' or 'C:min')")
    return key_index(_parse_root(root_text), modes[mode])


def parse_phrase_labels(label: str) -> list[tuple[str, int, int]]:
    """A phrase string "i4A8B8" → [(letter, start_bar, n_bars), ...], bars counted from 0."""
    text = label.strip()
    if _FORM.sub("", text):
        raise InputError(f"malformed phrase labels {label!r} (expected letter+bars, e.g. 'i4A8')")
    phrases: list[tuple[str, int, int]] = []
    start = 0
    for letter, n in _FORM.findall(text):
        if int(n) <= 0:
            raise InputError(f"phrase {letter}{n} has no bars in {label!r}")
        phrases.append((letter, start, int(n)))
        start += int(n)
    return phrases


def _melody_arrays(notes: list[tuple[int, int, int]], where: Path) -> tuple[np.ndarray, np.ndarray]:
    """(midi_pitch, start_step, end_step) notes → pitch/onset (n_bars, 16), a later note cutting an earlier one.

    Notes are taken in order of start (same start: higher pitch last, so it wins); each ends at
    the next one's start at the latest, so the result is monophonic and every kept note has
    its onset. Trailing silence is not kept: n_bars = ceil(last note end / 16).
    """
    notes = sorted((s, p, e) for p, s, e in notes if e > s and s >= 0)
    kept: list[tuple[int, int, int]] = []
    for i, (s, p, e) in enumerate(notes):
        if i + 1 < len(notes):
            e = min(e, notes[i + 1][0])
        if e > s:
            kept.append((s, p, e))
    if not kept:
        raise InputError(f"{where}: the melody has no notes")
    n_bars = math.ceil(max(e for _, _, e in kept) / STEPS_PER_BAR)
    pitch = np.full(n_bars * STEPS_PER_BAR, -1, dtype=np.int8)
    onset = np.zeros(n_bars * STEPS_PER_BAR, dtype=np.uint8)
    for s, p, e in kept:
        pitch[s:e] = fold_pitch(p) - LOW_PITCH
        onset[s] = 1
    return pitch.reshape(n_bars, STEPS_PER_BAR), onset.reshape(n_bars, STEPS_PER_BAR)


def _bar_chords(spans: list[tuple[float, float, int]], n_bars: int) -> np.ndarray:
    """(start_step, end_step, chord) spans → per bar the chord with the most overlap.

    Overlaps of the same chord add up; ties go to the chord that starts first in the bar;
    a bar no span touches is NO_CHORD (an explicit "N" span counts as a chord here).
    """
    out = np.full(n_bars, NO_CHORD, dtype=np.int8)
    for bar in range(n_bars):
        lo, hi = bar * STEPS_PER_BAR, (bar + 1) * STEPS_PER_BAR
        cover: dict[int, float] = {}
        for s, e, c in spans:
            ov = min(e, hi) - max(s, lo)
            if ov > 1e-9:
                cover[c] = cover.get(c, 0.0) + ov
        if cover:
            out[bar] = max(cover, key=lambda c: cover[c])
    return out


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: file is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from e
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _first_key(path: Path) -> int:
    lines = _lines(path)
    if not lines:
        raise InputError(f"{path}: no key")
    try:
        return parse_key(lines[0].split("\t")[-1] if "\t" in lines[0] else lines[0])
    except InputError as e:
        raise InputError(f"{path}: {e}") from e


def _structure_melody(path: Path) -> list[tuple[int, int, int]]:
    notes: list[tuple[int, int, int]] = []
    step = 0
    for i, ln in enumerate(_lines(path), 1):
        parts = ln.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError(f"{path}: line {i} is {ln!r}, expected 'pitch duration_in_16ths'")
        p, d = int(parts[0]), int(parts[1])
        if p > 127 or d <= 0:
            raise InputError(f"{path}: line {i} has pitch {p} / duration {d} out of range")
        if p > 0:
            notes.append((p, step, step + d))
        step += d
    return notes


def _structure_chords(path: Path) -> list[tuple[float, float, int]]:
    """finalized_chord.txt: `name [pcs] root beats` per line (no-chord lines may omit the root).

    The upstream writer damaged the extension list of some labels ("F#:sus4(b7",
    "F:sus4(b7)\\x01", 31 of the 909 songs); the shorthand before "(" is intact and is all the
    triad reduction uses, so a damaged extension list is cut off rather than failing the song.
    """
    spans: list[tuple[float, float, int]] = []
    step = 0
    for i, ln in enumerate(_lines(path), 1):
        name, bracket, rest = ln.partition("[")
        _, close, tail = rest.partition("]")
        fields = tail.split()
        nums_ok = bool(fields) and all(f.isdigit() for f in fields)
        arity_ok = len(fields) == 2 or (len(fields) == 1 and name.strip() in ("N", "X"))
        if not bracket or not close or not nums_ok or not arity_ok:
            raise InputError(f"{path}: line {i} is {ln!r}, expected 'name [pitch classes] root beats'")
        label = name.strip()
        if "(" in label and not re.fullmatch(r"[^()]*\([^()\x00-\x1f]*\)(/[^()\x00-\x1f]*)?", label):
            label = label.split("(", 1)[0]
        try:
            c = parse_harte(label)
        except InputError as e:
            raise InputError(f"{path}: line {i}: {e}") from e
        d = int(fields[-1]) * STEPS_PER_BEAT
        spans.append((step, step + d, c))
        step += d
    return spans


def read_structure_song(folder: Path) -> Song:
    """A song in the structure layout, whose melody is already on the bar grid (bar k = step 16k)."""
    folder = Path(folder)
    pitch, onset = _melody_arrays(_structure_melody(folder / "melody.txt"), folder / "melody.txt")
    chords = _bar_chords(_structure_chords(folder / "finalized_chord.txt"), pitch.shape[0])
    key = _first_key(folder / "analyzed_key.txt")
    tempo_path = folder / "tempo.txt"
    tempo_lines = _lines(tempo_path)
    try:
        tempo = float(tempo_lines[0])
    except (IndexError, ValueError):
        tempo = -1.0
    if not tempo > 0 or not math.isfinite(tempo):
        raise InputError(f"{tempo_path}: expected one positive tempo in BPM, got {tempo_lines[:1]}")
    phrases: list[tuple[str, int, int]] = []
    label_path = folder / "human_label1.txt"
    if label_path.is_file():
        labels = _lines(label_path)
        try:
            phrases = parse_phrase_labels(labels[0]) if labels else []
        except InputError as e:
            raise InputError(f"{label_path}: {e}") from e
    return Song(folder.name, pitch, onset, chords, key, tempo, phrases)


def _beats(path: Path) -> tuple[np.ndarray, int]:
    """beat_midi.txt → (beat times, index of the first 4/4 downbeat)."""
    rows = []
    for i, ln in enumerate(_lines(path), 1):
        try:
            row = [float(x) for x in ln.split()]
        except ValueError:
            row = []
        if len(row) != 3:
            raise InputError(f"{path}: line {i} is {ln!r}, expected 'time col2 col3'")
        rows.append(row)
    a = np.array(rows, dtype=np.float64).reshape(-1, 3)
    if len(a) < 2 or not np.all(np.diff(a[:, 0]) > 0):
        raise InputError(f"{path}: needs at least two beats with increasing times")
    down = np.flatnonzero(a[:, DOWNBEAT_COLUMN] == 1.0)
    if len(down) == 0:
        raise InputError(f"{path}: no downbeat (column {DOWNBEAT_COLUMN + 1} is never 1)")
    return a[:, 0], int(down[0])


def _time_to_step(times: np.ndarray, beat_times: np.ndarray, first_down: int) -> np.ndarray:
    """Seconds → (fractional) 16th steps after the first downbeat, linear between beats and beyond the ends."""
    t = np.asarray(times, dtype=np.float64)
    idx = np.arange(len(beat_times), dtype=np.float64)
    beat = np.interp(t, beat_times, idx)
    head = (beat_times[1] - beat_times[0])
    tail = (beat_times[-1] - beat_times[-2])
    beat = np.where(t < beat_times[0], (t - beat_times[0]) / head, beat)
    beat = np.where(t > beat_times[-1], len(beat_times) - 1 + (t - beat_times[-1]) / tail, beat)
    return (beat - first_down) * STEPS_PER_BEAT


def _raw_chords(path: Path, beat_times: np.ndarray, first_down: int) -> list[tuple[float, float, int]]:
    starts, ends, labels = [], [], []
    for i, ln in enumerate(_lines(path), 1):
        parts = ln.split()
        try:
            s, e = float(parts[0]), float(parts[1])
            ok = len(parts) == 3
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise InputError(f"{path}: line {i} is {ln!r}, expected 'start end label'")
        try:
            labels.append(parse_harte(parts[2]))
        except InputError as err:
            raise InputError(f"{path}: line {i}: {err}") from err
        starts.append(s)
        ends.append(e)
    s_steps = np.rint(_time_to_step(np.array(starts), beat_times, first_down))
    e_steps = np.rint(_time_to_step(np.array(ends), beat_times, first_down))
    return [(float(s), float(e), c) for s, e, c in zip(s_steps, e_steps, labels)]


def read_raw_song(folder: Path) -> Song:
    """A song in the raw layout: the MELODY track of NNN.mid put on the beat grid of beat_midi.txt.

    Downbeats are the rows whose third column is 1.0 (see DOWNBEAT_COLUMN for what was checked).
    Steps are 4 per beat, interpolated on the beat times; step 0 is the first downbeat, notes
    whose rounded onset falls before it are dropped, and the grid goes on in 4-beat bars. A note
    lasts at least one step. The MIDI's time signature is not used (it is unreliable).
    """
    import pretty_midi

    folder = Path(folder)
    midi_path = folder / f"{folder.name}.mid"
    if not midi_path.is_file():
        raise InputError(f"{midi_path}: file is missing")
    try:
        midi = pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as e:  # pretty_midi/mido raise many kinds on a damaged file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(f"{midi_path}: cannot read MIDI ({first})") from e
    melody = [inst for inst in midi.instruments if inst.name.strip().upper() == "MELODY"]
    if not melody:
        raise InputError(f"{midi_path}: no MELODY track")
    beat_times, first_down = _beats(folder / "beat_midi.txt")
    notes = melody[0].notes
    starts = np.rint(_time_to_step([n.start for n in notes], beat_times, first_down)).astype(int)
    ends = np.rint(_time_to_step([n.end for n in notes], beat_times, first_down)).astype(int)
    steps = [(n.pitch, int(s), int(max(e, s + 1))) for n, s, e in zip(notes, starts, ends)]
    pitch, onset = _melody_arrays(steps, midi_path)
    spans = _raw_chords(folder / "chord_midi.txt", beat_times, first_down)
    chords = _bar_chords(spans, pitch.shape[0])
    key = _first_key(folder / "key_audio.txt")
    tempo = float(midi.get_tempo_changes()[1][0])
    return Song(folder.name, pitch, onset, chords, key, tempo, [])


def song_layout(folder: Path) -> str | None:
    """"structure" when the folder has melody.txt, "raw" when it has NNN/NNN.mid, else None."""
    folder = Path(folder)
    if (folder / "melody.txt").is_file():
        return "structure"
    if (folder / f"{folder.name}.mid").is_file():
        return "raw"
    return None


def find_songs(src: Path) -> list[Path]:
    """The song folders directly under src (either layout), sorted by name."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: not a folder")
    songs = sorted(p for p in src.iterdir() if p.is_dir() and song_layout(p) is not None)
    if not songs:
        raise DataError(f"{src}: no POP909 song folders (NNN/melody.txt or NNN/NNN.mid)")
    return songs


def read_song(folder: Path) -> Song:
    """Read a song folder with the reader for its layout."""
    layout = song_layout(folder)
    if layout == "structure":
        return read_structure_song(folder)
    if layout == "raw":
        return read_raw_song(folder)
    raise InputError(f"{folder}: neither melody.txt nor {Path(folder).name}.mid, not a POP909 song")
