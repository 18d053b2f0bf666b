"""Could a person sing it? Every melody-line figure of issue 22, per emotion, beside POP909's.

    python benchmarks/melody_line.py [--n 50] [--generator PATH] [--pop909 DIR] [--cache cache/pop909] [--cv-seeds K] [--json OUT]

Composes seeds 0..n-1 for happy, sad, angry and calm (one batch, `compose_emotions`) and reads n
POP909 sung melodies (`melody_line.pop909_reference`, 200 by default, seed 0), every melody on
its first 16 bars from the first bar with a note, and prints, facetune per emotion beside POP909:

- pitch: mean |interval|, steps (<= 2), leaps (>= 5), leaps over an octave, spikes (a note a fifth
  or more from both neighbours, on one side), range, largest leap, leap recovery, mean pitch (and
  sad minus happy);
- repetition: literal copies (bars equal to an earlier bar, untransposed), songs with a looped
  phrase, rhythm repeat, motif repeat, phrase similarity, songs whose four phrases are all alike;
- rhythm: onsets on the "and" of a beat (and of beats 2 and 4), notes, inter-onset interval,
  notes-per-bar spread, silent bars; on top: melody notes under the chord track's top note;
- the share of notes the decode-time rules changed (the scale mask and the cadences, as counted
  by the composer; issue 22 allows at most 5 %);
- the raw network's scale consistency (no scale mask, no cadences: `DecodeSettings`, as
  benchmarks/melody_form.py turns them off) and the empty-beat rate;
- Yang & Lerch (2020) overlap area against the POP909 reference, per feature, overall and per
  emotion, beside POP909 against a disjoint POP909 set of the same size (what "alike" reads as);
- a two-sample test: logistic regression and a random forest (5-fold CV accuracy) telling 4n
  facetune melodies from the POP909 ones on key-relative pitch classes, interval and duration
  n-grams, onset positions and the contour and repetition statistics; and the same between two
  disjoint POP909 sets (should be about 0.5);
- with --cache: phrase novelty (`evaluate.novelty_report`: 4-bar phrases found, up to
  transposition, in the cache's training melodies) and the longest run of consecutive notes
  (intervals and inter-onset intervals, so transposition-invariant) shared with any training
  melody, beside the same run for the cache's own test melodies (unseen real songs).

The random forest and logistic regression come from scikit-learn (`pip install ".[bench]"`);
without it, the logistic regression of benchmarks/emotion_judge.py and the numpy forest of
benchmarks/emotion_judge_forest.py stand in.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from judge_common import decode_overrides  # noqa: E402
from melody_form import EMOTIONS, _all_alike  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: research.md, "The melody line itself": POP909's figures as first measured (200 songs).
RESEARCH = {
    "mean_interval": 2.38, "steps": 0.67, "leaps": 0.15, "octave_leaps": 0.001, "spikes": 0.011,
    "range": 15.5, "largest_leap": 9.7, "mean_pitch": 69.9, "note_count": 88, "mean_ioi_beats": 0.77,
    "offbeat_and": 0.36, "and_of_2": 0.10, "and_of_4": 0.10, "notes_per_bar_sd": 2.19, "silent_bars": 0.13,
    "literal_copies": 0.17, "rhythm_repeat": 0.395, "motif_repeat": 0.225, "phrase_similarity": 0.51,
}
SECTIONS = {
    "pitch": ["mean_interval", "steps", "leaps", "octave_leaps", "spikes", "range", "largest_leap", "leap_recovery", "mean_pitch", "longest_pitch_run", "polyphony_max"],
    "repetition": ["literal_copies", "looped_songs", "rhythm_repeat", "motif_repeat", "phrase_similarity", "all_phrases_alike"],
    "rhythm": ["offbeat_and", "and_of_2", "and_of_4", "note_count", "mean_ioi_beats", "notes_per_bar_sd", "silent_bars"],
    "on top": ["below_accompaniment"],
    "network": ["scale_consistency", "raw_scale_consistency", "rule_changes", "empty_beat_rate"],
}
COUNTS = {"looped_songs", "all_phrases_alike"}  # summed over songs, not averaged
INTERVAL_CLIP, BIGRAM_CLIP = 12, 5
#: The contour and repetition statistics the two-sample classifiers see (not the accompaniment, which
#: POP909's melodies lack, nor polyphony, which the POP909 reader removes).
CLASSIFIER_STATS = [k for k in ("mean_interval", "octave_leaps", "leaps", "steps", "spikes", "range", "largest_leap", "mean_pitch",
                                "leap_recovery", "note_count", "mean_ioi_beats", "offbeat_and", "and_of_2", "and_of_4",
                                "notes_per_bar_sd", "silent_bars", "literal_copies", "looped_phrases", "longest_pitch_run",
                                "rhythm_repeat", "motif_repeat", "phrase_similarity")]


# ----------------------------------------------------------------------------- per-melody rows


def song_row(notes, bars: int, accompaniment=None) -> dict[str, float]:
    from facetune.music.evaluate import song_metrics

    row = song_metrics(notes, bars, accompaniment)
    row["looped_songs"] = row["looped_phrases"]
    row["all_phrases_alike"] = float(_all_alike(notes, bars))
    return row


def classifier_features(notes, bars: int, row: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """Key-relative pitch classes, interval uni/bigrams, duration uni/bigrams, onset positions, and
    the contour and repetition statistics of one melody's 16-bar window."""
    from facetune.music.chords import estimate_key
    from facetune.music.melody_line import LENGTH_EDGES, line_events
    from facetune.music.pianoroll import STEPS_PER_BAR

    steps, pitches, lengths = line_events(notes, bars)
    names: list[str] = []
    parts: list[np.ndarray] = []

    def add(values, labels):
        v = np.asarray(values, dtype=float).ravel()
        s = v.sum()
        parts.append(v / s if s > 0 else v)
        names.extend(labels)

    hist = np.bincount(pitches % 12, weights=lengths, minlength=12) if len(pitches) else np.zeros(12)
    k, _ = estimate_key(hist)
    tonic = k if k < 12 else (k - 12 + 3) % 12  # relative major's tonic: degree 0 vs 9 tells major from minor
    add(np.roll(hist, -tonic), [f"pc_rel_{d}" for d in range(12)])
    iv = np.diff(pitches)
    c1 = np.clip(iv, -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    add(np.bincount(c1, minlength=2 * INTERVAL_CLIP + 1), [f"iv_{d}" for d in range(-INTERVAL_CLIP, INTERVAL_CLIP + 1)])
    c2 = np.clip(iv, -BIGRAM_CLIP, BIGRAM_CLIP) + BIGRAM_CLIP
    w = 2 * BIGRAM_CLIP + 1
    add(np.bincount(c2[:-1] * w + c2[1:], minlength=w * w), [f"iv2_{a}_{b}" for a in range(-BIGRAM_CLIP, BIGRAM_CLIP + 1) for b in range(-BIGRAM_CLIP, BIGRAM_CLIP + 1)])
    lb = np.searchsorted(np.asarray(LENGTH_EDGES), np.maximum(lengths, 1), side="right") - 1
    nb = len(LENGTH_EDGES)
    add(np.bincount(lb, minlength=nb), [f"len_{e}" for e in LENGTH_EDGES])
    add(np.bincount(lb[:-1] * nb + lb[1:], minlength=nb * nb), [f"len2_{a}_{b}" for a in LENGTH_EDGES for b in LENGTH_EDGES])
    add(np.bincount(steps % STEPS_PER_BAR, minlength=STEPS_PER_BAR), [f"pos_{d}" for d in range(STEPS_PER_BAR)])
    stats = CLASSIFIER_STATS
    parts.append(np.array([row[k] for k in stats], dtype=float))
    names.extend(f"stat_{k}" for k in stats)
    return np.nan_to_num(np.concatenate(parts), nan=0.0), names


# ----------------------------------------------------------------------------- two-sample test


def two_sample(xa: np.ndarray, xb: np.ndarray, names: list[str], seed: int = 0) -> dict:
    """5-fold CV accuracy of a logistic regression and a random forest telling set a from set b."""
    x = np.vstack([xa, xb])
    y = np.r_[np.ones(len(xa), int), np.zeros(len(xb), int)]
    out: dict = {"n": [len(xa), len(xb)]}
    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return out | _two_sample_numpy(x, y, names, seed)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
    rf = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)
    for name, model in (("logistic", lr), ("forest", rf)):
        s = cross_val_score(model, x, y, cv=cv)
        out[name] = {"accuracy": float(s.mean()), "sd": float(s.std())}
    rf.fit(x, y)
    top = np.argsort(-rf.feature_importances_)[:8]
    out["forest_top"] = [(names[i], float(rf.feature_importances_[i]), float(xa[:, i].mean()), float(xb[:, i].mean())) for i in top]
    out["library"] = "scikit-learn"
    return out


def _two_sample_numpy(x: np.ndarray, y: np.ndarray, names: list[str], seed: int) -> dict:
    import emotion_judge as lj
    import emotion_judge_forest as fj

    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), int)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        folds[idx] = np.arange(len(idx)) % 5
    acc: dict[str, list[float]] = {"logistic": [], "forest": []}
    for f in range(5):
        tr, te = folds != f, folds == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        w = lj.fit_logistic((x[tr] - mu) / sd, y[tr].astype(float), l2=1e-2)
        acc["logistic"].append(float(np.mean(lj.predict(w, (x[te] - mu) / sd) == y[te])))
        forest = fj.Forest.fit(x[tr], 2 - y[tr], list(range(x.shape[1])), trees=100, min_leaf=2, seed=seed)
        acc["forest"].append(float(np.mean((forest.proba(x[te])[:, 0] > 0.5) == y[te])))
    return {k: {"accuracy": float(np.mean(v)), "sd": float(np.std(v))} for k, v in acc.items()} | {"library": "numpy (scikit-learn not installed)", "forest_top": []}


# ----------------------------------------------------------------------------- shared runs


_P = np.uint64(0x9E3779B97F4A7C15)


def _tokens(notes, bars: int, max_bars) -> np.ndarray:
    """(interval, inter-onset interval) per note after the first, as one int: transposition- and time-invariant."""
    from facetune.music.melody_line import line_events

    steps, pitches, _ = line_events(notes, bars, max_bars)
    return ((np.diff(pitches) + 128) * 4096 + np.minimum(np.diff(steps), 4095)).astype(np.uint64)


def _hashes(tokens: np.ndarray, k: int) -> np.ndarray:
    if len(tokens) < k:
        return np.zeros(0, np.uint64)
    pw = np.array([pow(int(_P), j, 2**64) for j in range(k)], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (np.lib.stride_tricks.sliding_window_view(tokens, k) * pw).sum(1, dtype=np.uint64)


class SharedRuns:
    """Longest run of consecutive notes a melody shares, as intervals and inter-onset intervals, with
    any training melody (whole melodies, untransposed rows of the cache's train split)."""

    def __init__(self, training) -> None:
        self.train = [_tokens(notes, bars, None) for _, notes, bars in training]
        self.index: dict[int, np.ndarray] = {}

    def _has(self, k: int, h: np.ndarray) -> bool:
        if k not in self.index:
            self.index[k] = np.unique(np.concatenate([_hashes(t, k) for t in self.train] or [np.zeros(0, np.uint64)]))
        ix = self.index[k]
        pos = np.searchsorted(ix, h)
        return bool(np.any(ix[np.minimum(pos, len(ix) - 1)] == h)) if len(ix) else False

    def longest(self, notes, bars: int) -> int:
        """In notes: k shared tokens are k + 1 notes."""
        tok = _tokens(notes, bars, 16)
        k = 0
        while k < len(tok) and self._has(k + 1, _hashes(tok, k + 1)):
            k += 1
        return k + 1


# ----------------------------------------------------------------------------- main


def fmt(v, key: str = "") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if key in COUNTS:
        return f"{int(v)}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="songs per emotion (seeds 0..n-1)")
    ap.add_argument("--generator", help="generator checkpoint (default: the shipped one)")
    ap.add_argument("--pop909", default=str(REPO.parent / "shared" / "data" / "pop909-structure"), help="POP909 structure-layout folder")
    ap.add_argument("--pop909-n", type=int, default=200, help="POP909 reference melodies (and as many again, disjoint, for the nulls)")
    ap.add_argument("--cache", help="music cache: novelty and shared runs against its training melodies")
    ap.add_argument("--json", help="write every figure to this JSON file")
    ap.add_argument("--cv-seeds", type=int, default=1, help="repeat the two-sample test over CV seeds 0..K-1 and give the mean and spread: one CV split moves it by a few points")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a decode setting (DecodeSettings field), e.g. --set temperature=0.8; repeatable")
    args = ap.parse_args()
    t_start = time.perf_counter()

    from facetune.music.composer import DecodeSettings, compose_emotions, load_generator
    from facetune.music.evaluate import window_notes
    from facetune.music.melody_line import YL_NAMES, overlap_area, pop909_reference, yang_lerch_features
    from facetune.music.metrics import scale_consistency

    gen = load_generator(args.generator)
    base = replace(DecodeSettings(**gen.info.get("decode", {})), count_changes=True, **decode_overrides(args.set))
    raw = replace(base, scale_mask=False, cadences=False)
    songs = [(e, s) for e in EMOTIONS for s in range(args.n)]
    t0 = time.perf_counter()
    comps = compose_emotions(songs, gen, bars=16, settings=base)
    t_compose = time.perf_counter() - t0
    raw_comps = compose_emotions(songs, gen, bars=16, settings=raw)

    # POP909 songs are cut to the same 16-bar window as the 16-bar compositions, for every measure.
    ref = [(i, window_notes(n, b), 16) for i, n, b in pop909_reference(args.pop909, args.pop909_n, seed=0)]
    null = [(i, window_notes(n, b), 16) for i, n, b in pop909_reference(args.pop909, args.pop909_n, seed=0, skip=args.pop909_n)]
    if not ref:
        raise SystemExit(f"{args.pop909}: no POP909 melodies")

    rows: dict[str, list[dict]] = {e: [] for e in EMOTIONS}
    feats: dict[str, list[np.ndarray]] = {e: [] for e in EMOTIONS}
    yl: dict[str, list[dict]] = {e: [] for e in EMOTIONS}
    for c, rc in zip(comps, raw_comps):
        r = song_row(c.melody, c.bars, c.accompaniment)
        r["raw_scale_consistency"] = scale_consistency(rc.melody)
        # share of the song's notes a decode-time rule changed (the scale mask and the cadences)
        r["rule_changes"] = (c.mask_changes + c.cadence_changes + c.rest_changes) / max(1, len(c.melody))
        rows[c.emotion].append(r)
        x, names = classifier_features(c.melody, c.bars, r)
        feats[c.emotion].append(x)
        yl[c.emotion].append(yang_lerch_features(c.melody, c.bars))
    ref_rows = [song_row(n, b) for _, n, b in ref]
    null_rows = [song_row(n, b) for _, n, b in null]
    x_ref = np.array([classifier_features(n, b, r)[0] for (_, n, b), r in zip(ref, ref_rows)])
    x_null = np.array([classifier_features(n, b, r)[0] for (_, n, b), r in zip(null, null_rows)])
    yl_ref = [yang_lerch_features(n, b) for _, n, b in ref]
    yl_null = [yang_lerch_features(n, b) for _, n, b in null]

    def agg(rs: list[dict], key: str) -> float:
        v = np.array([r.get(key, np.nan) for r in rs], dtype=float)
        v = v[np.isfinite(v)]
        return float(v.sum() if key in COUNTS else v.mean()) if len(v) else float("nan")

    every = [r for e in EMOTIONS for r in rows[e]]
    cols = list(EMOTIONS) + ["all", "POP909", "research.md"]
    report: dict = {"generator": gen.path, "decode": base.__dict__, "n": args.n, "pop909": args.pop909, "pop909_n": len(ref), "measures": {}}
    print(f"generator {gen.path}  decode {base}")
    print(f"{args.n} songs per emotion (seeds 0..{args.n - 1}); POP909: {len(ref)} sung melodies (seed 0) from {args.pop909}; every melody's first 16 bars from its first bar with a note")
    print(f"counts (looped_songs, all_phrases_alike) are songs out of {args.n} per emotion, {len(ref)} for POP909\n")
    for section, keys in SECTIONS.items():
        print(f"{section:22s} " + " ".join(f"{c:>11s}" for c in cols))
        for k in keys:
            vals = {e: agg(rows[e], k) for e in EMOTIONS} | {"all": agg(every, k), "POP909": agg(ref_rows, k), "research.md": RESEARCH.get(k)}
            report["measures"][k] = vals
            print(f"  {k:20s} " + " ".join(f"{fmt(vals[c], k):>11s}" for c in cols))
        print()
    mp = {e: agg(rows[e], "mean_pitch") for e in EMOTIONS}
    report["sad_minus_happy_pitch"] = mp["sad"] - mp["happy"]
    print("mean pitch per emotion: " + ", ".join(f"{e} {mp[e]:.1f}" for e in EMOTIONS) + f"; sad − happy {mp['sad'] - mp['happy']:+.1f} semitones (POP909 {agg(ref_rows, 'mean_pitch'):.1f})\n")

    # Yang & Lerch overlap area
    k50 = min(args.n, len(null))
    oa_cols = {
        f"all ({4 * args.n})": overlap_area([f for e in EMOTIONS for f in yl[e]], yl_ref),
        **{f"{e} ({args.n})": overlap_area(yl[e], yl_ref) for e in EMOTIONS},
        f"POP909 ({len(null)})": overlap_area(yl_null, yl_ref),
        f"POP909 ({k50})": overlap_area(yl_null[:k50], yl_ref),
    }
    report["overlap_area"] = oa_cols
    print(f"Yang & Lerch overlap area against the {len(ref)} POP909 reference melodies (1 = as alike as POP909 songs are to each other); the POP909 columns are disjoint POP909 sets")
    print(f"  {'feature':24s} " + " ".join(f"{c:>13s}" for c in oa_cols))
    for name in list(YL_NAMES) + ["mean"]:
        print(f"  {name:24s} " + " ".join(f"{oa_cols[c][name]:13.3f}" for c in oa_cols))
    print()

    # two-sample classifiers
    x_fac = np.array([x for e in EMOTIONS for x in feats[e]])
    t0 = time.perf_counter()
    ts = {"facetune_vs_pop909": two_sample(x_fac, x_ref, names), "pop909_vs_pop909": two_sample(x_null, x_ref, names)}
    report["two_sample"] = ts
    print(f"two-sample classifiers, 5-fold CV accuracy on {x_ref.shape[1]} features (0.5 = cannot tell them apart; {ts['facetune_vs_pop909'].get('library')}, {time.perf_counter() - t0:.0f}s)")
    for label, r in (("facetune vs POP909", ts["facetune_vs_pop909"]), ("POP909 vs POP909 (disjoint)", ts["pop909_vs_pop909"])):
        print(f"  {label:28s} n={r['n'][0]}+{r['n'][1]}  logistic {r['logistic']['accuracy']:.3f} ± {r['logistic']['sd']:.3f}   forest {r['forest']['accuracy']:.3f} ± {r['forest']['sd']:.3f}")
    if args.cv_seeds > 1:
        runs_cv = [ts["facetune_vs_pop909"]] + [two_sample(x_fac, x_ref, names, seed=k) for k in range(1, args.cv_seeds)]
        spread = {m: [r[m]["accuracy"] for r in runs_cv] for m in ("logistic", "forest")}
        report["two_sample_cv_seeds"] = {m: {"mean": float(np.mean(v)), "min": float(min(v)), "max": float(max(v)), "runs": v} for m, v in spread.items()}
        print(f"  facetune vs POP909 over CV seeds 0..{args.cv_seeds - 1}: " + "   ".join(f"{m} {np.mean(v):.3f} ({min(v):.3f}–{max(v):.3f})" for m, v in spread.items()))
    if ts["facetune_vs_pop909"]["forest_top"]:
        print("  forest's most telling features (importance; facetune mean, POP909 mean): " + "; ".join(f"{n} {imp:.3f} ({a:.3f}, {b:.3f})" for n, imp, a, b in ts["facetune_vs_pop909"]["forest_top"]))
    print()

    if args.cache:
        from facetune.music.evaluate import cache_melodies, novelty_report

        pieces = [(c.emotion, list(c.melody)) for c in comps]
        nov = novelty_report(pieces, args.cache)
        t0 = time.perf_counter()
        runs = SharedRuns(cache_melodies(args.cache, "train"))
        shared = {e: [runs.longest(c.melody, c.bars) for c in comps if c.emotion == e] for e in EMOTIONS}
        test_mel = cache_melodies(args.cache, "test")
        shared_test = [runs.longest(n, b) for _, n, b in test_mel]
        report["novelty"] = nov
        report["shared_runs"] = {e: {"mean": float(np.mean(v)), "median": float(np.median(v)), "max": int(np.max(v))} for e, v in shared.items()}
        report["shared_runs"]["cache test melodies"] = {"mean": float(np.mean(shared_test)), "median": float(np.median(shared_test)), "max": int(np.max(shared_test)), "n": len(shared_test)}
        print(f"novelty against {args.cache} (train split, {nov['training_phrases']:,} distinct 4-bar phrases; {time.perf_counter() - t0:.0f}s)")
        print(f"  {'':28s} " + " ".join(f"{e:>9s}" for e in EMOTIONS) + f" {'cache test':>11s}")
        print(f"  {'4-bar phrases found':28s} " + " ".join(f"{nov['groups'][e]['phrase_novelty']:9.3f}" for e in EMOTIONS) + f" {'':>11s}")
        for stat in ("mean", "median", "max"):
            print(f"  {'longest shared run, ' + stat:28s} " + " ".join(f"{report['shared_runs'][e][stat]:9.1f}" for e in EMOTIONS) + f" {report['shared_runs']['cache test melodies'][stat]:11.1f}")
        print(f"  (notes in a row, as intervals and inter-onset intervals, found in one training melody; 'cache test' = the cache's {len(test_mel)} unseen test melodies)\n")

    total = time.perf_counter() - t_start
    report["seconds"] = {"compose": t_compose, "total": total}
    print(f"composed {len(comps)} songs in {t_compose:.1f}s; total {total:.0f}s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
