"""`facetune evaluate classifier`: accuracy, per-class precision, recall and F1, and the confusion matrix, as a plain dict."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import console
from ..errors import DataError


def _image_folder(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, list[str]]:
    """A tree with one folder per class; every image is used whole, as a face crop."""
    from ..faces.photos import IMAGE_SUFFIXES, load_image, whole_image_crop
    from ..errors import InputError

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
    from .inference import evaluate_arrays
    from ..faces.data import load_faces_cache

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
