"""`facetune classify` and `facetune compose`: photos in, emotions and songs out."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import console
from ..errors import refuse_overwrite
from .common import (
    CLASSIFIER_OPTION,
    DEVICE_OPTION,
    ENGINE_OPTION,
    EXIT_FAILED,
    GENERATOR_OPTION,
    MAX_BYTES_OPTION,
    OVERWRITE_OPTION,
    SHARD_OPTION,
    check_classes,
    check_emotion,
    check_form,
    check_output_file,
    own_inputs,
    expand_inputs,
    handle_errors,
    main,
    read_stdin,
    write_text,
)
from .scale import RAY_OPTION, batch_records, check_out_dir, check_ray

BATCH_SIZE_HELP = "Face crops classified together (larger: faster, more memory)."


@main.command("classify")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), help="table for people; json (JSON Lines) or csv for scripts. (default: table; with -o, csv for a .csv name, else json)")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the results to this file instead of stdout (CSV for a .csv name or --format csv, else JSON Lines).")
@click.option("--all-faces", is_flag=True, help="Report every face, not just the largest.")
@click.option("--no-detect", is_flag=True, help="The images are already face crops: use them whole.")
@click.option("--classes", callback=check_classes, help="Restrict to these classes (comma-separated FER classes, or 'all'; default: the model's default set).")
@CLASSIFIER_OPTION
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(1), help=BATCH_SIZE_HELP)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Processes decoding images.")
@DEVICE_OPTION
@ENGINE_OPTION
@MAX_BYTES_OPTION
@SHARD_OPTION
@OVERWRITE_OPTION
@handle_errors
def classify_cmd(inputs: tuple[str, ...], fmt: str | None, output: Path | None, all_faces: bool, no_detect: bool, classes: tuple[str, ...] | None, classifier: Path | None, batch_size: int, workers: int, device: str, engine: str, max_bytes: int, shard: tuple[int, int], force: bool) -> None:
    """Photo → face → emotion, with probabilities. INPUTS are files, folders (recursive), globs,
    or - for an image on stdin.

    Exit code 0 if every input was classified, 1 if any failed, 2 on a usage error.
    """
    from ..api import iter_classify, load_classifier

    check_output_file(output)
    if fmt is None:
        fmt = "table" if output is None else ("csv" if output.suffix.lower() == ".csv" else "json")
    if output is not None and str(output) != "-":
        refuse_overwrite(output, force)
    items = own_inputs(expand_inputs(inputs, max_bytes), shard)
    class_list = list(classes) if classes else None
    clf = load_classifier(str(classifier) if classifier else None, device, engine)
    console.debug(f"classifier {clf.path}: {clf.engine} engine, {len(clf.input_sizes)} network(s)")
    active = clf.active(class_list)
    records: list[dict[str, Any]] = []
    failed = 0
    stream_json = fmt == "json" and output is None
    with console.progress() as prog:
        task = prog.add_task("classifying", total=len(items))

        def read(i: int, error: str | None) -> None:  # the bar moves, and failures show, as each input is read
            prog.advance(task)
            if error and fmt == "table":
                console.error(error)

        for _, recs in iter_classify([s for s, _, _ in items], classifier=str(classifier) if classifier else None, classes=active, all_faces=all_faces, detect=False if no_detect else None, batch_size=batch_size, workers=workers, device=device, names=[n for _, n, _ in items], engine=engine, max_bytes=max_bytes, on_read=read):
            for r in recs:
                failed += r.error is not None
                if stream_json:
                    click.echo(console.records_text([r.to_dict()], "json", active), nl=False)
                else:
                    records.append(r.to_dict())
    if fmt == "table" and output is None:
        console.out.print(console.classify_table(records, active))
    elif not stream_json:
        write_text(output, console.records_text(records, fmt if fmt != "table" else "json", active), force)
    if failed:
        console.info(f"{failed} of {len(items)} input(s) failed")
        sys.exit(EXIT_FAILED)


@main.command("compose")
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="MIDI file to write for one input ('-' for stdout; a .musicxml name writes the lead sheet instead).")
@click.option("--out-dir", callback=check_out_dir, help="Folder for many inputs: OUT_DIR/<relative path>/<stem>.mid (with --ray, also a URI: s3://bucket/songs).")
@click.option("--emotion", callback=check_emotion, help="Skip the photo: happy, sad, angry, calm, any FER class, or Q1-Q4.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Base seed (≥ 0). With photos, each song's seed is a hash of this and the photo's bytes: the same photo gives the same song anywhere; with --emotion, the song's seed.")
@click.option("--bars", default=16, show_default=True, type=click.IntRange(1, 256), help="Length in bars of 4/4.")
@click.option("--tempo", type=click.FloatRange(20, 400), help="Beats per minute (default: set by the emotion).")
@click.option("--no-chords", is_flag=True, help="Leave out the chord accompaniment track.")
@click.option("--form", callback=check_form, help="Phrase form of the song, one letter per 4-bar phrase: AABA, AA'BA, ABAB', AABB ... (default: chosen by the seed).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True, help="text for people; json (one JSON Lines record per input) or csv for scripts, on stdout.")
@click.option("--no-detect", is_flag=True, help="The images are already face crops: use them whole.")
@click.option("--classes", callback=check_classes, help="Emotions the classifier may answer (comma-separated FER classes, or 'all'; default: the model's default set).")
@CLASSIFIER_OPTION
@GENERATOR_OPTION
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1), help=BATCH_SIZE_HELP)
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0), help="Processes decoding images.")
@DEVICE_OPTION
@MAX_BYTES_OPTION
@click.option("--retry-failed", is_flag=True, help="With --out-dir: try again inputs that failed in an earlier run though their content is unchanged (OUT_DIR/.facetune-failed.json).")
@SHARD_OPTION
@RAY_OPTION
@click.option("--png", is_flag=True, help="Also save a piano-roll picture beside each MIDI file (.png).")
@click.option("--wav", is_flag=True, help="Also render audio beside each MIDI file (.wav): FluidSynth with a General MIDI SoundFont, else a built-in piano-like synth.")
@click.option("--soundfont", type=click.Path(path_type=Path), help="SoundFont (.sf2) for --wav (default: $FACETUNE_SOUNDFONT, then the usual system places).")
@click.option("--musicxml", is_flag=True, help="Also write a lead sheet beside each MIDI file (.musicxml: melody, chord symbols, key, tempo); or give -o a .musicxml name.")
@click.option("--preview", is_flag=True, help="Show the piano roll in the terminal (one input).")
@OVERWRITE_OPTION
@handle_errors
def compose_cmd(inputs: tuple[str, ...], output: Path | None, out_dir: Path | None, emotion: str | None, seed: int, bars: int, tempo: float | None, no_chords: bool, form: str | None, fmt: str, no_detect: bool, classes: tuple[str, ...] | None, classifier: Path | None, generator: Path | None, batch_size: int, workers: int, device: str, max_bytes: int, retry_failed: bool, shard: tuple[int, int], ray_address: str | None, png: bool, wav: bool, soundfont: Path | None, musicxml: bool, preview: bool, force: bool) -> None:
    """Photo → emotion → a new melody over chords, as MIDI. INPUTS are files, folders
    (recursive), globs, or - for an image on stdin.

    \b
    facetune compose face.jpg -o song.mid
    cat face.jpg | facetune compose - -o song.mid
    facetune compose --emotion sad -o sad.mid
    facetune compose photos/ 'more/*.png' --out-dir songs/

    Exit code 0 if every input was composed (or skipped as done), 1 if any failed, 2 on a usage error.
    """
    from ..api import ComposeSettings

    if emotion and inputs:
        raise click.UsageError("give photos or --emotion, not both")
    if not emotion and not inputs:
        raise click.UsageError("give a photo (or folders of photos), or --emotion")
    if output and out_dir:
        raise click.UsageError("use -o for one input or --out-dir for many, not both")
    if form:
        from ..music.form import fit_form

        try:
            fit_form(form, bars, strict=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--form'") from None
    settings = ComposeSettings(
        seed=seed, bars=bars, tempo=tempo, form=form, chords=not no_chords, png=png, wav=wav, musicxml=musicxml, soundfont=str(soundfont) if soundfont else None, force=force,
        classifier=str(classifier) if classifier else None, generator=str(generator) if generator else None,
        classes=classes, detect=False if no_detect else None, device=device, batch_size=batch_size, workers=workers, max_bytes=max_bytes, retry_failed=retry_failed, shard=shard,
    )
    check_output_file(output)
    one_file = len(inputs) == 1 and (inputs[0] == "-" or (not Path(inputs[0]).is_dir() and not any(c in inputs[0] for c in "*?[")))
    if shard != (1, 1) and out_dir is None:
        raise click.UsageError("--shard splits a batch: give --out-dir DIR")
    check_ray(ray_address, inputs, out_dir)
    if emotion or (one_file and out_dir is None):
        if output is None:
            raise click.UsageError("say where to write the MIDI: -o FILE (or -o - for stdout)" + ("" if emotion else ", or --out-dir DIR"))
        _compose_single(None if emotion else inputs[0], output, settings, emotion, fmt, preview)
        return
    if out_dir is None:
        raise click.UsageError("a folder, a glob or several inputs need --out-dir DIR (-o writes one song)")
    if preview:
        raise click.UsageError("--preview shows one composition; use it with -o")
    _compose_batch(inputs, out_dir, settings, fmt, ray_address)


def _compose_single(source: str | None, output: Path, settings: Any, emotion: str | None, fmt: str, preview: bool) -> None:
    """One photo (a path, or - for stdin) or one emotion → one song at `output` (- for stdout)."""
    from ..api import compose_record, compose_song

    to_stdout = str(output) == "-"
    if to_stdout and (settings.png or settings.wav or settings.musicxml):
        raise click.UsageError("--png, --wav and --musicxml need -o FILE, not stdout")
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary MIDI to a terminal; redirect it: -o - > song.mid (or pipe it on)")
    image: Any = read_stdin(settings.max_bytes) if source == "-" else source
    res = compose_song(image, None if to_stdout else output, settings, emotion=emotion)
    if to_stdout:
        sys.stdout.buffer.write(res.composition.midi_bytes(settings.chords))
        sys.stdout.buffer.flush()
    _report_song(res, compose_record(res), fmt, preview, settings.chords, to_stdout)


def _report_song(res: Any, record: dict[str, Any], fmt: str, preview: bool, chords: bool, to_stderr: bool) -> None:
    """One song's preview and record or summary, on stdout (stderr when the MIDI itself went to stdout)."""
    import json

    where = console.err if to_stderr else console.out
    if preview:
        from ..music.render import terminal_preview

        where.print(console.fit_preview(terminal_preview(res.composition, chords=chords), where.width), crop=True)
    if fmt == "json":
        where.print(json.dumps(record), highlight=False, soft_wrap=True)
    elif fmt == "csv":
        where.print(console.compose_csv([record]), highlight=False, soft_wrap=True, end="")
    else:
        where.print(console.compose_summary(res))


def _compose_batch(inputs: tuple[str, ...], out_dir: Any, settings: Any, fmt: str, ray_address: str | None) -> None:
    """Many photos → OUT_DIR/<relative path>.mid, here or on a Ray cluster: each record on stdout as
    it comes (a line, a JSON record or a CSV row), failures also on stderr, then a summary on stderr."""
    import json
    from collections import Counter

    from ..errors import OutputError

    counts: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    told: set[str] = set()

    def read(name: str, error: str | None) -> None:  # a failure is said as it happens, once
        if error and fmt == "text":
            told.add(name)
            console.error(error)

    total, records = batch_records(inputs, out_dir, settings, ray_address, read)
    stopped = None
    try:
        for rec in records:
            counts[rec["status"]] += 1
            emotions[rec["emotion"]] += rec["status"] == "done"
            if fmt == "json":
                click.echo(json.dumps(rec))
            elif fmt == "csv":
                click.echo(console.compose_csv([rec], header=sum(counts.values()) == 1), nl=False)
            else:
                click.echo(console.compose_line(rec))
                if rec["status"] == "failed" and rec["input"] not in told:
                    console.error(rec["error"])
    except OutputError as exc:
        stopped = f"stopped: {exc}; {total - sum(counts.values())} input(s) not composed (rerun to resume)"
    if fmt == "text" and not console.is_quiet():
        console.err.print(console.batch_table(out_dir, counts, +emotions))
    if stopped:
        console.error(stopped)
    if counts["failed"] or stopped:
        sys.exit(EXIT_FAILED)
