"""Cold start of `facetune classify`: one FER2013 crop with --no-detect, and astronaut.png with detection.

    python benchmarks/cold_start.py [--repeats 5] [--engines int8,onnx] [--peer-python PATH]

Each case is a whole process (`python -m facetune -q classify ...`), the engines alternated
within each round, `--repeats` rounds, medians printed; with `--peer-python`, the peer
(`shared/bench/fer_peer.py`) on the same crop in the same rounds.
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
CROP = ROOT.parent / "shared" / "data" / "fer2013" / "test" / "happy"
ASTRONAUT = ROOT / "examples" / "photos" / "astronaut.png"
PEER = ROOT.parent / "shared" / "bench" / "fer_peer.py"


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def compiled_package() -> None:
    """Write the package's bytecode first, as `pip install` does: a checkout run with
    PYTHONDONTWRITEBYTECODE set compiles every module from source at each start (about 50 ms here)."""
    compileall.compile_dir(str(Path(importlib.util.find_spec("facetune").origin).parent), quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--engines", default="int8,onnx")
    ap.add_argument("--peer-python")
    args = ap.parse_args()
    compiled_package()
    crop = sorted(CROP.glob("*.jpg"))[0]
    facetune = [sys.executable, "-m", "facetune", "-q", "classify"]
    cases = {}
    for e in args.engines.split(","):
        cases[f"{e}: one crop --no-detect"] = facetune + [str(crop), "--no-detect", "--engine", e]
        cases[f"{e}: astronaut.png, detection"] = facetune + [str(ASTRONAUT), "--engine", e]
    with tempfile.TemporaryDirectory() as tmp:
        if args.peer_python:
            (Path(tmp) / "one.txt").write_text(f"{crop}\n")
            cases["peer: one crop"] = [args.peer_python, str(PEER), "--list", str(Path(tmp) / "one.txt"), "--out", str(Path(tmp) / "o.csv")]
        for cmd in cases.values():
            wall(cmd)  # the file cache warm for every case alike
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):
            for k, cmd in cases.items():
                times[k].append(wall(cmd))
    print(f"load {os.getloadavg()[0]:.1f}; crop {crop.name}")
    for k, ts in times.items():
        print(f"{k}: median {statistics.median(ts):.3f} s of {len(ts)} ({', '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
