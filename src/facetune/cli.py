"""The `facetune` command: parse, validate, call the Python API, print. Nothing else lives here."""
from __future__ import annotations

import functools
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__, console
from .errors import FacetuneError, refuse_overwrite

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


def _options(*options: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several click options as one decorator; --help lists them in the order given."""

    def apply(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


#: Options declared once for every command that takes them (one definition, one help text).
CLASSIFIER_OPTION = click.option("--classifier", type=click.Path(path_type=Path), help="Classifier checkpoint (default: the shipped model).")
ENGINE_OPTION = click.option("--engine", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True, help="auto: ONNX Runtime on the CPU when the checkpoint has an ONNX export beside it, else PyTorch.")
TRAINING_RUN_OPTIONS = _options(
    click.option("--seed", default=0, show_default=True),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.option("--resume", is_flag=True, help="Continue from OUT/last.pt."),
    click.option("--tiny", is_flag=True, hidden=True, help="A very small network (tests only)."),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="facetune")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress or logs.")
@click.option("-v", "--verbose", is_flag=True, help="More detail on stderr.")
def main(quiet: bool, verbose: bool) -> None:
    """facetune: a face in, music out. Photo → face → emotion → a 16-bar melody as MIDI.

    Exit codes: 0 all ok, 1 some inputs or the command failed, 2 usage error.
    """
    console.set_verbosity(quiet, verbose)
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary files are removed and only complete outputs remain."""
    raise KeyboardInterrupt


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
    from .faces.data import FacePrepConfig, prepare_faces
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
    from .classifier.train import ClassifierConfig, train_classifier

    arch = "efficientnet-b0-lite"
    if init_weights is not None:
        init, arch = str(init_weights), "efficientnet-b0"
    if teacher is not None and not teacher.is_file():
        raise FacetuneError(f"{teacher}: --teacher checkpoint not found")
    cfg = ClassifierConfig(
        input_size=input_size, arch=arch, init=init, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience,
        seed=seed, micro_batch=micro_batch, tiny=tiny, teacher=str(teacher) if teacher else "", distill=distill, temperature=temperature, teacher_input=teacher_input,
    )
    result = train_classifier(data, out, cfg, resume=resume, device=device, command=_command_line())
    console.info(f"done: {result['epochs']} epochs, best val acc {result['best_val']:.4f} at epoch {result['best_epoch']}; model in {out / 'model.pt'}")


@train.command("ensemble")
@click.argument("members", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Ensemble checkpoint to write (fp16).")
@click.option("--data", "data", type=click.Path(path_type=Path), help="Faces cache: report each member's and the ensemble's validation accuracy.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
@handle_errors
def train_ensemble_cmd(members: tuple[Path, ...], out: Path, data: Path | None, force: bool) -> None:
    """Combine trained classifier checkpoints (MEMBERS) into one ensemble checkpoint.

    No training: the members' log-probabilities are averaged at prediction time. With --data
    the validation split (never the test split) shows whether the ensemble beats its members.
    """
    from .classifier.inference import make_ensemble

    report = make_ensemble(list(members), out, data=data, command=_command_line(), force=force)
    for m in report["members"]:
        console.out.print(f"member {m['path']}: val acc {m['val_accuracy']:.4f}")
    if report["ensemble"]:
        e = report["ensemble"]
        console.out.print(f"[bold]ensemble[/bold] of {e['networks']}: val acc ({'/'.join(e['classes'])}) [bold]{e['val_accuracy']:.4f}[/bold] on {e['n']:,} images")
    console.info(f"ensemble written to {out}")


@main.command("export-onnx")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="ONNX file to write (default: beside the checkpoint, same name, .onnx).")
@click.option("--force", is_flag=True, help="Overwrite an existing export.")
@handle_errors
def export_onnx_cmd(checkpoint: Path, output: Path | None, force: bool) -> None:
    """Export a classifier checkpoint to ONNX, for about 2× faster CPU inference in ONNX Runtime.

    Training writes this export itself; use this for older checkpoints. `classify` and
    `evaluate` use an export beside the checkpoint only while it matches the checkpoint's SHA-256.
    Needs the onnx package (pip install onnx).
    """
    from .classifier.onnx_engine import export_onnx

    out = export_onnx(checkpoint, output, force=force)
    console.info(f"ONNX export written to {out}")


@prepare_data.command("music")
@click.argument("src", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Cache folder to write.")
@click.option("--labels", type=click.Path(path_type=Path), help="Labels CSV (file,quadrant or file,valence,arousal) for a plain MIDI folder.")
@click.option("--grid", type=click.Choice(["auto", "tracked", "nominal"]), default="auto", show_default=True, help="Beat grid: tracked from the notes (auto for EMOPIA) or the MIDI file's own.")
@click.option("--seed", default=0, show_default=True, help="Seed of the song-level split, where none is given.")
@click.option("--force", is_flag=True, help="Rebuild even if the cache is up to date.")
@handle_errors
def prepare_music_cmd(src: tuple[Path, ...], out: Path, labels: Path | None, grid: str, seed: int, force: bool) -> None:
    """POP909 (either layout), EMOPIA (midis/ + split/) or a labelled MIDI folder, one or more → melody-bar cache, split by song.

    POP909 songs get emotion pseudo-labels from a model fitted on the labelled sources, or "unknown".
    """
    from .music.dataset import MusicPrepConfig, prepare_music

    manifest = prepare_music(list(src), out, MusicPrepConfig(grid=grid, seed=seed), labels=labels, force=force)
    if manifest.get("up_to_date"):
        return
    from rich.table import Table

    table = Table(title="music cache: clips / bars (before transposition) per quadrant and split")
    table.add_column("quadrant")
    for s in manifest["counts"]:
        table.add_column(s, justify="right")
    for q in ("Q1", "Q2", "Q3", "Q4", "unknown"):
        table.add_row(q, *(f"{manifest['counts'][s][q]['clips']} / {manifest['counts'][s][q]['bars']:,}" for s in manifest["counts"]))
    labeller = manifest.get("pseudo_labels", {})
    if labeller.get("unlabelled"):
        val = labeller.get("labelled_val")
        checked = f"; on labelled val clips it hears valence {val['valence_accuracy']:.2f}, arousal {val['arousal_accuracy']:.2f}" if val else ""
        console.info(f"{labeller['unlabelled']} unlabelled song(s) pseudo-labelled: {labeller.get('counts', {}) or labeller.get('note', '')}{checked}")
    console.out.print(table)
    if manifest["skipped"]:
        console.warn(f"{len(manifest['skipped'])} file(s) skipped, e.g. {manifest['skipped'][0]['file']}: {manifest['skipped'][0]['error']}")
    console.info(f"{manifest['rows']:,} bars (with transpositions) written to {out}; beat grid: {manifest['grid']}")


@train.command("gan")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path), help="Music cache from `prepare-data music`.")
@click.option("--out", "out", default=Path("runs/gan"), show_default=True, type=click.Path(path_type=Path), help="Run folder for checkpoints.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=72, show_default=True, type=click.IntRange(2))
@click.option("--lr", default=2e-4, show_default=True, type=float)
@click.option("--steps-per-epoch", default=0, show_default=True, type=click.IntRange(0), help="0 = one pass over the training bars.")
@click.option("--prev-bars", default=2, show_default=True, type=click.IntRange(1, 8), help="How many previous bars the conditioner reads.")
@click.option("--fm-weight", default=1.0, show_default=True, type=float, help="Weight of feature matching on the discriminator's first layer.")
@click.option("--mean-weight", default=1.0, show_default=True, type=float, help="Weight of matching the mean generated bar to the mean real bar.")
@click.option("--stats-weight", default=10.0, show_default=True, type=click.FloatRange(0), help="Weight of matching each emotion's bar statistics (key-relative pitch classes, register, rests, onsets) to the data's.")
@click.option("--nll-weight", default=0.5, show_default=True, type=click.FloatRange(0), help="Weight of the real bars' likelihood under the generator's scores (keeps it on the data's key, chord tones and restatements).")
@click.option("--emotion-dropout", default=0.1, show_default=True, type=click.FloatRange(0, 1), help="Share of labelled bars shown as 'unknown emotion', so the network learns that condition too (for guidance).")
@TRAINING_RUN_OPTIONS
@handle_errors
def train_gan_cmd(data: Path, out: Path, epochs: int, batch_size: int, lr: float, steps_per_epoch: int, prev_bars: int, fm_weight: float, mean_weight: float, stats_weight: float, nll_weight: float, emotion_dropout: float, seed: int, device: str, resume: bool, tiny: bool) -> None:
    """Train the MIDINet-style melody GAN on a music cache."""
    from .music.train import GanConfig, train_gan

    cfg = GanConfig(epochs=epochs, batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch, prev_bars=prev_bars, fm_weight=fm_weight, mean_weight=mean_weight, stats_weight=stats_weight, nll_weight=nll_weight, emotion_dropout=emotion_dropout, seed=seed, tiny=tiny)
    result = train_gan(data, out, cfg, resume=resume, device=device, command=_command_line())
    console.info(f"done: {result['epochs']} epochs; generator in {out / 'generator.pt'}")


def _write_text(path: Path | None, text: str, force: bool) -> None:
    """Results to stdout, or atomically to a file that is not silently overwritten."""
    from .checkpoints import atomic_write_bytes

    if path is None or str(path) == "-":
        click.echo(text, nl=False)
        return
    refuse_overwrite(path, force)
    atomic_write_bytes(path, text.encode())


def _inputs(paths: tuple[str, ...]) -> list[tuple[Any, str, Path]]:
    """Expand CLI inputs: files, folders, globs and '-' (an image on stdin) → (source, name, relative path)."""
    from .faces.photos import iter_image_files

    out: list[tuple[Any, str, Path]] = []
    for path, rel in iter_image_files(list(paths)):
        if str(path) == "-":
            out.append((sys.stdin.buffer.read(), "-", Path("stdin")))
        else:
            out.append((path, str(path), rel))
    return out


@main.command("classify")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True, help="table for people; json (JSON Lines) or csv for scripts.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the results to this file instead of stdout (JSON Lines, or CSV with --format csv).")
@click.option("--all-faces", is_flag=True, help="Report every face, not just the largest.")
@click.option("--no-detect", is_flag=True, help="The images are already face crops: use them whole.")
@click.option("--classes", help="Restrict to these classes (comma-separated; default: the model's default set).")
@CLASSIFIER_OPTION
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Processes decoding images.")
@click.option("--device", default="cpu", show_default=True, help="cpu, auto, cuda, cuda:N or mps.")
@ENGINE_OPTION
@click.option("--force", is_flag=True, help="Overwrite the -o file.")
@handle_errors
def classify_cmd(inputs: tuple[str, ...], fmt: str, output: Path | None, all_faces: bool, no_detect: bool, classes: str | None, classifier: Path | None, batch_size: int, workers: int, device: str, engine: str, force: bool) -> None:
    """Photo → face → emotion, with probabilities. INPUTS are files, folders (recursive) or globs.

    Exit code 0 if every input was classified, 1 if any failed.
    """
    from .api import iter_classify, load_classifier

    if output is not None and str(output) != "-":
        refuse_overwrite(output, force)
    items = _inputs(inputs)
    class_list = [c.strip() for c in classes.split(",")] if classes else None
    clf = load_classifier(str(classifier) if classifier else None, device, engine)
    console.debug(f"classifier {clf.path}: {clf.engine} engine, {len(clf.input_sizes)} network(s)")
    active = clf.active(class_list)
    records: list[dict[str, Any]] = []
    failed = 0
    stream_json = fmt == "json" and output is None
    with console.progress() as prog:
        task = prog.add_task("classifying", total=len(items))
        for _, recs in iter_classify([s for s, _, _ in items], classifier=str(classifier) if classifier else None, classes=active, all_faces=all_faces, detect=False if no_detect else None, batch_size=batch_size, workers=workers, device=device, names=[n for _, n, _ in items], engine=engine):
            prog.advance(task)
            for r in recs:
                failed += r.error is not None
                if r.error and fmt == "table":
                    console.error(r.error)
                if stream_json:
                    click.echo(console.records_text([r.to_dict()], "json", active), nl=False)
                else:
                    records.append(r.to_dict())
    if fmt == "table" and output is None:
        console.out.print(console.classify_table(records, active))
    elif not stream_json:
        _write_text(output, console.records_text(records, "json" if fmt == "table" else fmt, active), force)
    if failed:
        console.info(f"{failed} of {len(items)} input(s) failed")
        sys.exit(EXIT_FAILED)


def _check_form(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed --form is a usage error (exit 2), caught before any model loads."""
    if value is None:
        return None
    from .music.form import parse_form

    try:
        parse_form(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@main.command("compose")
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="MIDI file to write for one input ('-' for stdout).")
@click.option("--out-dir", type=click.Path(path_type=Path), help="Folder for many inputs: OUT_DIR/<relative path>/<stem>.mid.")
@click.option("--emotion", help="Skip the photo: happy, sad, angry, calm, any FER class, or Q1-Q4.")
@click.option("--seed", default=0, show_default=True, help="Base seed; the same seed gives byte-identical MIDI.")
@click.option("--bars", default=16, show_default=True, type=click.IntRange(1, 256), help="Length in bars of 4/4.")
@click.option("--tempo", type=click.FloatRange(20, 400), help="Beats per minute (default: set by the emotion).")
@click.option("--no-chords", is_flag=True, help="Leave out the chord accompaniment track.")
@click.option("--form", callback=_check_form, help="Phrase form of the song, one letter per 4-bar phrase: AABA, AA'BA, ABAB', AABB ... (default: chosen by the seed).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: one JSON Lines record per input on stdout.")
@click.option("--no-detect", is_flag=True, help="The images are already face crops: use them whole.")
@click.option("--classes", help="Emotions the classifier may answer (comma-separated; default: the model's default set).")
@click.option("--classifier", type=click.Path(path_type=Path), help="Classifier checkpoint (default: the shipped model).")
@click.option("--generator", type=click.Path(path_type=Path), help="Generator checkpoint (default: the shipped model).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Processes decoding images.")
@click.option("--device", default="cpu", show_default=True, help="Device for the classifier: cpu, auto, cuda, cuda:N or mps.")
@click.option("--png", is_flag=True, help="Also save a piano-roll picture beside each MIDI file (.png).")
@click.option("--wav", is_flag=True, help="Also render audio beside each MIDI file (.wav).")
@click.option("--preview", is_flag=True, help="Show the piano roll in the terminal (one input).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@handle_errors
def compose_cmd(inputs: tuple[str, ...], output: Path | None, out_dir: Path | None, emotion: str | None, seed: int, bars: int, tempo: float | None, no_chords: bool, form: str | None, fmt: str, no_detect: bool, classes: str | None, classifier: Path | None, generator: Path | None, batch_size: int, workers: int, device: str, png: bool, wav: bool, preview: bool, force: bool) -> None:
    """Photo → emotion → a new melody over chords, as MIDI.

    \b
    facetune compose face.jpg -o song.mid
    facetune compose --emotion sad -o sad.mid
    facetune compose photos/ 'more/*.png' --out-dir songs/

    Exit code 0 if every input was composed (or skipped as done), 1 if any failed.
    """
    from .api import ComposeSettings, compose, compose_record, extra_outputs, write_song

    if emotion and inputs:
        raise click.UsageError("give photos or --emotion, not both")
    if not emotion and not inputs:
        raise click.UsageError("give a photo (or folders of photos), or --emotion")
    if output and out_dir:
        raise click.UsageError("use -o for one input or --out-dir for many, not both")
    settings = ComposeSettings(
        seed=seed, bars=bars, tempo=tempo, form=form, chords=not no_chords, png=png, wav=wav, force=force,
        classifier=str(classifier) if classifier else None, generator=str(generator) if generator else None,
        classes=tuple(c.strip() for c in classes.split(",")) if classes else None, detect=False if no_detect else None,
        device=device, batch_size=batch_size, workers=workers,
    )
    if emotion or (len(inputs) == 1 and output is not None and (inputs[0] == "-" or (not Path(inputs[0]).is_dir() and not any(c in inputs[0] for c in "*?[")))):
        if output is None:
            raise click.UsageError("say where to write the MIDI: -o FILE (or -o - for stdout)")
        image: Any = None if emotion else (sys.stdin.buffer.read() if inputs[0] == "-" else inputs[0])
        to_stdout = str(output) == "-"
        if to_stdout and (png or wav):
            raise click.UsageError("--png and --wav need -o FILE, not stdout")
        extras = extra_outputs(output, png, wav) if not to_stdout else []
        for extra in extras:
            refuse_overwrite(extra, force)
        res = compose(
            image, None if to_stdout else output, emotion=emotion, seed=seed, bars=bars, tempo=tempo, form=form, chords=settings.chords,
            classifier=settings.classifier, generator=settings.generator, classes=settings.classes, detect=settings.detect, device=device, force=force,
        )
        if to_stdout:
            sys.stdout.buffer.write(res.composition.midi_bytes(settings.chords))
            sys.stdout.buffer.flush()
        write_song(res.composition, None, settings, extras)
        if preview:
            from .render import terminal_preview

            (console.err if to_stdout else console.out).print(terminal_preview(res.composition, chords=settings.chords))
        if fmt == "json":
            import json

            (console.err if to_stdout else console.out).print(json.dumps(compose_record(res)), highlight=False, soft_wrap=True)
        else:
            _print_summary(res, to_stdout)
        return
    if out_dir is None:
        raise click.UsageError("several inputs (or a folder) need --out-dir DIR")
    if preview:
        raise click.UsageError("--preview shows one composition; use it with -o")
    _compose_batch(inputs, out_dir, settings, fmt)


def _print_summary(res: Any, to_stderr: bool) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if res.input:
        table.add_row("photo", res.input)
        table.add_row("face", " ".join(map(str, res.face)) if res.face else "whole image")
        table.add_row("probabilities", "  ".join(f"{k} {v:.2f}" for k, v in res.probabilities.items()))
    from .emotions import QUADRANT_INFO

    table.add_row("emotion", f"{res.emotion} → {res.quadrant} ({QUADRANT_INFO[res.quadrant].mood})")
    table.add_row("key", res.key)
    table.add_row("form", f"{res.form}  (4-bar phrases)")
    table.add_row("chords", " | ".join(" ".join(res.chords[i : i + 4]) for i in range(0, len(res.chords), 4)))
    table.add_row("tempo", f"{res.tempo:g} BPM, {res.bars} bars of 4/4, seed {res.seed}")
    table.add_row("output", res.output or "stdout")
    (console.err if to_stderr else console.out).print(table)


def _compose_batch(inputs: tuple[str, ...], out_dir: Path, settings: Any, fmt: str) -> None:
    """Many photos → OUT_DIR/<relative path>.mid: print each record as it comes, then a summary."""
    import json
    from collections import Counter

    from .api import compose_many

    counts: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    for rec in compose_many(_inputs(inputs), out_dir, settings):
        counts[rec["status"]] += 1
        if rec["status"] == "done":
            emotions[rec["emotion"]] += 1
        if fmt == "json":
            click.echo(json.dumps(rec))
        elif rec["status"] == "failed":
            console.error(rec["error"])
    done, skipped, failed = counts["done"], counts["skipped"], counts["failed"]
    if fmt != "json" and not console.is_quiet():
        from rich.table import Table

        table = Table(title=f"compose → {out_dir}")
        for col in ("done", "skipped", "failed", *sorted(emotions)):
            table.add_column(col, justify="right")
        table.add_row(str(done), str(skipped), str(failed), *(str(emotions[e]) for e in sorted(emotions)))
        console.err.print(table)
    if failed:
        sys.exit(EXIT_FAILED)


@main.group("evaluate")
def evaluate() -> None:
    """The figures that tell you how good a model is."""


@evaluate.command("classifier")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]), help="Split of a prepared cache.")
@click.option("--classes", help="Classes to score (default: the classifier's default set, present in the data).")
@CLASSIFIER_OPTION
@click.option("--no-tta", is_flag=True, help="No horizontal-flip test-time augmentation.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@ENGINE_OPTION
@handle_errors
def evaluate_classifier_cmd(data: Path, split: str, classes: str | None, classifier: Path | None, no_tta: bool, fmt: str, device: str, engine: str) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix.

    DATA is a prepared faces cache (its --split) or an image-folder tree with one folder per class
    (images are used whole, as face crops).
    """
    import json

    from .api import load_classifier
    from .evaluation import evaluate_classifier

    clf = load_classifier(str(classifier) if classifier else None, device, engine)
    console.debug(f"classifier {clf.path}: {clf.engine} engine, {len(clf.input_sizes)} network(s)")
    result = evaluate_classifier(clf, data, split=split, classes=[c.strip() for c in classes.split(",")] if classes else None, tta=not no_tta)
    if fmt == "json":
        click.echo(json.dumps(result))
        return
    from rich.table import Table

    console.out.print(f"[bold]{result['data']}[/bold]: {result['n']:,} images, accuracy [bold]{result['accuracy']:.4f}[/bold], macro F1 {result['macro_f1']:.4f}")
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, m in result["per_class"].items():
        table.add_row(c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.out.print(table)
    cm = Table(title="confusion (rows: true, columns: predicted)")
    cm.add_column("")
    for c in result["classes"]:
        cm.add_column(c, justify="right")
    for c, row in zip(result["classes"], result["confusion"]):
        cm.add_row(c, *map(str, row))
    console.out.print(cm)


@evaluate.command("music")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--generate", "generate", default=0, show_default=True, type=click.IntRange(0), help="Compose N pieces per emotion (seeds 0..N-1) and score those.")
@click.option("--emotions", default="happy,sad,angry,calm", show_default=True, help="With --generate: the emotions to compose.")
@click.option("--reference", multiple=True, type=click.Path(path_type=Path), help="A music cache: also score its melodies (per quadrant, untransposed) for comparison. Repeatable; clips without a quadrant are 'unlabelled'.")
@click.option("--split", "split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="With --reference: which split's melodies.")
@click.option("--novelty", type=click.Path(path_type=Path), help="With --generate: a music cache; report the share of generated 4-bar phrases found (up to transposition) in its untransposed training melodies.")
@click.option("--generator", type=click.Path(path_type=Path), help="Generator checkpoint (default: the shipped model).")
@click.option("--track", default=0, show_default=True, help="Track to score in MIDI files (0 = the melody); -1 for all tracks.")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "json", "csv"]), default="table", show_default=True, help="table (text is the same), json, or csv (one row per source, group and metric).")
@handle_errors
def evaluate_music_cmd(paths: tuple[Path, ...], generate: int, emotions: str, reference: tuple[Path, ...], split: str, novelty: Path | None, generator: Path | None, track: int, fmt: str) -> None:
    """Per quadrant: pitch-class entropy, scale consistency, empty-beat rate, polyphony, groove consistency,
    rhythm and motif repeat, phrase similarity, pitch range, notes per bar, onset density and
    major/minor lean (Krumhansl–Kessler).

    PATHS are MIDI files or folders, grouped by the Q1..Q4 prefix or an emotion word in their names.
    Repetition measures use the first 16 bars from the first note: rhythm repeat = share of bars
    (with 2+ onsets, from the 2nd) whose onsets repeat an earlier bar's; motif repeat = the same up to
    transposition, pitches included; phrase similarity = best step agreement of 4-bar phrases 2-4 with
    an earlier phrase under any transposition. Means leave out pieces where a measure is undefined.
    Unreadable files are reported and the exit code is 1.
    """
    import json

    from .evaluation import evaluate_music

    if not paths and not generate and not reference:
        raise click.UsageError("give MIDI files or folders, --generate N, or --reference CACHE")
    if novelty and not generate:
        raise click.UsageError("--novelty needs --generate N")
    result = evaluate_music(
        list(paths),
        generate=generate,
        emotions=[e.strip() for e in emotions.split(",") if e.strip()],
        reference=list(reference),
        split=split,
        generator=str(generator) if generator else None,
        track=None if track < 0 else track,
        novelty=novelty,
    )
    nov = result.get("novelty")
    if fmt == "json":
        click.echo(json.dumps(result))
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["source", "group", "n", "metric", "mean", "std", "valid"])
        for source, groups in result["groups"].items():
            for g, agg in groups.items():
                for m, mean in agg["mean"].items():
                    w.writerow([source, g, agg["n"], m, "" if mean is None else mean, "" if agg["std"][m] is None else agg["std"][m], agg["valid"][m]])
        if nov:
            for g, v in {**nov["groups"], "all": nov["all"]}.items():
                w.writerow([f"novelty vs {nov['cache']} (train)", g, v["phrases"], "phrase_novelty", "" if v["phrase_novelty"] is None else v["phrase_novelty"], "", v["phrases"]])
        click.echo(buf.getvalue(), nl=False)
    else:
        from rich.table import Table

        def cell(v: float | None) -> str:
            return "–" if v is None else f"{v:.3f}"

        for source, groups in result["groups"].items():
            if not groups:
                continue
            metrics = list(next(iter(groups.values()))["mean"])
            table = Table(title=f"{source}: means per group")
            table.add_column("metric", no_wrap=True)
            for g in groups:
                table.add_column(f"{g}\nn={groups[g]['n']}", justify="right")
            for m in metrics:
                table.add_row(m, *(cell(groups[g]["mean"][m]) for g in groups))
            console.out.print(table)
        if nov:
            table = Table(title=f"phrase novelty: generated 4-bar phrases found in {nov['cache']} (train, {nov['training_phrases']:,} distinct phrases)")
            for col in ("group", "phrases", "found", "share found"):
                table.add_column(col, justify="left" if col == "group" else "right")
            for g, v in {**nov["groups"], "all": nov["all"]}.items():
                table.add_row(g, str(v["phrases"]), str(v["found"]), cell(v["phrase_novelty"]))
            console.out.print(table)
        for e in result.get("errors", []):
            console.error(e["error"])
    if result.get("errors"):
        sys.exit(EXIT_FAILED)


@main.command("models")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def models_cmd(fmt: str) -> None:
    """List the shipped models and those in $FACETUNE_HOME, with their card figures."""
    import json

    from .registry import list_models

    found = list_models()
    if fmt == "json":
        click.echo(json.dumps(found))
        return
    from rich.table import Table

    table = Table(title="models")
    for col in ("kind", "name", "classes / conditions", "figures", "path"):
        table.add_column(col, overflow="fold")
    for m in found:
        table.add_row(m["kind"], m["name"], m["describes"], m["figures"], m["path"])
    console.out.print(table)
