"""Speed, memory and streaming of `facetune soundtrack`, each printed with the command that measures it.

    python benchmarks/soundtrack_speed.py [--minutes 5] [--size 1280x720] [--rate 30] [--repeats 3]
    python benchmarks/soundtrack_speed.py --minutes 60 --size 640x360 --rate 30 --repeats 1

A video is generated first (H.264, x264 `veryfast`, CRF 23): the FER2013 fixture faces
(tests/fixtures/faces) at 200 px, drifting across a textured background, the emotion changing
every 20 s. Then, alternated `--repeats` times, whole processes:

- the reference: decoding every frame of the video with PyAV (`decode`, the floor any reader of
  this file pays);
- `facetune soundtrack VIDEO -o scored.mp4 --timeline t.json` (the scored copy, audio included).

`--fallback` adds a third process to each round: the soundtrack with no FluidSynth on the PATH
(the built-in synth, as in CI). It prints medians of wall time, real-time factors (video seconds
per wall second) and the peak memory (max RSS, from GNU time) of each. `--stages` first times
each stage once, in this process (decoding and sampling, face detection and tracking,
classification, timeline, composition, audio by FluidSynth and by the built-in synth, muxing).
The machine is shared: note `uptime` beside the figures, and compare with the reference.

Measured on this 2-core machine with nothing else running (`--keep runs/clip5.mp4 --repeats 3
--fallback`, 2026-12-03, load 2.1-2.4): soundtrack median 13.1 s (22.9x real time; runs 13.1,
13.6, 12.3 s), peak RSS 224 MB; built-in synth 10.2 s (29.5x), 428 MB; the reference 7.7 s
(38.9x). On the shared machine (`--repeats 3 --fallback --stages`), at a
load average of 4.1-4.6: soundtrack median 13.2 s (22.8x real time, 13.5 CPU-s, 235 MB), with the
built-in synth 12.2 s (24.7x, 434 MB), the reference 8.1 s (37.3x); at a load of 5.1-5.6 the
soundtrack took 16.3 s (18.4x) against the reference's 10.9 s, and at 2.7-4.0 19.3 s (15.6x)
against 11.1 s: 1.5 to 1.7 times the reference, whose speed itself varied by half. The stages in CPU-s: decoding and
sampling 3.6, faces 2.4, classifying 0.5, composing 0.1, FluidSynth 2.6 or the built-in synth
2.3, muxing with AAC 3.2 (stereo) or 2.2 (mono). One hour of 360p (`--minutes 60 --size 640x360
--repeats 1 --fallback`): 155.7 s (23.1x), peak RSS 287 MB; with the built-in synth 497 MB.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "tests" / "fixtures" / "faces"
EMOTIONS = ("happy", "sad", "angry")


def make_clip(path: Path, seconds: float, size: tuple[int, int], rate: int, noise: float = 0.0, bitrate: str | None = None) -> None:
    """The benchmark video, written frame by frame (never held whole). `noise` adds sensor-like
    grain (Gaussian, this standard deviation, from 16 precomputed frames in turn), which raises the
    bitrate towards a camera's: a clean synthetic picture codes to almost nothing and decodes fast;
    `bitrate` (x264's average bitrate, 6M) spends that many bits on it, as a camera does."""
    import av
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(0)
    background = (rng.integers(60, 140, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))[:h, :w]
    faces = {e: np.asarray(Image.open(FACES / f"{e}.jpg").convert("RGB").resize((200, 200), Image.BICUBIC)) for e in EMOTIONS}
    grain = [rng.normal(0, noise, (h, w, 1)).astype(np.int16) for _ in range(16)] if noise else []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", **({"b": bitrate} if bitrate else {"crf": "23"})})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(seconds * rate)):
            t = i / rate
            frame = background.copy()
            x = int((w - 200) * (0.5 + 0.4 * np.sin(t / 7)))
            y = int((h - 200) * (0.5 + 0.3 * np.cos(t / 5)))
            frame[y : y + 200, x : x + 200] = faces[EMOTIONS[int(t // 20) % 3]]
            if grain:
                frame = np.clip(frame + grain[i % len(grain)], 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


DECODE = "import av, sys\nwith av.open(sys.argv[1]) as c:\n    s = c.streams.video[0]\n    s.thread_type = 'AUTO'\n    n = sum(1 for _ in c.decode(s))\nprint(n)"


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, children included) and peak memory (MB, max RSS)
    of one process, from GNU time. On a shared machine the CPU seconds are what load does not inflate."""
    with tempfile.NamedTemporaryFile("r") as out:
        t = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", out.name, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        wall = time.perf_counter() - t
        if done.returncode:
            raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
        user, system, rss = out.read().strip().splitlines()[-1].split()
        return wall, float(user) + float(system), int(rss) // 1024


def _cpu() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime + kids.ru_utime + kids.ru_stime


def stage_times(video: Path, work: Path) -> list[tuple[str, float, float]]:
    """(stage, wall s, CPU s) of each stage of a soundtrack, run one after another in this process
    (in `soundtrack` decoding overlaps the face work, so the stages add up to more than a run).
    The sampled frames are held for the face stage: meant for minutes of video, not an hour."""
    from facetune.api import load_classifier, load_generator
    from facetune.music.audio import AUDIO_PROGRAMS, render_samples
    from facetune.music.score import Mood, ScoreSettings, compose_score
    from facetune.video import mux, reading, timeline
    from facetune.video.frames import probe, sample_frames
    from facetune.video.soundtrack import SAMPLE_RATE

    out: list[tuple[str, float, float]] = []

    def stage(name: str, job: Any) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        result = job()
        out.append((name, time.perf_counter() - wall, _cpu() - cpu))
        return result

    info = probe(video)
    rs = reading.ReadSettings()
    samples = stage("decode and sample frames (PyAV)", lambda: list(sample_frames(video, rs.fps, rs.analysis_side)))
    clf = stage("load the classifier", lambda: load_classifier(None, "cpu", "auto"))
    classes = clf.active(None)

    def faces() -> list[Any]:
        previous, since, crops = None, 0, []
        for sample in samples:
            found = reading._confirmed(sample, previous) if previous is not None and since < rs.redetect_every else []
            since += 1
            if not found:
                found, since = reading._faces(sample, rs.min_face_share), 1
            if found:
                previous, located = found[0]
                crops.append(reading._crop(sample, located, clf.crop_size, clf.face_margin))
        return crops

    crops = stage("find, follow and crop the face (MTCNN)", faces)
    probs = stage("classify the crops (batches of 32)", lambda: [clf.predict(np.stack(crops[k : k + 32]), list(classes)) for k in range(0, len(crops), 32)])
    readings = [timeline.FrameReading(s.time, [0, 0, 1, 1], dict(zip(classes, map(float, p)))) for s, p in zip(samples, np.concatenate(probs))]
    found = stage("timeline (Viterbi)", lambda: timeline.segments(readings, classes, info.duration, str(video), timeline.SmoothSettings()))
    score = stage("compose the score", lambda: compose_score([Mood(s.emotion, s.start, s.end) for s in found], info.duration, load_generator(None), ScoreSettings()))
    midi = score.midi_bytes(True, AUDIO_PROGRAMS)
    for renderer in ("fluidsynth", "fallback"):
        try:
            music, _ = stage(f"audio: {renderer}", lambda: render_samples(midi, work, sample_rate=SAMPLE_RATE, renderer=renderer))
        except Exception as exc:  # FluidSynth missing: say so and go on
            print(f"audio: {renderer}: not measured ({exc})")
            continue
        stage(f"mux ({renderer} music, AAC)", lambda: mux.write_scored_video(video, music, SAMPLE_RATE, work / f"{renderer}.mp4", info, mix=0.3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--rate", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.0, help="Grain (standard deviation) added to every frame, for a camera-like picture.")
    ap.add_argument("--bitrate", help="x264's average bitrate (6M), for a camera-like file; default: CRF 23.")
    ap.add_argument("--keep", type=Path, help="Write the video here (and reuse it if it is there).")
    ap.add_argument("--stages", action="store_true", help="Also time each stage in this process, once.")
    ap.add_argument("--fallback", action="store_true", help="Also run soundtrack without FluidSynth on the PATH (the built-in synth, as in CI).")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    seconds = a.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        video = a.keep or Path(tmp) / "clip.mp4"
        if not video.exists():
            t = time.perf_counter()
            make_clip(video, seconds, size, a.rate, a.noise, a.bitrate)
            print(f"made {a.minutes:g} min {a.size} {a.rate} fps video (grain {a.noise:g}) in {time.perf_counter() - t:.0f} s")
        print(f"video: {video.stat().st_size / 1e6:.1f} MB, {8 * video.stat().st_size / seconds / 1e6:.2f} Mbit/s")
        if a.stages:
            for name, wall, cpu in stage_times(video, Path(tmp)):
                print(f"stage {name}: {wall:.2f} s wall, {cpu:.2f} CPU-s")
        runs: dict[str, list[tuple[float, float, int]]] = {"decode": [], "soundtrack": []} | ({"soundtrack, built-in synth": []} if a.fallback else {})
        no_fluidsynth = {**os.environ, "PATH": str(Path(sys.executable).parent)}
        for i in range(a.repeats):
            runs["decode"].append(timed([sys.executable, "-c", DECODE, str(video)]))
            for name in runs.keys() - {"decode"}:
                out = Path(tmp) / f"scored{i}.mp4"
                args = [sys.executable, "-m", "facetune", "-q", "soundtrack", str(video), "-o", str(out), "--timeline", str(out.with_suffix(".json")), "--force"]
                runs[name].append(timed(args, no_fluidsynth if "built-in" in name else None))
        for name, values in runs.items():
            if not values:
                continue
            wall = statistics.median(w for w, _, _ in values)
            cpu = statistics.median(c for _, c, _ in values)
            rss = max(m for _, _, m in values)
            print(f"{name}: wall median {wall:.1f} s over {a.repeats} run(s) ({', '.join(f'{w:.1f}' for w, _, _ in values)}), {seconds / wall:.1f}x real time; "
                  f"CPU median {cpu:.1f} s ({seconds / cpu:.1f}x real time per core); peak RSS {rss} MB")
        print(f"  reference: python -c '<decode every frame with PyAV>' VIDEO; measured: facetune -q soundtrack VIDEO -o scored.mp4 --timeline t.json")
        print(f"  uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
