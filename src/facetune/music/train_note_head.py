"""`train note-head`: train the note head (`note_head`) on a frozen generator, by likelihood.

The GAN scores a whole bar at once; the head draws the melody from those scores step by step,
reading what was just played. It learns by teacher forcing: for real bars of the music cache the
frozen GAN gives its scores (a fresh noise each time, as when composing), the head reads the real
notes before each step, and the loss is the cross-entropy of the real pitch-or-rest under the
head's scores plus, where the real note keeps the held pitch, the binary cross-entropy of whether
it is struck again. Only the head learns: the GAN stays in eval mode, its BatchNorm statistics
fixed, so the generator composes exactly as before wherever the head leaves its scores alone.

Validation reports the same cross-entropy for the GAN's scores drawn on their own (each step
independently, as a generator without a head plays), the figure the head has to beat. A few
minutes of a CPU per epoch at the defaults.

Each epoch's batches and noise are seeded from (seed, epoch), so a run resumed from `last.pt`
ends exactly where an uninterrupted one would.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import console
from ..errors import CheckpointError, FacetuneError

#: Validation bars per forward pass.
VAL_CHUNK = 512


@dataclass(frozen=True)
class NoteHeadConfig:
    """Hyperparameters of `facetune train note-head` (CLI flags map onto these)."""

    hidden: int = 128
    epochs: int = 4
    steps_per_epoch: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    #: Validation bars (a fixed sample of the validation split, untransposed), scored with fixed noise.
    val_bars: int = 2048
    #: Also train on every song in its parallel mode (`mode_mirror`); validation keeps the real songs.
    mode_mirror: bool = False


@dataclass
class _Run:
    """What every step touches: the frozen generator with its head, the data and the optimiser."""

    g: Any
    dims: Any
    arrays: dict[str, np.ndarray]
    opt: Any


def batch_losses(run: _Run, rows: np.ndarray, noise: Any = None) -> tuple[Any, Any, Any]:
    """Teacher-forced losses on cache `rows`: the head's pitch-or-rest cross-entropy, its restrike
    BCE (over the steps where the real note keeps the held pitch) and, for comparison, the
    cross-entropy of the GAN's scores alone. `noise`: a torch.Generator for the GAN's z (None:
    torch's global one)."""
    import torch
    import torch.nn.functional as F

    from . import note_head as nh
    from .pianoroll import REST
    from .train import batch_condition, prev_tensor

    g, dims, arrays = run.g, run.dims, run.arrays
    y = batch_condition(rows, arrays, dims)
    prev = prev_tensor(rows, arrays, dims.prev_bars, dims.reference)
    with torch.no_grad():
        scores = g.logits(torch.randn(len(rows), dims.z_dim, generator=noise), y, prev)[:, 0].double().numpy()
    tf = nh.teacher_forced(
        arrays["pitch"][rows], arrays["onset"][rows], nh.history(prev.numpy(), dims.prev_bars), scores, arrays["quadrant"][rows], arrays["pos"][rows],
        arrays["phrase_end"][rows], arrays["key"][rows], arrays["controls"][rows].astype(np.float64),
        nh.echo(prev.numpy(), (arrays["ref"][rows] >= 0) & dims.reference),
    )
    flat = lambda a: torch.from_numpy(np.ascontiguousarray(a).reshape(len(rows) * scores.shape[1], -1))  # noqa: E731
    out = g.head(flat(tf["cats"]), flat(tf["dense"]).float())
    gan_scores = flat(scores).float()
    z, restrike = g.head.logits(out, gan_scores, flat(tf["last"])[:, 0], flat(tf["held"])[:, 0])
    target = flat(tf["target"])[:, 0]
    ce = F.cross_entropy(z, target)
    at = flat(tf["restrike_at"])[:, 0].float()
    bce = (F.binary_cross_entropy_with_logits(restrike, flat(tf["restrike"])[:, 0].float(), reduction="none") * at).sum() / at.sum().clamp(min=1)
    base = F.cross_entropy(gan_scores[:, : REST + 1], target)
    return ce, bce, base


def _validate(run: _Run, rows: np.ndarray) -> dict[str, float]:
    """The head's and the GAN's losses on the fixed validation sample, with fixed noise, so epochs compare."""
    import torch

    if len(rows) == 0:
        return {}
    noise = torch.Generator().manual_seed(12345)
    sums = np.zeros(3)
    with torch.no_grad():
        for i in range(0, len(rows), VAL_CHUNK):
            chunk = rows[i : i + VAL_CHUNK]
            sums += np.array([v.item() for v in batch_losses(run, chunk, noise)]) * len(chunk)
    ce, bce, base = sums / len(rows)
    return {"val_ce": round(float(ce), 4), "val_bce": round(float(bce), 4), "val_gan_ce": round(float(base), 4)}


def _frozen_generator(path: Path, hidden: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """The generator of `path` with a fresh note head of width `hidden`: its GAN weights and
    BatchNorm statistics as trained, in eval mode and frozen, only `head.*` left to learn."""
    import torch

    from .gan import Generator, load_generator_module

    g0, dims0, payload = load_generator_module(path)
    if dims0.note_head:
        console.info(f"{path} already has a note head: its GAN is used and the head starts fresh")
    dims = replace(dims0, note_head=hidden)
    torch.manual_seed(seed)
    g = Generator(dims)
    missing, unexpected = g.load_state_dict({k: v for k, v in g0.state_dict().items() if not k.startswith("head.")}, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise CheckpointError(f"{path}: its GAN does not fit a generator with a note head ({(unexpected or missing)[0]})")
    g.eval()
    for name, p in g.named_parameters():
        p.requires_grad_(name.startswith("head."))
    return g, dims, payload


def _data(cache: str | Path, payload: dict[str, Any], cfg: NoteHeadConfig) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The cache's arrays as `train gan` trained the generator on them (its label rule), the
    training rows and the fixed validation sample (split 1, untransposed)."""
    from .dataset import load_music_cache
    from .train import GanConfig, training_arrays, training_rows

    hp = payload.get("hyperparameters") or {}
    manifest, arrays = load_music_cache(cache)
    real = len(arrays["pitch"])
    arrays = training_arrays(arrays, manifest, GanConfig(label_rule=hp.get("label_rule", "mode-pace"), lean_margin=hp.get("lean_margin", 0.04), mode_mirror=cfg.mode_mirror))
    train_rows = training_rows(arrays, manifest, 0)
    val_rows = training_rows(arrays, manifest, 1)
    val_rows = val_rows[(arrays["transpose"][val_rows] == 0) & (val_rows < real)]
    if len(train_rows) < cfg.batch_size:
        raise FacetuneError(f"{cache}: only {len(train_rows)} training bars, fewer than one batch of {cfg.batch_size}")
    val_sample = np.sort(val_rows[np.random.default_rng(cfg.seed).permutation(len(val_rows))[: cfg.val_bars]])
    return manifest, arrays, train_rows, val_sample


def _check_out_dir(out_dir: Path, generator: Path, resume: bool) -> None:
    """Never overwrite the generator trained on, nor another run's files without --resume."""
    target = out_dir / "generator.pt"
    if target.exists() and target.resolve() == generator.resolve():
        raise FacetuneError(f"{out_dir}: holds the generator being trained on ({generator.name}); give another --out")
    if not resume:
        existing = [p.name for p in (out_dir / "last.pt", target, out_dir / "generator.npz") if p.exists()]
        if existing:
            raise FacetuneError(f"{out_dir}: already holds {', '.join(existing)}; use --resume to continue that run, or another --out")


def _resume(last_path: Path, resume: bool, cfg: NoteHeadConfig, generator: Path, sha: str) -> tuple[dict[str, Any], NoteHeadConfig]:
    """The training checkpoint to continue from ({} for a new run) and the run's config (the
    checkpoint's, with this call's epochs); refuses one made on another generator."""
    from ..training.run import resume_checkpoint

    ck = resume_checkpoint(last_path, "note-head-training", resume)
    if not ck:
        return {}, cfg
    if ck.get("generator_sha256") != sha:
        raise CheckpointError(f"{last_path}: was trained on another version of {generator} (sha256 differs); start a new run in another --out")
    return ck, replace(NoteHeadConfig(**ck["config"]), epochs=cfg.epochs)


def _epoch(run: _Run, train_rows: np.ndarray, cfg: NoteHeadConfig, epoch: int, prog: Any, task: Any) -> dict[str, float]:
    """One epoch of head updates; its batches and noise seeded from (seed, epoch). Mean train losses."""
    import torch

    torch.manual_seed(cfg.seed * 100_003 + epoch)
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(train_rows)
    sums = np.zeros(2)
    for step in range(cfg.steps_per_epoch):
        rows = order[(step * cfg.batch_size) % len(order) :][: cfg.batch_size]
        if len(rows) < cfg.batch_size:
            rows = np.concatenate([rows, order[: cfg.batch_size - len(rows)]])
        ce, bce, _ = batch_losses(run, np.sort(rows))
        run.opt.zero_grad(set_to_none=True)
        (ce + bce).backward()
        run.opt.step()
        sums += (ce.item(), bce.item())
        n = step + 1
        prog.update(task, advance=1, metrics=f"ep {epoch + 1}/{cfg.epochs} ce {sums[0] / n:.3f} restrike {sums[1] / n:.3f}")
    return {"train_ce": round(float(sums[0] / cfg.steps_per_epoch), 4), "train_bce": round(float(sums[1] / cfg.steps_per_epoch), 4)}


def _save_epoch(out_dir: Path, run: _Run, payload: dict[str, Any], cfg: NoteHeadConfig, history: list[dict[str, Any]], command: str, sha: str) -> None:
    """This epoch's files: the generator with its head and its numpy export, then `last.pt`, so the
    resumable state never claims an epoch whose generator is not written."""
    from ..checkpoints import provenance, save_checkpoint
    from .generator_numpy import export_generator

    record = {"config": asdict(cfg), "history": history, "command": command, "provenance": provenance(command), "generator_sha256": sha}
    generator = {
        **{k: v for k, v in payload.items() if k != "format_version"},
        "kind": "generator",
        "dims": asdict(run.dims),
        "state_dict": {k: v.detach().cpu().clone() for k, v in run.g.state_dict().items()},
        "note_head_training": record,
    }
    save_checkpoint(out_dir / "generator.pt", generator)
    export_generator(out_dir / "generator.pt", out_dir / "generator.npz")
    save_checkpoint(out_dir / "last.pt", {
        "kind": "note-head-training",
        "head": {k: v.detach().cpu().clone() for k, v in run.g.head.state_dict().items()},
        "optimizer": run.opt.state_dict(),
        "epoch": len(history),
        "history": history,
        "config": asdict(cfg),
        "generator_sha256": sha,
    })


def train_note_head(cache: str | Path, generator: str | Path, out_dir: str | Path, cfg: NoteHeadConfig = NoteHeadConfig(), *, resume: bool = False, command: str = "", max_epochs_this_run: int | None = None) -> dict[str, Any]:
    """Train a note head on the frozen GAN of `generator`; every epoch writes `out_dir/generator.pt`
    (the generator with its head), its numpy export `generator.npz` and the resumable `last.pt`."""
    import torch

    from .generator_numpy import file_sha256

    out_dir, generator = Path(out_dir), Path(generator)
    _check_out_dir(out_dir, generator, resume)
    if not generator.is_file():
        raise CheckpointError(f"{generator}: checkpoint not found")
    sha = file_sha256(generator)
    ck, cfg = _resume(out_dir / "last.pt", resume, cfg, generator, sha)
    g, dims, payload = _frozen_generator(generator, cfg.hidden, cfg.seed)
    _, arrays, train_rows, val_rows = _data(cache, payload, cfg)
    run = _Run(g, dims, arrays, torch.optim.Adam(g.head.parameters(), lr=cfg.lr))
    history: list[dict[str, Any]] = []
    if ck:
        g.head.load_state_dict(ck["head"])
        run.opt.load_state_dict(ck["optimizer"])
        history = list(ck["history"])
        console.info(f"resuming from {out_dir / 'last.pt'} after epoch {len(history)}")
    start_epoch, epochs_run, started = len(history), 0, time.time()
    with console.progress(metrics=True) as prog:
        task = prog.add_task("training note head", total=cfg.epochs * cfg.steps_per_epoch, completed=start_epoch * cfg.steps_per_epoch, metrics="")
        for epoch in range(start_epoch, cfg.epochs):
            if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
                break
            t0 = time.time()
            record: dict[str, Any] = {"epoch": epoch + 1, **_epoch(run, train_rows, cfg, epoch, prog, task)}
            record |= _validate(run, val_rows) | {"seconds": round(time.time() - t0, 1)}
            history.append(record)
            _save_epoch(out_dir, run, payload, cfg, history, command, sha)
            epochs_run += 1
            console.info(
                f"epoch {epoch + 1}/{cfg.epochs}  train ce {record['train_ce']:.3f} restrike {record['train_bce']:.3f}  "
                f"val ce {record.get('val_ce', float('nan')):.3f} restrike {record.get('val_bce', float('nan')):.3f}  "
                f"GAN alone {record.get('val_gan_ce', float('nan')):.3f}  {record['seconds']:.0f}s"
            )
    return {"epochs": len(history), "history": history, "seconds": time.time() - started, "out_dir": str(out_dir), "generator": str(out_dir / "generator.pt")}
