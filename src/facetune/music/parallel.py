"""A second process that composes part of each batch of songs, for the CPU the main process
leaves idle.

Why: a batch compose runs on one core (the GIL serialises generation, notes and MIDI bytes, and
the classify thread shares that core), so on a machine with a second, idle CPU a forked worker
composes a share of every chunk of songs (generation, notes, MIDI bytes and their read-back check)
while the main process composes the rest, classifies and writes. Every song depends only on its
own emotion and seed (`compose_emotions`), so which process makes it changes no byte.

The worker is only a helper: whenever it fails (it died, it timed out, a song's check failed, the
generator did not load) the main process composes those songs itself, so any error is the one the
in-process path raises, and no run depends on the worker for its result.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

#: Fewer songs than this in a run: the fork and the hand-over cost more than the second core gives.
MIN_SONGS = 64
#: The worker's first share of each chunk, and how far one chunk moves it (`SongWorker.share_of`):
#: the worker only composes, while the main process also classifies, writes and composes the rest.
FIRST_SHARE = 0.75
SHARE_STEP = 0.05
#: Below this share of its wall time on a CPU, twice in a row (0.7–1.0 beside this process alone), the worker is starved (another
#: process took the second CPU after the run started) and is stopped.
MIN_CPU_SHARE = 0.6
#: Longest wait for one share (s) before the main process gives up on the worker and composes the
#: share itself; a share takes well under a second.
WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class PreparedSong:
    """A song composed by the worker: its checked MIDI file and what its record says."""

    data: bytes
    quadrant: str
    key: str
    chords: list[str]
    tempo: float
    bars: int
    form: str


def worth_a_worker(songs: int, others_busy: Callable[[], float | None], cpus: int | None = None) -> bool:
    """Whether a worker pays: enough songs, fork available, and a CPU that other processes leave
    idle beside the one this process uses (`others_busy()`: how many CPUs they keep busy, asked
    only when the rest holds; None, unknown, never forks). FACETUNE_SONG_WORKER=0 never forks,
    =1 forks whatever the load (for tests and benchmarks)."""
    forced = os.environ.get("FACETUNE_SONG_WORKER", "")
    if forced == "0" or songs < MIN_SONGS or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if forced == "1":
        return True
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus < 2:
        return False
    busy = others_busy()
    return busy is not None and cpus - busy >= 1.5


def prepare(songs: Sequence[tuple[str, int]], generator: Any, *, bars: int, tempo: float | None, form: str | None, chords: bool) -> list[PreparedSong | None]:
    """Compose `songs` and make each one's checked MIDI file; None for a song whose check failed
    (the main process composes it again and raises the error with the file's name)."""
    from ..errors import FacetuneError
    from .composer import checked_midi_bytes, compose_emotions

    out: list[PreparedSong | None] = []
    for comp in compose_emotions(songs, generator, bars=bars, tempo=tempo, form=form):
        try:
            data = checked_midi_bytes(comp, chords)
        except (ValueError, FacetuneError):
            out.append(None)
            continue
        out.append(PreparedSong(data, comp.quadrant, comp.key, list(comp.chords), comp.tempo, comp.bars, comp.form))
    return out


def _serve(conn: Any, parent_end: Any, load: Callable[[], Any], options: dict[str, Any]) -> None:
    """The worker's loop: a share of songs in; out, their prepared songs and the share of the wall
    time the worker had a CPU (`MIN_CPU_SHARE`), or None when it failed; until the main process
    closes its end (or dies: end of file) or the pipe breaks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)  # the CLI's signal watchdog belongs to the main process
    parent_end.close()
    while True:
        try:
            songs = conn.recv()
        except (EOFError, OSError):
            return
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            reply: Any = (prepare(songs, load(), **options), (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9))
        except Exception:  # noqa: BLE001  (the main process composes the share itself and raises)
            reply = None
        try:
            conn.send(reply)
        except OSError:
            return


class SongWorker:
    """The forked worker process, seen from the main process: `submit` a share, then `collect` it.

    `collect` gives None (and the worker is stopped for the rest of the run) when the worker failed
    in any way; the caller then composes the share itself. `close` ends the process (also on
    Ctrl-C: the worker ignores SIGINT and leaves when its pipe closes, so none is left behind)."""

    def __init__(self, load: Callable[[], Any], **options: Any) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child_end = ctx.Pipe()
        self._proc: Any = ctx.Process(target=_serve, args=(child_end, self._conn, load, options), name="facetune-songs", daemon=True)
        self._proc.start()
        child_end.close()
        self._pending = False
        self._share = FIRST_SHARE
        self._starved = 0

    def share_of(self, n: int) -> int:
        """How many of `n` songs to hand over: a share that grows while the worker's songs are ready
        before this process asks for them and shrinks while it waits for them."""
        return int(n * self._share + 0.5) if self._proc is not None and n > 1 else 0

    @property
    def alive(self) -> bool:
        return self._proc is not None

    def submit(self, songs: list[tuple[str, int]]) -> bool:
        """Hand the worker a share; False (nothing handed) when it is gone."""
        if self._proc is None:
            return False
        try:
            self._conn.send(songs)
        except (OSError, ValueError):
            self.close()
            return False
        self._pending = True
        return True

    def collect(self) -> list[PreparedSong | None] | None:
        """The submitted share's songs, in order, or None when the worker failed it."""
        if self._proc is None or not self._pending:
            return None
        self._pending = False
        early = self._conn.poll(0)
        self._share = min(1 - SHARE_STEP, max(SHARE_STEP, self._share + (SHARE_STEP if early else -SHARE_STEP)))
        try:
            reply = self._conn.recv() if early or self._conn.poll(WAIT_SECONDS) else None
        except (EOFError, OSError):
            reply = None
        if reply is None:
            self.close()
            return None
        songs, cpu_share = reply
        self._starved = self._starved + 1 if cpu_share < MIN_CPU_SHARE else 0
        if self._starved >= 2:
            self.close()  # other work took the second CPU: the rest of the run stays in this process
        return songs

    def close(self) -> None:
        """Stop the worker: close the pipe (it leaves at end of file), then end it if it lingers."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        self._conn.close()
        proc.join(timeout=0 if self._pending else 0.2)
        if proc.is_alive():  # busy with a share no one will take: it writes nothing, so just end it
            proc.kill()
            proc.join(timeout=1)
