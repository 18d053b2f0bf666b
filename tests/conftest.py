"""Shared fixtures: tiny synthetic datasets and tiny trained models, made once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("FACETUNE_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ASTRONAUT = SHARED / "photos" / "astronaut.png"
CHELSEA = SHARED / "photos" / "chelsea.png"
CLASSES = ("happy", "sad", "angry")


def face_image(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A 48×48 gray 'face' whose class is visible: a mouth curve up (happy), down (sad) or flat and dark (angry)."""
    img = rng.normal(120, 12, (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    img[(xx - 16) ** 2 + (yy - 18) ** 2 < 12] = 40
    img[(xx - 32) ** 2 + (yy - 18) ** 2 < 12] = 40
    curve = {0: -0.05, 1: 0.05, 2: 0.0}[label]
    mouth_y = 34 + curve * (xx - 24) ** 2 * (1 if label != 2 else 0)
    img[(np.abs(yy - mouth_y) < 2) & (np.abs(xx - 24) < 12)] = 30 if label != 2 else 10
    if label == 2:
        img[10:13, 10:38] = 20
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def write_fer_tree(root: Path, n_train: int = 16, n_test: int = 6, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    first = None
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(CLASSES):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = face_image(label, rng)
                if split == "train" and first is None:
                    first = img
                Image.fromarray(img).save(d / f"{split}_{cls}_{i}.png")
    Image.fromarray(first).save(root / "test" / "happy" / "copy_of_train.png")
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(root / "test" / "sad" / "blank.png")
    return root


@pytest.fixture(scope="session")
def fer_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fer_tree(tmp_path_factory.mktemp("fer"))


@pytest.fixture(scope="session")
def faces_cache(fer_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facetune.faces.data import FacePrepConfig, prepare_faces

    out = tmp_path_factory.mktemp("faces_cache")
    prepare_faces(fer_tree, out, FacePrepConfig(classes=CLASSES, val_fraction=0.2))
    return out


@pytest.fixture(scope="session")
def tiny_classifier(faces_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facetune.classifier.train import ClassifierConfig, train_classifier

    out = tmp_path_factory.mktemp("clf_run")
    train_classifier(faces_cache, out, ClassifierConfig(tiny=True, init="random", epochs=2, batch_size=8, input_size=48), device="cpu")
    return out / "model.pt"


def write_midi_clip(path: Path, quadrant: int, seed: int, bars: int = 6, bpm: float = 120.0) -> Path:
    """A small piano clip: a melody over block chords, major for Q1/Q4, minor for Q2/Q3."""
    import pretty_midi

    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(0)
    beat = 60.0 / bpm
    scale = [0, 2, 4, 5, 7, 9, 11] if quadrant in (0, 3) else [0, 2, 3, 5, 7, 8, 10]
    step = 1 if quadrant in (0, 1) else 2
    for b in range(bars):
        root = [0, 5, 7, 0][b % 4]
        third = 4 if quadrant in (0, 3) else 3
        for p in (48 + root, 52 + root + third - 4, 55 + root):
            inst.notes.append(pretty_midi.Note(70, p, b * 4 * beat, (b + 1) * 4 * beat))
        for k in range(0, 4, step):
            p = 72 + scale[int(rng.integers(len(scale)))]
            t = (b * 4 + k) * beat
            inst.notes.append(pretty_midi.Note(90, p, t, t + step * beat * 0.9))
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


@pytest.fixture(scope="session")
def emopia_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EMOPIA-shaped folder: midis/Qn_<song>_<clip>.mid and split/*_SL.csv."""
    root = tmp_path_factory.mktemp("emopia")
    (root / "midis").mkdir()
    (root / "split").mkdir()
    songs = {"train": [], "val": [], "test": []}
    for q in range(4):
        for s in range(4):
            song = f"song{q}{s}_x"
            split = "train" if s < 2 else ("val" if s == 2 else "test")
            songs[split].append((song, q))
            for clip in range(2):
                write_midi_clip(root / "midis" / f"Q{q + 1}_{song}_{clip}.mid", q, seed=q * 100 + s * 10 + clip)
    for split, rows in songs.items():
        lines = ["songID,num_Q1,num_Q2,num_Q3,num_Q4,DominantQ"] + [f"{s},0,0,0,0,{q + 1}" for s, q in rows]
        (root / "split" / f"{split}_SL.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def music_cache(emopia_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facetune.music.dataset import MusicPrepConfig, prepare_music

    out = tmp_path_factory.mktemp("music_cache")
    prepare_music(emopia_tree, out, MusicPrepConfig(grid="nominal", transpositions=(0, 2)))
    return out


@pytest.fixture(scope="session")
def tiny_generator(music_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facetune.music.train import GanConfig, train_gan

    out = tmp_path_factory.mktemp("gan_run")
    train_gan(music_cache, out, GanConfig(tiny=True, epochs=1, batch_size=16, steps_per_epoch=4), device="cpu")
    return out / "generator.pt"


def random_bars(rng, n_bars: int, low: int = 60) -> list:
    """A seeded random melody of `n_bars` whole bars of 1-, 2- and 4-step notes (a seed or a Generator)."""
    from facetune.music.pianoroll import Note

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    notes = []
    for b in range(n_bars):
        t = 0
        while t < 16:
            d = min(16 - t, int(rng.choice([1, 2, 2, 4])))
            notes.append(Note(int(rng.integers(low, low + 12)), 16 * b + t, 16 * b + t + d))
            t += d
    return notes


# Inverses of what the package writes, used as test oracles (the package itself never needs them).

from facetune.music.chords import NO_CHORD, chord_index, pitch_class  # noqa: E402
from facetune.music.pianoroll import BAR_WIDTH, LOW_PITCH, ONSET, REST, STEPS_PER_BAR, fold_pitch  # noqa: E402


def notes_to_rolls(notes, n_bars: int) -> np.ndarray:
    """The inverse of `pianoroll.rolls_to_notes`: monophonic notes → (n_bars, 16, BAR_WIDTH) uint8 rolls. Later notes cut earlier ones."""
    steps = n_bars * STEPS_PER_BAR
    pitch = np.full(steps, -1, dtype=np.int64)
    onset = np.zeros(steps, dtype=np.uint8)
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        s, e = max(0, n.start), min(steps, n.end)
        if s >= steps or e <= s:
            continue
        p = fold_pitch(n.pitch) - LOW_PITCH
        pitch[s:e] = p
        onset[s] = 1
    roll = np.zeros((steps, BAR_WIDTH), dtype=np.uint8)
    sounding = pitch >= 0
    roll[np.flatnonzero(sounding), pitch[sounding]] = 1
    roll[~sounding, REST] = 1
    roll[:, ONSET] = onset & sounding
    return roll.reshape(n_bars, STEPS_PER_BAR, BAR_WIDTH)


def parse_chord(name: str) -> int:
    """The inverse of `chord_name`, for any spelling ('G#m', 'Abm', 'Cb')."""
    name = name.strip()
    if name.upper() in ("N.C.", "N", "NC"):
        return NO_CHORD
    minor = name.endswith("m")
    try:
        root = pitch_class(name[:-1] if minor else name)
    except ValueError:
        raise ValueError(f"unknown chord {name!r}") from None
    return chord_index(root, "min" if minor else "maj")
