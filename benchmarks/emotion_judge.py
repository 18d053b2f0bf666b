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

The features of EMOPIA are cached in runs/judges/logistic_feat_emopia.npz (plain arrays).
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
    def __init__(self, xtr: np.ndarray, qtr: np.ndarray) -> None:
        self.mu, self.sd = xtr.mean(0), xtr.std(0) + 1e-9
        z = (xtr - self.mu) / self.sd
        self.wa = fit_logistic(z, np.isin(qtr, [1, 2]).astype(float))
        self.wv = fit_logistic(z, np.isin(qtr, [1, 4]).astype(float))

    def quadrants(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x) - self.mu) / self.sd
        a, v = predict(self.wa, z), predict(self.wv, z)
        return np.where(v, np.where(a, 1, 4), np.where(a, 2, 3))


def main() -> None:
    args = jc.parser(__doc__).parse_args()
    clips = jc.emopia_clips()
    x = jc.feature_matrix([p for p, *_ in clips], features, "logistic_feat_emopia", FEATURE_VERSION, refresh=args.retrain)
    q = np.array([c[1] for c in clips])
    s = np.array([c[2] for c in clips])
    judge = Judge(x[s == "train"], q[s == "train"])
    held = jc.held_out_scores(q[s == "test"], judge.quadrants(x[s == "test"]))
    print(f"logistic judge (8 whole-file features), trained on {np.sum(s == 'train')} EMOPIA train clips:")
    jc.print_held_out("EMOPIA test (unseen songs)", held)

    comps = jc.compositions(args)
    preds = {e: judge.quadrants(np.array([features(pm) for _, pm in items])) for e, items in comps.items() if items}
    v = jc.verdicts(preds)
    src = jc.source_line(args)
    print(f"verdicts on {src}:")
    jc.print_verdicts(v)
    print(f"command: {jc.command_line()}")
    jc.write_json(args.json, {
        "judge": "two logistic regressions (arousal, valence) on 8 whole-file features, EMOPIA train songs",
        "features": FEATURES, "command": jc.command_line(), "source": src, "held_out": {"emopia_test": held}, "verdicts": v,
    })


if __name__ == "__main__":
    main()
