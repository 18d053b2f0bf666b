"""`train gan`: adversarial training of the melody generator on a prepared music cache.

MIDINet's recipe: real labels smoothed to 0.9, two generator updates per
discriminator update, and a generator loss with feature matching on the
discriminator's first layer and on the mean bar. MIDINet weights those two terms 0.1
and 0.01; at those weights our generator drifted to an onset on almost every step
(12.6 onsets per bar against 4.6 in the data, by epoch 2) while the discriminator won,
so both default to 1.0, which keeps the bar statistics anchored to the data.

Two terms of our own: conditional statistics matching (`conditional_stats_loss`), so that
within each emotion and mode the generated bars' key-relative pitch classes, register, rests
and onsets average what the real bars of that emotion do and the emotion condition shapes the
melody instead of leaving it to the key and chords; and a small weight of the data's likelihood
under the generator's scores (`data_nll`), without which the network learned the key slowly.

The emotion reaches the network twice: as its quadrant, and as two song-level controls, register
and density (`song_controls`), read off every training song. POP909's songs carry no emotion
label; with `label_rule="mode-pace"` each gets the quadrant its mode and pace put it in (major or
minor key for valence; melody onsets per second above or below the songs' median for arousal),
the two cues listeners weigh most (Juslin & Laukka 2003; Gabrielsson & Lindström 2010). The
statistics term also matches the melody's intervals (mean size, steps, leaps, octave leaps,
across the bar line too), so the line moves as sung lines do.

Each epoch's shuffling and noise are seeded from (seed, epoch), so a run resumed
from `last.pt` ends exactly where an uninterrupted one would on the CPU.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import console
from ..checkpoints import provenance
from ..emotions import QUADRANTS
from ..errors import FacetuneError
from .pianoroll import BAR_WIDTH, LOW_PITCH, N_PITCHES, ONSET, REST, STEPS_PER_BAR


@dataclass(frozen=True)
class GanConfig:
    """Hyperparameters of `facetune train gan` (CLI flags map onto these)."""

    epochs: int = 12
    batch_size: int = 72
    lr: float = 2e-4
    beta1: float = 0.5
    g_steps: int = 2
    real_label: float = 0.9
    fm_weight: float = 1.0
    mean_weight: float = 1.0
    prev_bars: int = 2
    steps_per_epoch: int = 0  # 0: one pass over the training bars
    emotion_dropout: float = 0.1
    stats_weight: float = 10.0
    nll_weight: float = 0.5
    #: How songs without an emotion label get one (see `label_by_mode_and_pace`): "lean-pace" (valence
    #: from the major/minor lean of the melody itself), "mode-pace" (from the key) or "none" (they stay unknown).
    label_rule: str = "mode-pace"
    #: Also condition on the song's major/minor lean (a third song control), so the composer can ask
    #: for the mode in the tune itself; the shipped generator has two controls (see its model card).
    lean_control: bool = False
    #: With "lean-pace": songs whose melody leans less than this either way stay unknown.
    lean_margin: float = 0.04
    #: Also train on every song in its parallel mode (`mode_mirror`), so minor tunes that centre
    #: on their tonic are as common as major ones.
    mode_mirror: bool = False
    #: Weight of matching each emotion's signed interval histogram (`interval_histogram`) to the
    #: data's; 0: off, as the first generators were trained.
    interval_weight: float = 0.0
    #: Weight of matching each emotion's shares of move pairs (`move_pairs`: runs of steps one way,
    #: a step and back, a note struck three times) to the data's; 0: off.
    pair_weight: float = 0.0
    #: A checkpoint whose networks start this run (fine-tuning): a generator checkpoint (the
    #: discriminator starts fresh) or a training checkpoint `last.pt` (both networks); "" : none.
    init: str = ""
    #: Steps at the start in which only the discriminator learns, so a fresh one catches up with an
    #: initialised generator before the generator learns from it.
    d_warmup: int = 0
    seed: int = 0
    tiny: bool = False


def bars_tensor(pitch: np.ndarray, onset: np.ndarray) -> Any:
    """Compact (B, 16) melody columns and onsets → one-hot bars (B, 1, 16, BAR_WIDTH)."""
    import torch
    import torch.nn.functional as F

    p = torch.from_numpy(pitch.astype(np.int64))
    col = torch.where(p < 0, torch.full_like(p, REST), p)
    oh = F.one_hot(col, REST + 1).float()
    on = (torch.from_numpy(onset.astype(np.float32)) * (p >= 0).float()).unsqueeze(-1)
    return torch.cat([oh, on], -1).unsqueeze(1)


def prev_tensor(rows: np.ndarray, arrays: dict[str, np.ndarray], n_prev: int, reference: bool = False) -> Any:
    """The `n_prev` bars before each row, most recent first, zeros before a clip's start, then (with
    `reference`) the bar each row restates, zeros where it restates none: (B, n_prev [+1], 16, W)."""
    import torch

    chans = []
    cur = arrays["prev"][rows]
    for _ in range(n_prev):
        valid = cur >= 0
        safe = np.where(valid, cur, 0)
        bars = bars_tensor(arrays["pitch"][safe], arrays["onset"][safe])[:, 0]
        chans.append(bars * torch.from_numpy(valid.astype(np.float32))[:, None, None])
        cur = np.where(valid, arrays["prev"][safe], -1)
    if reference:
        ref = arrays["ref"][rows]
        valid = ref >= 0
        safe = np.where(valid, ref, 0)
        chans.append(bars_tensor(arrays["pitch"][safe], arrays["onset"][safe])[:, 0] * torch.from_numpy(valid.astype(np.float32))[:, None, None])
    return torch.stack(chans, 1)


def batch_condition(rows: np.ndarray, arrays: dict[str, np.ndarray], dims: Any, emotion: np.ndarray | None = None) -> Any:
    """The condition vector y of cache rows: emotion (or the given override), chord, key, form and song controls."""
    import torch

    from .gan import condition, form_features

    t = lambda a: torch.from_numpy(np.asarray(a).astype(np.int64))  # noqa: E731
    form = form_features(t(arrays["pos"][rows]), t(arrays["phrase_end"][rows]), t(arrays["ref"][rows] >= 0))
    q = arrays["quadrant"][rows] if emotion is None else emotion
    controls = torch.from_numpy(np.ascontiguousarray(arrays["controls"][rows][:, : dims.n_controls])) if dims.n_controls else None
    return condition(t(q), t(arrays["chord"][rows]), dims, t(arrays["key"][rows]), form, controls)


def song_groups(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the index of its song-in-one-transposition (rows of one run from prev == -1 on)."""
    return np.cumsum(arrays["prev"] == -1) - 1


def add_song_controls(arrays: dict[str, np.ndarray]) -> None:
    """`arrays["controls"]`: each row's song controls (`generator_numpy.song_controls`), from the
    mean pitch of the song's melody notes, its onsets per bar and the major/minor lean of its
    sounding steps' pitch classes, over its melodic bars (all bars where no phrase labels are
    known), in that transposition."""
    from .generator_numpy import song_controls

    g = song_groups(arrays)
    melodic = arrays["pos"] >= 0
    melodic |= ~np.isin(g, np.unique(g[melodic]))
    on = (arrays["onset"] * (arrays["pitch"] >= 0)) * melodic[:, None]
    n_on = np.bincount(g, weights=on.sum(1))
    pitch_sum = np.bincount(g, weights=(on * (arrays["pitch"].astype(np.float64) + LOW_PITCH)).sum(1))
    bars = np.bincount(g, weights=melodic.astype(np.float64))
    mean_pitch = np.where(n_on > 0, pitch_sum / np.maximum(n_on, 1), 70.0)
    density = n_on / np.maximum(bars, 1)
    arrays["controls"] = song_controls(mean_pitch, density, melody_lean(arrays, g, melodic))[g]


def melody_lean(arrays: dict[str, np.ndarray], group: np.ndarray, melodic: np.ndarray) -> np.ndarray:
    """Per song group, the major/minor lean (`chords.mode_score`) of its melodic bars' sounding
    steps, each step counted once, so a long note weighs as long as it sounds. Songs with no
    sounding step get 0."""
    from .chords import mode_scores

    sounding = (arrays["pitch"] >= 0) & melodic[:, None]
    pc = (arrays["pitch"].astype(np.int64) + LOW_PITCH) % 12
    n = int(group.max()) + 1 if len(group) else 0
    cells = (np.repeat(group[:, None], arrays["pitch"].shape[1], 1) * 12 + pc)[sounding]
    hist = np.bincount(cells, minlength=n * 12).reshape(n, 12)
    return mode_scores(hist)


def training_arrays(arrays: dict[str, np.ndarray], manifest: dict[str, Any], cfg: GanConfig) -> dict[str, np.ndarray]:
    """The cache's arrays with the training-time additions: with `cfg.mode_mirror` every song in
    its parallel mode too, quadrants for unlabelled songs (by `cfg.label_rule`) and every row's
    song controls."""
    arrays = dict(arrays)
    if cfg.mode_mirror:
        from .mode_mirror import mirror_arrays

        arrays, manifest = mirror_arrays(arrays, manifest)
        console.info(f"training on every song in both modes: {len(arrays['pitch']):,} bars")
    if cfg.label_rule in ("mode-pace", "lean-pace"):
        counts = label_by_mode_and_pace(arrays, manifest, cfg.lean_margin if cfg.label_rule == "lean-pace" else None)
        console.info(f"songs labelled by {cfg.label_rule}: {counts}")
    elif cfg.label_rule != "none":
        raise FacetuneError(f"unknown label rule {cfg.label_rule!r} (lean-pace, mode-pace or none)")
    add_song_controls(arrays)
    return arrays


def label_by_mode_and_pace(arrays: dict[str, np.ndarray], manifest: dict[str, Any], lean_margin: float | None = None) -> dict[str, int]:
    """Give every song whose quadrant is unknown the one its mode and pace put it in: arousal from
    melody onsets per second above the unknown songs' median; valence from the key (major +), or,
    with `lean_margin`, from the major/minor lean of the melody's own pitch classes (Krumhansl–
    Kessler, `chords.mode_score`: what a listener hears in the tune; in POP909 it agrees with the
    annotated key's mode in 80 % of songs), songs leaning less than the margin staying unknown.
    Returns the songs per quadrant (and "unknown")."""
    from .chords import mode_score
    from .dataset import UNKNOWN

    clips = manifest.get("clips", [])
    base = (arrays["transpose"] == 0) & (arrays["quadrant"] == UNKNOWN)
    ids = np.unique(arrays["clip"][base])
    if len(ids) == 0:
        return {}
    pace = np.zeros(len(ids))
    lean = np.zeros(len(ids))
    minor = np.zeros(len(ids), bool)
    for i, c in enumerate(ids):
        here = np.flatnonzero(base & (arrays["clip"] == c))
        melodic = here[arrays["pos"][here] >= 0] if (arrays["pos"][here] >= 0).any() else here
        onsets = float((arrays["onset"][melodic] * (arrays["pitch"][melodic] >= 0)).sum(1).mean())
        bpm = float(clips[c].get("bpm") or 100.0) if c < len(clips) else 100.0
        pace[i] = onsets * bpm / 240.0
        if lean_margin is None:
            minor[i] = arrays["key"][here[0]] >= 12
        else:
            p = arrays["pitch"][melodic]
            lean[i] = mode_score(np.bincount((p[p >= 0].astype(np.int64) + LOW_PITCH) % 12, minlength=12).astype(np.float64))
            minor[i] = lean[i] < 0
    aroused = pace >= np.median(pace)
    quadrant = np.where(aroused, np.where(minor, 1, 0), np.where(minor, 2, 3)).astype(np.int8)
    if lean_margin is not None:
        quadrant[np.abs(lean) < lean_margin] = UNKNOWN
    lookup = np.full(int(arrays["clip"].max()) + 1, -1, np.int16)
    lookup[ids] = quadrant
    unknown = arrays["quadrant"] == UNKNOWN
    arrays["quadrant"] = np.where(unknown & (lookup[arrays["clip"]] >= 0), lookup[arrays["clip"]], arrays["quadrant"]).astype(np.int8)
    return {(*QUADRANTS, "unknown")[q]: int((quadrant == q).sum()) for q in range(5)}


def training_rows(arrays: dict[str, np.ndarray], manifest: dict[str, Any], split: int) -> np.ndarray:
    """Rows that are training targets: in a source with phrase labels, only bars inside a melodic
    phrase (intros, interludes and outros are mostly rests and would teach silence)."""
    keep = arrays["split"] == split
    for i, src in enumerate(manifest.get("sources", [])):
        here = arrays["source"] == i
        if src.get("layout") == "pop909" and (arrays["pos"][here] >= 0).any():
            keep &= ~here | (arrays["pos"] >= 0)
    return np.flatnonzero(keep)


def interval_stats(bars: Any, before: Any) -> Any:
    """How the line moves, per bar and differentiably: over the notes that start right after a
    sounding step (the step before the bar is `before`'s last), the mean interval in octaves and
    the shares of steps (≤ 2 semitones), leaps (≥ 5) and leaps wider than an octave. (B, 4).

    The bars are straight-through one-hots, so `p_t · D · p_t+1` is the exact interval forward and
    still passes gradients to the scores."""
    import torch

    x = torch.cat([before[:, -1:], bars[:, 0]], 1)
    pitch = x[..., :REST]
    idx = torch.arange(N_PITCHES, device=x.device, dtype=x.dtype)
    dist = (idx[:, None] - idx[None, :]).abs()
    size = torch.einsum("bti,ij,btj->bt", pitch[:, :-1], dist, pitch[:, 1:])
    pair = x[:, 1:, ONSET] * pitch[:, :-1].sum(-1) * pitch[:, 1:].sum(-1)
    n = pair.sum(1).clamp(min=1.0)
    shares = [(pair * size).sum(1) / n / 12.0]
    for mask in (dist <= 2, dist >= 5, dist > 12):
        shares.append((pair * torch.einsum("bti,ij,btj->bt", pitch[:, :-1], mask.to(x.dtype), pitch[:, 1:])).sum(1) / n)
    return torch.stack(shares, 1)


#: Signed interval bins of `interval_histogram`, in semitones (upper edges, inclusive): ≤ −5,
#: −4…−3, −2, −1, 0, +1, +2, +3…+4, ≥ +5. Whole steps get bins of their own: the passing motion
#: of sung lines (−2, −2) is what a two-sample test found missing (POP909 19% −2 against 10%).
INTERVAL_EDGES = (-5, -3, -2, -1, 0, 1, 2, 4)


def interval_histogram(bars: Any, before: Any) -> Any:
    """Per bar, differentiably, how many of its note-to-note moves (the notes that start right after
    a sounding step, across the bar line too) fall in each `INTERVAL_EDGES` bin: (B, 9) counts.
    Counts, not shares, so a group's histogram is pooled over its moves as a listener hears them."""
    import torch

    x = torch.cat([before[:, -1:], bars[:, 0]], 1)
    pitch = x[..., :REST]
    idx = torch.arange(N_PITCHES, device=x.device)
    signed = idx[None, :] - idx[:, None]
    pair = x[:, 1:, ONSET] * pitch[:, :-1].sum(-1) * pitch[:, 1:].sum(-1)
    lower = (-10_000,) + INTERVAL_EDGES
    upper = INTERVAL_EDGES + (10_000,)
    counts = []
    for lo, hi in zip(lower, upper):
        mask = ((signed > lo) & (signed <= hi)).to(x.dtype)
        counts.append((pair * _moves(mask, pitch[:, :-1], pitch[:, 1:])).sum(1))
    return torch.stack(counts, 1)


def move_pairs(bars: Any, before: Any) -> Any:
    """Per bar, differentiably, how two successive moves go, over three notes in even 16ths or even
    8ths (the rhythms of runs): (B, 4) counts of such note triples, of runs (two steps of one or two
    semitones the same way: passing tones), of a step and a step back (neighbour tones), and of a
    note struck three times. Why: the interval histogram alone left the line's steps without
    direction (POP909 has 3.5 % descending whole-step pairs; the network wrote 0.9 %)."""
    import torch

    x = torch.cat([before, bars[:, 0]], 1)
    pitch, onset = x[..., :REST], x[..., ONSET]
    idx = torch.arange(N_PITCHES, device=x.device)
    move = (idx[None, :] - idx[:, None]).to(x.dtype)
    up = ((move >= 1) & (move <= 2)).to(x.dtype)
    down = ((move >= -2) & (move <= -1)).to(x.dtype)
    same = (move == 0).to(x.dtype)
    sounding = pitch.sum(-1)
    out = torch.zeros(len(x), 4, device=x.device, dtype=x.dtype)
    t = torch.arange(STEPS_PER_BAR, 2 * STEPS_PER_BAR, device=x.device)
    for gap in (1, 2):
        a, b, c = pitch[:, t - 2 * gap], pitch[:, t - gap], pitch[:, t]
        w = onset[:, t - gap] * onset[:, t] * sounding[:, t - 2 * gap] * sounding[:, t - gap] * sounding[:, t]
        if gap == 2:
            w = w * (1 - onset[:, t - 1]) * (1 - onset[:, t - 3]) * onset[:, t - 4] * sounding[:, t - 1] * sounding[:, t - 3]
        else:
            w = w * onset[:, t - 2]
        ab_up, bc_up, ab_down, bc_down = _moves(up, a, b), _moves(up, b, c), _moves(down, a, b), _moves(down, b, c)
        out[:, 0] += w.sum(1)
        out[:, 1] += (w * (ab_up * bc_up + ab_down * bc_down)).sum(1)
        out[:, 2] += (w * (ab_up * bc_down + ab_down * bc_up)).sum(1)
        out[:, 3] += (w * _moves(same, a, b) * _moves(same, b, c)).sum(1)
    return out


def _moves(kind: Any, p: Any, q: Any) -> Any:
    """Whether the move from one-hot pitches `p` to `q` (B, T, N) is of `kind` (an N×N 0/1 mask),
    per step: exact on hard one-hots, and differentiable through them."""
    import torch

    return torch.einsum("bti,ij,btj->bt", p, kind, q)


def pair_shape_loss(fake: Any, real: Any, emotion: Any, before: Any) -> Any:
    """Per emotion group, the squared distance between the generated and the real shares of runs,
    neighbour tones and triple strikes among note triples (`move_pairs`)."""
    return _grouped_share_loss(move_pairs(fake, before), move_pairs(real, before), emotion, lambda c: c[1:] / c[0].clamp(min=1.0))


def interval_shape_loss(fake: Any, real: Any, emotion: Any, before: Any) -> Any:
    """Per emotion group of the batch, the squared distance between the generated and the real
    bars' pooled signed interval histograms (shares): the line must move as the data's lines of that
    emotion do, whole-step passing motion included, not only match their mean interval."""
    return _grouped_share_loss(interval_histogram(fake, before), interval_histogram(real, before), emotion, lambda c: c / c.sum().clamp(min=1.0))


def _grouped_share_loss(fake_counts: Any, real_counts: Any, emotion: Any, shares: Any) -> Any:
    """Per emotion group (of at least two bars), the squared distance between `shares` of the
    generated and of the real bars' counts pooled over the group, weighted by the group's size."""
    import torch

    loss = torch.zeros((), device=fake_counts.device)
    for g in torch.unique(emotion):
        sel = emotion == g
        if int(sel.sum()) >= 2:
            loss = loss + (shares(fake_counts[sel].sum(0)) - shares(real_counts[sel].sum(0))).pow(2).sum() * float(sel.float().mean())
    return loss


def bar_stats(bars: Any, key: Any, before: Any | None = None) -> Any:
    """What a listener hears as a melody's character, per bar and differentiably: the pitch-class
    histogram relative to the key's tonic (mode and tonal emphasis), the mean pitch (register),
    the share of rests (articulation), the onsets per step (density) and, given the bar before,
    the intervals (`interval_stats`). (B, 15) or (B, 19)."""
    import torch

    x = bars[:, 0]
    pitch = x[..., :REST]
    sounding = pitch.sum((1, 2)).clamp(min=1.0)
    pcs = pitch.sum(1).view(len(x), N_PITCHES // 12, 12).sum(1) / sounding[:, None]
    idx = (torch.arange(12, device=x.device)[None, :] + (key % 12)[:, None]) % 12
    rel = pcs.gather(1, idx)
    register = (pitch.sum(1) * torch.arange(N_PITCHES, device=x.device, dtype=x.dtype)).sum(1) / sounding / N_PITCHES
    parts = [rel, register[:, None], x[..., REST].mean(1, keepdim=True), x[..., ONSET].mean(1, keepdim=True)]
    if before is not None:
        parts.append(interval_stats(bars, before))
    return torch.cat(parts, 1)


def conditional_stats_loss(fake: Any, real: Any, key: Any, emotion: Any, before: Any | None = None) -> Any:
    """Per (emotion, mode) group of the batch, the squared distance between the mean bar statistics of
    the generated and the real bars (see `bar_stats`): the network must give each emotion the register,
    density, articulation and tonal emphasis that emotion has in the data, not only fool the discriminator."""
    import torch

    sf, sr = bar_stats(fake, key, before), bar_stats(real, key, before)
    group = emotion * 2 + (key >= 12).long()
    loss = torch.zeros((), device=fake.device)
    for g in torch.unique(group):
        sel = group == g
        if int(sel.sum()) >= 2:
            loss = loss + (sf[sel].mean(0) - sr[sel].mean(0)).pow(2).sum() * float(sel.float().mean())
    return loss


def data_nll(lg: Any, real: Any) -> Any:
    """Negative log-likelihood of the real bar under the generator's per-step scores: cross-entropy
    over pitch-or-rest and, where the real bar sounds, binary cross-entropy of its onsets. A small
    weight of it keeps the generator's distribution on the data's (key, chord tones, restatements),
    which the adversarial game alone learns slowly."""
    import torch.nn.functional as F

    x = real[:, 0]
    scores = lg[:, 0]
    target = x[..., : REST + 1].argmax(-1)
    ce = F.cross_entropy(scores[..., : REST + 1].reshape(-1, REST + 1), target.reshape(-1))
    sounding = 1 - x[..., REST]
    bce = (F.binary_cross_entropy_with_logits(scores[..., ONSET], x[..., ONSET], reduction="none") * sounding).sum() / sounding.sum().clamp(min=1.0)
    return ce + bce


def make_models(cfg: GanConfig) -> tuple[Any, Any, Any]:
    from .gan import LEAN_CONTROLS, N_CONTROLS, Discriminator, GanDims, Generator, init_weights, tiny_dims

    dims = replace(tiny_dims() if cfg.tiny else GanDims(), prev_bars=cfg.prev_bars, n_controls=LEAN_CONTROLS if cfg.lean_control else N_CONTROLS)
    g, d = Generator(dims), Discriminator(dims)
    init_weights(g)
    init_weights(d)
    return dims, g, d


def generator_payload(g: Any, dims: Any, cfg: GanConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The self-describing generator checkpoint (weights and BatchNorm statistics)."""
    return {
        "kind": "generator",
        "dims": asdict(dims),
        "quadrants": list(QUADRANTS),
        "register": [LOW_PITCH, LOW_PITCH + N_PITCHES - 1],
        "steps_per_bar": STEPS_PER_BAR,
        "bar_width": BAR_WIDTH,
        "hyperparameters": asdict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()},
        **extra,
    }


def _val_stats(g: Any, arrays: dict[str, np.ndarray], rows: np.ndarray, cfg: GanConfig, dims: Any) -> dict[str, float]:
    """Teacher-forced generation on validation bars: rest share and onsets per bar, real vs generated.

    A collapsed generator shows up here as a rest share near 0 or 1 or an onset count far from the real one.
    """
    import torch

    if len(rows) == 0:
        return {}
    g.eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(12345)
        z = torch.randn(len(rows), dims.z_dim, generator=gen)
        y = batch_condition(rows, arrays, dims)
        lg = g.logits(z, y, prev_tensor(rows, arrays, dims.prev_bars, dims.reference))[:, 0]
        choice = lg[..., : REST + 1].argmax(-1)
        fake_rest = float((choice == REST).float().mean())
        changed = torch.cat([torch.zeros_like(choice[:, :1], dtype=torch.bool), choice[:, 1:] != choice[:, :-1]], 1)
        fake_onsets = float((((torch.sigmoid(lg[..., ONSET]) > 0.5) | changed) & (choice != REST)).float().sum(-1).mean())
    g.train()
    real_p = arrays["pitch"][rows]
    real_on = arrays["onset"][rows] * (real_p >= 0)
    return {
        "val_rest_real": round(float((real_p < 0).mean()), 4),
        "val_rest_fake": round(fake_rest, 4),
        "val_onsets_real": round(float(real_on.sum(1).mean()), 3),
        "val_onsets_fake": round(fake_onsets, 3),
        "val_pitches_used": int(len(torch.unique(choice[choice != REST]))),
    }


def _epoch_files(out_dir: Path, manifest: dict[str, Any], command: str, world: int, g: Any, d: Any, dims: Any, cfg: GanConfig, opt_g: Any, opt_d: Any, epochs_run: int, history: list[dict[str, Any]]) -> dict[Path, dict[str, Any]]:
    """This epoch's checkpoints: the generator to ship and the resumable state of both networks."""
    extra = {"provenance": provenance(command) | {"world_size": world}, "data": {"source": manifest.get("source"), "counts": manifest.get("counts"), "grid": manifest.get("grid")}, "training": {"epochs_run": epochs_run, "history": history}}
    return {
        out_dir / "generator.pt": generator_payload(g, dims, cfg, extra),
        out_dir / "last.pt": {
            "kind": "gan-training",
            "hyperparameters": asdict(cfg),
            "generator": g.state_dict(),
            "discriminator": d.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "epoch": epochs_run,
            "history": history,
        },
    }


@dataclass
class _GanNets:
    """What every GAN step touches, built once by `train_gan`."""

    cfg: GanConfig
    dims: Any
    arrays: dict[str, np.ndarray]
    dev: Any
    g_net: Any
    d_net: Any
    opt_g: Any
    opt_d: Any
    warmup_left: int = 0


def _gan_step(nets: _GanNets, rows: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """One discriminator step and `g_steps` generator steps on `rows`: (D loss, G loss, D(x), D(G(z)))."""
    import torch
    import torch.nn.functional as F

    from .dataset import UNKNOWN

    cfg, dims, arrays, dev, g_net, d_net, opt_g, opt_d = nets.cfg, nets.dims, nets.arrays, nets.dev, nets.g_net, nets.d_net, nets.opt_g, nets.opt_d
    x = bars_tensor(arrays["pitch"][rows], arrays["onset"][rows]).to(dev)
    emotion = np.where(rng.random(len(rows)) < cfg.emotion_dropout, UNKNOWN, arrays["quadrant"][rows])
    y = batch_condition(rows, arrays, dims, emotion).to(dev)
    prev = prev_tensor(rows, arrays, dims.prev_bars, dims.reference).to(dev)
    ref = prev[:, -1:] if dims.reference else None
    z = torch.randn(len(rows), dims.z_dim, device=dev)
    fake = g_net(z, y, prev).detach()
    d_both, fm_both = d_net(torch.cat([x, fake]), torch.cat([y, y]), torch.cat([ref, ref]) if ref is not None else None)
    d_real, d_fake, fm_real = d_both[: len(rows)], d_both[len(rows) :], fm_both[: len(rows)]
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, cfg.real_label)) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    if nets.warmup_left > 0:
        nets.warmup_left -= 1
        return loss_d.item(), 0.0, torch.sigmoid(d_real).mean().item(), torch.sigmoid(d_fake).mean().item()
    fm_target = fm_real.detach().mean(0)
    mean_target = x.mean(0)
    key_t = torch.from_numpy(arrays["key"][rows].astype(np.int64)).to(dev)
    emo_t = torch.from_numpy(emotion.astype(np.int64)).to(dev)
    for _ in range(cfg.g_steps):
        z = torch.randn(len(rows), dims.z_dim, device=dev)
        fake, lg = g_net(z, y, prev, with_logits=True)
        d_out, fm_fake = d_net(fake, y, ref)
        loss_g = (
            F.binary_cross_entropy_with_logits(d_out, torch.ones_like(d_out))
            + cfg.fm_weight * 0.5 * (fm_fake.mean(0) - fm_target).pow(2).sum()
            + cfg.mean_weight * 0.5 * (fake.mean(0) - mean_target).pow(2).sum()
            + (cfg.stats_weight * conditional_stats_loss(fake, x, key_t, emo_t, prev[:, 0]) if cfg.stats_weight else 0.0)
            + (cfg.nll_weight * data_nll(lg, x) if cfg.nll_weight else 0.0)
            + (cfg.interval_weight * interval_shape_loss(fake, x, emo_t, prev[:, 0]) if cfg.interval_weight else 0.0)
            + (cfg.pair_weight * pair_shape_loss(fake, x, emo_t, prev[:, 0]) if cfg.pair_weight else 0.0)
        )
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return loss_d.item(), loss_g.item(), torch.sigmoid(d_real).mean().item(), torch.sigmoid(d_out).mean().item()


def _initialise(path: str, g: Any, d: Any) -> None:
    """Start from `path`'s networks (`GanConfig.init`): a generator checkpoint sets the generator, a
    training checkpoint both; its dimensions must be the ones this run builds."""
    from ..checkpoints import load_checkpoint

    ck = load_checkpoint(Path(path))
    weights = ck.get("generator", ck.get("state_dict"))
    if weights is None:
        raise FacetuneError(f"{path}: --init needs a generator checkpoint or a GAN training checkpoint (last.pt)")
    try:
        g.load_state_dict(weights)
        if "discriminator" in ck:
            d.load_state_dict(ck["discriminator"])
    except RuntimeError as e:
        raise FacetuneError(f"{path}: its networks do not fit this run's dimensions ({str(e).splitlines()[0]})") from None
    console.info(f"starting from the networks of {path}" + ("" if "discriminator" in ck else " (the discriminator starts fresh)"))


def _restore(ck: dict[str, Any], g: Any, d: Any, opt_g: Any, opt_d: Any) -> tuple[int, list[dict[str, Any]]]:
    """Both networks and optimisers from a resumable checkpoint; returns (epochs done, history)."""
    g.load_state_dict(ck["generator"])
    d.load_state_dict(ck["discriminator"])
    opt_g.load_state_dict(ck["opt_g"])
    opt_d.load_state_dict(ck["opt_d"])
    return int(ck["epoch"]), list(ck["history"])


def _build_nets(cfg: GanConfig, arrays: dict[str, np.ndarray], last_path: Path, resume: bool, info: Any, dev: Any) -> tuple[_GanNets, Any, Any, int, list[dict[str, Any]]]:
    """The networks and optimisers of a run: resumed from `last_path`, started from `cfg.init`, or
    new; returns them with the epochs already done and the history so far."""
    import torch

    from ..training.run import data_parallel, resume_checkpoint

    start_epoch, history = 0, []
    ck = resume_checkpoint(last_path, "gan-training", resume)
    if ck:
        cfg = replace(GanConfig(**ck["hyperparameters"]), epochs=cfg.epochs)
    torch.manual_seed(cfg.seed)
    dims, g, d = make_models(cfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    if ck:
        start_epoch, history = _restore(ck, g, d, opt_g, opt_d)
        console.info(f"resuming from {last_path} after epoch {start_epoch}")
    elif cfg.init:
        _initialise(cfg.init, g, d)
    g.to(dev).train()
    d.to(dev).train()
    nets = _GanNets(cfg, dims, arrays, dev, data_parallel(g, info, dev), data_parallel(d, info, dev), opt_g, opt_d, 0 if ck else cfg.d_warmup)
    return nets, g, d, start_epoch, history


def train_gan(cache: str | Path, out_dir: str | Path, cfg: GanConfig = GanConfig(), *, resume: bool = False, device: str = "auto", command: str = "", max_epochs_this_run: int | None = None) -> dict[str, Any]:
    """Train the GAN; checkpoints every epoch to `out_dir/last.pt` and the generator to `out_dir/generator.pt`.

    Under `torchrun` each rank takes its share of every global batch and DistributedDataParallel
    averages the gradients; only rank 0 writes files and logs.
    """
    import torch

    from ..training.distributed import all_reduce_sums, shutdown
    from ..training.run import save_epoch, start_processes
    from .dataset import load_music_cache
    from .generator_numpy import export_generator

    out_dir = Path(out_dir)
    manifest, arrays = load_music_cache(cache)
    arrays = training_arrays(arrays, manifest, cfg)
    train_rows = training_rows(arrays, manifest, 0)
    val_rows = training_rows(arrays, manifest, 1)
    val_rows = val_rows[arrays["transpose"][val_rows] == 0]
    if len(train_rows) < cfg.batch_size:
        raise FacetuneError(f"{cache}: only {len(train_rows)} training bars, fewer than one batch of {cfg.batch_size}")
    info, dev = start_processes(device)
    if cfg.batch_size % info.world:
        raise FacetuneError(f"--batch-size {cfg.batch_size} must be a multiple of the {info.world} processes")
    micro = cfg.batch_size // info.world
    nets, g, d, start_epoch, history = _build_nets(cfg, arrays, out_dir / "last.pt", resume, info, dev)
    cfg, dims, opt_g, opt_d = nets.cfg, nets.dims, nets.opt_g, nets.opt_d
    steps = cfg.steps_per_epoch or len(train_rows) // cfg.batch_size
    val_sample = val_rows[np.random.default_rng(0).permutation(len(val_rows))[:2000]] if len(val_rows) else val_rows
    started = time.time()
    epochs_run = 0
    with console.progress(metrics=True) as prog:
        task = prog.add_task("training GAN", total=cfg.epochs * steps, completed=start_epoch * steps, metrics="")
        for epoch in range(start_epoch, cfg.epochs):
            if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
                break
            torch.manual_seed((cfg.seed * 100_003 + epoch) * 1_000 + info.rank)
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(train_rows)
            t0 = time.time()
            sums = {"d_loss": 0.0, "g_loss": 0.0, "d_x": 0.0, "d_gz": 0.0}
            for step in range(steps):
                rows = order[(step * cfg.batch_size) % len(order) :][: cfg.batch_size]
                if len(rows) < cfg.batch_size:
                    rows = np.concatenate([rows, order[: cfg.batch_size - len(rows)]])
                rows = np.sort(rows[info.rank * micro : (info.rank + 1) * micro])
                for key, value in zip(sums, _gan_step(nets, rows, rng)):
                    sums[key] += value
                n = step + 1
                prog.update(task, advance=1, metrics=f"ep {epoch + 1}/{cfg.epochs} D {sums['d_loss'] / n:.3f} G {sums['g_loss'] / n:.3f} D(x) {sums['d_x'] / n:.2f} D(G(z)) {sums['d_gz'] / n:.2f}")
            totals = all_reduce_sums(list(sums.values()), info)
            record: dict[str, Any] = {"epoch": epoch + 1, **{k: round(v / steps / info.world, 4) for k, v in zip(sums, totals)}, "seconds": round(time.time() - t0, 1)}
            if info.is_main:
                record |= _val_stats(g, arrays, val_sample, cfg, dims)
            history.append(record)
            save_epoch(info, lambda: _epoch_files(out_dir, manifest, command, info.world, g, d, dims, cfg, opt_g, opt_d, epoch + 1, history))
            epochs_run += 1
            console.info(
                f"epoch {epoch + 1}/{cfg.epochs}  D {record['d_loss']:.3f}  G {record['g_loss']:.3f}  D(x) {record['d_x']:.2f}  D(G(z)) {record['d_gz']:.2f}  "
                f"rest real/fake {record.get('val_rest_real', 0):.2f}/{record.get('val_rest_fake', 0):.2f}  onsets/bar real/fake "
                f"{record.get('val_onsets_real', 0):.1f}/{record.get('val_onsets_fake', 0):.1f}  {record['seconds']:.0f}s"
            )
    if info.is_main and (out_dir / "generator.pt").is_file():
        export_generator(out_dir / "generator.pt", out_dir / "generator.npz")
    shutdown(info)
    return {"epochs": len(history), "history": history, "seconds": time.time() - started, "out_dir": str(out_dir)}
