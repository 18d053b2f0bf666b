"""Label-free agreement of the int8 engine with the float one, by cascade margin and by mirror
margin, on data other than test.

    python benchmarks/int8_cascade_margin.py CACHE [--train 6000] [--margins 0,0.005,...] [--flip-margins 0,0.1,...]

CACHE is a faces cache (`facetune prepare-data`, e.g. cache/fer-all): all its validation images
and `--train` training images (seeded pick) are classified by the float export and by the int8
export alone (flip TTA, the checkpoint's default classes); for each margin the script prints the
share of images the cascade would run again in float (int8 top-two probability margin below it)
and the share whose top class then matches the float engine's. Then, with the cascade at its
default margin, for each mirror margin (`CascadeSettings.flip_margin`: the mirrored crop is run
only where the plain int8 pass's top-two margin is below it) the share of images mirrored, rerun
and agreeing. No labels and no test images are read: this is how `CascadeSettings.margin` and
`flip_margin` were chosen (the smallest values at which both shares of agreement reach 99.5 %).
The chosen defaults are then checked by running the real engine.
"""
from __future__ import annotations

import argparse

import numpy as np

from facetune.classifier.inference import load_classifier
from facetune.classifier.onnx_engine import CascadeSettings, active_probs, near_ties
from facetune.faces.data import load_faces_cache


def _logits(session: object, x: np.ndarray) -> np.ndarray:
    """The int8 graph's raw logits (N, members, classes), 64 crops a call."""
    return np.concatenate([session.run(None, {"crops": x[s : s + 64]})[0] for s in range(0, len(x), 64)]).astype(np.float32)


def cascade_margins(pq: np.ndarray, pf: np.ndarray, margins: list[float]) -> None:
    """Per cascade margin: the share rerun in float and the share then agreeing with it."""
    differ = pq.argmax(1) != pf.argmax(1)
    for m in margins:
        rerun = near_ties(pq, m)
        print(f"  margin {m:.3f}: rerun {rerun.mean():.2%}, agree {1 - (differ & ~rerun).mean():.2%}")


def flip_margins(alone: object, x: np.ndarray, pf: np.ndarray, margins: list[float], cascade: float) -> None:
    """Per mirror margin, the cascade at `cascade`: the shares mirrored, rerun and agreeing."""
    cols = [alone.classes.index(c) for c in alone.active(None)]
    plain = _logits(alone.session, x)
    full = active_probs((plain + _logits(alone.session, np.ascontiguousarray(x[:, :, ::-1]))) / 2, cols)
    one = active_probs(plain, cols)
    for m in margins:
        flip = near_ties(one, m)
        p = np.where(flip[:, None], full, one)
        rerun = near_ties(p, cascade)
        p = np.where(rerun[:, None], pf, p)
        print(f"  mirror margin {m:.2f}: mirrored {flip.mean():.2%}, rerun {rerun.mean():.2%}, agree {(p.argmax(1) == pf.argmax(1)).mean():.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("--train", type=int, default=6000, help="training images to add (seed 1)")
    ap.add_argument("--margins", default=",".join(f"{m:.3f}" for m in np.arange(0, 0.0651, 0.005)))
    ap.add_argument("--flip-margins", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1.01")
    args = ap.parse_args()
    _, splits = load_faces_cache(args.cache)
    pick = np.random.default_rng(1).permutation(len(splits["train"][0]))[: args.train]
    sets = {"val": splits["val"][0], "train": splits["train"][0][pick]}
    alone = load_classifier(engine="int8", cascade=CascadeSettings(margin=0, flip_margin=1.01))
    flt, engine = load_classifier(engine="onnx"), load_classifier(engine="int8")
    for name, x in sets.items():
        pq, pf = alone.predict(x), flt.predict(x)
        print(f"{name}: {len(x):,} images; int8 alone (every crop mirrored) agrees with float on {(pq.argmax(1) == pf.argmax(1)).mean():.2%}")
        cascade_margins(pq, pf, [float(v) for v in args.margins.split(",")])
        flip_margins(alone, x, pf, [float(v) for v in args.flip_margins.split(",")], engine.cascade.margin)
        before = (engine.rerun, engine.flipped)
        same = (engine.predict(x).argmax(1) == pf.argmax(1)).mean()
        print(f"  the engine as shipped ({engine.cascade}): agree {same:.2%}, mirrored {(engine.flipped - before[1]) / len(x):.2%}, rerun {(engine.rerun - before[0]) / len(x):.2%}")


if __name__ == "__main__":
    main()
