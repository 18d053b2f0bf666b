"""Does the tune rub against its chords? Minor ninths between the melody and the accompaniment.

    python benchmarks/tune_over_chords.py [--n 50] [--generator PATH] [--cache cache/pop909]

Composes seeds 0..n-1 for happy, sad, angry and calm (16 bars) and prints, per emotion:

- `chord`: the share of the melody's time spent a semitone above a tone of its bar's chord (the
  chord symbol, however it is voiced): what the network writes over the chords;
- `heard`: the share of the melody's sounding steps over an accompaniment note a semitone below
  (`metrics.minor_ninth_share`, the written MIDI's two tracks), as shipped, where the voicing
  leaves out a chord tone a held tune note rubs (`composer._yield_to_tune`);
- `heard, full triads`: the same with every chord voiced in full (the voicing before it).

With `--cache` (a `prepare-data music` cache of POP909), the `chord` share of POP909's own sung
melodies over their annotated chords, untransposed bars, for comparison.
"""
from __future__ import annotations

import argparse

import numpy as np

EMOTIONS = ("happy", "sad", "angry", "calm")


def _above_table() -> np.ndarray:
    """(chords, 12): whether a pitch class is a semitone above a tone of the chord, not one of its own."""
    from facetune.music.chords import N_CHORDS, chord_pitch_classes

    above = np.zeros((N_CHORDS, 12), bool)
    for c in range(N_CHORDS):
        tones = set(chord_pitch_classes(c))
        above[c] = [pc not in tones and (pc - 1) % 12 in tones for pc in range(12)]
    return above


def _above_chord(melody, chords, above: np.ndarray) -> tuple[int, int]:
    """Steps of melody time a semitone above a tone of the bar's chord, and all melody steps under a chord."""
    from facetune.music.chords import NO_CHORD

    hit = total = 0
    for n in melody:
        for t in range(n.start, n.end):
            b = t // 16
            if b < len(chords) and chords[b] != NO_CHORD:
                total += 1
                hit += bool(above[chords[b], n.pitch % 12])
    return hit, total


def pop909(cache: str, above: np.ndarray) -> float:
    """POP909's `chord` share from the cache's untransposed bars."""
    from facetune.music.chords import NO_CHORD
    from facetune.music.pianoroll import LOW_PITCH

    chord = np.load(f"{cache}/chord.npy")
    keep = np.flatnonzero((np.load(f"{cache}/transpose.npy") == 0) & (chord != NO_CHORD))
    pitch = np.load(f"{cache}/pitch.npy", mmap_mode="r")[keep].astype(np.int64)
    sounding = pitch >= 0
    rub = above[chord[keep].astype(np.int64)[:, None], (pitch + LOW_PITCH) % 12] & sounding
    return float(rub.sum() / sounding.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--generator")
    ap.add_argument("--cache", help="POP909 music cache, for its own figure")
    args = ap.parse_args()

    import facetune.music.composer as composer
    from facetune.music.composer import _plan_song, compose_emotion, load_generator
    from facetune.music.metrics import minor_ninth_share

    gen = load_generator(args.generator)
    above = _above_table()
    full = composer._yield_to_tune
    print(f"{'emotion':8s} {'chord':>7s} {'heard':>7s} {'heard, full triads':>19s}   (n={args.n} songs each)")
    for emotion in EMOTIONS:
        hit = total = 0
        heard = {True: [], False: []}
        for seed in range(args.n):
            for yielding in (True, False):
                composer._yield_to_tune = full if yielding else (lambda triad, root, held: triad)
                comp = compose_emotion(emotion, gen, bars=16, seed=seed)
                heard[yielding].append(minor_ninth_share(comp.melody, comp.accompaniment))
            plan = _plan_song(emotion, bars=16, seed=seed, tempo=None, form=None, network_emotion=None)
            h, t = _above_chord(comp.melody, plan.chords, above)
            hit, total = hit + h, total + t
        composer._yield_to_tune = full
        print(f"{emotion:8s} {hit / total:7.3f} {np.mean(heard[True]):7.3f} {np.mean(heard[False]):19.3f}")
    if args.cache:
        print(f"POP909   {pop909(args.cache, above):7.3f}  (sung melodies over their annotated chords, untransposed bars)")


if __name__ == "__main__":
    main()
