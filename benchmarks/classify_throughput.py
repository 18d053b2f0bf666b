"""Classifier throughput on 48×48 face crops, batched, on this machine's CPU.

    python benchmarks/classify_throughput.py [--n 2000] [--batch 256] [--repeat 3] [--no-tta] [--engine auto|onnx|torch] [--classifier PATH]

Prints crops per second for the model alone (arrays in memory; each of --repeat runs and
their median, since these shared machines are noisy) and for the whole `classify` path over
image files with --workers 0 and 2.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FER_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "test"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="crops for the in-memory run")
    ap.add_argument("--files", type=int, default=10000, help="image files for the end-to-end runs")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="in-memory runs; the median is reported")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--skip-files", action="store_true")
    ap.add_argument("--engine", default="auto", choices=["auto", "onnx", "torch"], help="auto: ONNX Runtime when the checkpoint has a current export")
    ap.add_argument("--classifier", help="checkpoint (default: the shipped model)")
    args = ap.parse_args()

    from facetune.api import load_classifier

    clf = load_classifier(args.classifier, "cpu", args.engine)
    print(f"engine: {clf.engine}, model: {clf.path}, input {'/'.join(map(str, clf.input_sizes))} px ({len(clf.input_sizes)} network(s)), tta={not args.no_tta}")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.n, 48, 48), dtype=np.uint8)
    clf.predict(crops[:64], tta=not args.no_tta)
    rates = []
    for _ in range(max(1, args.repeat)):
        t = time.perf_counter()
        for s in range(0, args.n, args.batch):
            clf.predict(crops[s : s + args.batch], tta=not args.no_tta)
        rates.append(args.n / (time.perf_counter() - t))
    runs = ", ".join(f"{r:.0f}" for r in rates)
    print(f"model only: {args.n} crops per run, {runs} crops/s; median {statistics.median(rates):.0f} crops/s")
    if args.skip_files:
        return
    pool = sorted(FER_TEST.rglob("*.jpg"))
    files = [pool[i % len(pool)] for i in range(args.files)] if pool else []
    if not files:
        print(f"no FER2013 test images under {FER_TEST}; skipping the file runs")
        return
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "inputs"
        listing.mkdir()
        for i, f in enumerate(files):
            (listing / f"{i:05d}_{f.name}").symlink_to(f)
        for workers in (0, 2):
            out = Path(tmp) / f"out{workers}.jsonl"
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "facetune", "-q", "classify", str(listing), "--format", "json", "-o", str(out), "--workers", str(workers), "--batch-size", str(args.batch), "--engine", args.engine]
            subprocess.run(cmd + (["--classifier", args.classifier] if args.classifier else []), check=True)
            dt = time.perf_counter() - t
            n = sum(1 for _ in open(out))
            print(f"classify {n} files, --workers {workers}: {dt:.1f}s = {n / dt:.0f} images/s (end to end, incl. start-up)")


if __name__ == "__main__":
    main()
