"""What the GAN writes on its own: MIDINet's plain decoding (argmax pitch per step, onset > 0.5),
with no key restriction and no chord-tone or tonic emphasis, over the same chords as `compose`.

    python benchmarks/raw_generator.py [--n 50]

It shows how much of the melodies' tonality the network has learned by itself, next to the
figures of the constrained decoder that `facetune compose` uses.
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import torch

    from facetune.composer import load_generator
    from facetune.emotions import QUADRANTS, quadrant_of
    from facetune.music.chords import key_index, progression, quadrant_mode
    from facetune.music.gan import condition
    from facetune.music.metrics import summarize
    from facetune.music.pianoroll import BAR_WIDTH, ONSET, REST, STEPS_PER_BAR, rolls_to_notes

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    gen = load_generator()
    d = gen.dims
    for emotion in ("happy", "angry", "sad"):
        q = quadrant_of(emotion)
        rows = []
        for seed in range(args.n):
            rng = np.random.default_rng([seed, QUADRANTS.index(q)])
            root = int(rng.integers(12))
            key_index(root, quadrant_mode(q))
            chords = progression(q, root, 16, rng)
            tg = torch.Generator().manual_seed(seed)
            history: list[torch.Tensor] = []
            with torch.inference_mode():
                for chord in chords:
                    prev = [history[-1 - i] if i < len(history) else torch.zeros(STEPS_PER_BAR, BAR_WIDTH) for i in range(d.prev_bars)]
                    lg = gen.model.logits(torch.randn(1, d.z_dim, generator=tg), condition(torch.tensor([QUADRANTS.index(q)]), torch.tensor([chord]), d), torch.stack(prev)[None])[0, 0]
                    choice = lg[:, : REST + 1].argmax(1)
                    bar = torch.zeros(STEPS_PER_BAR, BAR_WIDTH)
                    bar[torch.arange(STEPS_PER_BAR), choice] = 1
                    bar[:, ONSET] = ((torch.sigmoid(lg[:, ONSET]) > 0.5) & (choice != REST)).float()
                    history.append(bar)
            rows.append(summarize(rolls_to_notes(torch.stack(history).numpy()), 16))
        mean = {k: float(np.nanmean([r[k] for r in rows])) for k in ("scale_consistency", "pitch_class_entropy", "empty_beat_rate", "notes_per_bar", "mode_score")}
        print(f"{emotion:6s} ({q}) raw argmax decoding: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))


if __name__ == "__main__":
    main()
