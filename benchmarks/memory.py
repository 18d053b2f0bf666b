"""Peak memory (max RSS) of the two big batch jobs, measured by the kernel via `resource`.

    python benchmarks/memory.py [--crops 10000] [--photos 1000]

Runs each job in a child process and reports its peak resident memory.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FER_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "test"


WRAPPER = (
    "import resource, subprocess, sys;"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_of(cmd: list[str]) -> float:
    """Peak RSS in MB of `cmd` and its workers' largest, measured in a fresh wrapper process so
    runs don't mix (ru_maxrss is in KiB on Linux and covers the largest waited-for descendant)."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=10000)
    ap.add_argument("--photos", type=int, default=1000)
    args = ap.parse_args()
    files = sorted(FER_TEST.rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops"
        crops.mkdir()
        for i in range(args.crops):
            (crops / f"{i:05d}.jpg").symlink_to(files[i % len(files)])
        mb = peak_of([sys.executable, "-m", "facetune", "-q", "classify", str(crops), "--format", "json", "-o", str(Path(tmp) / "c.jsonl")])
        print(f"classify {args.crops} face crops: peak RSS {mb:.0f} MB")
        photos = Path(tmp) / "photos"
        photos.mkdir()
        astronaut = Path(__file__).resolve().parents[1] / "examples" / "photos" / "astronaut.png"
        rng = np.random.default_rng(0)
        for i in range(args.photos):
            src = astronaut if i % 10 == 0 and astronaut.exists() else files[int(rng.integers(len(files)))]
            (photos / f"{i:05d}{src.suffix}").symlink_to(src)
        mb = peak_of([sys.executable, "-m", "facetune", "-q", "compose", str(photos), "--out-dir", str(Path(tmp) / "songs")])
        print(f"compose from {args.photos} photos: peak RSS {mb:.0f} MB")


if __name__ == "__main__":
    main()
