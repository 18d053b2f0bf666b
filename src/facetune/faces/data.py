"""`prepare-data faces`: turn FER2013 (image folders or fer2013.csv) into a compact, leak-free cache.

The cache is a folder of uint8 `.npy` arrays (`{split}_x.npy` N×S×S, `{split}_y.npy`)
plus `manifest.json` with the classes, counts per class and split, what was dropped
and why, and a fingerprint of the source so a rerun on the same input is a no-op.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import console
from ..training.cache import cache_is_current, fingerprint, read_cache, write_arrays, write_manifest
from ..emotions import FER_CLASSES
from ..errors import DataError

FACES_CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
NEAR_BLANK_STD = 1.0


@dataclass(frozen=True)
class FacePrepConfig:
    classes: tuple[str, ...] = ("happy", "sad", "angry")
    val_fraction: float = 0.1
    seed: int = 0
    size: int = 48


def _read_image_gray(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _load_folders(src: Path, cfg: FacePrepConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from .photos import IMAGE_SUFFIXES

    split_dirs = {"train": src / "train", "test": src / "test"}
    if not split_dirs["train"].is_dir():
        raise DataError(f"{src}: expected a train/ folder with one sub-folder per class (or a fer2013.csv file)")
    present = {d.name.lower() for d in split_dirs["train"].iterdir() if d.is_dir()}
    missing = [c for c in cfg.classes if c not in present]
    if missing:
        raise DataError(f"{src / 'train'}: no folder for class {missing[0]!r} (found: {', '.join(sorted(present)) or 'none'})")
    jobs: list[tuple[str, int, Path]] = []
    for split, d in split_dirs.items():
        if not d.is_dir():
            continue
        for label, cls in enumerate(cfg.classes):
            cdir = next((x for x in d.iterdir() if x.is_dir() and x.name.lower() == cls), None)
            if cdir is None:
                continue
            jobs += [(split, label, f) for f in sorted(cdir.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    arrays: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    bad = 0
    with console.progress() as prog:
        task = prog.add_task("reading images", total=len(jobs))
        for split, label, f in jobs:
            try:
                arrays[split].append(_read_image_gray(f, cfg.size))
                labels[split].append(label)
            except OSError:
                bad += 1
                console.warn(f"{f}: unreadable image, skipped")
            prog.advance(task)
    if bad:
        console.info(f"skipped {bad} unreadable images")
    return {s: _stack(arrays[s], labels[s], cfg.size) for s in arrays}


def _load_csv(src: Path, cfg: FacePrepConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    arrays: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    wanted = {FER_CLASSES.index(c): i for i, c in enumerate(cfg.classes)}
    with open(src, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        need = {"emotion", "pixels"}
        if not need <= cols:
            raise DataError(f"{src}: missing column(s) {', '.join(sorted(need - cols))}; expected emotion,pixels,Usage")
        for lineno, row in enumerate(reader, start=2):
            try:
                emotion = int(row["emotion"])
                pix = np.array(row["pixels"].split(), dtype=np.int32)
            except (ValueError, TypeError):
                raise DataError(f"{src}:{lineno}: malformed row (emotion must be 0-6, pixels space-separated integers)") from None
            if not 0 <= emotion < len(FER_CLASSES):
                raise DataError(f"{src}:{lineno}: unknown emotion label {emotion} (FER2013 uses 0-6)")
            side = int(round(len(pix) ** 0.5))
            if side * side != len(pix) or side < 8 or pix.min(initial=0) < 0 or pix.max(initial=0) > 255:
                raise DataError(f"{src}:{lineno}: pixels must be a square image of 0-255 values ({len(pix)} values given)")
            if emotion not in wanted:
                continue
            usage = (row.get("Usage") or "Training").strip().lower()
            split = "train" if usage == "training" else "test"
            img = pix.astype(np.uint8).reshape(side, side)
            if side != cfg.size:
                from PIL import Image

                img = np.asarray(Image.fromarray(img).resize((cfg.size, cfg.size), Image.BILINEAR))
            arrays[split].append(img)
            labels[split].append(wanted[emotion])
    return {s: _stack(arrays[s], labels[s], cfg.size) for s in arrays}


def _stack(imgs: list[np.ndarray], labels: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    if not imgs:
        return np.zeros((0, size, size), np.uint8), np.zeros((0,), np.int64)
    return np.stack(imgs), np.asarray(labels, dtype=np.int64)


def _hashes(x: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(img.tobytes(), digest_size=12).digest() for img in x]


def _stratified_group_split(y: np.ndarray, groups: list[bytes], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation rows: per class, whole groups of identical images go to one side."""
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(y), dtype=bool)
    group_rows: dict[bytes, list[int]] = {}
    for i, g in enumerate(groups):
        group_rows.setdefault(g, []).append(i)
    for cls in np.unique(y):
        cls_groups = sorted({groups[i] for i in np.flatnonzero(y == cls)})
        order = rng.permutation(len(cls_groups))
        target = int(round(fraction * int((y == cls).sum())))
        taken = 0
        for j in order:
            if taken >= target:
                break
            rows = group_rows[cls_groups[j]]
            is_val[rows] = True
            taken += len(rows)
    return is_val


def prepare_faces(src: str | Path, out: str | Path, cfg: FacePrepConfig = FacePrepConfig(), force: bool = False) -> dict[str, Any]:
    """Build the faces cache; returns the manifest. A rerun with the same input and options does nothing."""
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    fp = fingerprint(src)
    options = asdict(cfg) | {"classes": list(cfg.classes)}
    if not force and (old := cache_is_current(out, fp, options, "faces", FACES_CACHE_VERSION)):
        console.info(f"{out}: cache is up to date, nothing to do")
        return old | {"up_to_date": True}
    if src.is_file():
        raw = _load_csv(src, cfg)
        layout = "fer2013.csv"
    else:
        csv_file = src / "fer2013.csv"
        raw = _load_csv(csv_file, cfg) if csv_file.is_file() and not (src / "train").is_dir() else _load_folders(src, cfg)
        layout = "csv" if csv_file.is_file() and not (src / "train").is_dir() else "image folders"
    x_tr, y_tr = raw["train"]
    x_te, y_te = raw["test"]
    if len(x_tr) == 0:
        raise DataError(f"{src}: no training images found for classes {', '.join(cfg.classes)}")
    dropped: dict[str, int] = {}
    blank_tr = x_tr.reshape(len(x_tr), -1).std(axis=1) < NEAR_BLANK_STD
    blank_te = x_te.reshape(len(x_te), -1).std(axis=1) < NEAR_BLANK_STD if len(x_te) else np.zeros(0, bool)
    dropped["near_blank_train"] = int(blank_tr.sum())
    dropped["near_blank_test"] = int(blank_te.sum())
    x_tr, y_tr = x_tr[~blank_tr], y_tr[~blank_tr]
    x_te, y_te = x_te[~blank_te], y_te[~blank_te]
    h_tr = _hashes(x_tr)
    train_set = set(h_tr)
    h_te = _hashes(x_te)
    leaked = np.array([h in train_set for h in h_te], dtype=bool)
    dropped["test_identical_to_train"] = int(leaked.sum())
    x_te, y_te = x_te[~leaked], y_te[~leaked]
    is_val = _stratified_group_split(y_tr, h_tr, cfg.val_fraction, cfg.seed)
    splits = {
        "train": (x_tr[~is_val], y_tr[~is_val]),
        "val": (x_tr[is_val], y_tr[is_val]),
        "test": (x_te, y_te),
    }
    write_arrays(out, {f"{name}_{suffix}": arr for name, (x, y) in splits.items() for suffix, arr in (("x", x), ("y", y))})
    counts = {name: {c: int((y == i).sum()) for i, c in enumerate(cfg.classes)} for name, (_, y) in splits.items()}
    manifest = {
        "format_version": FACES_CACHE_VERSION,
        "kind": "faces",
        "source": str(src.resolve()),
        "layout": layout,
        "fingerprint": fp,
        "options": options,
        "classes": list(cfg.classes),
        "image_size": cfg.size,
        "counts": counts,
        "dropped": dropped,
    }
    write_manifest(out, manifest)
    return manifest


def load_faces_cache(cache: str | Path) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Read a faces cache as {split: (images, labels)}."""
    names = [f"{s}_{k}" for s in SPLITS for k in ("x", "y")]
    manifest, arrays = read_cache(cache, "faces", FACES_CACHE_VERSION, names)
    return manifest, {s: (arrays[f"{s}_x"], arrays[f"{s}_y"]) for s in SPLITS}
