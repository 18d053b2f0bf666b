"""Emotion labels and their place on Russell's valence-arousal plane.

The classifier speaks FER2013 labels; the melody generator speaks EMOPIA quadrants.
This module is the single bridge between the two.
"""
from __future__ import annotations

from dataclasses import dataclass

#: FER2013's label order (the `emotion` column of fer2013.csv).
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: What facetune classifies into unless told otherwise.
DEFAULT_CLASSES: tuple[str, ...] = ("happy", "sad", "angry")
QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")


@dataclass(frozen=True)
class Quadrant:
    name: str
    valence: int
    arousal: int
    mood: str


QUADRANT_INFO: dict[str, Quadrant] = {
    "Q1": Quadrant("Q1", +1, +1, "happy, excited"),
    "Q2": Quadrant("Q2", -1, +1, "angry, tense"),
    "Q3": Quadrant("Q3", -1, -1, "sad, depressed"),
    "Q4": Quadrant("Q4", +1, -1, "calm, relaxed"),
}

#: Each emotion word's quadrant. FER classes beyond the default three land where
#: Russell's circumplex puts them (fear and disgust are negative and aroused).
EMOTION_QUADRANT: dict[str, str] = {
    "happy": "Q1",
    "surprise": "Q1",
    "angry": "Q2",
    "fear": "Q2",
    "disgust": "Q2",
    "sad": "Q3",
    "neutral": "Q4",
    "calm": "Q4",
}

#: The emotion a quadrant stands for when it is asked for directly.
QUADRANT_EMOTION: dict[str, str] = {"Q1": "happy", "Q2": "angry", "Q3": "sad", "Q4": "calm"}


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'happy'?)' for a near miss, else ''."""
    import difflib

    close = difflib.get_close_matches(name.strip().lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def normalize_emotion(name: str) -> str:
    """Canonical lower-case emotion or upper-case quadrant name; raises ValueError if unknown."""
    key = name.strip()
    if key.upper() in QUADRANT_INFO:
        return key.upper()
    key = key.lower()
    if key not in EMOTION_QUADRANT:
        known = sorted(EMOTION_QUADRANT) + list(QUADRANTS)
        raise ValueError(f"unknown emotion {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
    return key


def quadrant_of(name: str) -> str:
    """Quadrant (Q1..Q4) for an emotion word or a quadrant name."""
    key = normalize_emotion(name)
    return key if key in QUADRANT_INFO else EMOTION_QUADRANT[key]


def parse_classes(spec: str | None) -> tuple[str, ...]:
    """Parse `happy,sad,angry` or `all` into FER class names, keeping the given order."""
    if spec is None or spec.strip() == "":
        return DEFAULT_CLASSES
    if spec.strip().lower() == "all":
        return FER_CLASSES
    names = tuple(s.strip().lower() for s in spec.split(",") if s.strip())
    unknown = [n for n in names if n not in FER_CLASSES]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}{did_you_mean(unknown[0], FER_CLASSES)}; FER2013 classes are {', '.join(FER_CLASSES)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError("--classes needs at least two distinct classes")
    return names
