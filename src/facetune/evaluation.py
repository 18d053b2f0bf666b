"""`facetune evaluate`: the classifier's test figures and the music metrics, as plain dicts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import console
from .errors import DataError


def _image_folder(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, list[str]]:
    """A tree with one folder per class; every image is used whole, as a face crop."""
    from .faces import IMAGE_SUFFIXES, load_image, whole_image_crop
    from .errors import InputError

    folders = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    missing = [c for c in classes if c not in folders]
    if missing:
        raise DataError(f"{root}: no folder for class {missing[0]!r} (found: {', '.join(sorted(folders)) or 'none'})")
    crops, labels = [], []
    for c in classes:
        for f in sorted(folders[c].rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    crops.append(whole_image_crop(load_image(f), size))
                    labels.append(c)
                except InputError as exc:
                    console.warn(str(exc))
    if not crops:
        raise DataError(f"{root}: no images found")
    return np.stack(crops), labels


def evaluate_classifier(clf: Any, data: str | Path, *, split: str = "test", classes: Sequence[str] | None = None, tta: bool = True) -> dict[str, Any]:
    """Score `clf` on a prepared faces cache split or an image-folder tree, over `classes`."""
    from .classifier import evaluate_arrays
    from .data import load_faces_cache

    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: not a folder (give a prepared faces cache or a folder with one sub-folder per class)")
    if (data / "manifest.json").is_file():
        manifest, splits = load_faces_cache(data)
        x, y = splits[split]
        names = [manifest["classes"][int(i)] for i in y]
        available = list(manifest["classes"])
        where = f"{data} ({split})"
    else:
        available = sorted(d.name.lower() for d in data.iterdir() if d.is_dir())
        wanted = list(classes) if classes else [c for c in clf.default_classes if c in available]
        x, names = _image_folder(data, wanted, clf.crop_size)
        where = str(data)
    wanted = list(classes) if classes else [c for c in clf.default_classes if c in available]
    if len(wanted) < 2:
        raise DataError(f"{data}: fewer than two of the classifier's classes are in the data ({', '.join(available)})")
    keep = np.array([n in wanted for n in names], dtype=bool)
    result = evaluate_arrays(clf, x[keep], [n for n, k in zip(names, keep) if k], wanted, tta=tta)
    return {"data": where, "classifier": clf.path, "tta": tta, **result}


def generated_metrics(emotions: Sequence[str], n: int, generator: str | None = None, bars: int = 16) -> list[tuple[str, dict[str, float]]]:
    """Compose seeds 0..n-1 for each emotion and score the melody track."""
    from .composer import compose_emotion, load_generator
    from .music.metrics import summarize

    gen = load_generator(generator)
    items = []
    for emotion in emotions:
        for seed in range(n):
            comp = compose_emotion(emotion, gen, bars=bars, seed=seed)
            items.append((f"{comp.emotion} ({comp.quadrant})", summarize(comp.melody, bars)))
    return items


def reference_metrics(cache: str | Path, split: str = "test") -> list[tuple[str, dict[str, float]]]:
    """Score the untransposed melodies of a music cache's split, one item per clip."""
    from .emotions import QUADRANTS
    from .music.dataset import SPLIT_NAMES, load_music_cache
    from .music.metrics import summarize
    from .music.pianoroll import rolls_to_notes
    from .music.train import bars_tensor

    _, arrays = load_music_cache(cache)
    s = SPLIT_NAMES.index(split)
    rows = np.flatnonzero((arrays["split"] == s) & (arrays["transpose"] == 0))
    items = []
    for clip in np.unique(arrays["clip"][rows]):
        r = rows[arrays["clip"][rows] == clip]
        rolls = bars_tensor(arrays["pitch"][r], arrays["onset"][r])[:, 0].numpy()
        items.append((QUADRANTS[int(arrays["quadrant"][r[0]])], summarize(rolls_to_notes(rolls), len(r))))
    return items


def evaluate_music(paths: Sequence[Path], *, generate: int = 0, emotions: Sequence[str] = ("happy", "sad", "angry"), reference: str | Path | None = None, split: str = "test", generator: str | None = None, track: int | None = 0) -> dict[str, Any]:
    """Music metrics per group for MIDI files, freshly generated melodies and/or a cache's reference melodies."""
    from .music.metrics import aggregate, evaluate_files

    result: dict[str, Any] = {"groups": {}, "errors": []}
    if paths:
        files: list[Path] = []
        for p in paths:
            if p.is_dir():
                files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".mid", ".midi"))
            else:
                files.append(p)
        per_file = evaluate_files(files, melody_track=track)
        result["groups"]["files"] = per_file["groups"]
        result["errors"] = per_file.get("errors", [])
    if generate:
        result["groups"]["generated"] = aggregate(generated_metrics(emotions, generate, generator))
    if reference:
        result["groups"][f"reference ({split})"] = aggregate(reference_metrics(reference, split))
    return result
