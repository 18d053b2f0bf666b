"""`facetune.soundtrack`: a video in, music that follows its faces' emotions out.

Read the video's frames at a few per second, follow the main face and classify it (`reading`),
smooth the readings into emotion segments (`timeline`), compose one piece over them
(`music.score`), and write what was asked: the scored video (the video stream copied, the music
as its sound, `mux`), the MIDI, the audio, the timeline as JSON and a picture of it.

    >>> import facetune
    >>> result = facetune.soundtrack("clip.mp4", "scored.mp4", seed=1)
    >>> [(s.emotion, s.start, s.end) for s in result.segments]
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import FacetuneError, refuse_overwrite
from .timeline import FrameReading, Segment

#: The music's sample rate in the scored video and the WAV.
SAMPLE_RATE = 44100
#: What each output suffix of `-o` is.
AUDIO_SUFFIX, MIDI_SUFFIX, TIMELINE_SUFFIX, PICTURE_SUFFIX = ".wav", ".mid", ".json", ".png"


@dataclass(frozen=True)
class SoundtrackSettings:
    """Everything a soundtrack run is told; `facetune soundtrack` maps its flags onto these.

    `mix` is the level of the video's own sound under the music (0 silences it but keeps the
    stream's place; `replace_audio` drops it); `renderer` is the audio renderer (auto,
    fluidsynth or fallback, see `music.audio.render_wav`)."""

    seed: int = 0
    fps: float = 2.0
    switch_cost: float = 6.0
    min_bars: float = 2.0
    mix: float = 0.3
    replace_audio: bool = False
    chords: bool = True
    soundfont: str | None = None
    renderer: str = "auto"
    classifier: str | None = None
    classes: tuple[str, ...] | None = None
    generator: str | None = None
    device: str = "cpu"
    engine: str = "auto"
    analysis_side: int = 480
    force: bool = False


@dataclass
class SoundtrackResult:
    """What `soundtrack` found and made: the video's length, the per-frame readings, the emotion
    segments, the composition (`music.score.Score`) and the files written, by kind."""

    input: str
    duration: float
    frames: list[FrameReading]
    segments: list[Segment]
    score: Any
    outputs: dict[str, str] = field(default_factory=dict)
    renderer: str | None = None

    def timeline(self) -> dict[str, Any]:
        """The timeline JSON: segments and frames in seconds of the video, and the music's segments."""
        music = [{"start": round(s.start, 3), "end": round(s.end, 3), "emotion": s.emotion, "key": s.key_name, "tempo": round(s.tempo, 2), "bars": s.bars, "first_bar": s.first_bar, "form": s.form, "chords": s.chords} for s in self.score.segments]
        return {"input": self.input, "duration": round(self.duration, 3), "segments": [s.to_dict() for s in self.segments], "frames": [f.to_dict() for f in self.frames], "music": music}


def output_kind(path: Path) -> str:
    """What `-o PATH` writes, by its suffix: video, midi, wav, timeline or png."""
    from .mux import CONTAINERS

    suffix = path.suffix.lower()
    kinds = {MIDI_SUFFIX: "midi", ".midi": "midi", AUDIO_SUFFIX: "wav", TIMELINE_SUFFIX: "timeline", PICTURE_SUFFIX: "png"}
    if suffix in CONTAINERS:
        return "video"
    if suffix in kinds:
        return kinds[suffix]
    raise FacetuneError(f"{path}: unknown output type {path.suffix or '(no suffix)'!r}; give a video ({', '.join(CONTAINERS)}), .mid, .wav, .json or .png")


def _targets(output: str | Path | None, midi: str | Path | None, wav: str | Path | None, timeline: str | Path | None, png: str | Path | None) -> dict[str, Path]:
    targets: dict[str, Path] = {}
    if output is not None:
        targets[output_kind(Path(output))] = Path(output)
    for kind, path in (("midi", midi), ("wav", wav), ("timeline", timeline), ("png", png)):
        if path is not None:
            if kind in targets and targets[kind] != Path(path):
                raise FacetuneError(f"two {kind} outputs asked for: {targets[kind]} and {path}")
            targets[kind] = Path(path)
    return targets


def analyse(video: str | Path, settings: SoundtrackSettings = SoundtrackSettings(), on_frame: Callable[[float], None] | None = None) -> tuple[Any, list[FrameReading], list[Segment]]:
    """The video's facts, its per-frame readings and its emotion segments (no music yet)."""
    from ..api import load_classifier
    from .frames import probe
    from .reading import ReadSettings, read_faces
    from .timeline import SmoothSettings, segments

    info = probe(video)
    clf = load_classifier(settings.classifier, settings.device, settings.engine)
    classes = clf.active(list(settings.classes) if settings.classes else None)
    readings = read_faces(video, clf, classes, ReadSettings(fps=settings.fps, analysis_side=settings.analysis_side), on_frame)
    duration = info.duration or (readings[-1].time if readings else 0.0)
    if not readings or duration <= 0:
        raise FacetuneError(f"{video}: the video has no length to score")
    found = segments(readings, classes, duration, str(video), SmoothSettings(settings.switch_cost, settings.min_bars))
    return replace(info, duration=duration), readings, found


def soundtrack(video: str | Path, output: str | Path | None = None, *, midi: str | Path | None = None, wav: str | Path | None = None, timeline: str | Path | None = None, png: str | Path | None = None, settings: SoundtrackSettings = SoundtrackSettings(), on_frame: Callable[[float], None] | None = None, **overrides: Any) -> SoundtrackResult:
    """Score a video. `output` is a video (the scored copy), .mid, .wav, .json or .png by its
    suffix; `midi`, `wav`, `timeline` and `png` add files of those kinds. Keyword `overrides`
    replace settings (`seed=1`). Nothing is overwritten without `force`; every file is written to
    a temporary name and renamed. Raises FacetuneError (InputError, NoFaceError) in one line."""
    from ..api import check_seed, load_generator
    from ..music.score import Mood, ScoreSettings, compose_score

    settings = replace(settings, **overrides)
    check_seed(settings.seed)
    targets = _targets(output, midi, wav, timeline, png)
    for path in targets.values():
        refuse_overwrite(path, settings.force)
    if settings.soundfont and ("wav" in targets or "video" in targets):
        from ..music.audio import find_soundfont

        find_soundfont(settings.soundfont)  # a --soundfont that is not there fails before the video is read
    if "video" in targets:
        from .frames import probe
        from .mux import check_target

        check_target(targets["video"], probe(video))
    info, readings, found = analyse(video, settings, on_frame)
    moods = [Mood(s.emotion, s.start, s.end) for s in found]
    score = compose_score(moods, info.duration, load_generator(settings.generator), ScoreSettings(seed=settings.seed, chords=settings.chords))
    result = SoundtrackResult(str(video), info.duration, readings, found, score)
    _write_outputs(result, info, targets, settings)
    if result.renderer and settings.renderer == "auto":
        from .. import console
        from ..music.audio import FALLBACK_NAME, fallback_notice

        if result.renderer.startswith(FALLBACK_NAME):
            console.warn(fallback_notice())
    return result


def _write_outputs(result: SoundtrackResult, info: Any, targets: dict[str, Path], settings: SoundtrackSettings) -> None:
    """Every asked-for file, each atomically; on a failure those already written are removed."""
    import json
    import tempfile

    from ..checkpoints import atomic_write_bytes
    from ..music.audio import AUDIO_PROGRAMS, render_samples, render_wav
    from .picture import timeline_png

    written: list[Path] = []
    try:
        for kind, path in targets.items():
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "midi":
                atomic_write_bytes(path, result.score.midi_bytes(settings.chords), durable=False)
            elif kind == "timeline":
                atomic_write_bytes(path, (json.dumps(result.timeline(), indent=1) + "\n").encode(), durable=False)
            elif kind == "png":
                timeline_png(result, path)
            elif kind == "wav":
                result.renderer = render_wav(result.score.midi_bytes(settings.chords, AUDIO_PROGRAMS), path, soundfont=settings.soundfont, renderer=settings.renderer)
            else:
                from .mux import write_scored_video

                with tempfile.TemporaryDirectory(prefix=".facetune-", dir=path.parent) as work:
                    samples, result.renderer = render_samples(result.score.midi_bytes(settings.chords, AUDIO_PROGRAMS), Path(work), soundfont=settings.soundfont, sample_rate=SAMPLE_RATE, renderer=settings.renderer)
                    write_scored_video(Path(result.input), samples, SAMPLE_RATE, path, info, mix=None if settings.replace_audio else settings.mix)
            written.append(path)
            result.outputs[kind] = str(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def soundtrack_outputs(video_target: Path) -> list[Path]:
    """The files a batch writes per input: the scored video, its MIDI and its timeline."""
    return [video_target, video_target.with_suffix(MIDI_SUFFIX), video_target.with_suffix(TIMELINE_SUFFIX)]


def soundtrack_many(items: Sequence[tuple[Any, str, Path]], out_dir: str | Path, settings: SoundtrackSettings = SoundtrackSettings(), on_frame: Callable[[float], None] | None = None) -> Any:
    """Many videos → OUT_DIR/<relative path> (the scored video, with .mid and .json beside it), one
    record per input (`status` done, skipped or failed), as `compose --out-dir` does: an input
    whose scored video exists is skipped (a rerun resumes) unless `settings.force`."""
    out_dir = Path(out_dir)
    for src, name, rel in items:
        target = out_dir / rel
        if target.exists() and not settings.force:
            yield {"input": name, "status": "skipped", "output": str(target), "segments": None, "error": None}
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            video, midi, timeline = soundtrack_outputs(target)
            res = soundtrack(src, video, midi=midi, timeline=timeline, settings=replace(settings, force=True), on_frame=on_frame)
        except FacetuneError as exc:
            yield {"input": name, "status": "failed", "output": str(target), "segments": None, "error": str(exc)}
            continue
        yield {"input": name, "status": "done", "output": str(target), "segments": [s.to_dict() for s in res.segments], "error": None}


def video_items(inputs: Sequence[str | Path]) -> list[tuple[Path, str, Path]]:
    """Files and folders (recursively, files with a video suffix) → (path, name, relative path);
    FacetuneError when there is none."""
    from ..faces.photos import iter_image_files
    from .frames import VIDEO_SUFFIXES

    items = [(path, str(path), rel) for path, rel in iter_image_files(list(inputs), VIDEO_SUFFIXES)]
    if not items:
        raise FacetuneError(f"no videos found in {', '.join(map(str, inputs))} (looked for {', '.join(VIDEO_SUFFIXES)}); nothing to do")
    return items
