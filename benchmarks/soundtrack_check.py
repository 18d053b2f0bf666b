"""The accuracy figures of `facetune soundtrack`, each printed with what measured it.

    python benchmarks/soundtrack_check.py [--renderer auto|fallback]

It builds the test suite's synthetic video (tests/test_soundtrack.py `make_video`: FER2013 faces
from tests/fixtures, happy 0-8 s, sad 8-20 s, angry 20-30 s, a 0.2 s angry flicker at 4.0 s, no
face 12-13 s, a 440 Hz tone as its sound), scores it with `facetune.soundtrack(..., seed=1)` and
prints:

1. the timeline: each change's distance from the truth, the share of the duration with the right
   emotion, and whether the flicker frame was seen and left out;
2. the sound's length against the video's, and the sync: the onsets heard in the decoded AAC
   sound of the scored video against the MIDI's onsets, in the first and last 4 s;
3. whether every video packet is copied (bytes, pts, key flag);
4. the seams: per change, whether it is on a bar line, the tempo on the bar before and after,
   and whether the melody's notes of those bars lie in their segment's key.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import av

    from facetune.music.audio import midi_onsets, onsets_from_audio
    from facetune.music.chords import scale_pitch_classes
    from facetune.music.midi_file import read_back
    from facetune.video.soundtrack import soundtrack
    from test_soundtrack import TRUTH, _decoded_audio, make_video

    ap = argparse.ArgumentParser()
    ap.add_argument("--renderer", default="auto", choices=["auto", "fluidsynth", "fallback"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        video = make_video(d / "clip.mp4", tone=True)
        res = soundtrack(video, d / "scored.mp4", midi=d / "clip.mid", seed=1, renderer=a.renderer, mix=0.0)
        print(f"renderer: {res.renderer}")
        segs = [s.to_dict() for s in res.segments]
        print("1. segments:", ", ".join(f"{s['emotion']} {s['start']:.2f}-{s['end']:.2f}" for s in segs))
        for (e, t, _), s in zip(TRUTH[1:], segs[1:]):
            print(f"   change to {e}: found at {s['start']:.2f} s, truth {t:.1f} s, off by {abs(s['start'] - t):.2f} s")
        right = sum(max(0.0, min(s["end"], b) - max(s["start"], a_)) for e, a_, b in TRUTH for s in segs if s["emotion"] == e)
        print(f"   right emotion for {100 * right / 30.0:.1f}% of the 30 s")
        flick = [f for f in res.frames if 4.0 <= f.time < 4.2]
        print(f"   flicker frame at {flick[0].time:.2f} s read as {max(flick[0].probabilities, key=flick[0].probabilities.get)}; segments: {len(segs)}")
        samples, rate, first = _decoded_audio(d / "scored.mp4")
        print(f"2. sound: first sample at {first * 1000:.1f} ms, {len(samples) / rate:.4f} s long, video 30.0000 s: off by {abs(len(samples) / rate - 30.0) * 1000:.1f} ms")
        heard = onsets_from_audio(samples, rate)
        written = midi_onsets(read_back((d / "clip.mid").read_bytes()))
        for lo, hi in ((0.0, 4.0), (26.0, 30.0)):
            offsets = [heard[np.argmin(np.abs(heard - t))] - t for t in written if lo <= t < hi]
            close = [o for o in offsets if abs(o) < 0.05]
            print(f"   onsets {lo:.0f}-{hi:.0f} s: {len(close)} of {len(offsets)} MIDI onsets heard within 50 ms, median offset {1000 * float(np.median(close)):+.1f} ms")
        with av.open(str(video)) as x, av.open(str(d / "scored.mp4")) as y:
            px = [(bytes(p), p.pts, p.is_keyframe) for p in x.demux(x.streams.video[0]) if p.size]
            py = [(bytes(p), p.pts, p.is_keyframe) for p in y.demux(y.streams.video[0]) if p.size]
        print(f"3. video packets: {len(px)} in, {len(py)} out, identical: {px == py}")
        midi = read_back((d / "clip.mid").read_bytes())
        tpb = 4 * midi.ticks_per_beat
        melody = dict(midi.tracks)["Melody"]
        tempo_at = lambda tick: 60e6 / [u for t, u in sorted(midi.tempo_map) if t <= tick][-1]  # noqa: E731
        for x_, y_ in zip(res.score.segments, res.score.segments[1:]):
            edge = y_.first_bar * tpb
            before = {p % 12 for p, s, _, _ in melody if edge - tpb <= s < edge}
            after = {p % 12 for p, s, _, _ in melody if edge <= s < edge + tpb}
            print(f"4. {x_.emotion} → {y_.emotion} at bar {y_.first_bar} ({y_.start:.2f} s, faces {[s for s in res.segments if s.emotion == y_.emotion][0].start:.2f} s): "
                  f"on a bar line {edge % tpb == 0}; tempo {tempo_at(edge - tpb):.1f} → ramp → {tempo_at(edge):.1f} BPM (segments {x_.tempo:.1f}, {y_.tempo:.1f}); "
                  f"bar before in {x_.key_name}: {before <= set(scale_pitch_classes(x_.key))}, bar after in {y_.key_name}: {after <= set(scale_pitch_classes(y_.key))}")


if __name__ == "__main__":
    main()
