"""Where the time of a batch compose goes, stage by stage, run one stage after another.

    python benchmarks/compose_profile.py CROPS_DIR [CROPS_DIR ...]

Each stage of `facetune compose DIR --out-dir NEW` is timed on its own over every crop in the
folder, in one process and one thread: imports, model loads, reading and hashing the files,
decoding and finding faces, classification, song plans, the network's forward passes,
the rest of generation (noise, uniforms, decoding scores to notes), notes and accompaniment,
MIDI bytes, the read-back check, file writes, and records. The CLI overlaps reading and
classification with generation in a thread, so its wall time is less than the sum here.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
import numpy as np  # noqa: E402

import facetune.api as api  # noqa: E402
import facetune.cli  # noqa: E402,F401

IMPORTS = time.perf_counter() - T0


def profile(folder: Path) -> dict[str, float]:
    """Seconds per stage over every .jpg/.png under `folder`."""
    from facetune import console
    from facetune.checkpoints import atomic_write_bytes
    from facetune.faces.photos import find_faces, read_source, source_digest
    from facetune.music import composer, generate
    from facetune.music.midi_file import read_back

    t: dict[str, float] = defaultdict(float)
    t["imports"] = IMPORTS
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))
    s = time.perf_counter()
    api.load_classifier.cache_clear()
    generate.load_generator.cache_clear()
    clf = api.load_classifier()
    gen = api.load_generator()
    active = clf.active(None)
    t["model loads"] = time.perf_counter() - s
    faces, digests = [], []
    for f in files:
        s = time.perf_counter()
        data, name = read_source(str(f), api.DEFAULT_MAX_BYTES, str(f))
        digests.append(source_digest(data))
        t["read + hash files"] += time.perf_counter() - s
        s = time.perf_counter()
        faces.append(find_faces(data, detect=None, all_faces=False, size=clf.crop_size, margin=clf.face_margin, name=name)[0])
        t["decode images + faces"] += time.perf_counter() - s
    s = time.perf_counter()
    emotions = []
    for i in range(0, len(faces), 128):
        probs = clf.predict(np.stack([f.crop for f in faces[i:i + 128]]), active)
        emotions += [active[int(p.argmax())] for p in probs]
    t["classification"] = time.perf_counter() - s
    _time_generation(gen, [(e, api.content_seed(0, d)) for e, d in zip(emotions, digests)], t)
    comps = composer.compose_emotions([(e, api.content_seed(0, d)) for e, d in zip(emotions, digests)], gen)
    s = time.perf_counter()
    datas = [c.midi_bytes() for c in comps]
    t["MIDI bytes"] = time.perf_counter() - s
    s = time.perf_counter()
    for c, d in zip(comps, datas):
        composer.check_midi(read_back(d), c)
    t["read-back check"] = time.perf_counter() - s
    with tempfile.TemporaryDirectory() as tmp:
        s = time.perf_counter()
        for i, d in enumerate(datas):
            atomic_write_bytes(Path(tmp) / f"{i}.mid", d, durable=False)
        t["file writes"] = time.perf_counter() - s
    s = time.perf_counter()
    for c, f in zip(comps, files):
        rec = api.compose_record(input=str(f), status="done", key=c.key, chords=list(c.chords), tempo=c.tempo, bars=c.bars, form=c.form, emotion=c.emotion, quadrant=c.quadrant)
        console.compose_line(rec)
    t["records"] = time.perf_counter() - s
    return t


def _time_generation(gen: Any, songs: list[tuple[str, int]], t: dict[str, float]) -> None:
    """Plans, forward passes, the rest of generation, and notes + accompaniment, in chunks of the CLI's size."""
    from facetune.music import composer
    from facetune.music.form import plan_bars
    from facetune.music.generate import SongRequest
    from facetune.music.pianoroll import rolls_to_notes

    settings = gen.default_settings()
    spent = [0.0]

    def timed(method: Any) -> Any:
        def run(*a: Any) -> Any:
            s = time.perf_counter()
            out = method(*a)
            spent[0] += time.perf_counter() - s
            return out
        return run

    # the numpy engine runs the noise-only layers once a batch (song_terms) and the rest per bar (logits_from)
    names = ["song_terms", "logits_from"] if hasattr(gen.scores, "song_terms") else ["logits"]
    for name in names:
        setattr(gen.scores, name, timed(getattr(gen.scores, name)))
    try:
        for i in range(0, len(songs), api.GENERATION_BATCH):
            s = time.perf_counter()
            plans = [composer._plan_song(e, bars=16, seed=sd, tempo=None, form=None, network_emotion=None) for e, sd in songs[i:i + api.GENERATION_BATCH]]
            requests = [SongRequest(p.heard, p.chords, p.key, p.seed, plan_bars(p.phrases, 16, settings.motif_reference), p.controls, p.onset_temperature) for p in plans]
            t["song plans"] += time.perf_counter() - s
            s = time.perf_counter()
            out = gen.generate_many(requests, settings)
            t["generation (all)"] += time.perf_counter() - s
            s = time.perf_counter()
            for p, (rolls, _) in zip(plans, out):
                melody = rolls_to_notes(rolls)
                composer._perform(melody, p.style, p.rng)
                composer.accompaniment(p.chords, p.style, melody)
            t["notes + accompaniment"] += time.perf_counter() - s
    finally:
        for name in names:
            delattr(gen.scores, name)
    t["  of which forward passes"] = spent[0]


def main() -> None:
    for folder in map(Path, sys.argv[1:]):
        t = profile(folder)
        total = sum(v for k, v in t.items() if not k.startswith(" "))
        n = sum(1 for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))
        print(f"{folder} ({n} crops): {total:.2f} s summed over stages")
        for k, v in t.items():
            print(f"  {k:28s} {v:7.3f} s {100 * v / total:5.1f} %")


if __name__ == "__main__":
    main()
