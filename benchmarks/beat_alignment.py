"""How well the tracked beat grid fits EMOPIA's transcribed clips, against the files' nominal 120 BPM grid.

    python benchmarks/beat_alignment.py [--n 40] [--emopia ../shared/data/emopia]

For each clip: the share of note onsets within ±1/8 beat of a beat of the grid (chance is 25%),
and of a downbeat (chance 6.25%); then the mean over clips, the tempi found and the downbeat phases.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np


def shares(onsets: np.ndarray, beats: np.ndarray, ibi: float) -> tuple[float, float]:
    d = np.min(np.abs(onsets[:, None] - beats[None, :]), axis=1)
    down = beats[::4]
    dd = np.min(np.abs(onsets[:, None] - down[None, :]), axis=1)
    return float((d < ibi / 8).mean()), float((dd < ibi / 8).mean())


def main() -> None:
    import pretty_midi

    from facetune.music.beats import find_beat_grid

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--emopia", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emopia"))
    args = ap.parse_args()
    files = sorted(Path(args.emopia, "midis").glob("*.mid"))
    pick = np.random.default_rng(0).choice(len(files), size=min(args.n, len(files)), replace=False)
    rows, bpms, phases = [], [], Counter()
    for i in sorted(pick):
        pm = pretty_midi.PrettyMIDI(str(files[i]))
        onsets = np.array([n.start for inst in pm.instruments for n in inst.notes])
        grid = find_beat_grid(pm)
        tracked = grid.step_times(until=float(onsets.max()))[::4]
        nominal = np.arange(0, onsets.max() + 1, 0.5)
        rows.append((*shares(onsets, nominal, 0.5), *shares(onsets, tracked, 60 / grid.bpm)))
        bpms.append(grid.bpm)
        phases[grid.downbeat % 4] += 1
    r = np.array(rows)
    print(f"{len(rows)} EMOPIA clips; onsets within ±1/8 beat of a grid position (mean over clips):")
    print(f"  {'grid':<22}{'on a beat':>12}{'on a downbeat':>16}")
    print(f"  {'nominal 120 BPM':<22}{r[:, 0].mean():>12.3f}{r[:, 1].mean():>16.3f}")
    print(f"  {'tracked':<22}{r[:, 2].mean():>12.3f}{r[:, 3].mean():>16.3f}")
    print(f"  chance (random grid)  {0.25:>12.3f}{0.0625:>16.3f}")
    print(f"tracked tempo: median {np.median(bpms):.1f} BPM (range {min(bpms):.0f}–{max(bpms):.0f}); downbeat phases chosen: {dict(sorted(phases.items()))}")


if __name__ == "__main__":
    main()
