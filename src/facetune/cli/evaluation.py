"""`facetune evaluate` and `facetune models`: how good the models are, and which are there."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import console
from .common import (
    CLASSIFIER_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    check_classes,
    EXIT_FAILED,
    GENERATOR_OPTION,
    handle_errors,
    main,
)


@main.group("evaluate")
def evaluate() -> None:
    """The figures that tell you how good a model is."""


@evaluate.command("classifier")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]), help="Split of a prepared cache.")
@click.option("--classes", callback=check_classes, help="Classes to score (comma-separated FER classes, or 'all'; default: the classifier's default set, present in the data).")
@CLASSIFIER_OPTION
@click.option("--no-tta", is_flag=True, help="No horizontal-flip test-time augmentation.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@DEVICE_OPTION
@ENGINE_OPTION
@handle_errors
def evaluate_classifier_cmd(data: Path, split: str, classes: tuple[str, ...] | None, classifier: Path | None, no_tta: bool, fmt: str, device: str, engine: str) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix.

    DATA is a prepared faces cache (its --split) or an image-folder tree with one folder per class
    (images are used whole, as face crops).
    """
    import json

    from ..api import load_classifier
    from ..classifier.evaluate import evaluate_classifier

    clf = load_classifier(str(classifier) if classifier else None, device, engine)
    console.debug(f"classifier {clf.path}: {clf.engine} engine, {len(clf.input_sizes)} network(s)")
    result = evaluate_classifier(clf, data, split=split, classes=list(classes) if classes else None, tta=not no_tta)
    if fmt == "json":
        click.echo(json.dumps(result))
        return
    for part in console.classifier_report(result):
        console.out.print(part)


@evaluate.command("music")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--generate", "generate", default=0, show_default=True, type=click.IntRange(0), help="Compose N pieces per emotion (seeds 0..N-1) and score those.")
@click.option("--emotions", default="happy,sad,angry,calm", show_default=True, help="With --generate: the emotions to compose.")
@click.option("--reference", multiple=True, type=click.Path(path_type=Path), help="A music cache: also score its melodies (per quadrant, untransposed) for comparison. Repeatable; clips without a quadrant are 'unlabelled'.")
@click.option("--split", "split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True, help="With --reference: which split's melodies.")
@click.option("--novelty", type=click.Path(path_type=Path), help="With --generate: a music cache; report the share of generated 4-bar phrases found (up to transposition) in its untransposed training melodies.")
@click.option("--pop909", "pop909", type=click.Path(path_type=Path, file_okay=False), default=None, help="A POP909 folder (structure layout, NNN/melody.txt): also score 200 of its sung melodies (a seeded choice), a column beside the generated ones.")
@GENERATOR_OPTION
@click.option("--track", default=0, show_default=True, help="Track to score in MIDI files (0 = the melody); -1 for all tracks.")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "json", "csv"]), default="table", show_default=True, help="table (text is the same), json, or csv (one row per source, group and metric).")
@handle_errors
def evaluate_music_cmd(paths: tuple[Path, ...], generate: int, emotions: str, reference: tuple[Path, ...], split: str, novelty: Path | None, pop909: Path | None, generator: Path | None, track: int, fmt: str) -> None:
    """Per quadrant: pitch-class entropy, scale consistency, empty-beat rate, polyphony, groove consistency,
    rhythm and motif repeat, phrase similarity, pitch range, notes per bar, onset density and
    major/minor lean (Krumhansl–Kessler).

    PATHS are MIDI files or folders, grouped by the Q1..Q4 prefix or an emotion word in their names.
    Repetition measures use the first 16 bars from the first note: rhythm repeat = share of bars
    (with 2+ onsets, from the 2nd) whose onsets repeat an earlier bar's; motif repeat = the same up to
    transposition, pitches included; phrase similarity = best step agreement of 4-bar phrases 2-4 with
    an earlier phrase under any transposition. Means leave out pieces where a measure is undefined.
    Unreadable files are reported and the exit code is 1.

    Generated melodies (and --pop909's) also get the melody-line measures of issue 22, on the same
    window: mean |interval|, shares of steps (<= 2 semitones), leaps (>= 5) and leaps over an octave,
    spikes (a note a fifth or more from both neighbours, on one side), range, largest leap, leap
    recovery, onsets on the "and" of a beat, notes-per-bar spread, silent bars, literal copies (bars
    equal to an earlier bar, untransposed), looped phrases, runs of one pitch, polyphony, and
    below_accompaniment: the share of melody notes under the chord track's top note.
    """
    import json

    from ..music.evaluate import evaluate_music

    if not paths and not generate and not reference and not pop909:
        raise click.UsageError("give MIDI files or folders, --generate N, --reference CACHE or --pop909 DIR")
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
        pop909=pop909,
    )
    if fmt == "json":
        click.echo(json.dumps(result))
    elif fmt == "csv":
        click.echo(console.music_csv(result), nl=False)
    else:
        for part in console.music_report(result):
            console.out.print(part)
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

    from ..registry import list_models

    found = list_models()
    if fmt == "json":
        click.echo(json.dumps(found))
        return
    console.out.print(console.models_table(found))
