"""`facetune prepare-data`, `train` and `export-onnx`: datasets into caches, caches into models."""
from __future__ import annotations

from pathlib import Path

import click

from .. import console
from ..errors import FacetuneError, refuse_overwrite
from .common import (
    OVERWRITE_OPTION,
    REBUILD_OPTION,
    TRAINING_RUN_OPTIONS,
    command_line,
    handle_errors,
    main,
)


@main.group("prepare-data")
def prepare_data() -> None:
    """Turn a raw dataset into a compact training cache."""


@prepare_data.command("faces")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Cache folder to write.")
@click.option("--classes", default="happy,sad,angry", show_default=True, help="Comma-separated FER classes, or 'all' for the 7.")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.5), help="Share of train held out for validation (stratified).")
@click.option("--seed", default=0, show_default=True, help="Seed of the validation split.")
@click.option("--size", default=48, show_default=True, type=click.IntRange(16, 256), help="Side of the stored square crops.")
@REBUILD_OPTION
@handle_errors
def prepare_faces_cmd(src: Path, out: Path, classes: str, val_fraction: float, seed: int, size: int, force: bool) -> None:
    """FER2013 image folders (train/<class>/, test/<class>/) or fer2013.csv → faces cache.

    Drops near-blank images and every test image pixel-identical to a train image.
    """
    from ..emotions import parse_classes
    from ..faces.data import FacePrepConfig, prepare_faces

    try:
        names = parse_classes(classes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--classes") from None
    manifest = prepare_faces(src, out, FacePrepConfig(names, val_fraction, seed, size), force=force)
    if manifest.get("up_to_date"):
        return
    console.out.print(console.counts_table(manifest))
    d = manifest["dropped"]
    console.info(
        f"dropped {d['test_identical_to_train']} test images identical to a train image, "
        f"{d['near_blank_train'] + d['near_blank_test']} near-blank images; cache written to {out}"
    )


@main.group("train")
def train() -> None:
    """Train the emotion classifier, the melody GAN or its note head."""


@train.command("classifier")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Faces cache from `prepare-data faces`.")
@click.option("--out", "out", default=Path("runs/classifier"), show_default=True, type=click.Path(path_type=Path), help="Run folder for checkpoints.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1), help="Passes over the training set (early stopping may end sooner, see --patience).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1), help="Images per optimiser step.")
@click.option("--lr", default=2e-3, show_default=True, type=float, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", default=0.05, show_default=True, type=float, help="AdamW weight decay.")
@click.option("--input-size", default=64, show_default=True, type=click.IntRange(32, 512), help="Network input side in pixels.")
@click.option("--init", "init", default="lite0", show_default=True, help="lite0 (ImageNet EfficientNet-Lite0 weights), random, or a path to a B0 .pth or a facetune classifier to fine-tune.")
@click.option("--init-weights", type=click.Path(path_type=Path), help="Your own EfficientNet-B0 state dict (implies the full B0 form).")
@click.option("--teacher", type=click.Path(path_type=Path), help="Distil from this classifier checkpoint (one network or an ensemble) as well as the labels.")
@click.option("--distill", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Weight of the teacher's soft targets (with --teacher).")
@click.option("--temperature", default=2.0, show_default=True, type=click.FloatRange(0.1, 20), help="Distillation temperature (with --teacher).")
@click.option("--teacher-input", type=click.Choice(["augmented", "clean"]), default="augmented", show_default=True, help="What the teacher sees: each augmented batch, or the clean training images once (no per-step cost).")
@click.option("--patience", default=8, show_default=True, type=click.IntRange(1), help="Early-stop after this many epochs without val improvement.")
@click.option("--micro-batch", default=0, show_default=True, type=click.IntRange(0), help="Per-process forward size (0: batch size / processes); the rest is gradient accumulation.")
@TRAINING_RUN_OPTIONS
@handle_errors
def train_classifier_cmd(data: Path, out: Path, epochs: int, batch_size: int, lr: float, weight_decay: float, input_size: int, init: str, init_weights: Path | None, teacher: Path | None, distill: float, temperature: float, teacher_input: str, patience: int, micro_batch: int, seed: int, device: str, resume: bool, tiny: bool) -> None:
    """Train the EfficientNet-B0 emotion classifier on a faces cache.

    Under `torchrun --nproc_per_node N -m facetune train classifier ...` it trains with
    DistributedDataParallel; --batch-size stays the global batch whatever N is.
    """
    from ..classifier.train import ClassifierConfig, train_classifier

    arch = "efficientnet-b0-lite"
    if init_weights is not None:
        init, arch = str(init_weights), "efficientnet-b0"
    if teacher is not None and not teacher.is_file():
        raise FacetuneError(f"{teacher}: --teacher checkpoint not found")
    cfg = ClassifierConfig(
        input_size=input_size, arch=arch, init=init, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience,
        seed=seed, micro_batch=micro_batch, tiny=tiny, teacher=str(teacher) if teacher else "", distill=distill, temperature=temperature, teacher_input=teacher_input,
    )
    result = train_classifier(data, out, cfg, resume=resume, device=device, command=command_line())
    console.info(f"done: {result['epochs']} epochs, best val acc {result['best_val']:.4f} at epoch {result['best_epoch']}; model in {out / 'model.pt'}")


@train.command("ensemble")
@click.argument("members", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Ensemble checkpoint to write (fp16).")
@click.option("--data", "data", type=click.Path(path_type=Path), help="Faces cache: report each member's and the ensemble's validation accuracy.")
@OVERWRITE_OPTION
@handle_errors
def train_ensemble_cmd(members: tuple[Path, ...], out: Path, data: Path | None, force: bool) -> None:
    """Combine trained classifier checkpoints (MEMBERS) into one ensemble checkpoint.

    No training: the members' log-probabilities are averaged at prediction time. With --data
    the validation split (never the test split) shows whether the ensemble beats its members.
    """
    from ..classifier.inference import make_ensemble

    report = make_ensemble(list(members), out, data=data, command=command_line(), force=force)
    for m in report["members"]:
        console.out.print(f"member {m['path']}: val acc {m['val_accuracy']:.4f}")
    if report["ensemble"]:
        e = report["ensemble"]
        console.out.print(f"[bold]ensemble[/bold] of {e['networks']}: val acc ({'/'.join(e['classes'])}) [bold]{e['val_accuracy']:.4f}[/bold] on {e['n']:,} images")
    console.info(f"ensemble written to {out}")


@main.command("export-onnx")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="ONNX file to write (default: beside the checkpoint, same name, .onnx; with --int8, .int8.onnx).")
@click.option("--int8", "calibration", type=click.Path(path_type=Path), help="Write the int8 export instead, from the float export beside the checkpoint, calibrated on the training face crops in this folder (one sub-folder per class, e.g. ../shared/data/fer2013/train).")
@OVERWRITE_OPTION
@handle_errors
def export_onnx_cmd(checkpoint: Path, output: Path | None, calibration: Path | None, force: bool) -> None:
    """Export a classifier checkpoint to ONNX, for about 2× faster CPU inference in ONNX Runtime,
    or (--int8) its int8 twin, faster again on CPUs with int8 instructions.

    Training writes the float export itself; use this for older checkpoints. `classify` and
    `evaluate` use an export beside the checkpoint only while it matches the checkpoint's SHA-256.
    Needs the onnx package (pip install onnx).
    """
    from ..classifier.onnx_engine import export_onnx

    if calibration is None:
        out = export_onnx(checkpoint, output, force=force)
        console.info(f"ONNX export written to {out}")
        return
    from ..classifier.quantize import quantize_checkpoint

    out = quantize_checkpoint(checkpoint, calibration, output, force=force)
    console.info(f"int8 ONNX export written to {out}")


@main.command("export-generator")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Weights file to write (default: beside the checkpoint, same name, .npz).")
@OVERWRITE_OPTION
@handle_errors
def export_generator_cmd(checkpoint: Path, output: Path | None, force: bool) -> None:
    """Export a generator checkpoint's weights for torch-free composing (numpy, float64).

    Training writes this export itself; use this for older checkpoints. `compose` uses an export
    beside the checkpoint only while it matches the checkpoint's SHA-256.
    """
    from ..music.generator_numpy import export_generator

    out = output or checkpoint.with_suffix(".npz")
    refuse_overwrite(out, force)
    export_generator(checkpoint, out)
    console.info(f"numpy export written to {out}")


@prepare_data.command("music")
@click.argument("src", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Cache folder to write.")
@click.option("--labels", type=click.Path(path_type=Path), help="Labels CSV (file,quadrant or file,valence,arousal) for a plain MIDI folder.")
@click.option("--grid", type=click.Choice(["auto", "tracked", "nominal"]), default="auto", show_default=True, help="Beat grid: tracked from the notes (auto for EMOPIA) or the MIDI file's own.")
@click.option("--seed", default=0, show_default=True, help="Seed of the song-level split, where none is given.")
@REBUILD_OPTION
@handle_errors
def prepare_music_cmd(src: tuple[Path, ...], out: Path, labels: Path | None, grid: str, seed: int, force: bool) -> None:
    """POP909 (either layout), EMOPIA (midis/ + split/) or a labelled MIDI folder, one or more → melody-bar cache, split by song.

    POP909 songs get emotion pseudo-labels from a model fitted on the labelled sources, or "unknown".
    """
    from ..music.dataset import MusicPrepConfig, prepare_music

    manifest = prepare_music(list(src), out, MusicPrepConfig(grid=grid, seed=seed), labels=labels, force=force)
    if manifest.get("up_to_date"):
        return
    labeller = manifest.get("pseudo_labels", {})
    if labeller.get("unlabelled"):
        val = labeller.get("labelled_val")
        checked = f"; on labelled val clips it hears valence {val['valence_accuracy']:.2f}, arousal {val['arousal_accuracy']:.2f}" if val else ""
        console.info(f"{labeller['unlabelled']} unlabelled song(s) pseudo-labelled: {labeller.get('counts', {}) or labeller.get('note', '')}{checked}")
    console.out.print(console.music_counts_table(manifest))
    if manifest["skipped"]:
        console.warn(f"{len(manifest['skipped'])} file(s) skipped, e.g. {manifest['skipped'][0]['file']}: {manifest['skipped'][0]['error']}")
    console.info(f"{manifest['rows']:,} bars (with transpositions) written to {out}; beat grid: {manifest['grid']}")


@train.command("gan")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Music cache from `prepare-data music`.")
@click.option("--out", "out", default=Path("runs/gan"), show_default=True, type=click.Path(path_type=Path), help="Run folder for checkpoints.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1), help="Passes of --steps-per-epoch steps.")
@click.option("--batch-size", default=72, show_default=True, type=click.IntRange(2), help="Bars per step.")
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Learning rate of the generator and the discriminator (Adam).")
@click.option("--steps-per-epoch", default=0, show_default=True, type=click.IntRange(0), help="0 = one pass over the training bars.")
@click.option("--prev-bars", default=2, show_default=True, type=click.IntRange(1, 8), help="How many previous bars the conditioner reads.")
@click.option("--fm-weight", default=1.0, show_default=True, type=float, help="Weight of feature matching on the discriminator's first layer.")
@click.option("--mean-weight", default=1.0, show_default=True, type=float, help="Weight of matching the mean generated bar to the mean real bar.")
@click.option("--stats-weight", default=10.0, show_default=True, type=click.FloatRange(0), help="Weight of matching each emotion's bar statistics (key-relative pitch classes, register, rests, onsets, intervals) to the data's.")
@click.option("--nll-weight", default=0.5, show_default=True, type=click.FloatRange(0), help="Weight of the real bars' likelihood under the generator's scores (keeps it on the data's key, chord tones and restatements).")
@click.option("--interval-weight", default=0.0, show_default=True, type=click.FloatRange(0), help="Weight of matching each emotion's signed interval histogram (whole steps, half steps, repeats, leaps up and down) to the data's.")
@click.option("--pair-weight", default=0.0, show_default=True, type=click.FloatRange(0), help="Weight of matching each emotion's shares of move pairs (runs of steps one way, a step and back, a note struck three times) to the data's.")
@click.option("--emotion-dropout", default=0.1, show_default=True, type=click.FloatRange(0, 1), help="Share of labelled bars shown as 'unknown emotion', so the network learns that condition too (for guidance).")
@click.option("--lean-control", is_flag=True, help="Also condition the network on each song's major/minor lean (a third song control the composer sets per emotion).")
@click.option("--mode-mirror", is_flag=True, help="Also train on every song in its parallel mode (major tunes set in minor and minor ones in major).")
@click.option("--label-rule", default="mode-pace", show_default=True, type=click.Choice(["mode-pace", "lean-pace", "none"]), help="How songs without an emotion label (POP909) get one: valence from the key's mode (mode-pace) or from the melody's own major/minor lean (lean-pace), arousal from melody onsets per second; none leaves them 'unknown'.")
@click.option("--init", "init", default=None, type=click.Path(path_type=Path, exists=True, dir_okay=False), help="Fine-tune: start from this generator checkpoint (a fresh discriminator) or GAN training checkpoint (both networks).")
@click.option("--d-warmup", default=0, show_default=True, type=click.IntRange(0), help="Steps at the start in which only the discriminator learns (with --init and a generator checkpoint).")
@TRAINING_RUN_OPTIONS
@handle_errors
def train_gan_cmd(data: Path, out: Path, epochs: int, batch_size: int, lr: float, steps_per_epoch: int, prev_bars: int, fm_weight: float, mean_weight: float, stats_weight: float, nll_weight: float, interval_weight: float, pair_weight: float, emotion_dropout: float, lean_control: bool, mode_mirror: bool, label_rule: str, init: Path | None, d_warmup: int, seed: int, device: str, resume: bool, tiny: bool) -> None:
    """Train the MIDINet-style melody GAN on a music cache."""
    from ..music.train import GanConfig, train_gan

    cfg = GanConfig(epochs=epochs, batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch, prev_bars=prev_bars, fm_weight=fm_weight, mean_weight=mean_weight, stats_weight=stats_weight, nll_weight=nll_weight, interval_weight=interval_weight, pair_weight=pair_weight, emotion_dropout=emotion_dropout, lean_control=lean_control, mode_mirror=mode_mirror, label_rule=label_rule, init=str(init or ""), d_warmup=d_warmup, seed=seed, tiny=tiny)
    result = train_gan(data, out, cfg, resume=resume, device=device, command=command_line())
    console.info(f"done: {result['epochs']} epochs; generator in {out / 'generator.pt'}")


@train.command("note-head")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Music cache from `prepare-data music` (as the generator was trained on).")
@click.option("--generator", "generator", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Generator checkpoint whose GAN stays frozen (one with a note head gets a fresh one).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Run folder: generator.pt (with the head), generator.npz and last.pt.")
@click.option("--epochs", default=4, show_default=True, type=click.IntRange(1), help="Passes of --steps-per-epoch steps.")
@click.option("--steps-per-epoch", default=2000, show_default=True, type=click.IntRange(1), help="Head updates per epoch.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1), help="Bars per step.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True), help="Learning rate of the head (Adam).")
@click.option("--hidden", default=128, show_default=True, type=click.IntRange(1), help="Hidden width of the head.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the head's initialisation, the data order and the GAN's noise.")
@click.option("--mode-mirror", is_flag=True, help="Also train on every song in its parallel mode (major tunes set in minor and minor ones in major).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (made on the same generator file).")
@handle_errors
def train_note_head_cmd(data: Path, generator: Path, out: Path, epochs: int, steps_per_epoch: int, batch_size: int, lr: float, hidden: int, seed: int, mode_mirror: bool, resume: bool) -> None:
    """Train the note head, which draws the melody step by step from the GAN's scores, on a frozen generator (by likelihood)."""
    from ..music.train_note_head import NoteHeadConfig, train_note_head

    cfg = NoteHeadConfig(hidden=hidden, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr, seed=seed, mode_mirror=mode_mirror)
    result = train_note_head(data, generator, out, cfg, resume=resume, command=command_line())
    last = result["history"][-1] if result["history"] else {}
    console.info(f"done: {result['epochs']} epochs, val ce {last.get('val_ce', float('nan')):.3f} (GAN alone {last.get('val_gan_ce', float('nan')):.3f}); generator in {result['generator']}")
