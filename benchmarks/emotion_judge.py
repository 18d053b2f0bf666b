"""A stand-in for the independent judge: a symbolic emotion classifier trained on EMOPIA,
then asked what it hears in facetune's compositions.

    python benchmarks/emotion_judge.py [--n 50] [--generator PATH] [--midi-dir DIR] [--json OUT]

Two logistic regressions on whole-file features (notes per second, mean velocity, pitch range,
mean pitch, polyphony, mean note length, pitch-class entropy and the Krumhansl–Kessler
major/minor lean), one for arousal (Q1, Q2 vs Q3, Q4) and one for valence (Q1, Q4 vs Q2, Q3),
are fitted on EMOPIA's train songs (song-level split, split/*_SL.csv) and checked on its test
songs (never seen). The heard quadrant is the pair of the two signs. Then they classify `--n`
compositions per emotion — happy, angry, sad and calm (seeds 0..n-1, the full MIDI with chords,
as a listener hears it) — or, with `--midi-dir`, the files `<emotion>_<seed>.mid` there.
This is our own proxy, not the hidden judge; benchmarks/emotion_judge_forest.py is a second one
built differently (random forest, other features, EMOPIA + VGMIDI).

Melody mode (`--melody-only`, or `--train-on-melody`; see benchmarks/judge_common.py): the
judge is trained on the top line (skyline) of EMOPIA's train songs *and* VGMIDI's train games,
checked on both test sets, and hears the top line of what it judges. Two of the 8 features are
left out there: polyphony (always 1 on a line) and mean velocity (VGMIDI's velocities are often
constant, so across the two data sets it would teach where a piece comes from, not its emotion;
the forest judge leaves velocity out for the same reason).

`--explain` prints, per emotion, each feature's mean, how far it sits from the judge's training
pieces (z, in their standard deviations) and what it adds to the valence and arousal logits (why
the judge hears what it hears, in its own terms), and how far the tunes' major/minor lean would
have to move, the rest unchanged, for three in four of each emotion to be heard with its valence.

The features of EMOPIA are cached in runs/judges/logistic_feat_emopia.npz (plain arrays; the
top-line features in logistic_feat_{emopia,vgmidi}_skyline.npz).
The Krumhansl–Kessler lean is computed in benchmarks/judge_common.py (the same profiles and
formula as facetune.music.chords.mode_score), so the judge does not change when the package does.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge_common as jc  # noqa: E402

FEATURES = ["notes_per_second", "mean_velocity", "pitch_range", "mean_pitch", "polyphony", "mean_duration", "pitch_class_entropy", "mode_score"]
FEATURE_VERSION = "logistic-features-v1"
#: Melody mode's features: no polyphony (a line has one note at a time), no velocity (data-set artefact).
MELODY_FEATURES = [f for f in FEATURES if f not in ("polyphony", "mean_velocity")]


def mode_score(pc_hist: np.ndarray) -> float:
    """Best major correlation minus best minor correlation: positive leans major."""
    c = jc.key_correlations(pc_hist)
    return float(c[:12].max() - c[12:].max())


def features(pm) -> list[float]:
    notes = [n for i in pm.instruments if not i.is_drum for n in i.notes]
    end = max(n.end for n in notes)
    pitches = np.array([n.pitch for n in notes])
    durs = np.array([n.end - n.start for n in notes])
    counts = np.bincount(pitches % 12, minlength=12).astype(float)
    p = counts[counts > 0] / counts.sum()
    hist = np.bincount(pitches % 12, weights=durs, minlength=12)
    grid = np.zeros(int(end * 20) + 1)
    for n in notes:
        grid[int(n.start * 20) : max(int(n.start * 20) + 1, int(n.end * 20))] += 1
    return [
        len(notes) / end,
        float(np.mean([n.velocity for n in notes])),
        float(pitches.max() - pitches.min()),
        float(pitches.mean()),
        float(grid[grid > 0].mean()),
        float(np.median(durs)),
        float(-(p * np.log2(p)).sum()),
        mode_score(hist),
    ]


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 3000, lr: float = 0.1, l2: float = 1e-3) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        w -= lr * (xb.T @ (p - y) / len(y) + l2 * w)
    return w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.hstack([x, np.ones((len(x), 1))]) @ w) > 0


class Judge:
    def __init__(self, xtr: np.ndarray, qtr: np.ndarray, columns: list[int] | None = None) -> None:
        self.columns = list(range(xtr.shape[1])) if columns is None else list(columns)
        xtr = xtr[:, self.columns]
        self.mu, self.sd = xtr.mean(0), xtr.std(0) + 1e-9
        z = (xtr - self.mu) / self.sd
        self.wa = fit_logistic(z, np.isin(qtr, [1, 2]).astype(float))
        self.wv = fit_logistic(z, np.isin(qtr, [1, 4]).astype(float))

    def quadrants(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x)[:, self.columns] - self.mu) / self.sd
        a, v = predict(self.wa, z), predict(self.wv, z)
        return np.where(v, np.where(a, 1, 4), np.where(a, 2, 3))


def explain(judge: Judge, names: list[str], comps: dict[str, np.ndarray], xtr: np.ndarray, qtr: np.ndarray) -> None:
    """Per emotion: each feature's mean, its z against the training pieces, and its mean share of
    the valence and arousal logits (weight × z); then how far the tunes' major/minor lean would
    have to move, the rest as it is, for three in four to be heard with their intended valence,
    beside the lean of the training pieces and of the tunes themselves."""
    width = max(len(n) for n in names)
    zs = {e: (x[:, judge.columns] - judge.mu) / judge.sd for e, x in comps.items()}
    for label, w in (("valence", judge.wv), ("arousal", judge.wa)):
        print(f"{label} logit, by feature: mean value · z against the training pieces · mean contribution (weight × z); bias {w[-1]:+.2f}")
        print(f"  {'feature':<{width}}  {'weight':>7}  " + "  ".join(f"{e:>22}" for e in comps))
        for i, name in enumerate(names):
            cells = "  ".join(f"{comps[e][:, judge.columns[i]].mean():8.3f} {zs[e][:, i].mean():+6.2f} {w[i] * zs[e][:, i].mean():+6.2f}" for e in comps)
            print(f"  {name:<{width}}  {w[i]:+7.3f}  {cells}")
        totals = "  ".join(f"{float((zs[e] @ w[:-1] + w[-1]).mean()):>22.2f}" for e in comps)
        print(f"  {'logit (mean)':<{width}}  {'':>7}  {totals}")
    k = names.index("mode_score")
    col = judge.columns[k]
    per_unit = judge.wv[k] / judge.sd[k]
    print("major/minor lean (mode_score): what three in four heard with their valence would take, the other features as they are")
    for e, x in comps.items():
        sign = dict(jc.VA)[dict(jc.EMOTIONS)[e]][0] if e in dict(jc.EMOTIONS) else 0
        logit = zs[e] @ judge.wv[:-1] + judge.wv[-1]
        lean = x[:, col]
        need = 0.0
        if sign < 0:
            need = min(0.0, -float(np.quantile(logit, 0.75)) / per_unit)
        elif sign > 0:
            need = max(0.0, -float(np.quantile(logit, 0.25)) / per_unit)
        print(f"  {e:<6} heard with its valence {float(np.mean(np.sign(logit) == sign)):.2f}; lean mean {lean.mean():+.3f} (5th percentile {np.quantile(lean, 0.05):+.3f}); "
              f"a shift of {need:+.3f} would be needed, to a mean of {lean.mean() + need:+.3f}")
    for q in (1, 2, 3, 4):
        m = xtr[qtr == q][:, col]
        print(f"  training pieces Q{q}: lean mean {m.mean():+.3f}, 10th percentile {np.quantile(m, 0.1):+.3f}, 90th {np.quantile(m, 0.9):+.3f}")


def main() -> None:
    ap = jc.parser(__doc__)
    ap.add_argument("--explain", action="store_true", help="print each feature's share of the valence and arousal logits per emotion")
    args = ap.parse_args()
    melody = jc.melody_mode(args)
    feats = jc.heard_as(features, melody)
    clips = jc.emopia_clips()
    sets = [("emopia", clips)] + ([("vgmidi", jc.vgmidi_phrases())] if melody else [])
    tag = "_skyline" if melody else ""
    data = {}
    for name, items in sets:
        x = jc.feature_matrix([p for p, *_ in items], feats, f"logistic_feat_{name}{tag}", FEATURE_VERSION + tag, refresh=args.retrain)
        data[name] = (x, np.array([c[1] for c in items]), np.array([c[2] for c in items]))
    used = MELODY_FEATURES if melody else FEATURES
    xtr = np.vstack([x[s == "train"] for x, _, s in data.values()])
    qtr = np.concatenate([q[s == "train"] for _, q, s in data.values()])
    judge = Judge(xtr, qtr, [FEATURES.index(f) for f in used])
    trained_on = "top lines of EMOPIA train songs + VGMIDI train games" if melody else "EMOPIA train clips"
    print(f"logistic judge ({len(used)} whole-file features), trained on {len(qtr)} {trained_on}:")
    held = {}
    for name, (x, q, s) in data.items():
        held[f"{name}_test"] = jc.held_out_scores(q[s == "test"], judge.quadrants(x[s == "test"]))
        jc.print_held_out(f"{name.upper()} test{' top lines' if melody else ''} (unseen)", held[f"{name}_test"])

    comps = jc.compositions(args)
    xs = {e: np.array([feats(pm) for _, pm in items]) for e, items in comps.items() if items}
    preds = {e: judge.quadrants(x) for e, x in xs.items()}
    if args.explain:
        explain(judge, used, xs, xtr, qtr)
    jc.report(args, preds, held, f"two logistic regressions (arousal, valence) on {len(used)} whole-file features, {trained_on}", melody_mode=melody, features=used)


if __name__ == "__main__":
    main()
