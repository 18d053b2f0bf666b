"""A small, fast Standard MIDI File writer and reader for our own songs.

pretty_midi builds a mido object per event and sorts them with a Python
comparator, which costs ~70 ms per 16-bar song to write and as much again to
read back. Our songs are simple (one tempo, 4/4, one key, a few tracks of
notes on a sixteenth-note grid), so we write the bytes directly and parse them
back with a loop that knows the format. The files read the same in pretty_midi
as the ones its own writer made: same tracks, names, programs, channels, notes,
time signature and key; the tempo is `round(60e6 / tempo)` microseconds per
beat (pretty_midi truncates), so times agree to within one microsecond per beat.
"""
from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .pianoroll import STEPS_PER_BEAT, Note

__all__ = ["KEY_SIGNATURES", "MidiSummary", "midi_bytes", "read_back"]

#: key_number (pretty_midi's convention: 0..11 C..B major, 12..23 C..B minor) →
#: (sharps > 0 / flats < 0, minor), spelled as `chords.KEY_NAMES` names the keys (a test checks
#: they agree): pretty_midi's spelling but for Eb minor, six flats where pretty_midi writes D# minor.
KEY_SIGNATURES: tuple[tuple[int, int], ...] = tuple(
    [(sf, 0) for sf in (0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5)]
    + [(sf, 1) for sf in (-3, 4, -1, -6, 1, -4, 3, -2, 5, 0, -5, 2)]
)

_NOTE_ON = 0x90
_PROGRAM = 0xC0
_DRUM_CHANNEL = 9
#: Channels pretty_midi gives the n-th non-drum instrument: 0..15 without 9, cycling.
_CHANNELS = tuple(c for c in range(16) if c != _DRUM_CHANNEL)
_MAX_TICK = 0x0FFFFFFF
_END_OF_TRACK = b"\x00\xff\x2f\x00"
_BY_START = operator.itemgetter(1, 0, 2, 3)  # (pitch, start, end, velocity) by start, pitch, end
#: Data bytes after a channel status, by the status' high nibble.
_DATA_LEN = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


@dataclass
class MidiSummary:
    """What a read-back check needs from a file: timing, meter, key and every track's notes.

    `microseconds_per_beat`, `time_signature` and `key_number` are the first such
    events in the file (None if absent); `tempo_map` and `key_map` list every tempo
    (tick, microseconds per beat) and key (tick, key number) event, for pieces whose
    tempo and key change (a soundtrack). `tracks` holds every track that has a
    name or a note, in file order, as (name, [(pitch, start_tick, end_tick, velocity)])
    sorted by start, pitch, end.
    """

    ticks_per_beat: int
    microseconds_per_beat: int | None = None
    time_signature: tuple[int, int] | None = None
    key_number: int | None = None
    tracks: list[tuple[str, list[tuple[int, int, int, int]]]] = field(default_factory=list)
    tempo_map: list[tuple[int, int]] = field(default_factory=list)
    key_map: list[tuple[int, int]] = field(default_factory=list)

    @property
    def tempo(self) -> float:
        """Beats per minute of the first tempo event (MIDI's default 120 if there is none)."""
        return 60e6 / (self.microseconds_per_beat or 500000)

    @property
    def end_tick(self) -> int:
        """The last note-off tick over all tracks (0 with no notes)."""
        return max((n[2] for _, notes in self.tracks for n in notes), default=0)

    def seconds(self, tick: int) -> float:
        """A tick in seconds: at the file's first tempo, or through every tempo change it has."""
        if len(self.tempo_map) <= 1:
            return tick * (self.microseconds_per_beat or 500000) / 1e6 / self.ticks_per_beat
        elapsed, last_tick, usec = 0.0, 0, 500000
        for at, value in sorted(self.tempo_map):
            if at >= tick:
                break
            elapsed += (at - last_tick) * usec
            last_tick, usec = at, value
        return (elapsed + (tick - last_tick) * usec) / 1e6 / self.ticks_per_beat


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first."""
    if value < 0x80:
        return bytes((value,))
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, body: bytes | bytearray) -> bytes:
    """A chunk: 4-byte type, 4-byte big-endian length, body."""
    return kind + struct.pack(">I", len(body)) + bytes(body)


def _meta(kind: int, data: bytes) -> bytes:
    """A meta event at delta 0."""
    return b"\x00\xff" + bytes((kind,)) + _vlq(len(data)) + data


def _int_in(value: object, low: int, high: int, what: str) -> int:
    """An integer in [low, high], or ValueError (floats are refused, not truncated)."""
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if not low <= v <= high:
        raise ValueError(f"{what} {v} is outside {low}..{high}")
    return v


def _event_keys(notes: Sequence[Note], ticks_per_step: int) -> list[int]:
    """The note events as sorted ints that order as (tick, 0 off / 1 on, pitch, velocity) tuples
    do: offs before ons at a tick, then by pitch (`_pack`, written out here). Why: a song's few
    hundred events checked one call a field and sorted as tuples were most of the writer's time.
    Fields that are not all plain ints in range go through `_checked_events`, which says what is wrong."""
    last_step = _MAX_TICK // ticks_per_step  # so every delta time fits a 4-byte variable-length number
    keys: list[int] = []
    for pitch, start, end, velocity in notes:  # a Note is a named tuple: unpacked, not read field by field
        if type(pitch) is not int or type(start) is not int or type(end) is not int or type(velocity) is not int:
            return _checked_events(notes, ticks_per_step)
        if not (0 <= pitch <= 127 and 1 <= velocity <= 127 and 0 <= start < end <= last_step):
            return _checked_events(notes, ticks_per_step)
        keys.append(((start * ticks_per_step * 2 + 1) * 128 + pitch) * 128 + velocity)
        keys.append((end * ticks_per_step * 256 + pitch) * 128)
    keys.sort()
    return keys


def _checked_events(notes: Sequence[Note], ticks_per_step: int) -> list[int]:
    """`_event_keys` with every field checked by `_int_in` (ValueError saying which is wrong)."""
    keys = []
    last_step = _MAX_TICK // ticks_per_step
    for n in notes:
        pitch = _int_in(n.pitch, 0, 127, "pitch")
        velocity = _int_in(n.velocity, 1, 127, "velocity")  # a note-on with velocity 0 is a note-off
        start = _int_in(n.start, 0, last_step - 1, "note start")
        end = _int_in(n.end, start + 1, last_step, f"note end (start {start})")
        keys += [_pack(start * ticks_per_step, 1, pitch, velocity), _pack(end * ticks_per_step, 0, pitch, 0)]
    keys.sort()
    return keys


def _pack(tick: int, on: int, pitch: int, velocity: int) -> int:
    """A note event as an int whose order is the tuple's: 7 bits of velocity, 7 of pitch, 1 on/off, then the tick."""
    return ((tick * 2 + on) * 128 + pitch) * 128 + velocity


def _event_bytes(keys: Sequence[int], channel: int) -> bytes:
    """Sorted event keys as a track's events: each delta time (a variable-length number), the
    note-on status once (running status after it), pitch and velocity (0 for an off)."""
    data: list[int] = []
    tick = 0
    for key in keys:
        t = key >> 15
        delta = t - tick
        if delta < 0x80:
            data += (delta, (key >> 7) & 0x7F, key & 0x7F)
        elif delta < 0x4000:  # two bytes (a delta of 2 to 34 sixteenths at 480 ticks a beat), without a call
            data += (0x80 | delta >> 7, delta & 0x7F, (key >> 7) & 0x7F, key & 0x7F)
        else:
            data += (*_vlq(delta), (key >> 7) & 0x7F, key & 0x7F)
        tick = t
    if keys:  # the status once, after the first delta time: later note-ons (and velocity-0 offs) run on it
        data.insert(len(_vlq(keys[0] >> 15)), _NOTE_ON | channel)
    return bytes(data)


def _track(name: str, notes: Sequence[Note], channel: int, program: int, ticks_per_step: int) -> bytes:
    """One instrument track: name, program change, then note-ons (velocity 0 for offs) in running status."""
    try:
        encoded = name.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"track name {name!r} is not latin-1") from None
    body = bytearray(_meta(0x03, encoded) if name else b"")
    body += bytes((0, _PROGRAM | channel, program))
    body += _event_bytes(_event_keys(notes, ticks_per_step), channel)
    body += _END_OF_TRACK
    return _chunk(b"MTrk", body)


def _usec(tempo: object) -> int:
    """Microseconds per beat of a tempo in BPM, or ValueError."""
    try:
        bpm = float(tempo)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"tempo must be a number, got {tempo!r}") from None
    if not 0 < bpm < float("inf"):
        raise ValueError(f"tempo must be positive and finite, got {tempo!r}")
    usec = round(60e6 / bpm)
    if not 0 < usec <= 0xFFFFFF:
        raise ValueError(f"tempo {tempo} does not fit a MIDI tempo event")
    return usec


def _changes(tempo_changes: Sequence[tuple[int, float]], key_changes: Sequence[tuple[int, int]], ticks_per_step: int) -> bytes:
    """Tempo and key-signature events after the first, at their steps, in time order."""
    events = [(int(step), 0, _usec(bpm).to_bytes(3, "big")) for step, bpm in tempo_changes]
    events += [(int(step), 1, struct.pack(">bB", *KEY_SIGNATURES[_int_in(key, 0, 23, "key_number")])) for step, key in key_changes]
    out, tick = bytearray(), 0
    for step, kind, payload in sorted(events):
        at = _int_in(step, 0, _MAX_TICK // ticks_per_step, "change step") * ticks_per_step
        out += _vlq(at - tick) + _meta(0x51 if kind == 0 else 0x59, payload)[1:]
        tick = at
    return bytes(out)


def midi_bytes(tracks: list[tuple[str, list[Note]]], *, tempo: float, key_number: int, ticks_per_beat: int = 480, program: int = 0, programs: Sequence[int] | None = None, tempo_changes: Sequence[tuple[int, float]] = (), key_changes: Sequence[tuple[int, int]] = ()) -> bytes:
    """A type-1 Standard MIDI File: a tempo/4-4/key track, then one track per (name, notes).

    Notes are on the sixteenth-note grid (`Note.start`/`end` in steps), so every
    tick is exact. Channels follow pretty_midi (0, 1, ..., skipping the drum
    channel 9). `programs` gives each track its own General MIDI program (audio
    renders the chords on a softer instrument than the melody); without it every
    track gets `program`. `tempo_changes` and `key_changes` are (step, BPM) and
    (step, key number) events after the first tempo and key. The same input always
    gives the same bytes.
    """
    usec = _usec(tempo)
    ticks_per_beat = _int_in(ticks_per_beat, 4, 0x7FFC, "ticks_per_beat")
    if ticks_per_beat % STEPS_PER_BEAT:
        raise ValueError(f"ticks_per_beat {ticks_per_beat} is not a multiple of {STEPS_PER_BEAT}")
    sf, minor = KEY_SIGNATURES[_int_in(key_number, 0, 23, "key_number")]
    program = _int_in(program, 0, 127, "program")
    if programs is None:
        per_track = [program] * len(tracks)
    elif len(programs) != len(tracks):
        raise ValueError(f"{len(programs)} programs for {len(tracks)} tracks")
    else:
        per_track = [_int_in(p, 0, 127, "program") for p in programs]
    if len(tracks) > 0xFFFE:
        raise ValueError("too many tracks")
    conductor = (
        _meta(0x51, usec.to_bytes(3, "big"))
        + _meta(0x58, bytes((4, 2, 24, 8)))  # 4/4: denominator as a power of 2, 24 clocks a click, 8 32nds a beat
        + _meta(0x59, struct.pack(">bB", sf, minor))
        + _changes(tempo_changes, key_changes, ticks_per_beat // STEPS_PER_BEAT)
        + _END_OF_TRACK
    )
    out = [_chunk(b"MThd", struct.pack(">HHH", 1, len(tracks) + 1, ticks_per_beat)), _chunk(b"MTrk", conductor)]
    ticks_per_step = ticks_per_beat // STEPS_PER_BEAT
    for n, (name, notes) in enumerate(tracks):
        out.append(_track(name, list(notes), _CHANNELS[n % len(_CHANNELS)], per_track[n], ticks_per_step))
    return b"".join(out)


def _read_vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of a variable-length quantity of at most 4 bytes."""
    value = 0
    for _ in range(4):
        if pos >= end:
            raise ValueError("MIDI track ends inside a variable-length number")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise ValueError("MIDI variable-length number is longer than 4 bytes")


def _key_number(sf: int, minor: int) -> int:
    """pretty_midi's key_number of a key-signature meta event (sharps/flats, minor flag)."""
    if not -7 <= sf <= 7 or minor not in (0, 1):
        raise ValueError(f"bad MIDI key signature ({sf}, {minor})")
    return (7 * sf) % 12 if not minor else 12 + (7 * sf + 9) % 12


_META_LEN = {0x51: 3, 0x58: 4, 0x59: 2}


def _meta_event(summary: MidiSummary, kind: int, payload: bytes, tick: int = 0) -> str | None:
    """Record the first tempo, meter and key, and every tempo and key change; return the text of a track name."""
    if kind == 0x03:
        return payload.decode("latin-1")
    if kind in _META_LEN and len(payload) != _META_LEN[kind]:
        raise ValueError(f"MIDI meta event {kind:#04x} has length {len(payload)}")
    if kind == 0x51:
        usec = int.from_bytes(payload, "big")
        if not usec:
            raise ValueError("MIDI tempo of 0 microseconds per beat")
        summary.tempo_map.append((tick, usec))
        if summary.microseconds_per_beat is None:
            summary.microseconds_per_beat = usec
    elif kind == 0x58 and summary.time_signature is None:
        summary.time_signature = (payload[0], 1 << payload[1])
    elif kind == 0x59:
        summary.key_map.append((tick, _key_number(struct.unpack(">b", payload[:1])[0], payload[1])))
        if summary.key_number is None:
            summary.key_number = summary.key_map[-1][1]
    return None


def _parse_track(data: bytes, pos: int, end: int, summary: MidiSummary) -> tuple[str | None, list[tuple[int, int, int, int]]]:
    """Walk one MTrk body: meta, sysex and channel events, running status; pair note-ons and offs first in, first out."""
    name: str | None = None
    tick, status = 0, 0
    open_notes: dict[int, list[tuple[int, int]]] = {}  # by channel << 7 | pitch
    notes: list[tuple[int, int, int, int]] = []
    while pos < end:
        if data[pos] < 0x80:  # the common one-byte delta, without a call
            tick, pos = tick + data[pos], pos + 1
        else:
            delta, pos = _read_vlq(data, pos, end)
            tick += delta
        if pos >= end:
            raise ValueError("MIDI track ends after a delta time")
        byte = data[pos]
        if byte == 0xFF or byte in (0xF0, 0xF7):
            if byte == 0xFF:
                if pos + 1 >= end:
                    raise ValueError("MIDI track ends inside a meta event")
                kind, pos = data[pos + 1], pos + 2
            else:
                kind, pos = -1, pos + 1
            length, pos = _read_vlq(data, pos, end)
            if pos + length > end:
                raise ValueError("MIDI meta/sysex event runs past its track")
            payload, pos = data[pos:pos + length], pos + length
            status = status if kind >= 0 else 0  # sysex cancels running status; meta keeps it, as mido reads
            if kind == 0x2F:
                break
            if kind >= 0:
                text = _meta_event(summary, kind, payload, tick)
                name = text if text is not None and name is None else name
            continue
        if byte & 0x80:
            if byte >= 0xF0:
                raise ValueError(f"MIDI status byte {byte:#04x} is not allowed in a file")
            status, pos = byte, pos + 1
        elif not status:
            raise ValueError("MIDI data byte without a status (no running status)")
        if 0x80 <= status < 0xA0 and pos + 2 <= end and (data[pos] | data[pos + 1]) < 0x80:
            # a well-formed note on or off, as `_channel_event` reads it, without the call (most of a file)
            first, second = data[pos], data[pos + 1]
            channel, on = (status & 0x0F) << 7, status >= 0x90
            while True:
                pending = open_notes.get(channel | first)
                if on and second:
                    if pending is None:  # not setdefault: it would make an empty list for every note-on
                        open_notes[channel | first] = [(tick, second)]
                    else:
                        pending.append((tick, second))
                elif pending:
                    start, velocity = pending.pop(0)
                    notes.append((first, start, tick, velocity))
                pos += 2
                # the next event, while it is one more note in running status with a delta of one
                # or two bytes (the rest of the run, as the loop above reads it, in a tighter loop)
                if pos + 3 > end:
                    break
                delta = data[pos]
                if delta < 0x80:
                    at = pos + 1
                elif data[pos + 1] < 0x80:
                    delta, at = (delta & 0x7F) << 7 | data[pos + 1], pos + 2
                else:
                    break
                if at + 2 > end or (data[at] | data[at + 1]) >= 0x80:
                    break
                tick, pos, first, second = tick + delta, at, data[at], data[at + 1]
            continue
        pos = _channel_event(data, pos, end, status, tick, open_notes, notes)
    notes.sort(key=_BY_START)
    return name, notes


def _channel_event(data: bytes, pos: int, end: int, status: int, tick: int, open_notes: dict[int, list[tuple[int, int]]], notes: list[tuple[int, int, int, int]]) -> int:
    """Read one channel event's data bytes at `pos`; a note-on opens a note, a note-off closes the oldest open one of its channel and pitch."""
    kind = status >> 4
    n = _DATA_LEN[kind]
    if pos + n > end:
        raise ValueError("MIDI track ends inside a channel event")
    first, second = data[pos], data[pos + n - 1]
    if (first | second) & 0x80:
        raise ValueError("MIDI data byte has its top bit set")
    if kind == 0x9 and second:
        open_notes.setdefault((status & 0x0F) << 7 | first, []).append((tick, second))
    elif kind in (0x8, 0x9):
        pending = open_notes.get((status & 0x0F) << 7 | first)
        if pending:
            start, velocity = pending.pop(0)
            notes.append((first, start, tick, velocity))
    return pos + n


def read_back(data: bytes) -> MidiSummary:
    """Parse a Standard MIDI File cheaply (ValueError if malformed), for checking what we just wrote.

    Running status carries over meta events (as mido reads) but not over sysex
    (as the standard says); alien chunks are skipped. Notes still sounding at
    the end of their track are dropped, as pretty_midi does.
    """
    data = bytes(data)
    if len(data) < 14 or data[:4] != b"MThd":
        raise ValueError("not a MIDI file (no MThd header)")
    header_len = struct.unpack(">I", data[4:8])[0]
    if header_len < 6 or 8 + header_len > len(data):
        raise ValueError("bad MIDI header length")
    fmt, n_tracks, division = struct.unpack(">HHH", data[8:14])
    if fmt > 2:
        raise ValueError(f"unknown MIDI format {fmt}")
    if division & 0x8000 or division == 0:
        raise ValueError("MIDI file uses SMPTE or zero time division")
    summary = MidiSummary(ticks_per_beat=division)
    pos, found = 8 + header_len, 0
    while pos < len(data) and found < n_tracks:
        if pos + 8 > len(data):
            raise ValueError("MIDI file ends inside a chunk header")
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        body, pos = pos + 8, pos + 8 + length
        if pos > len(data):
            raise ValueError("MIDI chunk runs past the end of the file")
        if kind != b"MTrk":
            continue  # unknown chunks are to be skipped
        name, notes = _parse_track(data, body, pos, summary)
        found += 1
        if name is not None or notes:
            summary.tracks.append((name or "", notes))
    if found != n_tracks:
        raise ValueError(f"MIDI header says {n_tracks} tracks, found {found}")
    return summary
