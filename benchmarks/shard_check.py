"""Do N shards run side by side write what one run writes? (issue 24, --shard K/N)

    python benchmarks/shard_check.py [--crops 1000] [--shards 1 2 3 7]

Copies FER2013 test crops (../shared/data/fer2013/test) into nested folders, adds 10 broken
inputs, composes them once unsharded (`facetune compose IN --out-dir OUT --format json`), then for
each N runs the N shards as parallel processes into one fresh folder, and prints: whether the
union of the songs is byte-identical to the unsharded run's, whether the shards' JSON records
together equal the unsharded records as sets (nothing missing or doubled), and whether a rerun of
every shard skips everything it owns. The per-shard failure records (.facetune-failed.K-of-N.json)
are compared as the union of their entries.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "data" / "fer2013" / "test"


def make_inputs(root: Path, n: int) -> None:
    crops = sorted(p for c in ("happy", "sad", "angry") for p in (FER / c).glob("*.*"))[: n]
    for i, p in enumerate(crops):
        d = root / f"set{i % 4}" / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)
    bad = root / "broken"
    bad.mkdir()
    for i in range(10):
        (bad / f"bad{i}.png").write_bytes(b"not an image " * i)


def run(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["facetune", "compose", *args, "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def songs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def failures(root: Path) -> dict:
    out: dict = {}
    for f in root.glob(".facetune-failed*.json"):
        out |= json.loads(f.read_text())["failed"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=1000)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 3, 7])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "in", args.crops)
        t0 = time.perf_counter()
        whole = run([str(tmp / "in"), "--out-dir", str(tmp / "whole")])
        recs = {json.dumps(json.loads(line), sort_keys=True) for line in whole.communicate()[0].splitlines()}
        done = sum(json.loads(r)["status"] == "done" for r in recs)
        print(f"unsharded: {len(recs)} records, {done} done, exit {whole.returncode}, {time.perf_counter() - t0:.1f} s")
        reference, fails = songs(tmp / "whole"), failures(tmp / "whole")
        for n in args.shards:
            out = tmp / f"n{n}"
            t0 = time.perf_counter()
            procs = [run([str(tmp / "in"), "--out-dir", str(out), "--shard", f"{k}/{n}"]) for k in range(1, n + 1)]
            lines = [line for p in procs for line in p.communicate()[0].splitlines()]
            got = [json.dumps({**json.loads(x), "output": (json.loads(x)["output"] or "").replace(f"/n{n}/", "/whole/") or None}, sort_keys=True) for x in lines]
            took = time.perf_counter() - t0
            reruns = [run([str(tmp / "in"), "--out-dir", str(out), "--shard", f"{k}/{n}"]) for k in range(1, n + 1)]
            statuses = [json.loads(x)["status"] for p in reruns for x in p.communicate()[0].splitlines()]
            print(
                f"N={n}: songs byte-identical {songs(out) == reference} ({len(songs(out))} files); records equal as sets {set(got) == recs} "
                f"({len(got)} records, {len(got) - len(set(got))} doubled); failure records equal {failures(out) == fails}; "
                f"exit codes {[p.returncode for p in procs]}; {took:.1f} s; rerun: {statuses.count('skipped')} skipped, {statuses.count('done')} done, "
                f"{statuses.count('failed')} failed again"
            )


if __name__ == "__main__":
    main()
