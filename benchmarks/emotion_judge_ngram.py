"""A fourth emotion judge, built unlike the other three: generative, not discriminative. For each
side of valence (positive, negative) and of arousal (high, low) a Markov model of the top line's
notes is counted from the labelled pieces, and a tune is heard on the side whose model finds it
likelier, per note.

    python benchmarks/emotion_judge_ngram.py [--melody-only] [--n 50] [--midi-dir DIR] [--json OUT]
    python benchmarks/emotion_judge_ngram.py --select     # the validation grid that chose the design

benchmarks/emotion_judge.py fits logistic regressions on 6-8 whole-file statistics,
emotion_judge_forest.py a forest on 62 local statistics, emotion_judge_sequence.py a recurrent
network over note features; all three learn a boundary. This one learns what each side's lines
look like (Conklin & Witten's multiple-viewpoint melody models, in their simplest form) and asks
which side a tune is likelier under, so it hears a tune by its note-to-note habits: which scale
degree follows which, at what pace.

Each note of the top line (judge_common.skyline) is one token:
  * its scale degree, the pitch class relative to the tonic of the line's estimated key
    (Krumhansl-Kessler over its duration-weighted pitch classes; a minor key's own tonic, so a
    minor line's third is degree 3 and a major line's degree 4);
  * with `ioi` in the token, its inter-onset interval to the next note in seconds, in 7 bins
    (EMOPIA is transcribed audio at a nominal tempo, so beats mean nothing there; the last note
    takes its own length).
A model of order n is an interpolated mix of the 1..n-gram estimates, each smoothed by adding
`alpha` to every count, mixed with equal weights. The heard side is the one with the higher
log-likelihood per note (no prior: both sides' pieces are close to half of the data).

Selection (`--select`, seconds): each alternative in GRID is counted on the train splits
(EMOPIA train songs + VGMIDI train games) and scored on EMOPIA val songs + VGMIDI val games only,
as the forest and the sequence judge were: the criterion is the mean of valence and arousal
accuracy over both val sets. Held-out figures are on EMOPIA test songs and VGMIDI test games,
never used for a choice, and no choice looked at facetune's songs.

It always trains on, and hears, top lines, so the held-out figures are the same with and without
`--melody-only`; only what is judged differs. Nothing is cached: counting takes a second.
"""
from __future__ import annotations

import sys
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge_common as jc  # noqa: E402

IOI_EDGES = np.array([0.12, 0.2, 0.3, 0.45, 0.7, 1.0])
N_IOI = len(IOI_EDGES) + 1
#: The alternatives `--select` scores.
GRID = [{"order": n, "ioi": ioi, "alpha": a} for n, ioi, a in product((1, 2, 3, 4, 5), (False, True), (0.05, 0.3, 1.0, 3.0))]
#: The chosen design: the best criterion of `--select` (SELECTION_LOG, 2026-12-05). Orders 3-5 with the
#: IOI in the token all score 0.735-0.750, a few val pieces apart; without the IOI 0.59-0.64.
SETTINGS = {"order": 5, "ioi": True, "alpha": 0.3}
SELECTION_LOG = """
alternative                      EMOPIA val V / A     VGMIDI val V / A    criterion
order 1, ioi False, alpha 0.05    0.596 / 0.579        0.615 / 0.577       0.592
order 1, ioi False, alpha 0.3     0.596 / 0.579        0.615 / 0.577       0.592
order 1, ioi False, alpha 1.0     0.596 / 0.579        0.615 / 0.577       0.592
order 1, ioi False, alpha 3.0     0.596 / 0.579        0.615 / 0.577       0.592
order 1, ioi True , alpha 0.05    0.526 / 0.816        0.538 / 0.673       0.638
order 1, ioi True , alpha 0.3     0.526 / 0.816        0.538 / 0.673       0.638
order 1, ioi True , alpha 1.0     0.526 / 0.816        0.538 / 0.673       0.638
order 1, ioi True , alpha 3.0     0.526 / 0.816        0.538 / 0.673       0.638
order 2, ioi False, alpha 0.05    0.596 / 0.570        0.654 / 0.673       0.623
order 2, ioi False, alpha 0.3     0.596 / 0.570        0.654 / 0.673       0.623
order 2, ioi False, alpha 1.0     0.596 / 0.570        0.654 / 0.673       0.623
order 2, ioi False, alpha 3.0     0.596 / 0.579        0.654 / 0.673       0.626
order 2, ioi True , alpha 0.05    0.518 / 0.842        0.673 / 0.731       0.691
order 2, ioi True , alpha 0.3     0.526 / 0.842        0.673 / 0.750       0.698
order 2, ioi True , alpha 1.0     0.535 / 0.851        0.654 / 0.769       0.702
order 2, ioi True , alpha 3.0     0.544 / 0.833        0.654 / 0.769       0.700
order 3, ioi False, alpha 0.05    0.605 / 0.570        0.635 / 0.712       0.630
order 3, ioi False, alpha 0.3     0.605 / 0.579        0.635 / 0.712       0.633
order 3, ioi False, alpha 1.0     0.605 / 0.579        0.635 / 0.712       0.633
order 3, ioi False, alpha 3.0     0.605 / 0.588        0.635 / 0.712       0.635
order 3, ioi True , alpha 0.05    0.596 / 0.825        0.712 / 0.808       0.735
order 3, ioi True , alpha 0.3     0.588 / 0.833        0.712 / 0.808       0.735
order 3, ioi True , alpha 1.0     0.579 / 0.833        0.731 / 0.808       0.738
order 3, ioi True , alpha 3.0     0.561 / 0.833        0.692 / 0.808       0.724
order 4, ioi False, alpha 0.05    0.605 / 0.614        0.577 / 0.731       0.632
order 4, ioi False, alpha 0.3     0.605 / 0.596        0.615 / 0.731       0.637
order 4, ioi False, alpha 1.0     0.605 / 0.605        0.635 / 0.731       0.644
order 4, ioi False, alpha 3.0     0.605 / 0.579        0.635 / 0.731       0.637
order 4, ioi True , alpha 0.05    0.596 / 0.816        0.692 / 0.846       0.738
order 4, ioi True , alpha 0.3     0.588 / 0.842        0.692 / 0.846       0.742
order 4, ioi True , alpha 1.0     0.588 / 0.825        0.750 / 0.827       0.747
order 4, ioi True , alpha 3.0     0.561 / 0.816        0.654 / 0.827       0.714
order 5, ioi False, alpha 0.05    0.614 / 0.623        0.577 / 0.712       0.631
order 5, ioi False, alpha 0.3     0.614 / 0.640        0.596 / 0.731       0.645
order 5, ioi False, alpha 1.0     0.614 / 0.605        0.615 / 0.769       0.651
order 5, ioi False, alpha 3.0     0.614 / 0.605        0.635 / 0.769       0.656
order 5, ioi True , alpha 0.05    0.605 / 0.825        0.712 / 0.846       0.747
order 5, ioi True , alpha 0.3     0.605 / 0.798        0.731 / 0.865       0.750
order 5, ioi True , alpha 1.0     0.588 / 0.816        0.712 / 0.827       0.735
order 5, ioi True , alpha 3.0     0.561 / 0.825        0.635 / 0.846       0.717
best on val: {'order': 5, 'ioi': True, 'alpha': 0.3} (0.750)
"""


def tokens(pm, ioi: bool) -> np.ndarray:
    """The top line's notes as token ids: scale degree (12), times the IOI bin (7) when `ioi`."""
    line = jc.skyline(pm)
    notes = sorted((n for i in line.instruments for n in i.notes), key=lambda n: n.start)
    if not notes:
        return np.zeros(0, np.int64)
    pitch = np.array([n.pitch for n in notes])
    start = np.array([n.start for n in notes])
    dur = np.array([n.end - n.start for n in notes])
    hist = np.bincount(pitch % 12, weights=dur, minlength=12)
    k = int(np.argmax(jc.key_correlations(hist)))
    tonic = k % 12  # major keys 0-11 and minor keys 12-23, each by its own tonic
    degree = (pitch - tonic) % 12
    if not ioi:
        return degree.astype(np.int64)
    gaps = np.append(np.diff(start), dur[-1])
    return (degree * N_IOI + np.searchsorted(IOI_EDGES, gaps, side="right")).astype(np.int64)


class Markov:
    """An interpolated n-gram model over `vocab` tokens, counted from sequences."""

    def __init__(self, seqs: list[np.ndarray], vocab: int, order: int, alpha: float) -> None:
        self.vocab, self.order, self.alpha = vocab, order, alpha
        self.counts: list[dict[tuple, np.ndarray]] = [{} for _ in range(order)]
        for s in seqs:
            s = s.tolist()
            for i, t in enumerate(s):
                for k in range(order):  # k tokens of context
                    if i - k < 0:
                        break
                    ctx = tuple(s[i - k : i])
                    row = self.counts[k].setdefault(ctx, np.zeros(vocab))
                    row[t] += 1

    def log_likelihood(self, s: np.ndarray) -> float:
        """Mean log-probability per token of `s` (equal-weight mix of the 1..order-gram estimates)."""
        s = s.tolist()
        total = 0.0
        for i, t in enumerate(s):
            p = 0.0
            used = 0
            for k in range(self.order):
                if i - k < 0:
                    break
                row = self.counts[k].get(tuple(s[i - k : i]))
                p += (self.alpha + (row[t] if row is not None else 0.0)) / (self.alpha * self.vocab + (row.sum() if row is not None else 0.0))
                used += 1
            total += np.log(p / used)
        return total / max(len(s), 1)


class Judge:
    """Two pairs of Markov models: positive vs negative valence, high vs low arousal."""

    def __init__(self, seqs: list[np.ndarray], q: np.ndarray, settings: dict) -> None:
        vocab = 12 * (N_IOI if settings["ioi"] else 1)
        pick = lambda mask: [s for s, m in zip(seqs, mask) if m and len(s)]  # noqa: E731
        mk = lambda mask: Markov(pick(mask), vocab, settings["order"], settings["alpha"])  # noqa: E731
        self.v = (mk(np.isin(q, [1, 4])), mk(np.isin(q, [2, 3])))
        self.a = (mk(np.isin(q, [1, 2])), mk(np.isin(q, [3, 4])))

    def quadrants(self, seqs: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in seqs:
            v = self.v[0].log_likelihood(s) > self.v[1].log_likelihood(s)
            a = self.a[0].log_likelihood(s) > self.a[1].log_likelihood(s)
            out.append(1 if v and a else 4 if v else 2 if a else 3)
        return np.array(out)


def load_sets(ioi: bool) -> dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray]]:
    out = {}
    for name, items in (("emopia", jc.emopia_clips()), ("vgmidi", jc.vgmidi_phrases())):
        out[name] = ([tokens(jc.read_midi(p), ioi) for p, *_ in items], np.array([c[1] for c in items]), np.array([c[2] for c in items]))
    return out


def split(sets: dict, which: str) -> tuple[list[np.ndarray], np.ndarray]:
    seqs = [s for x, _, sp in sets.values() for s, k in zip(x, sp) if k == which]
    return seqs, np.concatenate([q[sp == which] for _, q, sp in sets.values()])


def select() -> None:
    """Score every alternative of GRID on the val splits (trained on train) and print the table."""
    print("alternative                      EMOPIA val V / A     VGMIDI val V / A    criterion")
    cache = {ioi: load_sets(ioi) for ioi in (False, True)}
    rows = []
    for s in GRID:
        sets = cache[s["ioi"]]
        judge = Judge(*split(sets, "train"), s)
        scores = []
        for name, (x, q, sp) in sets.items():
            held = jc.held_out_scores(q[sp == "val"], judge.quadrants([t for t, k in zip(x, sp) if k == "val"]))
            scores.append((held["valence"], held["arousal"]))
        crit = float(np.mean(scores))
        rows.append((crit, s))
        (ev, ea), (vv, va) = scores
        print(f"order {s['order']}, ioi {str(s['ioi']):5s}, alpha {s['alpha']:<4}    {ev:.3f} / {ea:.3f}        {vv:.3f} / {va:.3f}       {crit:.3f}")
    best = max(rows, key=lambda r: r[0])
    print(f"best on val: {best[1]} ({best[0]:.3f})")


def main() -> None:
    ap = jc.parser(__doc__)
    ap.add_argument("--select", action="store_true", help="print the validation grid that chose the design and stop")
    args = ap.parse_args()
    if args.select:
        select()
        return
    sets = load_sets(SETTINGS["ioi"])
    train = split(sets, "train")
    judge = Judge(*train, SETTINGS)
    print(f"n-gram judge {SETTINGS}, trained on {len(train[1])} top lines of EMOPIA train songs + VGMIDI train games:")
    held = {}
    for name, (x, q, sp) in sets.items():
        held[f"{name}_test"] = jc.held_out_scores(q[sp == "test"], judge.quadrants([t for t, k in zip(x, sp) if k == "test"]))
        jc.print_held_out(f"{name.upper()} test top lines (unseen)", held[f"{name}_test"])
    comps = jc.compositions(args)
    preds = {e: judge.quadrants([tokens(pm, SETTINGS["ioi"]) for _, pm in items]) for e, items in comps.items() if items}
    description = f"interpolated n-gram models of the top line's scale degrees{' and inter-onset intervals' if SETTINGS['ioi'] else ''}, one per side of valence and of arousal, EMOPIA train songs + VGMIDI train games"
    source = jc.source_line(args) + ("" if jc.melody_mode(args) or args.midi_dir else ", its top line (skyline of the whole texture)")
    jc.report(args, preds, held, description, source=source, settings=SETTINGS, melody_mode=True)


if __name__ == "__main__":
    main()
