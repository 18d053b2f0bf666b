"""facetune's engines against the fastest peer (`fer`'s mini-Xception under LiteRT), whole process.

    python benchmarks/classify_vs_peer.py --peer-python /work/peer-venv/bin/python [--repeats 3] [--engines int8,onnx]

The crops are the leak-free FER2013 test crops of angry, happy and sad: every test image whose
pixels differ from all training images (any class) and that is not near-blank (3,812 images).
Each run is one process over all of them: facetune as `xargs -s 1000000 facetune -q classify
--format csv -o OUT --engine E` (one command line, so one process), the peer as
`shared/bench/fer_peer.py --list`; the runs alternate (facetune engines, then the peer), `--repeats`
rounds, and the medians are printed with each program's CPU seconds (user + system) and its
accuracy and per-class recall over the three classes from its own output, so speed and accuracy
come from the same runs. Install the peer as `fer_peer.py`'s docstring says, in its own venv.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "data" / "fer2013"
PEER = ROOT.parent / "shared" / "bench" / "fer_peer.py"
CLASSES = ("angry", "happy", "sad")


def _pixels(path: Path) -> tuple[bytes, float]:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("L"))
    return hashlib.sha1(a.tobytes()).digest(), float(a.std())


def leak_free_crops(root: Path = FER) -> list[Path]:
    """Test crops of angry, happy and sad not pixel-identical to any training crop, near-blank ones left out."""
    train = {h for d in (root / "train").iterdir() if d.is_dir() for f in d.glob("*.jpg") for h, s in [_pixels(f)] if s >= 1.0}
    return [f for c in CLASSES for f in sorted((root / "test" / c).glob("*.jpg")) for h, s in [_pixels(f)] if s >= 1.0 and h not in train]


def timed(cmd: list[str], **kw: object) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child processes) of one command."""
    before = os.times()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    wall = time.perf_counter() - t
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def score(pred: dict[str, str]) -> str:
    """Accuracy and recall per class, the true class being the crop's folder."""
    true = {p: Path(p).parent.name for p in pred}
    acc = sum(pred[p] == true[p] for p in pred) / len(pred)
    rec = [sum(pred[p] == c for p in pred if true[p] == c) / max(1, sum(t == c for t in true.values())) for c in CLASSES]
    return f"accuracy {acc:.4f}, recall angry/happy/sad {' / '.join(f'{r:.3f}' for r in rec)}"


def facetune_preds(out: Path) -> dict[str, str]:
    with open(out) as fh:
        return {r["input"]: r["emotion"] for r in csv.DictReader(fh)}


def peer_preds(out: Path) -> dict[str, str]:
    with open(out) as fh:
        return {r["path"]: max(CLASSES, key=lambda c: float(r[c])) for r in csv.DictReader(fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", help="the peer venv's python (default: no peer runs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="int8,onnx", help="facetune engines, comma-separated")
    args = ap.parse_args()
    crops = leak_free_crops()
    engines = args.engines.split(",")
    print(f"{len(crops)} leak-free crops; load {os.getloadavg()[0]:.1f} at start")
    runs: dict[str, list[tuple[float, float]]] = {e: [] for e in engines + (["peer"] if args.peer_python else [])}
    scores: dict[str, str] = {}
    preds: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        listing = tmp / "crops.txt"
        listing.write_text("".join(f"{p}\n" for p in crops))
        for r in range(args.repeats):
            for engine in engines:
                out = tmp / f"{engine}{r}.csv"
                cmd = ["xargs", "-s", "1000000", sys.executable, "-m", "facetune", "-q", "classify", "--format", "csv", "-o", str(out), "--engine", engine]
                with open(listing) as stdin:
                    runs[engine].append(timed(cmd, stdin=stdin))
                preds[engine] = facetune_preds(out)
                scores[engine] = score(preds[engine])
            if args.peer_python:
                out = tmp / f"peer{r}.csv"
                runs["peer"].append(timed([args.peer_python, str(PEER), "--list", str(listing), "--out", str(out)]))
                scores["peer"] = score(peer_preds(out))
    n = len(crops)
    for name, rs in runs.items():
        rates = [n / w for w, _ in rs]
        per_cpu = [n / c for _, c in rs if c > 0]
        print(f"{name}: {statistics.median(rates):,.0f} crops/s median (runs {', '.join(f'{x:,.0f}' for x in rates)}), "
              f"{statistics.median(per_cpu):,.0f} crops per CPU-second; {scores[name]}")
    if args.peer_python:
        peer = statistics.median(n / w for w, _ in runs["peer"])
        for e in engines:
            ratios = [w2 / w1 for (w1, _), (w2, _) in zip(runs[e], runs["peer"])]
            print(f"{e} / peer: {statistics.median(n / w for w, _ in runs[e]) / peer:.2f} (per round: {', '.join(f'{x:.2f}' for x in ratios)})")
    for a, b in zip(engines, engines[1:]):
        same = sum(preds[a][p] == preds[b][p] for p in preds[a])
        print(f"{a} and {b} give the same emotion for {same:,} of {len(preds[a]):,} crops ({same / len(preds[a]):.2%})")
    print(f"load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
