"""Every speed figure of fast compose, each printed with the command that measures it.

    python benchmarks/compose_speed.py [--repeats 5] [--skip-batch] [--workdir DIR]

1. Cold start: `facetune compose astronaut.png -o out.mid` against `facetune classify
   astronaut.png`, alternated, `--repeats` times each, medians and their ratio.
2. Latency: one 16-bar composition (generation and MIDI bytes) after loading, median of 100;
   and per song in a batch of 200 (`compose_emotions`).
3. Batch: `facetune compose DIR --out-dir NEW` over 200 and over 1,000 FER2013 test crops, whole
   process, songs per second; each run alternated with the reference `facetune classify DIR
   --format csv` over the same crops; three runs each, medians; peak memory (max RSS) of the
   1,000-crop run.
4. Batch rerun: the same command again over a folder where every song exists and 3 inputs are
   broken (they fail again), median of three.

The machine is shared and noisy: every figure is a median of repeats, and each batch figure has
its reference measured beside it in the same run. Every file is written under a temporary folder
in `--workdir` (default: the system's, /tmp), which each figure names: how long a file takes to
create depends on the file system and folder (on the project's machine, 0.05-0.75 ms a file in
/tmp and 0.04-0.3 ms under /work, changing from day to day), and a batch writes one per song.
"""
from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "photos" / "astronaut.png"
FER_TEST = ROOT.parent / "shared" / "data" / "fer2013" / "test"
FACETUNE = [sys.executable, "-m", "facetune", "-q"]


def timed(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak memory (MB, max RSS from GNU time) of one facetune process."""
    with tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *FACETUNE, *args], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        return wall, int(rss.read().strip().splitlines()[-1]) // 1024


def cold_start(repeats: int, tmp: Path) -> None:
    comp, clf = [], []
    for i in range(repeats):
        comp.append(timed(["compose", str(EXAMPLE), "-o", str(tmp / f"cold{i}.mid")])[0])
        clf.append(timed(["classify", str(EXAMPLE)])[0])
    c, k = statistics.median(comp), statistics.median(clf)
    print(f"cold start: compose {c:.2f} s, classify {k:.2f} s (medians of {repeats}, alternated), ratio {c / k:.2f}")
    print(f"  command: facetune compose {EXAMPLE.relative_to(ROOT)} -o out.mid  vs  facetune classify {EXAMPLE.relative_to(ROOT)}")


def latency() -> None:
    from facetune.music.composer import compose_emotion, compose_emotions, load_generator

    gen = load_generator()
    compose_emotion("happy", gen, seed=0).midi_bytes()
    times = []
    for i in range(100):
        t = time.perf_counter()
        compose_emotion(("happy", "sad", "angry", "calm")[i % 4], gen, seed=i).midi_bytes()
        times.append(time.perf_counter() - t)
    batch = []
    for _ in range(3):
        t = time.perf_counter()
        for comp in compose_emotions([(("happy", "sad", "angry", "calm")[i % 4], i) for i in range(200)], gen):
            comp.midi_bytes()
        batch.append((time.perf_counter() - t) / 200)
    print(f"latency: one 16-bar song after loading {statistics.median(times) * 1000:.1f} ms median (max {max(times) * 1000:.1f}) of 100, {gen.engine} engine; "
          f"in a batch of 200: {statistics.median(batch) * 1000:.2f} ms per song (median of 3)")
    print("  command: compose_emotion(emotion, load_generator(), seed=i).midi_bytes(); compose_emotions(200 songs)")


def crops(n: int, tmp: Path) -> Path:
    files = [f for c in ("happy", "sad", "angry") for f in sorted((FER_TEST / c).glob("*.jpg"))[: n // 3 + 1]][:n]
    src = tmp / f"faces{n}"
    for f in files:
        (src / f.parent.name).mkdir(parents=True, exist_ok=True)
        (src / f.parent.name / f.name).symlink_to(f)
    return src


def batch(n: int, tmp: Path, runs: int = 3) -> None:
    src = crops(n, tmp)
    rates, refs, peaks = [], [], []
    for r in range(runs):
        out = tmp / f"songs{n}_{r}"
        wall, peak = timed(["compose", str(src), "--out-dir", str(out)])
        made = len(list(out.rglob("*.mid")))
        rates.append(made / wall)
        peaks.append(peak)
        refs.append(n / timed(["classify", str(src), "--format", "csv"])[0])
    print(f"batch {n} crops: {statistics.median(rates):.0f} songs/s (runs: {', '.join(f'{x:.0f}' for x in rates)}; {made} MIDI files), "
          f"reference classify {statistics.median(refs):.0f} crops/s; peak memory {max(peaks)} MB; load {os.getloadavg()[0]:.1f}")
    print(f"  command: facetune compose {src.name}/ --out-dir NEW  (whole process, {n} FER2013 test crops, written under {tmp.parent})")
    if n >= 1000:
        rerun(src, tmp / f"songs{n}_0")


def rerun(src: Path, out: Path) -> None:
    for i in range(3):
        (src / f"broken{i}.png").write_bytes(b"not an image")
    timed(["compose", str(src), "--out-dir", str(out)])  # the broken ones fail once
    walls = [timed(["compose", str(src), "--out-dir", str(out)])[0] for _ in range(3)]
    print(f"batch rerun, all {sum(1 for _ in out.rglob('*.mid'))} songs exist and 3 inputs are broken: {statistics.median(walls):.2f} s median of 3")
    print(f"  command: facetune compose {src.name}/ --out-dir SAME  (second run)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="folder for the crops and songs (default: the system's temporary folder)")
    args = ap.parse_args()
    compileall.compile_dir(str(Path(importlib.util.find_spec("facetune").origin).parent), quiet=1)  # bytecode, as an install has
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        cold_start(args.repeats, tmp)
        latency()
        if not args.skip_batch:
            batch(200, tmp)
            batch(1000, tmp)


if __name__ == "__main__":
    main()
