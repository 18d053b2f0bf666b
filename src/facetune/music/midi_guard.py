"""Damaged or hostile MIDI files refused before pretty_midi parses them.

`prepare-data music` reads MIDI collections made by strangers. pretty_midi (through mido) reads a
whole file into Python objects and then allocates arrays as long as the song's last tick, so a
file with a million notes, a delta time of hours, or a tempo of zero can take minutes, gigabytes
or a ZeroDivisionError. `check_midi_bytes` walks the Standard MIDI File's structure once, keeping
nothing but counters, and raises InputError with a short reason for:

- bytes that are not a MIDI file (no `MThd` header), an unknown format or SMPTE time division, a
  time division of 0 ticks per beat;
- a header or track chunk whose length runs past the end of the file (truncated or wrong
  lengths), fewer tracks than the header says, a chunk other than a track where one should be;
- an event cut off by the end of its track, a variable-length number longer than 4 bytes, a data
  byte with its top bit set, running status with no status to run on (at a track's start or
  after a meta or SysEx event), system messages that have no place in a file;
- a tempo of 0 µs per beat, or a tempo event not 3 bytes long;
- more than `MAX_BYTES`, `MAX_EVENTS` or `MAX_NOTES`, a last tick beyond `MAX_TICKS` (huge delta
  times: pretty_midi's tick-to-time table is one float per tick), or a song longer than
  `MAX_SECONDS`.

Each check is bounded: at most `MAX_BYTES` are read and the walk stops at the first limit, so a
file is judged in well under a second and a few megabytes.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputError

#: Far above any song of the data sets (POP909's are under 100 KB, EMOPIA's clips a few KB).
MAX_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 250_000
MAX_NOTES = 60_000
#: pretty_midi builds a float64 table of this many entries at most (64 MB).
MAX_TICKS = 8_000_000
MAX_SECONDS = 2 * 3600
DEFAULT_TEMPO = 500_000  # µs per beat, until the first tempo event


def _damaged(reason: str) -> InputError:
    return InputError(f"damaged MIDI: {reason}")


def check_midi_file(path: str | Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a MIDI file that passed `check_midi_bytes`; only a regular file of at most
    `max_bytes` is read (a FIFO or a device is refused without blocking)."""
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError("not a regular file")
        if st.st_size > max_bytes:
            raise InputError(f"file is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit for a MIDI file")
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})") from None
    check_midi_bytes(data, max_bytes)
    return data


def check_midi_bytes(data: bytes, max_bytes: int = MAX_BYTES) -> None:
    """Raise InputError with a short reason unless `data` is a sane Standard MIDI File."""
    if len(data) > max_bytes:
        raise _damaged(f"over {max_bytes:,} bytes")
    if len(data) < 14 or data[:4] != b"MThd":
        raise InputError("not a MIDI file (no MThd header)")
    length = int.from_bytes(data[4:8], "big")
    if length < 6 or 8 + length > len(data):
        raise _damaged(f"header chunk claims {length:,} bytes")
    fmt, ntracks, division = (int.from_bytes(data[i : i + 2], "big") for i in (8, 10, 12))
    if fmt > 2 or ntracks == 0:
        raise _damaged(f"format {fmt} with {ntracks} track(s)")
    if division & 0x8000:
        raise _damaged("SMPTE time division is not supported")
    if division == 0:
        raise _damaged("time division of 0 ticks per beat")
    walk = _Walk()
    pos = 8 + length
    for k in range(ntracks):
        if len(data) - pos < 8:
            raise _damaged(f"header says {ntracks} tracks, the file holds {k}")
        name, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        if name != b"MTrk":
            raise _damaged(f"chunk {name!r} where track {k + 1} should be")
        if pos + 8 + size > len(data):
            raise _damaged(f"truncated: track {k + 1} claims {size:,} bytes, {len(data) - pos - 8:,} remain")
        walk.track(data, pos + 8, pos + 8 + size, k + 1)
        pos += 8 + size
    seconds = walk.seconds(division)
    if seconds > MAX_SECONDS:
        raise _damaged(f"lasts {seconds / 3600:,.1f} hours (huge delta times)")


class _Walk:
    """Counters over a file's tracks: events, notes, the last tick and the tempo changes."""

    def __init__(self) -> None:
        self.events = 0
        self.notes = 0
        self.last_tick = 0
        self.tempi: list[tuple[int, int]] = []

    def track(self, data: bytes, pos: int, end: int, number: int) -> None:
        """Walk one track chunk (`data[pos:end]`), event by event."""
        status = 0
        tick = 0
        while pos < end:
            delta, pos = _vlq(data, pos, end, number)
            tick += delta
            if tick > MAX_TICKS:
                raise _damaged(f"track {number} reaches tick {tick:,}, beyond {MAX_TICKS:,} (huge delta times)")
            if pos >= end:
                raise _damaged(f"track {number}: an event is cut off by the end of the track")
            if data[pos] & 0x80:
                status, pos = data[pos], pos + 1
            elif not status:
                raise _damaged(f"track {number}: running status with no status byte to repeat")
            if status == 0xFF:
                if self._meta(data, pos, end, number, tick):
                    break
                pos = _skip(data, pos + 1, end, number)
                status = 0  # meta and SysEx events cancel running status
            elif status in (0xF0, 0xF7):
                pos = _skip(data, pos, end, number)
                status = 0
            elif status >= 0xF0:
                raise _damaged(f"track {number}: system message 0x{status:02X} has no place in a MIDI file")
            else:
                pos = self._channel(data, pos, end, number, status)
            self.events += 1
            if self.events > MAX_EVENTS:
                raise _damaged(f"more than {MAX_EVENTS:,} events")
        self.last_tick = max(self.last_tick, tick)

    def _meta(self, data: bytes, pos: int, end: int, number: int, tick: int) -> bool:
        """Check a meta event at `data[pos]` (its type); True at the end of the track."""
        if pos >= end:
            raise _damaged(f"track {number}: a meta event is cut off")
        kind = data[pos]
        if kind == 0x51:
            size, start = _vlq(data, pos + 1, end, number)
            if size != 3 or start + 3 > end:
                raise _damaged(f"track {number}: a tempo event of {size} bytes (3 expected)")
            tempo = int.from_bytes(data[start : start + 3], "big")
            if tempo == 0:
                raise _damaged(f"track {number}: a tempo of 0 µs per beat at tick {tick:,}")
            self.tempi.append((tick, tempo))
        return kind == 0x2F

    def _channel(self, data: bytes, pos: int, end: int, number: int, status: int) -> int:
        size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        if pos + size > end:
            raise _damaged(f"track {number}: an event is cut off by the end of the track")
        if any(b & 0x80 for b in data[pos : pos + size]):
            raise _damaged(f"track {number}: a data byte with its top bit set (not MIDI data)")
        if status & 0xF0 == 0x90 and data[pos + 1]:
            self.notes += 1
            if self.notes > MAX_NOTES:
                raise _damaged(f"more than {MAX_NOTES:,} notes")
        return pos + size

    def seconds(self, division: int) -> float:
        """The song's length: its last tick through the tempo map."""
        total, tick, tempo = 0.0, 0, DEFAULT_TEMPO
        for at, new in sorted(self.tempi):
            at = min(at, self.last_tick)
            total += (at - tick) * tempo / division / 1e6
            tick, tempo = at, new
        return total + (self.last_tick - tick) * tempo / division / 1e6


def _vlq(data: bytes, pos: int, end: int, number: int) -> tuple[int, int]:
    """A variable-length quantity at `pos` (at most 4 bytes) and the position after it."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            raise _damaged(f"track {number}: a number is cut off by the end of the track")
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    raise _damaged(f"track {number}: a variable-length number longer than 4 bytes")


def _skip(data: bytes, pos: int, end: int, number: int) -> int:
    """Past a length-prefixed body (meta or SysEx) at `pos`, which must end inside the track."""
    size, start = _vlq(data, pos, end, number)
    if start + size > end:
        raise _damaged(f"track {number}: an event claims {size:,} bytes past the end of the track")
    return start + size
