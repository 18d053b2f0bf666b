"""Does the melody sound like a song? Form, motifs, pitch and emotion figures of the generator.

    python benchmarks/melody_form.py [--n 50] [--generator PATH] [--cache cache/music] [--guidance G] [--json OUT]

Composes seeds 0..n-1 for happy, sad, angry and calm and scores the melody track (the first 16
bars from the first bar with a note): rhythm repeat, motif repeat and phrase similarity
(`facetune.music.metrics`), compositions whose four phrases are all alike, scale consistency of
the output and of the raw network (no scale mask, no cadence rule), the share of notes the
scale mask changed, empty-beat rate, and, with `--cache`, novelty: the share of generated 4-bar
phrases found, up to transposition, in the cache's training melodies.

Then the ablation: every song keeps its own key, chords, form, tempo and decoder, and only the
network's emotion condition is swapped. How far do density, register and major/minor lean move?
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

EMOTIONS = ("happy", "sad", "angry", "calm")


def _all_alike(notes, bars: int) -> bool:
    from facetune.music.metrics import phrase_keys

    keys = phrase_keys(notes, bars)
    return len(keys) == 4 and len(set(keys)) == 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--generator")
    ap.add_argument("--cache", help="music cache whose training melodies novelty is measured against")
    ap.add_argument("--guidance", type=float, help="override the checkpoint's decode guidance")
    ap.add_argument("--temperature", type=float, help="override the checkpoint's decode temperature")
    ap.add_argument("--phrase-position", action="store_true", help="also tell the network each bar's place in its phrase")
    ap.add_argument("--top-p", type=float, help="override the decode nucleus (top-p) share")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    from dataclasses import replace

    from facetune.music.composer import DecodeSettings, compose_emotion, load_generator
    from facetune.music.metrics import build_phrase_index, phrase_keys, scale_consistency, summarize

    gen = load_generator(args.generator)
    base = replace(DecodeSettings(**gen.info.get("decode", {})), count_changes=True)
    if args.guidance is not None:
        base = replace(base, guidance=args.guidance)
    if args.temperature is not None:
        base = replace(base, temperature=args.temperature)
    if args.top_p is not None:
        base = replace(base, top_p=args.top_p)
    if args.phrase_position:
        base = replace(base, phrase_position=True)
    raw = replace(base, scale_mask=False, cadences=False)
    index = None
    if args.cache:
        from facetune.music.evaluate import cache_melodies

        index = build_phrase_index((notes, bars) for _, notes, bars in cache_melodies(args.cache, "train"))
    report: dict = {"generator": gen.path, "decode": base.__dict__, "n": args.n, "emotions": {}}
    cols = ["rhythm_repeat", "motif_repeat", "phrase_similarity", "scale_consistency", "empty_beat_rate", "notes_per_bar", "mean_pitch", "mode_score"]
    print(f"generator {gen.path}  decode {base}")
    print(f"{'emotion':8} " + " ".join(f"{c[:12]:>12}" for c in cols) + f" {'raw scale':>10} {'mask chg':>9} {'alike':>6} {'novelty':>8} {'ms/song':>8}")
    for emotion in EMOTIONS:
        rows, raws, changed, notes_n, alike, keys, times = [], [], 0, 0, 0, [], []
        forms: dict[str, int] = {}
        for seed in range(args.n):
            t0 = time.perf_counter()
            comp = compose_emotion(emotion, gen, seed=seed, settings=base)
            times.append(time.perf_counter() - t0)
            rows.append(summarize(comp.melody, comp.bars))
            changed += comp.mask_changes
            notes_n += len(comp.melody)
            alike += _all_alike(comp.melody, comp.bars)
            forms[comp.form] = forms.get(comp.form, 0) + 1
            keys += phrase_keys(comp.melody, comp.bars)
            raws.append(scale_consistency(compose_emotion(emotion, gen, seed=seed, settings=raw).melody))
        mean = {c: float(np.nanmean([r[c] for r in rows])) for c in cols}
        novelty = sum(k in index for k in keys) / len(keys) if index is not None and keys else float("nan")
        rec = mean | {"raw_scale_consistency": float(np.mean(raws)), "mask_changed_share": changed / max(notes_n, 1), "all_phrases_alike": alike, "novelty": novelty, "ms_per_song_median": 1000 * float(np.median(times)), "forms": forms}
        report["emotions"][emotion] = rec
        print(f"{emotion:8} " + " ".join(f"{mean[c]:12.3f}" for c in cols) + f" {rec['raw_scale_consistency']:10.3f} {rec['mask_changed_share']:9.3f} {alike:6d} {novelty:8.3f} {rec['ms_per_song_median']:8.1f}")
    if not args.no_ablation:
        print("\nablation: song emotion (rows) with the network told each emotion (columns); notes/bar · mean pitch · major-minor lean")
        report["ablation"] = {}
        print(f"{'song':8} " + " ".join(f"{'net ' + e:>24}" for e in EMOTIONS))
        for song in EMOTIONS:
            cells = []
            for net in EMOTIONS:
                s = [summarize(compose_emotion(song, gen, seed=seed, settings=base, network_emotion=net).melody, 16) for seed in range(args.n)]
                v = {k: float(np.nanmean([x[k] for x in s])) for k in ("notes_per_bar", "mean_pitch", "mode_score", "rhythm_repeat")}
                report["ablation"][f"{song}|{net}"] = v
                cells.append(f"{v['notes_per_bar']:5.2f} · {v['mean_pitch']:5.1f} · {v['mode_score']:+.3f}")
            print(f"{song:8} " + " ".join(f"{c:>24}" for c in cells))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
