"""The `facetune` command: parse, validate, call the Python API, print. Nothing else lives here."""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__, console
from .errors import FacetuneError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _command_line() -> str:
    return "facetune " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn FacetuneError into one red line and exit 1; Ctrl-C into exit 130. Never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FacetuneError as exc:
            console.error(str(exc))
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            console.error("interrupted")
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="facetune")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress or logs.")
@click.option("-v", "--verbose", is_flag=True, help="More detail on stderr.")
def main(quiet: bool, verbose: bool) -> None:
    """facetune: a face in, music out. Photo → face → emotion → a 16-bar melody as MIDI.

    Exit codes: 0 all ok, 1 some inputs or the command failed, 2 usage error.
    """
    console.set_verbosity(quiet, verbose)


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
@click.option("--force", is_flag=True, help="Rebuild even if the cache is up to date.")
@handle_errors
def prepare_faces_cmd(src: Path, out: Path, classes: str, val_fraction: float, seed: int, size: int, force: bool) -> None:
    """FER2013 image folders (train/<class>/, test/<class>/) or fer2013.csv → faces cache.

    Drops near-blank images and every test image pixel-identical to a train image.
    """
    from .data import FacePrepConfig, prepare_faces
    from .emotions import parse_classes

    try:
        names = parse_classes(classes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--classes") from None
    manifest = prepare_faces(src, out, FacePrepConfig(names, val_fraction, seed, size), force=force)
    if manifest.get("up_to_date"):
        return
    console.out.print(_counts_table(manifest))
    d = manifest["dropped"]
    console.info(
        f"dropped {d['test_identical_to_train']} test images identical to a train image, "
        f"{d['near_blank_train'] + d['near_blank_test']} near-blank images; cache written to {out}"
    )


def _counts_table(manifest: dict[str, Any]) -> Any:
    from rich.table import Table

    counts = manifest["counts"]
    splits = list(counts)
    table = Table(title=f"{manifest['kind']} cache: counts per class and split")
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    labels = list(next(iter(counts.values())).keys())
    for c in labels:
        table.add_row(c, *(f"{counts[s].get(c, 0):,}" for s in splits))
    table.add_row("[bold]total", *(f"[bold]{sum(counts[s].values()):,}" for s in splits))
    return table


@main.group("train")
def train() -> None:
    """Train the emotion classifier or the melody GAN."""


@train.command("classifier")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Faces cache from `prepare-data faces`.")
@click.option("--out", "out", default=Path("runs/classifier"), show_default=True, type=click.Path(path_type=Path), help="Run folder for checkpoints.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--weight-decay", default=0.05, show_default=True, type=float)
@click.option("--input-size", default=64, show_default=True, type=click.IntRange(32, 512), help="Network input side in pixels.")
@click.option("--init", "init", default="lite0", show_default=True, help="lite0 (ImageNet EfficientNet-Lite0 weights), random, or a path to a B0 .pth.")
@click.option("--init-weights", type=click.Path(path_type=Path), help="Your own EfficientNet-B0 state dict (implies the full B0 form).")
@click.option("--patience", default=8, show_default=True, type=click.IntRange(1), help="Early-stop after this many epochs without val improvement.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--tiny", is_flag=True, hidden=True, help="A very small network (tests only).")
@handle_errors
def train_classifier_cmd(data: Path, out: Path, epochs: int, batch_size: int, lr: float, weight_decay: float, input_size: int, init: str, init_weights: Path | None, patience: int, seed: int, device: str, resume: bool, tiny: bool) -> None:
    """Train the EfficientNet-B0 emotion classifier on a faces cache."""
    from .classifier import ClassifierConfig, train_classifier

    arch = "efficientnet-b0-lite"
    if init_weights is not None:
        init, arch = str(init_weights), "efficientnet-b0"
    cfg = ClassifierConfig(input_size=input_size, arch=arch, init=init, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience, seed=seed, tiny=tiny)
    result = train_classifier(data, out, cfg, resume=resume, device=device, command=_command_line())
    console.info(f"done: {result['epochs']} epochs, best val acc {result['best_val']:.4f} at epoch {result['best_epoch']}; model in {out / 'model.pt'}")
