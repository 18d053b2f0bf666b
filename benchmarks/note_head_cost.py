"""What the note head costs: song latency and batch time of a generator with a head against one without.

    python benchmarks/note_head_cost.py --reference GAN.pt [--generator PATH] [--rounds 5]

`GAN.pt` is a generator without a note head, for example the one the last release shipped:
`git show 85258a5:src/facetune/weights/generator.pt > GAN.pt` (and its `generator.npz` beside it,
or it runs on torch). Alternates the two `--rounds` times; each round times 6 songs composed one
at a time (`compose_emotion(...).midi_bytes()`, after loading) and one batch of 200
(`compose_emotions`). Prints the medians and their ratio. The machine is shared and noisy, so
only figures measured side by side in one run are compared.
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="a generator checkpoint without a note head")
    ap.add_argument("--generator", default=None, help="the generator with a head (default: the shipped one)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from facetune.music.composer import compose_emotion, compose_emotions, load_generator

    gens = {"with head": load_generator(args.generator), "without": load_generator(args.reference)}
    emotions = ("happy", "sad", "angry", "calm")
    songs = [(emotions[i % 4], i) for i in range(200)]
    for g in gens.values():
        compose_emotion("happy", g, seed=0).midi_bytes()
    one: dict[str, list[float]] = {k: [] for k in gens}
    batch: dict[str, list[float]] = {k: [] for k in gens}
    for _ in range(args.rounds):
        for name, g in gens.items():
            times = []
            for i in range(6):
                t = time.perf_counter()
                compose_emotion(emotions[i % 4], g, seed=i).midi_bytes()
                times.append(time.perf_counter() - t)
            one[name].append(statistics.median(times))
            t = time.perf_counter()
            for comp in compose_emotions(songs, g):
                comp.midi_bytes()
            batch[name].append((time.perf_counter() - t) / len(songs))
    for name in gens:
        print(f"{name:9}: one song {1000 * statistics.median(one[name]):.1f} ms, in a batch of 200 {1000 * statistics.median(batch[name]):.2f} ms per song "
              f"(medians of {args.rounds} alternated rounds; {gens[name].engine} engine, note head {gens[name].dims.note_head or 'none'})")
    a, b = (statistics.median(one[k]) for k in gens), (statistics.median(batch[k]) for k in gens)
    print(f"ratio with/without: one song {_ratio(*a):.2f}, batch {_ratio(*b):.2f}")


def _ratio(x: float, y: float) -> float:
    return x / y if y else float("nan")


if __name__ == "__main__":
    main()
