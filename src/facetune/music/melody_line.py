"""Is it a line a person could sing? Per-melody pitch, rhythm and repetition measures (issue 22).

Everything is measured the way `metrics` measures repetition: the melody is read monophonically
on the 16-steps-per-bar grid (a later note cuts an earlier one; same start, the higher wins) over
the window of `metrics.WINDOW_BARS` (16) bars from the first bar with a note (`metrics._window`),
so a generated song and a POP909 melody are cut the same way. The line's notes are its onsets in
that window; intervals are between consecutive notes, rests ignored (a singer's next note).

- `melody_line_stats`: contour (intervals, leaps, spikes, range, register), rhythm (onsets on the
  "and", inter-onset interval, density spread, silent bars), literal repetition (copied bars,
  looped phrases, runs of one pitch), whether the tune stays on top of its accompaniment, and
  polyphony (a sung line has one note at a time).
- `yang_lerch_features` and `overlap_area`: the 13 per-piece features and the overlap-area
  likeness of Yang & Lerch (2020), "On the evaluation of generative models in music", so two
  sets of melodies can be compared as distributions rather than by means.
- `pop909_reference`: the POP909 sung melodies (structure layout, `melody.txt`, bar-aligned)
  chosen reproducibly, as the reference a melody is compared with.

numpy only, and fast (a melody in well under a millisecond), so benchmarks can score thousands.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .metrics import PHRASE_BARS, WINDOW_BARS, _window
from .pianoroll import STEPS_PER_BAR, STEPS_PER_BEAT, Note

#: A step is at most a whole tone; a leap is a fourth or wider (POP909: 67% steps, 15% leaps).
STEP = 2
LEAP = 5
#: A spike is a note at least a fifth away from both neighbours, on the same side (a blip).
SPIKE = 7
OCTAVE = 12
#: 16th positions of the "and" of each beat, and of beats 2 and 4.
AND_POSITIONS = (2, 6, 10, 14)
AND_OF_2, AND_OF_4 = 6, 14
#: Note-length bins for Yang & Lerch's length histogram, in 16th steps (lower edges; the last is 16+).
LENGTH_EDGES = (1, 2, 3, 4, 6, 8, 12, 16)

STAT_NAMES = (
    "mean_interval", "octave_leaps", "leaps", "steps", "spikes", "range", "largest_leap", "mean_pitch",
    "leap_recovery", "note_count", "mean_ioi_beats", "offbeat_and", "and_of_2", "and_of_4",
    "notes_per_bar_sd", "silent_bars", "literal_copies", "looped_phrases", "below_accompaniment",
    "longest_pitch_run", "polyphony_max",
)
YL_NAMES = (
    "pitch_count", "pitch_class_histogram", "pitch_class_transition", "pitch_range", "mean_interval",
    "note_count", "mean_ioi", "note_length_histogram", "note_length_transition", "step_share",
    "leap_share", "mean_pitch", "longest_pitch_run",
)


class _Line:
    """The melody read as a line over its 16-bar window: grid arrays and the notes it holds."""

    def __init__(self, notes: Sequence[Note], n_bars: int, max_bars: int | None = WINDOW_BARS) -> None:
        notes = [n for n in notes if n.end > n.start]
        self.pitch_grid, self.onset_grid = _window(notes, n_bars, max_bars)
        starts = [max(0, n.start) for n in notes]
        #: Absolute step where the window starts (the first bar with a note).
        self.first = (min(starts) // STEPS_PER_BAR * STEPS_PER_BAR) if notes else 0
        self.bars = len(self.pitch_grid)
        flat = self.pitch_grid.reshape(-1)
        sounding = flat >= 0
        prev = np.concatenate([[-1], flat[:-1]])
        # A note starts at an onset, or where the sounding pitch changes without one (the tail of a
        # cut note): the line as `rolls_to_notes` would read it.
        is_start = sounding & (self.onset_grid.reshape(-1) | (flat != prev))
        self.steps = np.flatnonzero(is_start)
        self.pitches = flat[self.steps].astype(np.int64)
        note_id = np.cumsum(is_start) - 1
        self.lengths = np.bincount(note_id[sounding], minlength=len(self.steps))[: len(self.steps)] if len(self.steps) else np.zeros(0, np.int64)
        self.intervals = np.diff(self.pitches)
        self.notes = notes


def line_events(notes: Sequence[Note], n_bars: int, max_bars: int | None = WINDOW_BARS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The line's notes over the window as arrays: onset step (from the window's first bar), pitch
    and length in steps (a note ends at the next onset or rest at the latest). `max_bars` None: the
    whole melody from its first bar with a note."""
    line = _Line(notes, n_bars, max_bars)
    return line.steps, line.pitches, line.lengths


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else float("nan")


def _longest_run(values: np.ndarray) -> int:
    """Longest run of equal consecutive values (0 for none)."""
    if not len(values):
        return 0
    change = np.flatnonzero(np.diff(values) != 0)
    bounds = np.concatenate([[-1], change, [len(values) - 1]])
    return int(np.diff(bounds).max())


def _bar_keys(line: _Line) -> list[bytes | None]:
    """Per bar of the window: its exact onset-and-pitch pattern (None for a bar without onsets)."""
    return [
        (line.pitch_grid[b].astype(np.int16).tobytes() + line.onset_grid[b].tobytes()) if line.onset_grid[b].any() else None
        for b in range(line.bars)
    ]


def _accompaniment_top(accompaniment: Sequence[Note], first: int, n_steps: int) -> np.ndarray:
    """Highest accompaniment pitch sounding at each window step (−1 where none)."""
    top = np.full(n_steps, -1, dtype=np.int64)
    for n in accompaniment:
        s, e = max(0, n.start - first), min(n_steps, n.end - first)
        if e > s:
            np.maximum(top[s:e], n.pitch, out=top[s:e])
    return top


def _polyphony_max(notes: Sequence[Note], first: int, n_steps: int) -> int:
    count = np.zeros(n_steps + 1, dtype=np.int64)
    for n in notes:
        s, e = max(0, n.start - first), min(n_steps, n.end - first)
        if e > s:
            count[s] += 1
            count[e] -= 1
    return int(np.cumsum(count).max()) if n_steps else 0


def melody_line_stats(notes: Sequence[Note], n_bars: int, accompaniment: Sequence[Note] | None = None) -> dict[str, float]:
    """The singability measures of one melody over its 16-bar window (see STAT_NAMES and the README
    of issue 22): shares are of intervals, notes (onsets) or bars as named; NaN where undefined
    (no intervals, no leaps, no accompaniment given)."""
    line = _Line(notes, n_bars)
    p, iv, steps = line.pitches, line.intervals, line.steps
    a = np.abs(iv)
    nan = float("nan")
    out: dict[str, float] = {}
    out["mean_interval"] = float(a.mean()) if len(a) else nan
    out["octave_leaps"] = _share(a > OCTAVE)
    out["leaps"] = _share(a >= LEAP)
    out["steps"] = _share(a <= STEP)
    # A spike sticks out of the line: both neighbours a fifth or more below it, or both above it.
    if len(p) >= 3:
        d_prev, d_next = p[1:-1] - p[:-2], p[1:-1] - p[2:]
        out["spikes"] = _share(((d_prev >= SPIKE) & (d_next >= SPIKE)) | ((d_prev <= -SPIKE) & (d_next <= -SPIKE)))
    else:
        out["spikes"] = nan
    out["range"] = float(p.max() - p.min()) if len(p) else nan
    out["largest_leap"] = float(a.max()) if len(a) else nan
    out["mean_pitch"] = float(p.mean()) if len(p) else nan
    # A leap is recovered when the next interval is a step back the other way (the singer's rule).
    lead = np.flatnonzero(a[:-1] >= LEAP)
    out["leap_recovery"] = _share((a[lead + 1] <= STEP) & (iv[lead + 1] != 0) & (np.sign(iv[lead + 1]) == -np.sign(iv[lead]))) if len(lead) else nan
    out["note_count"] = float(len(p))
    out["mean_ioi_beats"] = float(np.diff(steps).mean() / STEPS_PER_BEAT) if len(steps) >= 2 else nan
    pos = steps % STEPS_PER_BAR
    out["offbeat_and"] = _share(np.isin(pos, AND_POSITIONS))
    out["and_of_2"] = _share(pos == AND_OF_2)
    out["and_of_4"] = _share(pos == AND_OF_4)
    per_bar = np.bincount(steps // STEPS_PER_BAR, minlength=line.bars) if line.bars else np.zeros(0)
    out["notes_per_bar_sd"] = float(per_bar.std()) if line.bars else nan
    out["silent_bars"] = _share((line.pitch_grid < 0).all(axis=1)) if line.bars else nan
    # Literal copies: a bar (from the 2nd, with an onset) equal to an earlier bar step for step, untransposed.
    keys = _bar_keys(line)
    hits = total = 0
    for b in range(1, line.bars):
        if keys[b] is not None:
            total += 1
            hits += keys[b] in keys[:b]
    out["literal_copies"] = hits / total if total else nan
    looped = any(
        keys[b] is not None and all(k == keys[b] for k in keys[b : b + PHRASE_BARS])
        for b in range(0, line.bars - PHRASE_BARS + 1, PHRASE_BARS)
    )
    out["looped_phrases"] = float(looped) if line.bars >= PHRASE_BARS else nan
    if accompaniment is None:
        out["below_accompaniment"] = nan
    else:
        top = _accompaniment_top(accompaniment, line.first, line.bars * STEPS_PER_BAR)
        out["below_accompaniment"] = _share(top[steps] > p)
    out["longest_pitch_run"] = float(_longest_run(p))
    out["polyphony_max"] = float(_polyphony_max(line.notes, line.first, line.bars * STEPS_PER_BAR))
    return out


# --- Yang & Lerch (2020) -----------------------------------------------------------------------


def _length_bin(lengths: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(LENGTH_EDGES), lengths, side="right") - 1


def _normalised(x: np.ndarray) -> np.ndarray:
    s = x.sum()
    return x / s if s > 0 else x


def yang_lerch_features(notes: Sequence[Note], n_bars: int) -> dict[str, np.ndarray]:
    """The 13 per-piece features of Yang & Lerch (2020) on the line's 16-bar window, each a 1-D
    array (histograms and transition matrices flattened and normalised to sum 1). Note lengths
    are in 16th steps, binned at LENGTH_EDGES; the inter-onset interval is in beats."""
    line = _Line(notes, n_bars)
    p, a = line.pitches, np.abs(line.intervals)
    pc = p % 12
    pctm = np.zeros((12, 12))
    np.add.at(pctm, (pc[:-1], pc[1:]), 1)
    lb = _length_bin(np.maximum(line.lengths, 1))
    nlh = np.bincount(lb, minlength=len(LENGTH_EDGES)).astype(float)
    nltm = np.zeros((len(LENGTH_EDGES),) * 2)
    np.add.at(nltm, (lb[:-1], lb[1:]), 1)
    nan = float("nan")
    scalars = {
        "pitch_count": float(len(np.unique(p))),
        "pitch_range": float(p.max() - p.min()) if len(p) else 0.0,
        "mean_interval": float(a.mean()) if len(a) else 0.0,
        "note_count": float(len(p)),
        "mean_ioi": float(np.diff(line.steps).mean() / STEPS_PER_BEAT) if len(p) >= 2 else nan,
        "step_share": float(np.mean(a <= STEP)) if len(a) else nan,
        "leap_share": float(np.mean(a >= LEAP)) if len(a) else nan,
        "mean_pitch": float(p.mean()) if len(p) else nan,
        "longest_pitch_run": float(_longest_run(p)),
    }
    out = {k: np.array([v]) for k, v in scalars.items()}
    out["pitch_class_histogram"] = _normalised(np.bincount(pc, minlength=12).astype(float))
    out["pitch_class_transition"] = _normalised(pctm).ravel()
    out["note_length_histogram"] = _normalised(nlh)
    out["note_length_transition"] = _normalised(nltm).ravel()
    return {k: out[k] for k in YL_NAMES}


def _pairwise(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances: all pairs i<j within a (b None), or all of a × b."""
    if b is None:
        d = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
        return d[np.triu_indices(len(a), 1)]
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).ravel()


def _kde_on_grid(x: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    """Gaussian KDE of x on an even grid: linear binning onto the grid, then the kernel by convolution
    (the grid step is far below the bandwidth, so this equals the direct sum to well under 1e-3)."""
    dx = grid[1] - grid[0]
    pos = (x - grid[0]) / dx
    i = np.clip(np.floor(pos).astype(np.int64), 0, len(grid) - 2)
    w = np.clip(pos - i, 0.0, 1.0)
    counts = np.bincount(i, 1 - w, minlength=len(grid)) + np.bincount(i + 1, w, minlength=len(grid))
    half = int(math.ceil(5 * bw / dx))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) * dx / bw) ** 2)
    dens = np.convolve(counts, k, mode="same") if half < len(grid) else np.convolve(counts, k, mode="full")[half : half + len(grid)]
    return dens / (len(x) * bw * math.sqrt(2 * math.pi))


def _scott(x: np.ndarray) -> float:
    """Scott's rule, as scipy.stats.gaussian_kde in 1-D: sd · n^(-1/5)."""
    return float(np.std(x, ddof=1) * len(x) ** (-0.2)) if len(x) > 1 else 0.0


def distribution_overlap(intra: np.ndarray, inter: np.ndarray, n_grid: int = 4096) -> float:
    """Overlap area of the Gaussian KDEs (Scott's bandwidth each) of two samples of distances."""
    intra, inter = intra[np.isfinite(intra)], inter[np.isfinite(inter)]
    if not len(intra) or not len(inter):
        return float("nan")
    scale = max(float(np.abs(np.concatenate([intra, inter])).max()), 1e-9)
    floor = 1e-3 * scale  # a sample of identical distances gets a narrow bump, not a zero-width one
    b1, b2 = max(_scott(intra), floor), max(_scott(inter), floor)
    lo = min(intra.min() - 5 * b1, inter.min() - 5 * b2)
    hi = max(intra.max() + 5 * b1, inter.max() + 5 * b2)
    grid = np.linspace(lo, hi, n_grid)
    f1, f2 = _kde_on_grid(intra, grid, b1), _kde_on_grid(inter, grid, b2)
    return float(np.minimum(f1, f2).sum() * (grid[1] - grid[0]))


def _stack(features: Sequence[dict[str, np.ndarray]], name: str) -> np.ndarray:
    x = np.array([f[name] for f in features], dtype=np.float64)
    return x[np.isfinite(x).all(axis=1)]


def overlap_area(set_a_features: Sequence[dict[str, np.ndarray]], set_b_features: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Yang & Lerch's overlap area per feature between intra-set distances of the reference set B
    and inter-set distances (A × B), plus `mean` over the features: 1 = A is as close to B as B's
    pieces are to each other. A is the generated set, B the reference (e.g. POP909)."""
    out: dict[str, float] = {}
    for name in set_b_features[0]:
        a, b = _stack(set_a_features, name), _stack(set_b_features, name)
        out[name] = distribution_overlap(_pairwise(b), _pairwise(a, b)) if len(a) and len(b) >= 2 else float("nan")
    vals = [v for v in out.values() if math.isfinite(v)]
    out["mean"] = float(np.mean(vals)) if vals else float("nan")
    return out


# --- POP909 reference -------------------------------------------------------------------------


def pop909_melody(folder: str | Path) -> tuple[list[Note], int]:
    """One POP909 song's sung melody from the structure layout's bar-aligned `melody.txt` (bar k
    starts at step 16k), at its own pitches (not folded into the generator's register), and its
    number of bars."""
    from .pop909 import _structure_melody

    raw = _structure_melody(Path(folder) / "melody.txt")
    notes = [Note(p, s, e) for p, s, e in raw]
    n_bars = max(1, -(-max((n.end for n in notes), default=0) // STEPS_PER_BAR))
    return notes, int(n_bars)


def pop909_ids(root: str | Path) -> list[str]:
    """The song folders under root that hold a `melody.txt`, sorted."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "melody.txt").is_file())


def pop909_reference(root: str | Path, n: int = 200, seed: int = 0, skip: int = 0) -> list[tuple[str, list[Note], int]]:
    """n POP909 melodies as (song id, notes, bars), chosen reproducibly: the sorted ids in a seeded
    permutation, positions skip..skip+n (so skip=n with the same seed gives a disjoint set),
    returned in id order. A song that cannot be read is left out (the set is then smaller)."""
    from ..errors import InputError

    ids = pop909_ids(root)
    order = np.random.default_rng(seed).permutation(len(ids))
    out = []
    for song in sorted(ids[i] for i in order[skip : skip + n]):
        try:
            notes, bars = pop909_melody(Path(root) / song)
        except InputError:
            continue
        out.append((song, notes, bars))
    return out
