"""A second process that composes some of a batch's chunks of songs, for the CPU the main process
leaves idle.

Why: a batch compose runs on one core (the GIL serialises generation, notes and MIDI bytes, and
the classify thread shares that core), so on a machine with a second, idle CPU a forked worker
composes whole chunks of songs (generation, notes, MIDI bytes and their read-back check) while
the main process classifies, writes every song and composes the chunks the worker has not got
to. Every song depends only on its own emotion and seed (`compose_emotions`), so which process
makes it changes no byte. Whole chunks, not a share of each: the network's step loop costs less
a song in a larger batch (6.3 ms in a batch of 16 against 4.4 ms in one of 64).

The worker is only a helper: whenever it fails (it died, it timed out, a song's check failed, the
generator did not load) the main process composes those songs itself, so any error is the one the
in-process path raises, and no run depends on the worker for its result.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

#: Fewer songs than this in a run: the fork and the hand-over cost more than the second core gives.
MIN_SONGS = 64
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


def _serve(requests: Any, replies: Any, parent_ends: tuple[Any, ...], load: Callable[[], Any], options: dict[str, Any]) -> None:
    """The worker's loop: a chunk of songs in; out, their prepared songs and the share of the wall
    time the worker had a CPU (`MIN_CPU_SHARE`), or None when it failed; until the main process
    closes its end (or dies: end of file) or the pipe breaks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)  # the CLI's signal watchdog belongs to the main process
    for end in parent_ends:
        end.close()
    try:
        load()  # now, while the main process reads and classifies the first chunk, rather than after
    except Exception:  # noqa: BLE001  (not cached: the first chunk's own load fails again and is handed back)
        pass
    while True:
        try:
            songs = requests.recv()
        except (EOFError, OSError):
            return
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            reply: Any = (prepare(songs, load(), **options), (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9))
        except Exception:  # noqa: BLE001  (the main process composes the chunk itself and raises)
            reply = None
        try:
            replies.send(reply)
        except OSError:
            return


class Share:
    """A chunk of songs offered to the worker: `done` once its reply came (`result`: the prepared
    songs and the worker's CPU share) or the worker can no longer make it (`result` None), or
    taken back by the main process (`taken`) before the worker started it."""

    def __init__(self, songs: list[tuple[str, int]]) -> None:
        self.songs = songs
        self.done = threading.Event()
        self.result: Any = None
        self.taken = False

    def finish(self, result: Any) -> None:
        self.result = result
        self.done.set()


class SongWorker:
    """The forked worker process, seen from the main process: `offer` chunks of songs, `take_back`
    the oldest the worker has not started when this process has nothing else to do, and `collect`
    each offered chunk's songs.

    The worker holds one chunk at a time; the others wait here, and a thread of the main process
    that reads the worker's replies hands it the next as it finishes one. So the worker never
    waits for the main process (neither for its next chunk nor to have a chunk's MIDI files, more
    than a pipe's buffer, taken), and which process composes a chunk is settled as late as can
    be: whichever is free first. `collect` gives None (and the worker is stopped for the rest of
    the run, every chunk it still held giving None too) when the worker failed in any way; the
    caller then composes the chunk itself. `close` ends the process (also on Ctrl-C: the worker
    ignores SIGINT and leaves when its pipe closes, so none is left behind)."""

    def __init__(self, load: Callable[[], Any], **options: Any) -> None:
        ctx = multiprocessing.get_context("fork")
        requests_in, self._requests = ctx.Pipe(duplex=False)
        self._replies, replies_out = ctx.Pipe(duplex=False)
        self._proc: Any = ctx.Process(target=_serve, args=(requests_in, replies_out, (self._requests, self._replies), load, options), name="facetune-songs", daemon=True)
        self._proc.start()
        requests_in.close()
        replies_out.close()
        self._lock = threading.Lock()
        self._queued: collections.deque[Share] = collections.deque()
        self._busy: Share | None = None
        self._starved = 0
        self._reader = threading.Thread(target=self._read, name="facetune-songs-reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None

    def offer(self, songs: list[tuple[str, int]]) -> Share:
        """Queue a chunk for the worker (sent at once when it is idle); a share that is already
        done, with no result, when the worker is gone."""
        share = Share(songs)
        with self._lock:
            if self._proc is None:
                share.finish(None)
            elif self._busy is None:
                self._send(share)
            else:
                self._queued.append(share)
        return share

    def take_back(self, leave: int = 0) -> Share | None:
        """The oldest offered chunk the worker has not started, for this process to compose, while
        more than `leave` wait (so the worker has its next one ready); None when none is left."""
        with self._lock:
            if len(self._queued) <= leave:
                return None
            share = self._queued.popleft()
        share.taken = True
        return share

    def collect(self, share: Share) -> list[PreparedSong | None] | None:
        """An offered chunk's songs, in order, or None when the worker failed it (or it was taken back)."""
        if share.taken:
            return None
        if not share.done.wait(WAIT_SECONDS):
            self.close()
        if share.result is None:
            self.close()
            return None
        songs, cpu_share = share.result
        self._starved = self._starved + 1 if cpu_share < MIN_CPU_SHARE else 0
        if self._starved >= 2:
            self.close()  # other work took the second CPU: the rest of the run stays in this process
        return songs

    def close(self) -> None:
        """Stop the worker: close the pipe (it leaves at end of file), end it if it lingers, and
        give every chunk it still held back to this process (done, without a result)."""
        with self._lock:
            if self._proc is None:
                return
            proc, self._proc = self._proc, None
            busy, self._busy = self._busy, None
            queued, self._queued = list(self._queued), collections.deque()
            self._requests.close()
        for share in queued:
            share.finish(None)
        if busy is not None:
            busy.finish(None)
        proc.join(timeout=0 if busy is not None else 0.2)
        if proc.is_alive():  # busy with a chunk no one will take: it writes nothing, so just end it
            proc.kill()
            proc.join(timeout=1)
        self._reader.join(timeout=1)  # it sees the end of file once the worker is gone

    def _send(self, share: Share) -> None:
        """Send a chunk to the idle worker (under the lock); if that fails, the worker is gone."""
        try:
            self._requests.send(share.songs)
        except (OSError, ValueError):
            share.finish(None)
            return
        self._busy = share

    def _read(self) -> None:
        """The reader thread: each reply finishes the chunk the worker held and sends it the next;
        at the end of file (the worker is gone) every chunk it held is done without a result."""
        while True:
            try:
                reply = self._replies.recv()
            except (EOFError, OSError):
                reply = None
            with self._lock:
                busy, self._busy = self._busy, None
                if busy is not None:
                    busy.finish(reply)
                if reply is None:  # gone or failed: nothing more is sent (`collect` stops it)
                    queued, self._queued = list(self._queued), collections.deque()
                elif self._queued and self._proc is not None:
                    queued = []
                    self._send(self._queued.popleft())
                else:
                    queued = []
            for share in queued:
                share.finish(None)
            if reply is None:
                self._replies.close()
                return
