"""End-to-end batch compose: 1,000 FER2013 test faces → MIDI files, then a rerun that skips them all.

    python benchmarks/compose_batch.py [--n 1000] [--workers 0]

Prints compositions per second for the first run and the wall time of the second.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FER_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "test"


def run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facetune", "-q", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    classes = ("happy", "sad", "angry")
    files = [f for c in classes for f in sorted((FER_TEST / c).glob("*.jpg"))[: args.n // len(classes) + 1]][: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "faces"
        for f in files:
            d = src / f.parent.name
            d.mkdir(parents=True, exist_ok=True)
            (d / f.name).symlink_to(f)
        out = Path(tmp) / "songs"
        first = run(["compose", str(src), "--out-dir", str(out), "--workers", str(args.workers)])
        made = len(list(out.rglob("*.mid")))
        print(f"first run: {made} MIDI files from {len(files)} faces in {first:.1f}s = {made / first:.1f} compositions/s (end to end, incl. start-up)")
        second = run(["compose", str(src), "--out-dir", str(out)])
        print(f"second run over the same folder (all skipped): {second:.1f}s")


if __name__ == "__main__":
    main()
