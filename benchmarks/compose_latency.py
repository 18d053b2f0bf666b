"""Composition latency: one 16-bar piece after the models are loaded, and the cold-start CLI.

    python benchmarks/compose_latency.py [--n 50]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "photos" / "astronaut.png"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    from facetune.music.composer import compose_emotion, load_generator

    gen = load_generator()
    compose_emotion("happy", gen, seed=0)
    times = []
    for i in range(args.n):
        t = time.perf_counter()
        comp = compose_emotion(("happy", "sad", "angry")[i % 3], gen, seed=i)
        comp.midi_bytes()
        times.append(time.perf_counter() - t)
    print(f"one 16-bar composition (generation + MIDI bytes), models loaded: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {args.n}")
    for cmd in (["classify", str(EXAMPLE)], ["compose", str(EXAMPLE), "-o"]):
        with tempfile.TemporaryDirectory() as tmp:
            full = [sys.executable, "-m", "facetune", *cmd] + ([str(Path(tmp) / "out.mid")] if cmd[-1] == "-o" else [])
            runs = []
            for _ in range(3):
                (Path(tmp) / "out.mid").unlink(missing_ok=True)
                t = time.perf_counter()
                out = subprocess.run(full, capture_output=True, text=True, check=True)
                runs.append(time.perf_counter() - t)
            said = "happy" if "happy" in out.stdout else "?"
            print(f"cold start `facetune {cmd[0]} astronaut.png`: best {min(runs):.2f}s, worst {max(runs):.2f}s of 3 (emotion: {said})")


if __name__ == "__main__":
    main()
