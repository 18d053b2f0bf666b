"""One SHA-256 over many songs' MIDI bytes, to show that a change to the generator's code keeps
every byte (run it before and after, or on two checkouts, and compare the digests).

    python benchmarks/song_hashes.py [--seeds 100] [--engine auto|numpy|torch] [--generator PATH]

The songs: `compose_emotion` alone for each of happy, sad, angry and calm over seeds 0..N-1, then
`compose_emotions` as one batch over seeds N..2N-1 (so both the single-song path and the batched
one are covered), every file with its chords. It prints the digest, the number of songs and which
package it ran (a checkout on PYTHONPATH or the installed one).
"""
from __future__ import annotations

import argparse
import hashlib

EMOTIONS = ("happy", "sad", "angry", "calm")


def digest(seeds: int, engine: str = "auto", generator: str | None = None) -> tuple[str, int]:
    """The SHA-256 over the songs' MIDI bytes in a fixed order, and how many songs it covers."""
    from facetune.music.composer import compose_emotion, compose_emotions
    from facetune.music.generate import load_generator

    gen = load_generator(generator, engine=engine)
    h, n = hashlib.sha256(), 0
    for emotion in EMOTIONS:
        for seed in range(seeds):
            h.update(compose_emotion(emotion, gen, bars=16, seed=seed).midi_bytes())
            n += 1
    for comp in compose_emotions([(e, s) for e in EMOTIONS for s in range(seeds, 2 * seeds)], gen, bars=16):
        h.update(comp.midi_bytes())
        n += 1
    return h.hexdigest(), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="seeds per emotion, alone and in the batch (default 100: 800 songs)")
    ap.add_argument("--engine", default="auto", choices=["auto", "numpy", "torch"])
    ap.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped one)")
    args = ap.parse_args()
    import facetune

    value, n = digest(args.seeds, args.engine, args.generator)
    print(f"{value}  {n} songs, engine {args.engine}, package {facetune.__file__}")
    gen = f" --generator {args.generator}" if args.generator else ""
    print(f"  command: python benchmarks/song_hashes.py --seeds {args.seeds} --engine {args.engine}{gen}")


if __name__ == "__main__":
    main()
