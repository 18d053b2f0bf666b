"""The song worker (`music.parallel`): a second process changes no byte, and is only used when it pays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetune.music import parallel

from conftest import face_image


def _faces(folder: Path, n: int) -> list[tuple[Path, str, Path]]:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        Image.fromarray(face_image(i % 3, rng)).save(folder / f"f{i:03d}.png")
    (folder / "bad.png").write_text("not an image")
    return [(p, str(p), Path(p.name)) for p in sorted(folder.iterdir())]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_worker_changes_no_byte_and_no_record(tmp_path, tiny_classifier, tiny_generator, monkeypatch):
    """The same batch with and without the worker: the same files, byte for byte, and the same
    records in the same order; and the worker did make songs."""
    from facetune.api import ComposeSettings, compose_many

    items = _faces(tmp_path / "in", 150)
    settings = ComposeSettings(seed=3, classifier=str(tiny_classifier), generator=str(tiny_generator), detect=False)
    made = []
    collect = parallel.SongWorker.collect

    def counted(self, share):
        songs = collect(self, share)
        made.extend(s for s in songs or () if s is not None)
        return songs

    monkeypatch.setattr(parallel.SongWorker, "collect", counted)
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("FACETUNE_SONG_WORKER", mode)
        out = tmp_path / f"out{mode}"
        recs = list(compose_many(items, out, settings))
        runs[mode] = ([{k: v for k, v in r.items() if k != "output"} for r in recs], _tree(out))
    assert len(made) > 50, "the worker should have composed a share of the songs"
    assert runs["1"] == runs["0"]
    assert len(runs["0"][1]) == 151  # 150 songs and the record of the failed input


def _data(songs: list) -> list[bytes]:
    from facetune.music.composer import checked_midi_bytes

    return [s.data if isinstance(s, parallel.PreparedSong) else checked_midi_bytes(s) for s in songs]


def _worker(generator: Path) -> parallel.SongWorker:
    from facetune.api import load_generator

    return parallel.SongWorker(lambda: load_generator(str(generator)), bars=16, tempo=None, form=None, chords=True)


def _item(songs: list, share: parallel.Share):
    from facetune.api import _Waiting

    return _Waiting([], [], list(range(len(songs))), songs, share=share)


def test_a_dead_worker_leaves_its_chunks_to_this_process(tiny_generator):
    """A worker killed mid-run: the chunks it held are composed here, with the same bytes."""
    from facetune.api import ComposeSettings, _compose_here, _songs_of

    settings = ComposeSettings(generator=str(tiny_generator))
    songs = [(("happy", "sad", "angry", "calm")[i % 4], 100 + i) for i in range(20)]
    alone = _data(_compose_here(songs, settings))
    worker = _worker(tiny_generator)
    try:
        share = worker.offer(songs)
        shared = list(_songs_of(_item(songs, share), settings, worker).values())
        assert all(isinstance(s, parallel.PreparedSong) for s in shared)
        assert _data(shared) == alone
        first, second = worker.offer(songs[:7]), worker.offer(songs[7:])
        worker._proc.kill()
        worker._proc.join()
        again = list(_songs_of(_item(songs[:7], first), settings, worker).values()) + list(_songs_of(_item(songs[7:], second), settings, worker).values())
        assert _data(again) == alone
        assert not worker.alive and worker.offer(songs).done.is_set() and worker.take_back() is None
    finally:
        worker.close()


def test_a_worker_whose_generator_does_not_load_leaves_every_chunk_here(tiny_generator):
    """The worker loads its generator as soon as it starts; when that fails (and fails again for
    its first chunk), the chunk comes back without songs, the worker stops and this process
    composes everything, with the same bytes."""
    from facetune.api import ComposeSettings, _compose_here, _songs_of

    def broken() -> None:
        raise OSError("no generator here")

    settings = ComposeSettings(generator=str(tiny_generator))
    songs = [(("happy", "sad")[i % 2], i) for i in range(6)]
    worker = parallel.SongWorker(broken, bars=16, tempo=None, form=None, chords=True)
    try:
        made = list(_songs_of(_item(songs, worker.offer(songs)), settings, worker).values())
        assert not any(isinstance(s, parallel.PreparedSong) for s in made) and not worker.alive
        assert _data(made) == _data(_compose_here(songs, settings))
    finally:
        worker.close()


def test_chunks_wait_their_turn_and_can_be_taken_back(tiny_generator):
    """The worker holds one chunk at a time; the next ones wait in this process, which can take
    back the oldest the worker has not started (leaving `leave` for it); the others come back
    with the same bytes as composed here."""
    from facetune.api import ComposeSettings, _compose_here

    settings = ComposeSettings(generator=str(tiny_generator))
    chunks = [[(("happy", "sad", "angry", "calm")[(i + j) % 4], 10 * i + j) for j in range(5)] for i in range(4)]
    worker = _worker(tiny_generator)
    try:
        shares = [worker.offer(c) for c in chunks]
        assert worker.take_back(leave=3) is None
        taken = worker.take_back(leave=1)
        assert taken is shares[1] and taken.taken and worker.collect(taken) is None
        for i in (0, 2, 3):
            assert _data(worker.collect(shares[i])) == _data(_compose_here(chunks[i], settings))
        assert worker.take_back() is None
    finally:
        worker.close()


def test_compose_chunks_writes_in_order_whoever_composes(tmp_path, tiny_generator):
    """`_compose_chunks` offers every chunk, composes here the ones taken back, and writes every
    chunk in input order."""
    from facetune import api
    from facetune.api import ComposeSettings, FaceEmotion

    settings = ComposeSettings(generator=str(tiny_generator))

    class Worker:
        """Starts no chunk on its own: every one but the last two is taken back."""

        alive = True

        def __init__(self) -> None:
            self.queued: list[parallel.Share] = []
            self.taken = 0

        def offer(self, songs: list) -> parallel.Share:
            self.queued.append(parallel.Share(songs))
            return self.queued[-1]

        def take_back(self, leave: int = 0) -> parallel.Share | None:
            if len(self.queued) <= max(leave, 2):
                return None
            self.taken += 1
            share = self.queued.pop(0)
            share.taken = True
            return share

        def collect(self, share: parallel.Share) -> list:
            return api._compose_here(share.songs, settings)

    chunks = [[((None, f"in{i}_{j}", Path(f"in{i}_{j}.png"), tmp_path / f"in{i}_{j}.mid"), FaceEmotion(f"in{i}_{j}", None, ("happy", "sad")[j % 2], {}, content=f"{i}{j}")) for j in range(3)] for i in range(6)]
    worker = Worker()
    recs = [rec for rec, _, _ in api._compose_chunks(iter(chunks), [], tmp_path, settings, worker)]
    assert [r["input"] for r in recs] == [f"in{i}_{j}" for i in range(6) for j in range(3)]
    assert all(r["status"] == "done" for r in recs) and worker.taken == 4


@pytest.mark.parametrize(("songs", "busy", "cpus", "expected"), [
    (1000, 0.1, 2, True),
    (1000, 0.9, 2, False),  # the second CPU is taken: no worker
    (1000, None, 2, False),  # unknown load
    (1000, 0.0, 1, False),  # one CPU
    (63, 0.0, 2, False),  # too few songs
    (64, 0.0, 8, True),
])
def test_a_worker_only_when_a_cpu_is_idle_and_the_run_is_long(monkeypatch, songs, busy, cpus, expected):
    monkeypatch.delenv("FACETUNE_SONG_WORKER", raising=False)
    assert parallel.worth_a_worker(songs, lambda: busy, cpus) is expected


def test_no_worker_without_fork_or_when_told_not_to(monkeypatch):
    monkeypatch.delenv("FACETUNE_SONG_WORKER", raising=False)
    monkeypatch.setattr(parallel.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert not parallel.worth_a_worker(1000, lambda: 0.0, 2)
    monkeypatch.undo()
    monkeypatch.setenv("FACETUNE_SONG_WORKER", "0")
    assert not parallel.worth_a_worker(1000, lambda: 0.0, 2)


def test_compose_falls_back_when_no_cpu_is_idle(tmp_path, monkeypatch):
    """`_song_worker` asks how busy the other CPUs are, and forks no worker when they are all taken
    (nor for songs with extras, which need the composition in this process)."""
    from dataclasses import replace

    from facetune import api
    from facetune.classifier import onnx_engine

    monkeypatch.delenv("FACETUNE_SONG_WORKER", raising=False)
    monkeypatch.setattr(onnx_engine, "_others_busy", lambda: 1e9)
    forked = []
    monkeypatch.setattr(parallel, "SongWorker", lambda *a, **k: forked.append(1))
    settings = api.ComposeSettings()
    assert api._song_worker(1000, settings) is None and not forked
    monkeypatch.setattr(onnx_engine, "_others_busy", lambda: 0.0)
    monkeypatch.setenv("FACETUNE_SONG_WORKER", "1")
    assert api._song_worker(1000, replace(settings, png=True)) is None and not forked
    api._song_worker(1000, settings)
    assert forked == [1]


def test_a_starved_worker_is_stopped(tiny_generator, monkeypatch):
    """When the worker gets too little of a CPU twice in a row (another process took the second
    CPU), it is stopped and the rest of the run stays in this process, with the same bytes."""
    from facetune.api import ComposeSettings, _compose_here, _songs_of

    monkeypatch.setattr(parallel, "MIN_CPU_SHARE", 2.0)  # no share of a CPU is enough
    settings = ComposeSettings(generator=str(tiny_generator))
    songs = [(("happy", "sad")[i % 2], i) for i in range(8)]
    alone = _data(_compose_here(songs, settings))
    worker = _worker(tiny_generator)
    try:
        for alive in (True, False):
            assert _data(list(_songs_of(_item(songs, worker.offer(songs)), settings, worker).values())) == alone
            assert worker.alive is alive
        assert worker.offer(songs).done.is_set() and worker.take_back() is None
    finally:
        worker.close()
