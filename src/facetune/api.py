"""The Python API behind the CLI: classify photos and compose music, with no Click involved.

    >>> import facetune
    >>> [r] = facetune.classify("photo.jpg")
    >>> r.emotion, r.probabilities
    >>> song = facetune.compose("photo.jpg", "song.mid", seed=1)

Images can be paths, bytes, PIL images or numpy arrays. Models are loaded once and cached.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .emotions import quadrant_of
from .errors import FacetuneError, InputError, NoFaceError, refuse_overwrite


@dataclass
class FaceEmotion:
    """One face (or one failed input): the record `classify --format json` prints."""

    input: str
    face: list[int] | None
    emotion: str | None
    probabilities: dict[str, float]
    quadrant: str | None = None
    error: str | None = None
    no_face: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: every field but `no_face`, which only tells `compose` which error to raise."""
        d = asdict(self)
        d.pop("no_face")
        return d


@dataclass
class ComposeResult:
    """What `compose` made: the face analysis (if a photo was given), the composition and where it went."""

    input: str | None
    face: list[int] | None
    emotion: str
    probabilities: dict[str, float]
    quadrant: str
    seed: int
    key: str
    chords: list[str]
    tempo: float
    bars: int
    form: str
    output: str | None
    composition: Any


@lru_cache(maxsize=4)
def load_classifier(path: str | None = None, device: str = "cpu", engine: str = "auto") -> Any:
    """The classifier at `path` (default: the shipped weights), loaded once per process.

    engine: "auto" runs the ONNX export beside the checkpoint in ONNX Runtime on the CPU when
    there is one (about 2× faster, no torch import), else PyTorch; "onnx" or "torch" insist.
    """
    from .classifier.inference import load_classifier as _load
    from .registry import resolve_model

    return _load(resolve_model(path, "classifier"), device, engine)


def load_generator(path: str | None = None, engine: str = "auto") -> Any:
    """The melody generator at `path` (default: the shipped weights), loaded once per process.

    engine: "auto" runs the numpy export beside the checkpoint when it matches it (no torch),
    else PyTorch; "numpy" or "torch" insist.
    """
    from .music.generate import load_generator as _load
    from .registry import resolve_model

    return _load(resolve_model(path, "generator"), engine)


def _source_name(src: Any) -> str:
    return str(src) if isinstance(src, (str, Path)) else f"<{type(src).__name__}>"


def _detect(src: Any, detect: bool | None, all_faces: bool, size: int, margin: float) -> tuple[list[Any], InputError | None]:
    from .faces.photos import find_faces

    try:
        return find_faces(src, detect=detect, all_faces=all_faces, size=size, margin=margin), None
    except InputError as exc:
        return [], exc


_WORKER_JOB: dict[str, Any] = {}


def _init_worker(sources: Sequence[Any], detect: bool | None, all_faces: bool, size: int, margin: float) -> None:
    """Each decoding process gets the inputs once, not with every task."""
    _WORKER_JOB.update(sources=sources, args=(detect, all_faces, size, margin))


def _detect_in_worker(i: int) -> tuple[int, list[Any], InputError | None]:
    faces, err = _detect(_WORKER_JOB["sources"][i], *_WORKER_JOB["args"])
    return i, faces, err


def _iter_faces(sources: Sequence[Any], detect: bool | None, all_faces: bool, size: int, margin: float, workers: int) -> Iterator[tuple[int, list[Any], InputError | None]]:
    """Faces per input, in input order; with workers > 0, decoded and detected in that many processes
    (spawned, not forked: batch compose calls this from a thread, and forking a threaded process
    can copy a held lock into the child)."""
    if workers <= 0:
        for i, src in enumerate(sources):
            yield (i, *_detect(src, detect, all_faces, size, margin))
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (list(sources), detect, all_faces, size, margin)) as pool:
        yield from pool.imap(_detect_in_worker, range(len(sources)), chunksize=8)


def _unreadable(src: Any) -> InputError | None:
    """Why an input cannot be decoded, or None: checked before any model is loaded."""
    from .faces.photos import load_image

    try:
        load_image(src)
    except InputError as exc:
        return exc
    return None


def iter_classify(
    sources: Sequence[Any],
    *,
    classifier: str | None = None,
    classes: Sequence[str] | None = None,
    all_faces: bool = False,
    detect: bool | None = None,
    batch_size: int = 128,
    workers: int = 0,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    engine: str = "auto",
) -> Iterator[tuple[int, list[FaceEmotion]]]:
    """Stream (input index, its records) in input order, classifying crops in batches.

    Memory stays flat: only one batch of crops is held at a time. The classifier is loaded only
    once an input decodes: leading unreadable inputs are reported without it, so a rerun over
    broken inputs loads no model (the first readable input is decoded twice).
    """
    labels = list(names) if names is not None else [_source_name(s) for s in sources]
    first = 0
    while first < len(sources) and (err := _unreadable(sources[first])) is not None:
        yield first, [FaceEmotion(labels[first], None, None, {}, None, str(err), False)]
        first += 1
    if first == len(sources):
        return  # nothing readable: no model is loaded (a rerun over broken inputs stays fast)
    clf = load_classifier(classifier, device, engine)
    active = clf.active(list(classes) if classes else None)
    pending: list[tuple[int, list[Any], InputError | None]] = []
    n_crops = 0

    def flush() -> Iterator[tuple[int, list[FaceEmotion]]]:
        crops = [f.crop for _, faces, _ in pending for f in faces]
        probs = clf.predict(np.stack(crops), active) if crops else np.zeros((0, len(active)))
        k = 0
        for i, faces, err in pending:
            if err is not None:
                yield i, [FaceEmotion(labels[i], None, None, {}, None, str(err), isinstance(err, NoFaceError))]
                continue
            records = []
            for f in faces:
                p = probs[k]
                k += 1
                emotion = active[int(p.argmax())]
                records.append(FaceEmotion(labels[i], list(f.box) if f.box else None, emotion, {c: round(float(v), 4) for c, v in zip(active, p)}, quadrant_of(emotion)))
            yield i, records

    for i, faces, err in _iter_faces(sources[first:], detect, all_faces, clf.crop_size, clf.face_margin, workers):
        item = (i + first, faces, err)
        pending.append(item)
        n_crops += len(item[1])
        if n_crops >= batch_size:
            yield from flush()
            pending, n_crops = [], 0
    if pending:
        yield from flush()


def classify(images: Any, **kwargs: Any) -> list[FaceEmotion]:
    """Classify one image or a list of images; returns one record per face (or per failed input).

    Keyword arguments: classifier (checkpoint path), classes, all_faces, detect, batch_size, workers, device, engine.
    """
    sources = list(images) if isinstance(images, (list, tuple)) else [images]
    return [r for _, records in iter_classify(sources, **kwargs) for r in records]


def stable_seed(base: int, key: str) -> int:
    """A per-input seed from the base seed and the input's relative path, independent of run order."""
    digest = hashlib.blake2b(f"{base}:{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def compose(
    image: Any = None,
    output: str | Path | None = None,
    *,
    emotion: str | None = None,
    seed: int = 0,
    bars: int = 16,
    tempo: float | None = None,
    form: str | None = None,
    chords: bool = True,
    classifier: str | None = None,
    generator: str | None = None,
    classes: Sequence[str] | None = None,
    detect: bool | None = None,
    device: str = "cpu",
    force: bool = False,
) -> ComposeResult:
    """Photo (or an emotion) → a new melody; writes MIDI to `output` if given.

    Raises FacetuneError (for example NoFaceError) with a one-line message when it cannot.
    """
    from .music.composer import compose_emotion, write_midi

    if image is None and emotion is None:
        raise FacetuneError("give a photo or an emotion")
    face_rec = None
    if emotion is None:
        [face_rec] = classify(image, classifier=classifier, classes=classes, detect=detect, device=device)
        if face_rec.error:
            raise (NoFaceError if face_rec.no_face else InputError)(face_rec.error)
        emotion = face_rec.emotion
    comp = compose_emotion(emotion, load_generator(generator), bars=bars, seed=seed, tempo=tempo, form=form)
    out = None
    if output is not None:
        out = str(write_midi(comp, output, chords=chords, force=force))
    return ComposeResult(
        input=_source_name(image) if image is not None else None,
        face=face_rec.face if face_rec else None,
        emotion=comp.emotion,
        probabilities=face_rec.probabilities if face_rec else {},
        quadrant=comp.quadrant,
        seed=seed,
        key=comp.key,
        chords=comp.chords,
        tempo=comp.tempo,
        bars=comp.bars,
        form=comp.form,
        output=out,
        composition=comp,
    )


@dataclass(frozen=True)
class ComposeSettings:
    """What every song of a batch shares; `facetune compose` maps its flags onto these."""

    seed: int = 0
    bars: int = 16
    tempo: float | None = None
    form: str | None = None
    chords: bool = True
    png: bool = False
    wav: bool = False
    musicxml: bool = False
    soundfont: str | None = None
    force: bool = False
    classifier: str | None = None
    generator: str | None = None
    classes: tuple[str, ...] | None = None
    detect: bool | None = None
    device: str = "cpu"
    batch_size: int = 128
    workers: int = 0


#: The fields of a compose record, in the order JSON and CSV give them.
RECORD_FIELDS = ("input", "status", "face", "emotion", "probabilities", "quadrant", "key", "chords", "tempo", "bars", "form", "seed", "output", "error")


def compose_record(res: ComposeResult | None = None, **fields: Any) -> dict[str, Any]:
    """The JSON/CSV record of one compose input: every field always present (`RECORD_FIELDS`), the
    music included (key, chords, tempo, bars, form), `fields` override."""
    rec: dict[str, Any] = dict.fromkeys(RECORD_FIELDS) | {"probabilities": {}}
    if res is not None:
        rec |= {"input": res.input, "status": "done", "face": res.face, "emotion": res.emotion, "probabilities": res.probabilities, "quadrant": res.quadrant, "key": res.key, "chords": list(res.chords), "tempo": res.tempo, "bars": res.bars, "form": res.form, "seed": res.seed, "output": res.output}
    return rec | fields


def compose_song(image: Any, output: Path | None, settings: ComposeSettings, *, emotion: str | None = None) -> ComposeResult:
    """One song and its extras (`settings.png`, `.wav`, `.musicxml`) beside `output` (None: not
    written), refusing to overwrite any of them without `settings.force` before anything is
    composed. An `output` ending in `.musicxml` is the lead sheet instead of a MIDI file."""
    _check_soundfont(settings)
    extras = extra_outputs(output, settings) if output is not None else []
    score = output is not None and output.suffix == ".musicxml"
    for extra in extras + ([output] if score else []):
        refuse_overwrite(extra, settings.force)
    res = compose(
        image, None if score else output, emotion=emotion, seed=settings.seed, bars=settings.bars, tempo=settings.tempo, form=settings.form, chords=settings.chords,
        classifier=settings.classifier, generator=settings.generator, classes=settings.classes, detect=settings.detect, device=settings.device, force=settings.force,
    )
    if score:
        from .music.musicxml import write_musicxml

        res.output = str(write_musicxml(res.composition, output, force=settings.force))
    write_song(res.composition, None, settings, extras)
    return res


def _check_soundfont(settings: ComposeSettings) -> None:
    """A --soundfont that is not there fails before anything is composed or written."""
    if settings.wav and settings.soundfont:
        from .music.audio import find_soundfont

        find_soundfont(settings.soundfont)


def extra_outputs(song: Path, settings: ComposeSettings) -> list[Path]:
    """The picture, audio and score files that go beside a song (its MIDI, or its MusicXML when
    `-o` names a `.musicxml` file)."""
    wanted = [(".png", settings.png), (".wav", settings.wav), (".musicxml", settings.musicxml)]
    return [song.with_suffix(suffix) for suffix, on in wanted if on and song.suffix != suffix]


def write_song(comp: Any, target: Path | None, settings: ComposeSettings, extras: Sequence[Path] = ()) -> None:
    """Write one composition: the MIDI (checked and put in place atomically) and its extras."""
    from .music.composer import write_midi
    from .music.render import write_extras

    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_midi(comp, target, chords=settings.chords, force=settings.force)
    write_extras(comp, list(extras), settings.chords, soundfont=settings.soundfont, force=settings.force)


#: Songs generated together: bar *t* of all of them is one forward pass of the network.
GENERATION_BATCH = 64


def compose_many(items: Sequence[tuple[Any, str, Path]], out_dir: str | Path, settings: ComposeSettings = ComposeSettings()) -> Iterator[dict[str, Any]]:
    """Many photos → OUT_DIR/<relative path>.mid, one record per input (`status` done, skipped or failed).

    `items` are (source, name, relative path). Inputs whose MIDI already exists are skipped (a
    rerun resumes) without loading any model, and their records come first; the others follow
    in input order. Photos are decoded and classified in a background thread while the songs
    of the previous batch are generated (all at once) and written, and a model is loaded only
    when an input needs it. Each song's seed comes from the base seed and the input's relative
    path, so a song does not depend on the order, the batch, or single versus batch compose.
    """
    from . import console

    _check_soundfont(settings)
    out_dir = Path(out_dir)
    todo = []
    for src, name, rel in items:
        target = out_dir / rel.with_suffix(".mid")
        if target.exists() and not settings.force:
            yield compose_record(input=name, output=str(target), seed=stable_seed(settings.seed, rel.as_posix()), status="skipped")
            continue
        todo.append((src, name, rel, target))
    if not todo:
        return
    with console.progress() as prog:
        task = prog.add_task("composing", total=len(todo))
        stream = iter_classify([t[0] for t in todo], classifier=settings.classifier, classes=settings.classes, detect=settings.detect, batch_size=settings.batch_size, workers=settings.workers, device=settings.device, names=[t[1] for t in todo])
        for chunk in _chunks(_prefetched(stream), GENERATION_BATCH):
            yield from _compose_chunk([(todo[i], recs[0]) for i, recs in chunk], settings)
            prog.advance(task, len(chunk))


def _compose_chunk(chunk: Sequence[tuple[tuple[Any, str, Path, Path], FaceEmotion]], settings: ComposeSettings) -> Iterator[dict[str, Any]]:
    """Generate the songs of classified inputs in one batch, write each, and give their records in order."""
    from .music.composer import compose_emotions

    seeds = [stable_seed(settings.seed, item[2].as_posix()) for item, _ in chunk]
    faces = [(k, face) for k, (_, face) in enumerate(chunk) if not face.error]
    songs: dict[int, Any] = {}
    if faces:
        comps = compose_emotions([(face.emotion, seeds[k]) for k, face in faces], load_generator(settings.generator), bars=settings.bars, tempo=settings.tempo, form=settings.form)
        songs = {k: comp for (k, _), comp in zip(faces, comps)}
    for k, ((_, name, _, target), face) in enumerate(chunk):
        if face.error:
            yield compose_record(input=name, seed=seeds[k], error=face.error, status="failed")
            continue
        comp = songs[k]
        try:
            write_song(comp, target, settings, extra_outputs(target, settings))
        except FacetuneError as exc:
            yield compose_record(input=name, seed=seeds[k], error=str(exc), status="failed")
            continue
        music = {"key": comp.key, "chords": list(comp.chords), "tempo": comp.tempo, "bars": comp.bars, "form": comp.form}
        yield compose_record(input=name, face=face.face, emotion=face.emotion, probabilities=face.probabilities, quadrant=comp.quadrant, seed=seeds[k], output=str(target), status="done", **music)


def _chunks(stream: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in stream:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _prefetched(stream: Iterator[Any], depth: int = 256) -> Iterator[Any]:
    """Run `stream` in a background thread, `depth` items ahead: decoding and ONNX Runtime release
    the GIL, so classification overlaps the generation and writing done by the consumer.
    An exception in the thread is raised here, in order; closing the consumer stops the thread."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in stream:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))

    thread = threading.Thread(target=produce, name="facetune-classify", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)
