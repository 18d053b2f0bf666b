"""Render the four emotions (seed 1) to WAV and check what a listener would: length, loudness, timing.

    python benchmarks/audio_check.py [--seed 1] [--renderer auto|fluidsynth|fallback] [--soundfont PATH] [--out DIR]

Per file: the renderer used, the WAV's length against the MIDI's (last note-off; the WAV adds a
release tail), the RMS level, the render time, and the onsets found in the audio against the
MIDI's distinct onsets (precision, recall, F1 within 50 ms; median offset = audio minus MIDI).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facetune.music.audio import (
    FALLBACK_NAME,
    audio_midi,
    fallback_notice,
    midi_end_seconds,
    midi_onsets,
    onset_agreement,
    onsets_from_audio,
    read_wav,
    render_wav,
)
from facetune.music.composer import compose_emotion

EMOTIONS = ("happy", "sad", "angry", "calm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--renderer", choices=("auto", "fluidsynth", "fallback"), default="auto")
    ap.add_argument("--soundfont", default=None)
    ap.add_argument("--out", default=None, help="keep the WAVs here (default: a temporary folder)")
    args = ap.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        print(f"{'song':14} {'WAV s':>7} {'MIDI s':>7} {'RMS':>6} {'render s':>8} {'P':>5} {'R':>5} {'F1':>5} {'offset':>7}  renderer")
        fell_back = False
        for emotion in EMOTIONS:
            midi = audio_midi(compose_emotion(emotion, seed=args.seed))
            path = out / f"{emotion}-{args.seed}.wav"
            start = time.perf_counter()
            label = render_wav(midi, path, soundfont=args.soundfont, renderer=args.renderer)
            took = time.perf_counter() - start
            fell_back |= args.renderer == "auto" and label.startswith(FALLBACK_NAME)
            samples, rate = read_wav(path)
            agree = onset_agreement(onsets_from_audio(samples, rate), midi_onsets(midi))
            rms = float(np.sqrt(np.mean(samples ** 2)))
            print(f"{emotion + ' ' + str(args.seed):14} {len(samples) / rate:7.3f} {midi_end_seconds(midi):7.3f} {rms:6.3f} {took:8.2f} "
                  f"{agree['precision']:5.3f} {agree['recall']:5.3f} {agree['f1']:5.3f} {agree['median_offset'] * 1000:+5.1f}ms  {label}")
        if fell_back:
            print(fallback_notice())


if __name__ == "__main__":
    main()
