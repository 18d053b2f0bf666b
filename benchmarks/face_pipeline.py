"""Detection and cropping measured end to end on faces placed in synthetic photos.

No labelled set of real photos ships here, so this builds one from a prepared faces
cache: each test face is enlarged to 80–200 px, tilted by up to ±MAX_TILT degrees,
feathered into a 320×320 textured background at a random place, and the photo goes
through the face pipeline and the shipped classifier. Printed for each pipeline:
how often the right face is found (its centre inside the true face), how often a
face is reported where there is none (on the same backgrounds without a face), and
accuracy (a missed face counts as wrong), against the classifier on the original crops.

    python benchmarks/face_pipeline.py cache/fer3 --n 600
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from facetune.classifier.inference import load_classifier
from facetune.faces.photos import _haar_boxes, crop_face, find_faces, to_gray
from facetune.errors import NoFaceError

SIDE = 320


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth coloured noise with a gradient: texture without faces."""
    noise = rng.normal(0, 1, (SIDE // 8, SIDE // 8, 3)).astype(np.float32)
    noise = cv2.resize(noise, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    grad = np.linspace(-0.5, 0.5, SIDE, dtype=np.float32)[None, :, None] * rng.uniform(-1, 1)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    return np.clip(base + 35 * noise + 80 * grad, 0, 255).astype(np.uint8)


def place(face: np.ndarray, rng: np.random.Generator, max_tilt: float) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The face in a photo, and its true centre and size."""
    size = int(rng.integers(80, 201))
    tilt = float(rng.uniform(-max_tilt, max_tilt))
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot((xx - size / 2) / (size * 0.5), (yy - size / 2) / (size * 0.5))
    alpha = np.clip((1.0 - r) / 0.15, 0, 1)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), tilt, 1.0)
    big = cv2.warpAffine(big, m, (size, size), borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(alpha, m, (size, size))
    photo = background(rng)
    x0, y0 = int(rng.integers(0, SIDE - size + 1)), int(rng.integers(0, SIDE - size + 1))
    region = photo[y0 : y0 + size, x0 : x0 + size].astype(np.float32)
    photo[y0 : y0 + size, x0 : x0 + size] = np.clip(alpha[..., None] * big[..., None] + (1 - alpha[..., None]) * region, 0, 255).astype(np.uint8)
    return photo, (x0 + size / 2, y0 + size / 2, size)


def haar_pipeline(photo: np.ndarray, margin: float, size: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """facetune's earlier pipeline: the Haar cascades and a margin-widened box crop."""
    boxes = sorted(_haar_boxes(to_gray(photo)), key=lambda b: b[2] * b[3], reverse=True)
    return (boxes[0], crop_face(photo, boxes[0], margin, size)) if boxes else None


def current_pipeline(photo: np.ndarray, margin: float, size: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    try:
        [face] = find_faces(photo, size=size, margin=margin)
    except NoFaceError:
        return None
    return (face.box, face.crop) if face.box is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path, help="faces cache from `facetune prepare-data faces`")
    ap.add_argument("--n", type=int, default=600, help="test faces to place (a seeded random sample)")
    ap.add_argument("--max-tilt", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pipelines", default="haar,current", help="which to run: haar (the cascades and a box crop), current (facetune's)")
    args = ap.parse_args()

    manifest = json.loads((args.cache / "manifest.json").read_text())
    x = np.load(args.cache / "test_x.npy", mmap_mode="r")
    y = np.load(args.cache / "test_y.npy")
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(x), min(args.n, len(x)), replace=False))
    clf = load_classifier()
    classes = [c for c in clf.active() if c in manifest["classes"]]
    truth = np.array([classes.index(manifest["classes"][int(i)]) for i in y[idx]])
    faces = np.asarray(x[idx])
    print(f"{len(idx)} faces from {args.cache} (test), tilt up to ±{args.max_tilt:g}°, 80–200 px in {SIDE}×{SIDE} photos")

    ref = clf.predict(faces, classes).argmax(1)
    print(f"{'original crops':<32} accuracy {np.mean(ref == truth):.4f}")
    photos = [place(f, rng, args.max_tilt) for f in faces]
    empties = [background(rng) for _ in range(len(idx))]
    pipelines = {"haar": ("Haar cascades + box crop", haar_pipeline), "current": ("MTCNN + landmark alignment", current_pipeline)}
    for key in args.pipelines.split(","):
        name, fn = pipelines[key]
        t0 = time.perf_counter()
        found, crops, hits = [], [], 0
        for k, (photo, (cx, cy, s)) in enumerate(photos):
            res = fn(photo, clf.face_margin, clf.crop_size)
            if res is None:
                continue
            (bx, by, bw, bh), crop = res
            if abs(bx + bw / 2 - cx) < s / 2 and abs(by + bh / 2 - cy) < s / 2:
                hits += 1
                found.append(k)
                crops.append(crop)
        seconds = time.perf_counter() - t0
        false = sum(fn(e, clf.face_margin, clf.crop_size) is not None for e in empties)
        pred = clf.predict(np.stack(crops), classes).argmax(1) if crops else np.empty(0, int)
        correct = int(np.sum(pred == truth[found]))
        print(
            f"{name:<32} found {hits / len(idx):.4f}  false faces {false / len(idx):.4f}  accuracy {correct / len(idx):.4f}"
            f"  (on found faces {correct / max(1, len(found)):.4f})  {1000 * seconds / len(idx):.0f} ms/photo"
        )


if __name__ == "__main__":
    main()
