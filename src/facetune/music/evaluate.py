"""`facetune evaluate music`: the melody metrics per emotion for generated songs, MIDI files and
training caches, and the novelty of generated phrases, as plain dicts.

Generated songs and the POP909 reference melodies (`--pop909`) also get the melody-line measures
of `melody_line` (issue 22: could a person sing it?), the song's chord track as the accompaniment
the tune should stay on top of; POP909 is a column beside the emotions, on the same 16-bar window."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import console
from ..errors import DataError

DEFAULT_EMOTIONS = ("happy", "sad", "angry", "calm")
UNLABELLED = "unlabelled"


def generated_songs(emotions: Sequence[str], n: int, generator: str | None = None, bars: int = 16, *, compose_options: dict[str, Any] | None = None) -> list[tuple[str, list[Any], list[Any] | None]]:
    """Compose seeds 0..n-1 for each emotion in one batch (`compose_emotions`):
    (label "emotion (Qn)", melody notes, chord-track notes) per piece."""
    from . import composer

    gen = composer.load_generator(generator)
    comps = composer.compose_emotions([(e, seed) for e in emotions for seed in range(n)], gen, bars=bars, **(compose_options or {}))
    return [(f"{c.emotion} ({c.quadrant})", list(c.melody), getattr(c, "accompaniment", None)) for c in comps]


def generated_melodies(emotions: Sequence[str], n: int, generator: str | None = None, bars: int = 16, *, compose_options: dict[str, Any] | None = None) -> list[tuple[str, list[Any]]]:
    """Compose seeds 0..n-1 for each emotion: (label "emotion (Qn)", melody notes) per piece."""
    return [(label, melody) for label, melody, _ in generated_songs(emotions, n, generator, bars, compose_options=compose_options)]


def song_metrics(notes: list[Any], bars: int, accompaniment: list[Any] | None = None) -> dict[str, Any]:
    """`metrics.summarize` and the melody-line measures of one melody (the line's `mean_pitch`, over
    its onsets in the 16-bar window, replaces the whole melody's)."""
    from .melody_line import melody_line_stats
    from .metrics import summarize

    return summarize(notes, bars) | melody_line_stats(notes, bars, accompaniment)


def window_notes(notes: list[Any], bars: int, max_bars: int = 16) -> list[Any]:
    """The notes starting in the `max_bars` bars from the first bar with a note, moved to start at bar 0."""
    from .pianoroll import STEPS_PER_BAR, Note

    notes = [n for n in notes if n.end > n.start]
    if not notes:
        return []
    first = max(0, min(n.start for n in notes)) // STEPS_PER_BAR * STEPS_PER_BAR
    end = first + max_bars * STEPS_PER_BAR
    return [Note(n.pitch, n.start - first, min(n.end, end) - first, n.velocity) for n in notes if first <= n.start < end]


POP909_LABEL = "POP909"


def pop909_metrics(root: str | Path, n: int = 200, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The metrics and melody-line measures of n POP909 sung melodies (`melody_line.pop909_reference`),
    each on its first 16 bars from the first bar with a note."""
    from .melody_line import pop909_reference

    ref = pop909_reference(root, n, seed)
    if not ref:
        raise DataError(f"{root}: no POP909 melodies (NNN/melody.txt of the structure layout)")
    return [(POP909_LABEL, song_metrics(window_notes(notes, bars), 16)) for _, notes, bars in ref]


def generated_metrics(emotions: Sequence[str], n: int, generator: str | None = None, bars: int = 16, *, compose_options: dict[str, Any] | None = None) -> list[tuple[str, dict[str, float]]]:
    """Compose seeds 0..n-1 for each emotion and score the melody track."""
    from .metrics import summarize

    return [(label, summarize(notes, bars)) for label, notes in generated_melodies(emotions, n, generator, bars, compose_options=compose_options)]


def quadrant_label(q: int) -> str:
    """Q1..Q4 for a cache's quadrant 0..3; anything else (POP909 caches use 4 for 'unknown') is unlabelled."""
    from ..emotions import QUADRANTS

    return QUADRANTS[q] if 0 <= q < len(QUADRANTS) else UNLABELLED


def _rows_to_notes(pitch: np.ndarray, onset: np.ndarray) -> list[Any]:
    """A clip's cache rows (bars of register columns, −1 = rest, and onsets) → notes."""
    from .pianoroll import BAR_WIDTH, ONSET, REST, rolls_to_notes

    p = pitch.reshape(-1).astype(np.int64)
    roll = np.zeros((len(p), BAR_WIDTH), dtype=np.uint8)
    roll[np.arange(len(p)), np.where(p < 0, REST, p)] = 1
    roll[:, ONSET] = (onset.reshape(-1) > 0) & (p >= 0)
    return rolls_to_notes(roll.reshape(len(pitch), -1, BAR_WIDTH))


def cache_melodies(cache: str | Path, split: str = "test") -> list[tuple[str, list[Any], int]]:
    """The untransposed melodies of a music cache's split: (quadrant label, notes, bars) per clip."""
    from .dataset import SPLIT_NAMES, load_music_cache

    _, arrays = load_music_cache(cache)
    s = SPLIT_NAMES.index(split)
    rows = np.flatnonzero((arrays["split"] == s) & (arrays["transpose"] == 0))
    clips = arrays["clip"][rows]
    out = []
    for clip in np.unique(clips):
        r = rows[clips == clip]
        out.append((quadrant_label(int(arrays["quadrant"][r[0]])), _rows_to_notes(arrays["pitch"][r], arrays["onset"][r]), len(r)))
    return out


def reference_metrics(cache: str | Path, split: str = "test") -> list[tuple[str, dict[str, float]]]:
    """Score the untransposed melodies of a music cache's split, one item per clip, grouped by quadrant."""
    from .metrics import summarize

    return [(label, summarize(notes, bars)) for label, notes, bars in cache_melodies(cache, split)]


def reference_name(cache: str | Path, split: str, taken: Sequence[str] = ()) -> str:
    """`reference <cache folder> (<split>)`, numbered when two caches share a folder name."""
    name = Path(cache).resolve().name or str(cache)
    label, k = f"reference {name} ({split})", 2
    while label in taken:
        label, k = f"reference {name} #{k} ({split})", k + 1
    return label


def novelty_report(pieces: Sequence[tuple[str, list[Any]]], cache: str | Path) -> dict[str, Any]:
    """phrase_novelty of generated pieces against the training split (untransposed) of a music cache,
    overall and per group: the share of their 4-bar phrases found, up to transposition, in training bars."""
    from .metrics import build_phrase_index, phrase_keys

    index = build_phrase_index((notes, bars) for _, notes, bars in cache_melodies(cache, "train"))
    keys: dict[str, list[bytes]] = {}
    for label, notes in pieces:
        keys.setdefault(label, []).extend(phrase_keys(notes))

    def share(ks: list[bytes]) -> dict[str, Any]:
        found = sum(k in index for k in ks)
        return {"phrases": len(ks), "found": found, "phrase_novelty": round(found / len(ks), 4) if ks else None}

    groups = {g: share(keys[g]) for g in sorted(keys)}
    return {"cache": str(cache), "split": "train", "training_phrases": len(index), "all": share([k for ks in keys.values() for k in ks]), "groups": groups}


def evaluate_music(
    paths: Sequence[Path],
    *,
    generate: int = 0,
    emotions: Sequence[str] = DEFAULT_EMOTIONS,
    reference: str | Path | Sequence[str | Path] | None = None,
    split: str = "test",
    generator: str | None = None,
    track: int | None = 0,
    novelty: str | Path | None = None,
    bars: int = 16,
    compose_options: dict[str, Any] | None = None,
    pop909: str | Path | None = None,
    pop909_n: int = 200,
) -> dict[str, Any]:
    """Music metrics per group for MIDI files, freshly generated melodies and/or the reference melodies
    of one or more caches (each its own source, grouped by quadrant or 'unlabelled'); with `novelty`,
    how many generated phrases are found in that cache's training melodies.

    Generated melodies also get the melody-line measures (`song_metrics`, the chord track as their
    accompaniment); with `pop909` (a POP909 structure-layout folder) the same measures of `pop909_n`
    of its sung melodies are a POP909 column beside the emotions (or a source of their own)."""
    from .metrics import aggregate, evaluate_files

    if novelty and not generate:
        raise DataError("phrase novelty needs generated melodies (--generate N)")
    result: dict[str, Any] = {"groups": {}, "errors": []}
    if paths:
        files: list[Path] = []
        for p in paths:
            if p.is_dir():
                files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".mid", ".midi"))
            else:
                files.append(p)
        if not files:
            raise DataError(f"no MIDI files (.mid, .midi) found in {', '.join(map(str, paths))}; nothing to do")
        per_file = evaluate_files(files, melody_track=track)
        result["groups"]["files"] = per_file["groups"]
        result["errors"] = per_file.get("errors", [])
    pieces: list[tuple[str, list[Any]]] = []
    pop = pop909_metrics(pop909, pop909_n) if pop909 else []
    if generate:
        songs = generated_songs(emotions, generate, generator, bars, compose_options=compose_options)
        pieces = [(label, notes) for label, notes, _ in songs]
        result["groups"]["generated"] = aggregate([(label, song_metrics(notes, bars, acc)) for label, notes, acc in songs])
        if pop:
            result["groups"]["generated"][POP909_LABEL] = aggregate(pop)[POP909_LABEL]
    elif pop:
        result["groups"][f"{POP909_LABEL} melodies"] = aggregate(pop)
    refs = [reference] if isinstance(reference, (str, Path)) else list(reference or [])
    for cache in refs:
        name = reference_name(cache, split, list(result["groups"]))
        items = reference_metrics(cache, split)
        if not items:
            console.warn(f"{cache}: no {split} melodies")
        result["groups"][name] = aggregate(items) if items else {}
    if novelty:
        result["novelty"] = novelty_report(pieces, novelty)
    return result
