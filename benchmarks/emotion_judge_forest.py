"""A second emotion judge, built unlike benchmarks/emotion_judge.py: a random forest (numpy, written
here) over ~80 local/structural features, trained on EMOPIA train songs + VGMIDI train games.

    python benchmarks/emotion_judge_forest.py [--n 50] [--generator PATH] [--midi-dir DIR] [--json OUT]
    python benchmarks/emotion_judge_forest.py --select      # the validation grid that chose the settings

Features (all from what sounds, any track; times in seconds because EMOPIA's files are audio
transcriptions at a nominal 120 BPM, so their beat grid means nothing):
  * duration-weighted pitch-class histogram rotated to the tonic of the estimated key's *major*
    reading (Krumhansl–Kessler), so degree 0 vs 9 weight tells major from its relative minor;
  * melodic interval histogram of the skyline (top note of each onset), and up/down shares;
  * inter-onset-interval histogram (log-spaced, seconds) and the median IOI;
  * register: pitch quantiles, mean skyline and bass pitch;
  * onset density in 2 s windows (mean, spread), notes per onset;
  * articulation: median note length, length / IOI, share of silent time;
  * harmony: share of 0.1 s frames where a major triad, a minor triad (or both, a diminished
    triad, none) sounds; semitone and tritone clashes;
  * velocity stats (mean, spread, quantiles) are computed but *not used*: on validation data
    (--select) the forest did as well or better without them, and VGMIDI's velocities are often
    constant, so they could teach dataset artefacts.

The forest predicts the quadrant (4 classes); valence is heard as positive when P(Q1)+P(Q4) > 0.5,
arousal as high when P(Q1)+P(Q2) > 0.5, and the quadrant is the pair of those signs.
Hyperparameters and the feature set were chosen on EMOPIA *val* songs + VGMIDI val games only
(`--select`); held-out figures are on EMOPIA test songs and VGMIDI test games, never seen.

Melody mode (`--melody-only`, or `--train-on-melody`; see benchmarks/judge_common.py): the same
features and settings, computed on the top line (skyline) of every labelled piece, for training
and held-out testing, and on the top line of what is judged (the harmony features then read
almost nothing, which is the point: a sung line has no chords). `--select` works there too.

`--explain` asks the forest what it would take: for each emotion, each feature of every tune in
turn is set to the mean of the training pieces of the intended quadrant, the rest left as it is,
and the features that would most raise the share heard with the intended valence (and arousal)
are printed, with the tunes' value beside the training pieces'.

The fitted forest is cached as plain arrays in runs/judges/forest.npz (no pickle; forest_skyline.npz
in melody mode); features of the data sets are cached next to it. `--retrain` rebuilds both.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge_common as jc  # noqa: E402

FEATURE_VERSION = "forest-features-v1"
IOI_EDGES = np.array([0.0, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, np.inf])
INTERVAL_BINS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 9), (10, 12), (13, 127)]
FRAME = 0.1

FEATURE_NAMES = (
    [f"pc_rel_{k}" for k in range(12)]
    + [f"int_{a}-{b}" for a, b in INTERVAL_BINS]
    + ["int_up", "int_down", "int_mean_abs"]
    + [f"ioi_{IOI_EDGES[i]:.2f}-{IOI_EDGES[i + 1]:.2f}" for i in range(len(IOI_EDGES) - 1)]
    + ["ioi_median"]
    + [f"pitch_q{q}" for q in (5, 25, 50, 75, 95)]
    + ["skyline_mean", "bass_mean", "skyline_bass_gap"]
    + ["onsets_per_s_mean", "onsets_per_s_std", "onsets_per_s_p10", "onsets_per_s_p90", "notes_per_onset"]
    + ["dur_median", "dur_p90", "legato", "silence_share"]
    + ["tri_major", "tri_minor", "tri_both", "tri_dim", "tri_none", "frames_3pc", "clash_semitone", "clash_tritone", "pcs_per_frame"]
    + ["vel_mean", "vel_std", "vel_p10", "vel_p90"]
)
VELOCITY = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("vel_")]
#: Chosen on validation data by --select (see the module docstring and `select`).
#: The grid (12 settings, 100 trees each) differed by a few clips only; this one had the best
#: valence + arousal accuracy summed over both validation sets (EMOPIA val V 0.632 A 0.886 Q 0.561,
#: VGMIDI val V 0.712 A 0.904 Q 0.654). Without velocity was as good or better on both sets.
SETTINGS = {"trees": 300, "max_features": "sqrt", "min_leaf": 3, "max_depth": 16, "velocity": False}
SEED = 0

_MAJ = [frozenset({r % 12, (r + 4) % 12, (r + 7) % 12}) for r in range(12)]
_MIN = [frozenset({r % 12, (r + 3) % 12, (r + 7) % 12}) for r in range(12)]
_DIM = [frozenset({r % 12, (r + 3) % 12, (r + 6) % 12}) for r in range(12)]
_TRIADS = np.zeros((3, 12, 12), bool)
for _k, _tab in enumerate((_MAJ, _MIN, _DIM)):
    for _r, _s in enumerate(_tab):
        _TRIADS[_k, _r, list(_s)] = True


def features(pm) -> list[float]:
    notes = sorted((n for i in pm.instruments if not i.is_drum for n in i.notes), key=lambda n: (n.start, -n.pitch))
    if len(notes) < 2:
        return [0.0] * len(FEATURE_NAMES)
    start = np.array([n.start for n in notes])
    end = np.array([max(n.end, n.start + 1e-3) for n in notes])
    pitch = np.array([n.pitch for n in notes])
    vel = np.array([n.velocity for n in notes], float)
    dur = end - start
    t0, t1 = start.min(), end.max()
    length = max(t1 - t0, 1e-3)
    out: list[float] = []

    # key-relative pitch classes
    hist = np.bincount(pitch % 12, weights=dur, minlength=12)
    c = jc.key_correlations(hist)
    k = int(np.argmax(c))
    tonic = k if k < 12 else (k - 12 + 3) % 12  # the relative major's tonic
    rel = np.roll(hist, -tonic)
    out += list(rel / max(rel.sum(), 1e-9))

    # onset groups (notes starting within 30 ms), skyline and bass
    group = np.concatenate([[0], np.cumsum(np.diff(start) > 0.03)])
    ng = group[-1] + 1
    g_on = np.array([start[group == g].min() for g in range(ng)])
    top = np.array([pitch[group == g].max() for g in range(ng)])
    low = np.array([pitch[group == g].min() for g in range(ng)])
    iv = np.diff(top)
    a = np.abs(iv)
    if len(a):
        out += [float(np.mean((a >= lo) & (a <= hi))) for lo, hi in INTERVAL_BINS]
        out += [float(np.mean(iv > 0)), float(np.mean(iv < 0)), float(a.mean())]
    else:
        out += [0.0] * (len(INTERVAL_BINS) + 3)
    ioi = np.diff(g_on)
    if len(ioi):
        h, _ = np.histogram(ioi, IOI_EDGES)
        out += list(h / len(ioi)) + [float(np.median(ioi))]
    else:
        out += [0.0] * (len(IOI_EDGES) - 1) + [length]

    # register
    out += [float(np.percentile(pitch, q)) for q in (5, 25, 50, 75, 95)]
    out += [float(top.mean()), float(low.mean()), float((top - low).mean())]

    # density
    nw = max(1, int(np.ceil(length / 2.0)))
    counts = np.bincount(np.minimum(((g_on - t0) / 2.0).astype(int), nw - 1), minlength=nw) / 2.0
    out += [float(counts.mean()), float(counts.std()), float(np.percentile(counts, 10)), float(np.percentile(counts, 90)), len(notes) / ng]

    # articulation
    med_ioi = float(np.median(ioi)) if len(ioi) else length
    nf = int(np.ceil(length / FRAME)) + 1
    frames = np.zeros((nf, 12), bool)
    active = np.zeros(nf, int)
    fs = ((start - t0) / FRAME).astype(int)
    fe = np.maximum(fs + 1, ((end - t0) / FRAME).astype(int))
    for s, e, p in zip(fs, fe, pitch):
        frames[s:e, p % 12] = True
        active[s:e] += 1
    out += [float(np.median(dur)), float(np.percentile(dur, 90)), float(np.median(dur) / max(med_ioi, 1e-3)), float(np.mean(active == 0))]

    # harmony per frame
    npc = frames.sum(1)
    f3 = frames[npc >= 3]
    if len(f3):
        has = np.zeros((len(f3), 3), bool)
        for kk in range(3):
            # a triad is present if all its three pitch classes sound
            has[:, kk] = ((f3.astype(int) @ _TRIADS[kk].T.astype(int)) == 3).any(1)
        maj, mnr, dim = has[:, 0], has[:, 1], has[:, 2]
        out += [float(np.mean(maj & ~mnr)), float(np.mean(mnr & ~maj)), float(np.mean(maj & mnr)), float(np.mean(dim)), float(np.mean(~(maj | mnr | dim)))]
    else:
        out += [0.0] * 5
    f2 = frames[npc >= 2]
    out += [float(np.mean(npc >= 3)) if nf else 0.0]
    if len(f2):
        semi = (f2 & np.roll(f2, 1, axis=1)).any(1)
        trit = (f2 & np.roll(f2, 6, axis=1)).any(1)
        out += [float(semi.mean()), float(trit.mean())]
    else:
        out += [0.0, 0.0]
    out += [float(npc[npc > 0].mean()) if np.any(npc > 0) else 0.0]

    out += [float(vel.mean()), float(vel.std()), float(np.percentile(vel, 10)), float(np.percentile(vel, 90))]
    assert len(out) == len(FEATURE_NAMES)
    return out


# ----------------------------------------------------------------------------- random forest


def _best_split(x: np.ndarray, y: np.ndarray, feats: np.ndarray, min_leaf: int):
    """Best Gini split of the node's rows over the candidate features: (gain, feature, threshold)."""
    n, k = y.shape
    parent = n - (y.sum(0) ** 2).sum() / n
    best = (0.0, -1, 0.0)
    for f in feats:
        order = np.argsort(x[:, f], kind="stable")
        xs = x[order, f]
        cl = np.cumsum(y[order], 0)[:-1]
        nl = np.arange(1, n, dtype=float)
        nr = n - nl
        cr = cl[-1] + y[order[-1]] - cl
        imp = (nl - (cl**2).sum(1) / nl) + (nr - (cr**2).sum(1) / nr)
        ok = (xs[:-1] < xs[1:]) & (nl >= min_leaf) & (nr >= min_leaf)
        if not ok.any():
            continue
        imp = np.where(ok, imp, np.inf)
        i = int(np.argmin(imp))
        gain = parent - imp[i]
        if gain > best[0] + 1e-12:
            t = float((xs[i] + xs[i + 1]) / 2)
            best = (gain, int(f), t if t < xs[i + 1] else float(xs[i]))
    return best


def fit_tree(x, y, rng, max_features: int, min_leaf: int, max_depth: int):
    feat, thr, left, right, value = [], [], [], [], []
    importance = np.zeros(x.shape[1])

    def node(idx, depth):
        i = len(feat)
        feat.append(-1), thr.append(0.0), left.append(-1), right.append(-1)
        value.append(y[idx].sum(0) / len(idx))
        if depth < max_depth and len(idx) >= 2 * min_leaf and y[idx].sum(0).max() < len(idx):
            cand = rng.choice(x.shape[1], size=max_features, replace=False)
            gain, f, t = _best_split(x[idx], y[idx], cand, min_leaf)
            if f >= 0:
                importance[f] += gain
                feat[i], thr[i] = f, t
                go = x[idx, f] <= t
                left[i] = node(idx[go], depth + 1)
                right[i] = node(idx[~go], depth + 1)
        return i

    node(np.arange(len(x)), 0)
    return np.array(feat), np.array(thr), np.array(left), np.array(right), np.array(value), importance


class Forest:
    """A random forest as flat arrays (all trees' nodes concatenated; `roots` index each tree)."""

    def __init__(self, feat, thr, left, right, value, roots, columns, importance):
        self.feat, self.thr, self.left, self.right, self.value = feat, thr, left, right, value
        self.roots, self.columns, self.importance = roots, columns, importance

    @classmethod
    def fit(cls, x, q, columns, trees=300, max_features="sqrt", min_leaf=2, max_depth=16, seed=0):
        rng = np.random.default_rng(seed)
        xs = x[:, columns]
        y = np.eye(4)[q - 1]
        m = max(1, int(round(np.sqrt(xs.shape[1]) if max_features == "sqrt" else max_features * xs.shape[1])))
        parts, roots, off, imp = [], [], 0, np.zeros(xs.shape[1])
        for _ in range(trees):
            b = rng.integers(len(xs), size=len(xs))
            f, t, l, r, v, im = fit_tree(xs[b], y[b], rng, m, min_leaf, max_depth)
            roots.append(off)
            parts.append((f, t, np.where(l >= 0, l + off, -1), np.where(r >= 0, r + off, -1), v))
            off += len(f)
            imp += im
        cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
        return cls(*cat, np.array(roots), np.asarray(columns), imp / imp.sum())

    def proba(self, x) -> np.ndarray:
        xs = x[:, self.columns]
        node = np.repeat(self.roots[:, None], len(xs), 1)
        rows = np.arange(len(xs))[None, :].repeat(len(self.roots), 0)
        while True:
            f = self.feat[node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = xs[rows, np.maximum(f, 0)] <= self.thr[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node].mean(0)

    def save(self, path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, feat=self.feat, thr=self.thr, left=self.left, right=self.right, value=self.value,
                 roots=self.roots, columns=self.columns, importance=self.importance, key=key)

    @classmethod
    def load(cls, path: Path, key: str):
        if not path.exists():
            return None
        z = np.load(path, allow_pickle=False)
        if str(z["key"]) != key:
            return None
        return cls(*(z[k] for k in ("feat", "thr", "left", "right", "value", "roots", "columns", "importance")))


def quadrants(p: np.ndarray) -> np.ndarray:
    """Predicted quadrant = (valence sign from P(Q1)+P(Q4), arousal sign from P(Q1)+P(Q2))."""
    v = (p[:, 0] + p[:, 3]) > 0.5
    a = (p[:, 0] + p[:, 1]) > 0.5
    return np.where(v, np.where(a, 1, 4), np.where(a, 2, 3))


def load_data(retrain: bool, melody: bool = False):
    em = jc.emopia_clips()
    vg = jc.vgmidi_phrases()
    feats, tag = jc.heard_as(features, melody), "_skyline" if melody else ""
    xe = jc.feature_matrix([p for p, *_ in em], feats, f"forest_feat_emopia{tag}", FEATURE_VERSION + tag, refresh=retrain)
    xv = jc.feature_matrix([p for p, *_ in vg], feats, f"forest_feat_vgmidi{tag}", FEATURE_VERSION + tag, refresh=retrain)
    d = {}
    for name, items, x in (("emopia", em, xe), ("vgmidi", vg, xv)):
        q = np.array([it[1] for it in items])
        s = np.array([it[2] for it in items])
        for split in ("train", "val", "test"):
            d[name, split] = (x[s == split], q[s == split])
    return d


def columns_for(velocity: bool) -> list[int]:
    return [i for i in range(len(FEATURE_NAMES)) if velocity or i not in VELOCITY]


def train_set(d, with_val: bool = False):
    parts = [d["emopia", "train"], d["vgmidi", "train"]] + ([d["emopia", "val"], d["vgmidi", "val"]] if with_val else [])
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def select(d) -> None:
    """Score a small grid on the validation splits (EMOPIA val songs, VGMIDI val games)."""
    x, q = train_set(d)
    print(f"validation grid (100 trees each); train n={len(x)}")
    for velocity in (True, False):
        for mf in ("sqrt", 0.33):
            for min_leaf in (1, 3, 8):
                t = time.time()
                f = Forest.fit(x, q, columns_for(velocity), trees=100, max_features=mf, min_leaf=min_leaf, max_depth=16, seed=SEED)
                se = jc.held_out_scores(d["emopia", "val"][1], quadrants(f.proba(d["emopia", "val"][0])))
                sv = jc.held_out_scores(d["vgmidi", "val"][1], quadrants(f.proba(d["vgmidi", "val"][0])))
                print(f"  velocity={velocity!s:5s} max_features={mf!s:4s} min_leaf={min_leaf}:  EMOPIA val V {se['valence']:.3f} A {se['arousal']:.3f} Q {se['quadrant']:.3f}"
                      f"  | VGMIDI val V {sv['valence']:.3f} A {sv['arousal']:.3f} Q {sv['quadrant']:.3f}  ({time.time() - t:.0f}s)")


def q3_vs_q4(d, forest: Forest | None = None, comps: dict | None = None) -> list[tuple]:
    """Features that differ most between EMOPIA's Q3 (sad) and Q4 (calm) train clips (Cohen's d),
    with facetune's sad/calm means when compositions are given."""
    x, q = d["emopia", "train"]
    a, b = x[q == 3], x[q == 4]
    sd = np.sqrt((a.var(0) + b.var(0)) / 2) + 1e-9
    eff = (a.mean(0) - b.mean(0)) / sd
    order = np.argsort(-np.abs(eff))
    rows = []
    for i in order[:12]:
        rows.append((FEATURE_NAMES[i], float(eff[i]), float(a.mean(0)[i]), float(b.mean(0)[i]),
                     float(comps["sad"][:, i].mean()) if comps is not None and "sad" in comps else None,
                     float(comps["calm"][:, i].mean()) if comps is not None and "calm" in comps else None))
    return rows


def explain(forest: Forest, cx: dict[str, np.ndarray], x: np.ndarray, q: np.ndarray, top: int = 5) -> None:
    """Per emotion: which single feature, moved to the intended quadrant's training mean in every
    tune, would most raise the share heard with the intended valence and arousal."""
    print("what one feature would change: each tune's feature set to the training pieces' mean for its intended quadrant, the rest as they are")
    for e, xe in cx.items():
        quad = dict(jc.EMOTIONS).get(e)
        if quad is None:
            continue
        sv, sa = jc.VA[quad]
        target = x[q == quad].mean(0)

        def rates(z: np.ndarray) -> tuple[float, float]:
            heard = quadrants(forest.proba(z))
            v = np.array([jc.VA[int(h)][0] for h in heard])
            a = np.array([jc.VA[int(h)][1] for h in heard])
            return float(np.mean(v == sv)), float(np.mean(a == sa))

        base_v, base_a = rates(xe)
        gains = []
        for i in forest.columns:
            z = xe.copy()
            z[:, i] = target[i]
            rv, ra = rates(z)
            gains.append((rv - base_v, ra - base_a, i))
        for label, k, base in (("valence", 0, base_v), ("arousal", 1, base_a)):
            best = sorted(gains, key=lambda g: -g[k])[:top]
            cells = "; ".join(f"{FEATURE_NAMES[g[2]]} {xe[:, g[2]].mean():.3f} → {target[g[2]]:.3f} {g[k]:+.2f}" for g in best if g[k] > 0)
            print(f"  {e:<6} {label} {base:.2f}: {cells or 'no single feature raises it'}")


def main() -> None:
    ap = jc.parser(__doc__)
    ap.add_argument("--select", action="store_true", help="print the validation grid and stop")
    ap.add_argument("--explain", action="store_true", help="print which single features, moved to the intended quadrant's training mean, would most change what is heard")
    args = ap.parse_args()
    t = time.time()
    melody = jc.melody_mode(args)
    tag = "_skyline" if melody else ""
    d = load_data(args.retrain, melody)
    if args.select:
        select(d)
        return
    x, q = train_set(d)
    key = f"{FEATURE_VERSION}{tag}|{sorted(SETTINGS.items())}|{SEED}|{len(x)}|{float(x.sum()):.6e}"
    path = jc.CACHE_DIR / f"forest{tag}.npz"
    forest = None if args.retrain else Forest.load(path, key)
    cached = forest is not None
    if forest is None:
        s = dict(SETTINGS)
        forest = Forest.fit(x, q, columns_for(s.pop("velocity")), seed=SEED, **s)
        forest.save(path, key)
    print(f"forest judge: {SETTINGS['trees']} trees on {len(forest.columns)} features, trained on {'the top lines of ' if melody else ''}EMOPIA train songs + VGMIDI train games (n={len(x)}){' [cached model]' if cached else ''}")
    held = {}
    for name in ("emopia", "vgmidi"):
        xt, qt = d[name, "test"]
        held[f"{name}_test"] = jc.held_out_scores(qt, quadrants(forest.proba(xt)))
        jc.print_held_out(f"{name.upper()} test{' top lines' if melody else ''} (unseen)", held[f"{name}_test"])
    imp = np.argsort(-forest.importance)[:10]
    print("  top features (Gini importance): " + ", ".join(f"{FEATURE_NAMES[forest.columns[i]]} {forest.importance[i]:.3f}" for i in imp))

    comps = jc.compositions(args)
    feats = jc.heard_as(features, melody)
    cx = {e: np.array([feats(pm) for _, pm in items]) for e, items in comps.items() if items}
    preds = {e: quadrants(forest.proba(v)) for e, v in cx.items()}
    v = jc.verdicts(preds)
    src = jc.source_line(args)
    print(f"verdicts on {src}:")
    jc.print_verdicts(v)
    if args.explain:
        explain(forest, cx, x, q)
    rows = q3_vs_q4(d, forest, cx)
    print("EMOPIA train, sad (Q3) vs calm (Q4): largest standardized differences (Cohen's d, Q3 minus Q4)")
    print(f"  {'feature':22s} {'d':>6s} {'Q3 mean':>9s} {'Q4 mean':>9s} {'fa sad':>9s} {'fa calm':>9s}")
    for name, e, m3, m4, fs, fc in rows:
        print(f"  {name:22s} {e:6.2f} {m3:9.3f} {m4:9.3f} {fs if fs is not None else float('nan'):9.3f} {fc if fc is not None else float('nan'):9.3f}")
    print(f"({time.time() - t:.0f}s) command: {jc.command_line()}")
    jc.write_json(args.json, {
        "judge": "random forest (numpy) on key-relative pitch classes, intervals, IOIs, register, density, articulation, triad quality, velocity",
        "melody_mode": melody, "settings": SETTINGS, "command": jc.command_line(), "source": src, "held_out": held, "verdicts": v,
        "q3_vs_q4_emopia": [dict(zip(("feature", "cohens_d", "q3_mean", "q4_mean", "facetune_sad", "facetune_calm"), r)) for r in rows],
    })


if __name__ == "__main__":
    main()
