"""The Python API behind the CLI: classify photos and compose music, with no Click involved.

    >>> import facetune
    >>> [r] = facetune.classify("photo.jpg")
    >>> r.emotion, r.probabilities
    >>> song = facetune.compose("photo.jpg", "song.mid", seed=1)

Images can be paths, bytes, PIL images or numpy arrays. Models are loaded once and cached.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .emotions import quadrant_of
from .errors import FacetuneError, InputError, NoFaceError, refuse_overwrite
from .faces.photos import DEFAULT_MAX_BYTES


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
    content: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: every field but `no_face`, which only tells `compose` which error to
        raise, and `content`, the input's fingerprint (`faces.photos.source_digest`) seeds come from."""
        face = list(self.face) if self.face is not None else None  # copies, as dataclasses.asdict made them, without its deep walk
        return {"input": self.input, "face": face, "emotion": self.emotion, "probabilities": dict(self.probabilities), "quadrant": self.quadrant, "error": self.error}


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

    engine: "auto" runs, on the CPU, the int8 export beside the checkpoint in ONNX Runtime when
    there is one, else the float export (no torch import either way), else PyTorch; "int8",
    "onnx" (the float export) or "torch" insist.
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


def _detect(src: Any, detect: bool | None, all_faces: bool, size: int, margin: float, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[Any], InputError | None, str | None]:
    """One input's faces, or why it failed, and the fingerprint of its content (None if unread)."""
    from .faces.photos import find_faces, read_source, source_digest

    digest = None
    try:
        data, name = read_source(src, max_bytes, _source_name(src) if isinstance(src, (str, Path)) else None)
        digest = source_digest(data)
        return find_faces(data, detect=detect, all_faces=all_faces, size=size, margin=margin, max_bytes=max_bytes, name=name), None, digest
    except InputError as exc:
        return [], exc, digest


_WORKER_JOB: dict[str, Any] = {}


def _init_worker(sources: Sequence[Any], detect: bool | None, all_faces: bool, size: int, margin: float, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Each decoding process gets the inputs once, not with every task; Ctrl-C is the parent's to
    handle (the terminal sends it to the whole process group), so a worker ignores it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_JOB.update(sources=sources, args=(detect, all_faces, size, margin, max_bytes))


def _detect_in_worker(i: int) -> tuple[int, list[Any], InputError | None, str | None]:
    return (i, *_detect(_WORKER_JOB["sources"][i], *_WORKER_JOB["args"]))


def _iter_faces(sources: Sequence[Any], detect: bool | None, all_faces: bool, size: int, margin: float, workers: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[int, list[Any], InputError | None, str | None]]:
    """Faces per input, in input order; with workers > 0, decoded and detected in that many processes
    (spawned, not forked: batch compose calls this from a thread, and forking a threaded process
    can copy a held lock into the child)."""
    if workers <= 0:
        for i, src in enumerate(sources):
            yield (i, *_detect(src, detect, all_faces, size, margin, max_bytes))
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (list(sources), detect, all_faces, size, margin, max_bytes)) as pool:
        yield from pool.imap(_detect_in_worker, range(len(sources)), chunksize=8)


def _unreadable(src: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[InputError | None, str | None]:
    """Why an input cannot be decoded, or None, and its fingerprint: checked before any model is loaded."""
    from .faces.photos import load_image, read_source, source_digest

    digest = None
    try:
        data, name = read_source(src, max_bytes, _source_name(src) if isinstance(src, (str, Path)) else None)
        digest = source_digest(data)
        load_image(data, max_bytes=max_bytes, name=name)
    except InputError as exc:
        return exc, digest
    return None, digest


def _load_while_detecting(src: Any, detect: bool | None, all_faces: bool, max_bytes: int, classifier: str | None, device: str, engine: str) -> tuple[Any, tuple[list[Any], InputError | None, str | None]]:
    """The classifier, and the faces of `src` (the first readable input) found while it loads.

    Why: a one-photo run waits for both, and each takes about a tenth of a second (ONNX Runtime's
    import and session; decoding and MTCNN), so on two cores the second runs beside the first.
    The faces are cropped at the default size and margin, and cropped again in the rare case the
    loaded classifier asks for others, so the answer never depends on the overlap."""
    from concurrent.futures import ThreadPoolExecutor

    from .classifier.preprocess import CROP_SIZE, FACE_MARGIN

    with ThreadPoolExecutor(1, thread_name_prefix="facetune-load") as pool:
        loading = pool.submit(load_classifier, classifier, device, engine)
        head = _detect(src, detect, all_faces, CROP_SIZE, FACE_MARGIN, max_bytes)
        clf = loading.result()
    if (clf.crop_size, clf.face_margin) != (CROP_SIZE, FACE_MARGIN):
        head = _detect(src, detect, all_faces, clf.crop_size, clf.face_margin, max_bytes)
    return clf, head


def _after(head: tuple[list[Any], InputError | None, str | None], rest: Iterator[tuple[int, list[Any], InputError | None, str | None]]) -> Iterator[tuple[int, list[Any], InputError | None, str | None]]:
    """`head` as input 0, then `rest` (indexed from the input after it) renumbered to follow it."""
    yield (0, *head)
    for i, faces, err, digest in rest:
        yield i + 1, faces, err, digest


def iter_classify(
    sources: Sequence[Any],
    *,
    classifier: str | None = None,
    classes: Sequence[str] | None = None,
    all_faces: bool = False,
    detect: bool | None = None,
    batch_size: int = 512,
    workers: int = 0,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    engine: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_read: Callable[[int, str | None], None] | None = None,
    first_batch: int | None = None,
) -> Iterator[tuple[int, list[FaceEmotion]]]:
    """Stream (input index, its records) in input order, classifying crops in batches.

    Memory stays flat: at most three batches of crops are held at a time (the next two are decoded
    in a background thread while one is classified; 512 crops of 48 px are 1.2 MB), and no input is read beyond
    `max_bytes` (see `faces.photos.read_image_bytes`). The classifier is loaded only once an input
    decodes: leading unreadable inputs are reported without it, so a rerun over broken inputs
    loads no model (the first readable input is decoded twice). `on_read(index, error or None)`
    is called as each input has been read and its faces found, before its batch is classified:
    progress that moves from the first input, and failures as they happen. `first_batch` crops
    go as a batch of their own before the others go `batch_size` at a time, so a caller that
    starts work on the first records (compose) starts sooner; both should be multiples of the
    classifier's own runs (64 crops), so that no crop is classified beside other crops than
    without it (the probabilities are then the same bits).
    """
    labels = list(names) if names is not None else [_source_name(s) for s in sources]
    first = 0
    while first < len(sources):
        err, digest = _unreadable(sources[first], max_bytes)
        if err is None:
            break
        if on_read is not None:
            on_read(first, str(err))
        yield first, [FaceEmotion(labels[first], None, None, {}, None, str(err), False, digest)]
        first += 1
    if first == len(sources):
        return  # nothing readable: no model is loaded (a rerun over broken inputs stays fast)
    clf, head = _load_while_detecting(sources[first], detect, all_faces, max_bytes, classifier, device, engine)
    active = clf.active(list(classes) if classes else None)
    pending: list[tuple[int, list[Any], InputError | None, str | None]] = []
    n_crops = 0

    def flush() -> Iterator[tuple[int, list[FaceEmotion]]]:
        crops = [f.crop for _, faces, _, _ in pending for f in faces]
        probs = clf.predict(np.stack(crops), active) if crops else np.zeros((0, len(active)))
        k = 0
        for i, faces, err, digest in pending:
            if err is not None:
                yield i, [FaceEmotion(labels[i], None, None, {}, None, str(err), isinstance(err, NoFaceError), digest)]
                continue
            records = []
            for f in faces:
                p = probs[k]
                k += 1
                emotion = active[int(p.argmax())]
                records.append(FaceEmotion(labels[i], list(f.box) if f.box else None, emotion, {c: round(float(v), 4) for c, v in zip(active, p)}, quadrant_of(emotion), content=digest))
            yield i, records

    faces_stream = _after(head, _iter_faces(sources[first + 1 :], detect, all_faces, clf.crop_size, clf.face_margin, workers, max_bytes))
    size = first_batch or batch_size
    for i, faces, err, digest in _prefetched(faces_stream, depth=2 * batch_size) if len(sources) - first > batch_size else faces_stream:  # decode the next batch while this one is classified
        item = (i + first, faces, err, digest)
        if on_read is not None:
            on_read(i + first, None if err is None else str(err))
        pending.append(item)
        n_crops += len(item[1])
        if n_crops >= size:
            yield from flush()
            pending, n_crops, size = [], 0, batch_size
    if pending:
        yield from flush()


def classify(images: Any, **kwargs: Any) -> list[FaceEmotion]:
    """Classify one image or a list of images; returns one record per face (or per failed input).

    Keyword arguments: classifier (checkpoint path), classes, all_faces, detect, batch_size, workers, device, engine.
    """
    sources = list(images) if isinstance(images, (list, tuple)) else [images]
    return [r for _, records in iter_classify(sources, **kwargs) for r in records]


def stable_seed(base: int, key: str) -> int:
    """A 31-bit seed from a base seed and a key (hash of `"{base}:{key}"`), independent of run order."""
    digest = hashlib.blake2b(f"{base}:{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def content_seed(base: int, content: str) -> int:
    """A photo's song seed: the first 31 bits of BLAKE2b-32 of `"{base}:{content}"`, where `content`
    is the BLAKE2b-128 hex digest of the file's bytes (`faces.photos.source_digest`) and `base` is
    `--seed` (default 0). The same photo gives the same song wherever it lies and whatever its
    name (alone, in a folder, renamed, moved, via stdin); different photos give different songs."""
    return stable_seed(base, content)


def check_seed(seed: Any) -> int:
    """`--seed` and `seed=` take a whole number ≥ 0; anything else is one clear FacetuneError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FacetuneError(f"seed must be a whole number ≥ 0, not {seed!r}")
    return int(seed)


def _read_photo(image: Any, max_bytes: int) -> tuple[Any, str]:
    """A photo's content (bytes for a path or bytes, else the image itself) and its name."""
    from .faces.photos import read_source

    return read_source(image, max_bytes, _source_name(image))


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
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ComposeResult:
    """Photo (or an emotion) → a new melody; writes MIDI to `output` if given.

    With a photo the song's seed is `content_seed(seed, <the photo's content>)`, so the same photo
    gives the same song (as in a batch); with `emotion` alone it is `seed` itself.
    Raises FacetuneError (for example NoFaceError) with a one-line message when it cannot.
    """
    from .music.composer import compose_emotion, write_midi

    seed = check_seed(seed)
    if image is None and emotion is None:
        raise FacetuneError("give a photo or an emotion")
    face_rec = None
    if emotion is None:
        [face_rec] = classify([image], classifier=classifier, classes=classes, detect=detect, device=device, max_bytes=max_bytes)
        if face_rec.error:
            raise (NoFaceError if face_rec.no_face else InputError)(face_rec.error)
        emotion = face_rec.emotion
        seed = content_seed(seed, face_rec.content or "")
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
    max_bytes: int = DEFAULT_MAX_BYTES
    retry_failed: bool = False
    #: (K, N): compose only the inputs that shard K of N owns (`shard_owns`); (1, 1) is all of them.
    shard: tuple[int, int] = (1, 1)


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
    composed. An `output` ending in `.musicxml` is the lead sheet instead of a MIDI file. All or
    nothing: should one of the files fail (a full disk), those already written are removed, so a
    rerun does not stop at "already exists"."""
    _check_soundfont(settings)
    extras = extra_outputs(output, settings) if output is not None else []
    score = output is not None and output.suffix == ".musicxml"
    for path in extras + ([output] if output is not None else []):
        refuse_overwrite(path, settings.force)
    res = compose(
        image, None, emotion=emotion, seed=settings.seed, bars=settings.bars, tempo=settings.tempo, form=settings.form, chords=settings.chords,
        classifier=settings.classifier, generator=settings.generator, classes=settings.classes, detect=settings.detect, device=settings.device, force=settings.force, max_bytes=settings.max_bytes,
    )
    if output is not None:
        write_song(res.composition, output, settings, extras + ([output] if score else []), midi=not score)
        res.output = str(output)
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


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from .errors import OutputError

        raise OutputError(folder, exc) from None


def write_song(comp: Any, target: Path | None, settings: ComposeSettings, extras: Sequence[Path] = (), *, midi: bool = True, replace_extras: bool = False) -> None:
    """Write one composition: its extras, then the MIDI (checked and put in place atomically) last,
    as the mark that the song is complete (a batch rerun skips an input whose MIDI exists). All or
    nothing: on any failure the files this call wrote are removed again. `replace_extras`
    overwrites extras without --force (a batch's leftovers of a song whose MIDI never came)."""
    from .music.composer import write_midi
    from .music.render import write_extras

    written: list[Path] = []
    try:
        if target is not None:
            _make_folder(target.parent)
        for extra in extras:
            write_extras(comp, [extra], settings.chords, soundfont=settings.soundfont, force=settings.force or replace_extras)
            written.append(extra)
        if target is not None and midi:
            write_midi(comp, target, chords=settings.chords, force=settings.force)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


#: Songs generated together: bar *t* of all of them is one forward pass of the network.
GENERATION_BATCH = 64


def _chunk_size(songs: int, shared: bool) -> int:
    """Songs composed together in a run of `songs`: GENERATION_BATCH, or, when a song worker
    shares the run, the size that splits it into an even number of chunks of at most that, as
    even as can be, so that neither process composes a last chunk alone while the other waits
    (200 songs: four chunks of 50, not 64, 64, 64 and 8)."""
    if not shared:
        return GENERATION_BATCH
    pairs = -(-songs // (2 * GENERATION_BATCH))
    return max(1, -(-songs // (2 * pairs)))


#: The batch's record of inputs that failed, in the output folder (see `compose_many`); shard K of
#: N keeps its own (`.facetune-failed.K-of-N.json`), so shards running side by side never share one.
FAILURES_FILE = ".facetune-failed.json"


def shard_owns(rel: Path, shard: tuple[int, int]) -> bool:
    """Whether shard K of N (K counts from 1, as in `split -n K/N`) owns the input at relative path
    `rel`: a stable hash of the path, so every shard agrees on who owns what on any host and in
    any listing order, and the shards together own each input exactly once."""
    k, n = shard
    if n == 1:
        return True
    digest = hashlib.blake2b(Path(rel).as_posix().encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n == k - 1


def failures_file(out_dir: Path, shard: tuple[int, int] = (1, 1)) -> Path:
    """Where a run (or one shard of it) keeps its record of failed inputs."""
    return out_dir / (FAILURES_FILE if shard[1] == 1 else FAILURES_FILE.replace(".json", f".{shard[0]}-of-{shard[1]}.json"))


def output_names(items: Sequence[tuple[Any, str, Path]], out_dir: Path, settings: ComposeSettings = ComposeSettings()) -> list[Path]:
    """Each input's MIDI: OUT_DIR/<relative path>.mid, except that inputs of one run that would
    share a name (`x.png` and `x.jpg`) each keep their extension (`x.png.mid`, `x.jpg.mid`). Still
    shared names (`d1/a.png` and `d2/a.png` given as arguments) and outputs that would overwrite
    an input are refused up front, before any work: FacetuneError."""
    import os
    from collections import Counter

    plain = [out_dir / rel.with_suffix(".mid") for _, _, rel in items]
    shared = Counter(plain)
    names = [out_dir / rel.with_name(rel.name + ".mid") if shared[p] > 1 else p for p, (_, _, rel) in zip(plain, items)]
    seen: dict[Path, str] = {}
    for target, (_, name, _) in zip(names, items):
        if target in seen:
            raise FacetuneError(f"{seen[target]} and {name} would both be written to {target}: give their common folder as the input (OUT_DIR/<relative path> keeps them apart) or compose them in separate runs; nothing was composed")
        seen[target] = name
    inputs = {os.path.realpath(src): name for src, name, _ in items if isinstance(src, (str, Path))}
    for target in names:
        for path in [target, *extra_outputs(target, settings)]:
            if os.path.realpath(path) in inputs:
                raise FacetuneError(f"{path} would overwrite the input {inputs[os.path.realpath(path)]}: choose another --out-dir; nothing was composed")
    return names


def _check_out_dir(out_dir: Path) -> None:
    """The output folder is a folder, or can be made: else one OutputError before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        from .errors import OutputError

        raise OutputError(out_dir, reason="it is a file, not a folder")
    _make_folder(out_dir)


def _dooms(exc: FacetuneError, out_dir: Path) -> bool:
    """Whether an output failure stops the batch: a full disk, a read-only file system, or an
    output folder that cannot be written to; other failures are the one input's."""
    import errno
    import os

    from .errors import OutputError

    if not isinstance(exc, OutputError):
        return False
    return exc.errno in OutputError.FATAL or (exc.errno in (errno.EACCES, errno.EPERM) and not os.access(out_dir, os.W_OK | os.X_OK))


def _seed_of(src: Any, settings: ComposeSettings) -> int | None:
    """The song seed of an input that is skipped: its content is read (not decoded) and hashed."""
    from .faces.photos import source_digest

    try:
        data, _ = _read_photo(src, settings.max_bytes)
    except InputError:
        return None
    return content_seed(settings.seed, source_digest(data))


def compose_many(items: Sequence[tuple[Any, str, Path]], out_dir: str | Path, settings: ComposeSettings = ComposeSettings(), *, on_read: Callable[[str, str | None], None] | None = None) -> Iterator[dict[str, Any]]:
    """Many photos → OUT_DIR/<relative path>.mid (see `output_names`), one record per input
    (`status` done, skipped or failed).

    `items` are (source, name, relative path). Inputs whose MIDI already exists are skipped (a
    rerun resumes) without loading any model, and their records come first; then inputs that
    failed in an earlier run with the same content and settings (kept in OUT_DIR/.facetune-failed.json,
    not retried unless `settings.retry_failed`); the others follow in input order. Photos are
    decoded and classified in a background thread while the songs of the previous batch are
    generated (all at once) and written; the models load once an input reads (the generator in a
    thread, while the first batch is classified), so a rerun over broken inputs loads none. Each
    song's seed comes from the base seed and the photo's content (`content_seed`), so a song does
    not depend on the order, the batch, the file's name or single versus batch compose.
    `on_read(name, error)` is called as each input is read, from the reading thread.
    An output failure is the input's record; one that dooms the rest (a full disk, a read-only or
    forbidden output folder) ends the run with an OutputError after that record.
    """
    out_dir = Path(out_dir)
    _check_soundfont(settings)
    check_seed(settings.seed)
    targets = output_names(items, out_dir, settings)
    own = [i for i, (_, _, rel) in enumerate(items) if shard_owns(rel, settings.shard)]
    items, targets = [items[i] for i in own], [targets[i] for i in own]
    _check_out_dir(out_dir)
    record = failures_file(out_dir, settings.shard)
    _remove_stale_temporaries(out_dir, {record} | {p for t in targets for p in (t, *extra_outputs(t, settings))})
    failures = _load_failures(record)
    todo = []
    for (src, name, rel), target in zip(items, targets):
        if target.exists() and not target.is_dir() and not settings.force:
            yield compose_record(input=name, output=str(target), seed=_seed_of(src, settings), status="skipped")
            failures.pop(_failure_key(target, out_dir), None)
            continue
        todo.append((src, name, rel, target))
    try:
        todo = yield from _unchanged_failures(todo, failures, out_dir, settings)
        if todo:
            yield from _compose_todo(todo, out_dir, failures, settings, on_read)
    finally:
        _save_failures(record, failures)


def _compose_todo(todo: list[tuple[Any, str, Path, Path]], out_dir: Path, failures: dict[str, Any], settings: ComposeSettings, on_read: Callable[[str, str | None], None] | None) -> Iterator[dict[str, Any]]:
    """Read, classify, compose and write the inputs that need it, with a progress bar that moves
    as each input is read."""
    worker = _song_worker(len(todo), settings)
    try:
        yield from _compose_read(todo, out_dir, failures, settings, on_read, worker)
    finally:
        if worker is not None:
            worker.close()


def _song_worker(songs: int, settings: ComposeSettings) -> Any:
    """A forked process that composes part of each chunk (`music.parallel`) when a second CPU is
    idle and the run is long enough to pay for it; None: everything stays in this process. Forked
    before any thread of the run starts, and before the generator loads (it loads its own, 50 ms)."""
    from .classifier.onnx_engine import _others_busy
    from .music import parallel

    if settings.png or settings.wav or settings.musicxml:
        return None  # the extras need the composition itself, in this process
    if not parallel.worth_a_worker(songs, _others_busy):
        return None
    return parallel.SongWorker(lambda: load_generator(settings.generator), bars=settings.bars, tempo=settings.tempo, form=settings.form, chords=settings.chords)


def _compose_read(todo: list[tuple[Any, str, Path, Path]], out_dir: Path, failures: dict[str, Any], settings: ComposeSettings, on_read: Callable[[str, str | None], None] | None, worker: Any) -> Iterator[dict[str, Any]]:
    """`_compose_todo` once the worker (or None) is settled."""
    from . import console

    with console.progress() as prog:
        task = prog.add_task("composing", total=len(todo))

        preload: list[Any] = []

        def read(i: int, error: str | None) -> None:
            prog.advance(task)
            if error is None and not preload:
                preload.append(_preload_generator(settings.generator))
            if on_read is not None:
                on_read(todo[i][1], error)

        # the first chunk's crops classified on their own, so the songs start sooner (one face an
        # input: the same crops share each of the classifier's runs of 64 as without it)
        first_batch = GENERATION_BATCH if settings.batch_size % GENERATION_BATCH == 0 else None
        stream = iter_classify([t[0] for t in todo], classifier=settings.classifier, classes=settings.classes, detect=settings.detect, batch_size=settings.batch_size, workers=settings.workers, device=settings.device, names=[t[1] for t in todo], max_bytes=settings.max_bytes, on_read=read, first_batch=first_batch)
        chunks = ([(todo[i], recs[0]) for i, recs in chunk] for chunk in _chunks(_prefetched(stream), _chunk_size(len(todo), worker is not None)))
        for rec, face, target in _compose_chunks(chunks, preload, out_dir, settings, worker):
            key = _failure_key(target, out_dir)
            if face.error and face.content:
                reason = face.error.removeprefix(f"{face.input}: ")  # the record does not depend on how the input was named
                failures[key] = {"content": face.content, "settings": _reading_settings(settings), "error": reason}
            elif not face.error:
                failures.pop(key, None)
            yield rec


def _preload_generator(path: str | None) -> Any:
    """Load the generator in a thread once an input has been read, so it loads while the first
    batch is classified (which the songs wait for anyway) rather than after. A failure is left
    to the songs' own `load_generator` call to raise: a failed load is not cached."""
    import contextlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):
            load_generator(path)

    thread = threading.Thread(target=load, name="facetune-generator", daemon=True)
    thread.start()
    return thread


#: Chunks waiting to be written at most (composed here, or offered to the worker) before this
#: process waits for the oldest: the songs composed ahead of the worker's stay a few chunks' worth.
WAITING_CHUNKS = 4

_Chunk = list[tuple[tuple[Any, str, Path, Path], FaceEmotion]]


@dataclass
class _Waiting:
    """A chunk on its way to being written: its songs once composed here, or the worker's share."""

    chunk: _Chunk
    seeds: list[Any]
    keys: list[int]
    requests: list[tuple[Any, Any]]
    songs: dict[int, Any] | None = None
    share: Any = None


def _compose_chunks(chunks: Iterator[_Chunk], preload: list[Any], out_dir: Path, settings: ComposeSettings, worker: Any) -> Iterator[tuple[dict[str, Any], FaceEmotion, Path]]:
    """Each chunk's records, in order (`_write_chunk`). With a worker, every chunk is offered to
    it, and this process, between writing the chunks that are done, composes the oldest ones the
    worker has not started while another waits for the worker (every one at the end): each
    process composes whole chunks, as many as it gets through (a share of a chunk costs more a
    song: 6.3 ms in a batch of 16 against 4.4 ms in one of 64). A chunk is written as soon as it
    and every chunk before it are composed."""
    import collections

    waiting: collections.deque[_Waiting] = collections.deque()

    def settle(final: bool) -> Iterator[tuple[dict[str, Any], FaceEmotion, Path]]:
        """Write the chunks that are done, in order, composing here what the worker has not
        started meanwhile; wait for the worker only at the end or when too many chunks wait."""
        while waiting:
            head = waiting[0]
            if head.songs is None and not head.share.done.is_set():  # the worker's, not ready
                share = worker.take_back(leave=0 if final else 1)
                if share is not None:
                    mine = next(w for w in waiting if w.share is share)
                    mine.songs = dict(zip(mine.keys, _compose_here(mine.requests, settings)))
                    continue
                if not final and len(waiting) <= WAITING_CHUNKS:
                    return
            waiting.popleft()
            yield from _write_chunk(head.chunk, head.seeds, _songs_of(head, settings, worker), out_dir, settings)

    for chunk in chunks:
        if preload:
            preload[0].join()
        seeds = [content_seed(settings.seed, face.content) if face.content else None for _, face in chunk]
        keys = [k for k, (_, face) in enumerate(chunk) if not face.error]
        item = _Waiting(chunk, seeds, keys, [(chunk[k][1].emotion, seeds[k]) for k in keys])
        if keys and worker is not None and worker.alive:
            item.share = worker.offer(item.requests)
        else:
            item.songs = dict(zip(keys, _compose_here(item.requests, settings)))
        waiting.append(item)
        yield from settle(final=False)
    yield from settle(final=True)


def _compose_chunk(chunk: Sequence[tuple[tuple[Any, str, Path, Path], FaceEmotion]], out_dir: Path, settings: ComposeSettings) -> Iterator[tuple[dict[str, Any], FaceEmotion, Path]]:
    """One chunk of classified inputs composed in this process and written, records in order: what
    a Ray actor runs (`scale.ray_pipeline`), the local batch's own code without a song worker."""
    return _compose_chunks(iter([list(chunk)]), [], out_dir, settings, None)


def _write_chunk(chunk: Sequence[tuple[tuple[Any, str, Path, Path], FaceEmotion]], seeds: list[Any], songs: dict[int, Any], out_dir: Path, settings: ComposeSettings) -> Iterator[tuple[dict[str, Any], FaceEmotion, Path]]:
    """Write the composed songs of a chunk of classified inputs and give their records in order
    (with the classification and the target); an output failure that dooms the rest is raised
    after its record."""
    for k, ((_, name, _, target), face) in enumerate(chunk):
        if face.error:
            yield compose_record(input=name, seed=seeds[k], error=face.error, status="failed"), face, target
            continue
        comp = songs[k]
        try:
            _write_composed(comp, target, settings)
        except FacetuneError as exc:
            yield compose_record(input=name, seed=seeds[k], error=str(exc), status="failed", output=str(target)), FaceEmotion(name, None, None, {}), target
            if _dooms(exc, out_dir):
                raise
            continue
        music = {"key": comp.key, "chords": list(comp.chords), "tempo": comp.tempo, "bars": comp.bars, "form": comp.form}
        yield compose_record(input=name, face=face.face, emotion=face.emotion, probabilities=face.probabilities, quadrant=comp.quadrant, seed=seeds[k], output=str(target), status="done", **music), face, target


def _compose_here(songs: list[tuple[Any, Any]], settings: ComposeSettings) -> list[Any]:
    """The (emotion, seed) songs composed in this process, in order."""
    from .music.composer import compose_emotions

    if not songs:
        return []
    return compose_emotions(songs, load_generator(settings.generator), bars=settings.bars, tempo=settings.tempo, form=settings.form)


def _songs_of(item: _Waiting, settings: ComposeSettings, worker: Any) -> dict[int, Any]:
    """A chunk's songs by position: composed here, or the worker's as
    `music.parallel.PreparedSong`s; whatever the worker could not make is composed here (so its
    errors are this path's own)."""
    if item.songs is not None:
        return item.songs
    theirs: list[Any] = worker.collect(item.share) or [None] * len(item.requests)
    redo = [i for i, song in enumerate(theirs) if song is None]
    for i, comp in zip(redo, _compose_here([item.requests[i] for i in redo], settings)):
        theirs[i] = comp
    return dict(zip(item.keys, theirs))


def _write_composed(song: Any, target: Path, settings: ComposeSettings) -> None:
    """Write a composition (`write_song`, with its extras) or a worker's prepared song (its checked
    MIDI bytes, put in place atomically by the same rules)."""
    from .checkpoints import atomic_write_bytes
    from .music.parallel import PreparedSong

    if not isinstance(song, PreparedSong):
        write_song(song, target, settings, extra_outputs(target, settings), replace_extras=True)
        return
    _make_folder(target.parent)
    refuse_overwrite(target, settings.force)
    atomic_write_bytes(target, song.data, durable=False)


def _remove_stale_temporaries(out_dir: Path, outputs: set[Path]) -> None:
    """Temporary files (`.NAME.XXXXXXXX.tmp`, see `checkpoints.atomic_write_bytes`) that a killed
    run (kill -9, a power cut) left for one of this run's `outputs`: a rerun removes them, and
    leaves alone those of other files, such as another shard's writing beside it."""
    import os
    import re

    stale = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")
    for folder, _, files in os.walk(out_dir):
        for name in files:
            m = stale.match(name)
            if m and Path(folder, m.group(1)) in outputs:
                Path(folder, name).unlink(missing_ok=True)


def _failure_key(target: Path, out_dir: Path) -> str:
    return target.relative_to(out_dir).as_posix()


def _reading_settings(settings: ComposeSettings) -> str:
    """What decides whether an input fails to read (not the music): a change means trying again."""
    return f"detect={settings.detect} classes={','.join(settings.classes or ())} classifier={settings.classifier or ''}"


def _load_failures(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_bytes())
        return dict(data["failed"]) if isinstance(data.get("failed"), dict) else {}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


def _save_failures(path: Path, failures: dict[str, Any]) -> None:
    """The record of failed inputs, written atomically (sorted, so a resumed run writes the same
    bytes as an uninterrupted one); none left, no file. A full disk only costs the record."""
    import json

    from . import console
    from .checkpoints import atomic_write_bytes

    try:
        if not failures:
            path.unlink(missing_ok=True)
            return
        about = "inputs that failed, by output name; a rerun does not try them again while their content and reading settings are unchanged (facetune compose --retry-failed does)"
        atomic_write_bytes(path, (json.dumps({"about": about, "failed": dict(sorted(failures.items()))}, indent=1, ensure_ascii=False) + "\n").encode(), durable=False)
    except OSError as exc:
        console.warn(f"could not keep the record of failed inputs: {exc}")


def _unchanged_failures(todo: list[tuple[Any, str, Path, Path]], failures: dict[str, Any], out_dir: Path, settings: ComposeSettings) -> Iterator[dict[str, Any]]:
    """Failed records for inputs that failed before with the same content and reading settings
    (read and hashed, not decoded); returns the inputs still to do."""
    from .faces.photos import source_digest

    rest = []
    for item in todo:
        src, name, _, target = item
        old = failures.get(_failure_key(target, out_dir))
        if settings.retry_failed or not old or old.get("settings") != _reading_settings(settings):
            rest.append(item)
            continue
        try:
            content = source_digest(_read_photo(src, settings.max_bytes)[0])
        except InputError:
            content = None
        if content != old.get("content"):
            rest.append(item)
            continue
        yield compose_record(input=name, seed=content_seed(settings.seed, content), error=f"{name}: {old['error']} (failed before with the same content; --retry-failed tries again)", status="failed")
    return rest


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
