"""`facetune soundtrack`: a video in, music that follows its faces' emotions out."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import console
from .common import CLASSIFIER_OPTION, DEVICE_OPTION, ENGINE_OPTION, EXIT_FAILED, GENERATOR_OPTION, OVERWRITE_OPTION, check_classes, check_output_file, handle_errors, main

FILE = click.Path(path_type=Path, dir_okay=False)


@main.command("soundtrack")
@click.argument("videos", nargs=-1, required=True)
@click.option("-o", "--output", type=FILE, help="What to write for one video, by its suffix: a scored copy of the video (.mp4, .mov, .m4v, .mkv, .webm), or .mid, .wav, .json (timeline) or .png.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), help="Folder for many videos: OUT_DIR/<relative path> (the scored video, with .mid and .json beside it).")
@click.option("--midi", type=FILE, help="Also write the music as MIDI to this file.")
@click.option("--wav", type=FILE, help="Also write the music as audio to this file (FluidSynth with a General MIDI SoundFont, else a built-in piano-like synth).")
@click.option("--timeline", type=FILE, help="Also write the timeline as JSON to this file: segments and per-frame faces and probabilities, in seconds.")
@click.option("--png", type=FILE, help="Also draw the emotion timeline over the piano roll to this PNG file.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the music (the same video and seed give byte-identical output).")
@click.option("--fps", default=2.0, show_default=True, type=click.FloatRange(0.1, 30), help="Frames per second looked at for faces.")
@click.option("--switch-cost", default=6.0, show_default=True, type=click.FloatRange(0), help="How much evidence (nats) a change of emotion needs: higher, fewer changes.")
@click.option("--min-bars", default=2.0, show_default=True, type=click.FloatRange(0), help="Shortest emotion segment, in bars of its emotion's tempo.")
@click.option("--mix", default=0.3, show_default=True, type=click.FloatRange(0, 1), help="Level of the video's own sound under the music.")
@click.option("--replace-audio", is_flag=True, help="Drop the video's own sound: the music alone.")
@click.option("--no-chords", is_flag=True, help="Leave out the chord accompaniment track.")
@click.option("--soundfont", type=click.Path(path_type=Path), help="SoundFont (.sf2) for the audio (default: $FACETUNE_SOUNDFONT, then the usual system places).")
@click.option("--classes", callback=check_classes, help="Emotions the classifier may answer (comma-separated FER classes, or 'all'; default: the model's default set).")
@CLASSIFIER_OPTION
@GENERATOR_OPTION
@DEVICE_OPTION
@ENGINE_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="text for people; json (one JSON Lines record per video, with the segments) for scripts, on stdout.")
@OVERWRITE_OPTION
@handle_errors
def soundtrack_cmd(videos: tuple[str, ...], output: Path | None, out_dir: Path | None, midi: Path | None, wav: Path | None, timeline: Path | None, png: Path | None, seed: int, fps: float, switch_cost: float, min_bars: float, mix: float, replace_audio: bool, no_chords: bool, soundfont: Path | None, classes: tuple[str, ...] | None, classifier: Path | None, generator: Path | None, device: str, engine: str, fmt: str, force: bool) -> None:
    """Video → the main face's emotion over time → music that follows it. VIDEOS are files or
    folders (recursive).

    \b
    facetune soundtrack clip.mp4 -o scored.mp4 --timeline clip.json --png clip.png
    facetune soundtrack clip.mp4 -o clip.mid --wav clip.wav
    facetune soundtrack videos/ --out-dir scored/

    Exit code 0 if every video was scored (or skipped as done), 1 if any failed, 2 on a usage error.
    """
    from ..video.frames import need_av
    from ..video.soundtrack import SoundtrackSettings

    extras = {"--midi": midi, "--wav": wav, "--timeline": timeline, "--png": png}
    if output and out_dir:
        raise click.UsageError("use -o for one video or --out-dir for many, not both")
    if out_dir is None and output is None and not any(extras.values()):
        raise click.UsageError("say what to write: -o FILE (a video, .mid, .wav, .json or .png), --midi/--wav/--timeline/--png FILE, or --out-dir DIR")
    if out_dir is not None and any(extras.values()):
        raise click.UsageError(f"{', '.join(k for k, v in extras.items() if v)} name one file; with --out-dir each video gets OUT_DIR/<relative path> with .mid and .json beside it")
    check_output_file(output)
    need_av()
    settings = SoundtrackSettings(
        seed=seed, fps=fps, switch_cost=switch_cost, min_bars=min_bars, mix=mix, replace_audio=replace_audio, chords=not no_chords, soundfont=str(soundfont) if soundfont else None,
        classifier=str(classifier) if classifier else None, classes=classes, generator=str(generator) if generator else None, device=device, engine=engine, force=force,
    )
    if out_dir is None:
        if len(videos) != 1 or Path(videos[0]).is_dir():
            raise click.UsageError("several videos or a folder need --out-dir DIR (-o scores one video)")
        _one(videos[0], output, extras, settings, fmt)
        return
    _many(videos, out_dir, settings, fmt)


def _progress_for(video: str) -> Any:
    """A progress display over the video's seconds, and the callback that moves it."""
    from ..video.frames import probe

    info = probe(video)
    prog = console.progress()
    task = prog.add_task(f"reading {Path(video).name}", total=round(info.duration, 1) or None)
    return prog, lambda t: prog.update(task, completed=round(min(t, info.duration), 1))


def _one(video: str, output: Path | None, extras: dict[str, Path | None], settings: Any, fmt: str) -> None:
    import json

    from ..video.soundtrack import soundtrack

    prog, moved = _progress_for(video)
    with prog:
        res = soundtrack(video, output, midi=extras["--midi"], wav=extras["--wav"], timeline=extras["--timeline"], png=extras["--png"], settings=settings, on_frame=moved)
    if fmt == "json":
        click.echo(json.dumps({"input": res.input, "status": "done", "outputs": res.outputs, "segments": [s.to_dict() for s in res.segments]}))
        return
    console.out.print(_summary(res), highlight=False)


def _many(videos: tuple[str, ...], out_dir: Path, settings: Any, fmt: str) -> None:
    import json
    from collections import Counter

    from ..video.soundtrack import soundtrack_many, video_items

    counts: Counter[str] = Counter()
    items = video_items(videos)
    with console.progress() as prog:
        task = prog.add_task("scoring", total=len(items))
        for rec in soundtrack_many(items, out_dir, settings):
            prog.advance(task)
            counts[rec["status"]] += 1
            if fmt == "json":
                click.echo(json.dumps(rec))
            else:
                click.echo(_line(rec))
                if rec["error"]:
                    console.error(rec["error"])
    console.info(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if counts["failed"]:
        sys.exit(EXIT_FAILED)


def _summary(res: Any) -> str:
    """One scored video for people: its segments as the music plays them, and the files written."""
    lines = [f"{res.input}: {res.duration:.1f} s, {len(res.frames)} frames looked at, {len(res.segments)} segment(s)"]
    for face, music in zip(res.segments, res.score.segments):
        lines.append(f"  {face.start:7.2f}–{face.end:7.2f} s  {face.emotion:<8} ({face.confidence:.2f})  → music {music.start:7.2f}–{music.end:7.2f} s, {music.key_name}, {music.tempo:.0f} BPM, {music.bars} bars")
    lines += [f"  wrote {path} ({kind})" for kind, path in res.outputs.items()]
    return "\n".join(lines)


def _line(rec: dict[str, Any]) -> str:
    """One batch record as a line (a failure's reason goes to stderr)."""
    if rec["status"] == "done":
        return f"{rec['input']} → {rec['output']}  " + ", ".join(s["emotion"] for s in rec["segments"])
    if rec["status"] == "skipped":
        return f"{rec['input']} → {rec['output']}  skipped (exists; --force remakes it)"
    return f"{rec['input']}  failed"
