"""`prepare-data music`: labelled MIDI → a compact cache of melody bars with chords and emotions.

For every clip: find the real beat grid and downbeat (EMOPIA clips are audio
transcriptions whose MIDI bar lines fall anywhere, see `beats`), quantise notes to
16 steps per 4/4 bar, take the melody as the skyline (the highest sounding note
above MIN_MELODY_PITCH at each step), label each bar with the triad (or no chord)
that best matches all its notes, and store every training bar in 12 transpositions,
melody and chord moved together. Splits are by song, never by segment.

Cache arrays (row = one bar of one clip in one transposition):
`pitch` int8 (N, 16) melody column per step (-1 = rest) · `onset` uint8 (N, 16) ·
`chord` int8 · `quadrant` int8 (0..3) · `prev` int32 (row of the previous bar of the
same clip and transposition, -1 for the first) · `split` int8 (0 train, 1 val, 2 test) ·
`clip` int32 · `transpose` int8.
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import console
from ..data import cache_is_current, fingerprint, read_cache, write_arrays, write_manifest
from ..emotions import QUADRANTS
from ..errors import DataError, InputError
from .pianoroll import LOW_PITCH, N_PITCHES, STEPS_PER_BAR, fold_pitch

MUSIC_CACHE_VERSION = 1
MIN_MELODY_PITCH = 52
MAX_HOLD = 8
SPLIT_NAMES = ("train", "val", "test")
ARRAYS = ["pitch", "onset", "chord", "quadrant", "prev", "split", "clip", "transpose"]


@dataclass(frozen=True)
class MusicPrepConfig:
    grid: str = "auto"  # auto | tracked | nominal
    transpositions: tuple[int, ...] = tuple(range(-5, 7))
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    min_bars: int = 2


@dataclass
class Clip:
    path: Path
    name: str
    song: str
    quadrant: int
    split: int = -1


def _song_of_emopia(name: str) -> str:
    """`Q1_<youtubeID>_<clip>` → youtubeID (IDs may themselves contain '_')."""
    stem = name[:-4] if name.lower().endswith(".mid") else name
    return stem.split("_", 1)[1].rsplit("_", 1)[0]


def find_emopia(src: Path) -> list[Clip]:
    """EMOPIA layout: midis/Q<n>_*.mid with split/{train,val,test}_SL.csv (songs) or *_clip.csv."""
    midis = src / "midis"
    files = sorted(midis.glob("*.mid"))
    if not files:
        raise DataError(f"{midis}: no .mid files")
    song_split: dict[str, int] = {}
    clip_split: dict[str, int] = {}
    for i, split in enumerate(SPLIT_NAMES):
        sl = src / "split" / f"{split}_SL.csv"
        cl = src / "split" / f"{split}_clip.csv"
        if sl.is_file():
            with open(sl, newline="") as fh:
                for row in csv.DictReader(fh):
                    song_split[row["songID"]] = i
        elif cl.is_file():
            with open(cl, newline="") as fh:
                for row in csv.DictReader(fh):
                    clip_split[row["clip_name"]] = i
    clips = []
    for f in files:
        m = re.match(r"Q([1-4])_", f.name)
        if not m:
            console.warn(f"{f}: name does not start with Q1_..Q4_, skipped")
            continue
        song = _song_of_emopia(f.name)
        clip = Clip(f, f.stem, song, int(m.group(1)) - 1)
        clip.split = song_split.get(song, clip_split.get(f.name, -1))
        clips.append(clip)
    return clips


def _quadrant_from_row(row: dict[str, str], where: str) -> int:
    q = (row.get("quadrant") or row.get("4Q") or row.get("label") or "").strip()
    if q:
        key = q.upper() if q.upper().startswith("Q") else f"Q{q}"
        if key not in QUADRANTS:
            raise DataError(f"{where}: unknown label {q!r} (expected Q1..Q4 or 1..4)")
        return QUADRANTS.index(key)
    try:
        v, a = float(row["valence"]), float(row["arousal"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: needs a quadrant column, or numeric valence and arousal") from None
    if v == 0 or a == 0:
        raise DataError(f"{where}: valence and arousal must be non-zero to pick a quadrant")
    return {(True, True): 0, (False, True): 1, (False, False): 2, (True, False): 3}[(v > 0, a > 0)]


def find_labelled(src: Path, labels: Path | None) -> list[Clip]:
    """A folder of MIDI files plus a labels CSV: `file,quadrant` or `file,valence,arousal`
    (`midi` or `path` may name the file column, as in VGMIDI). Paths are relative to the CSV
    and must stay inside SRC."""
    if labels is None:
        found = sorted(src.glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"{src}: give --labels CSV (found {len(found)} CSV files at the top of the folder)")
        labels = found[0]
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found")
    root = src.resolve()
    clips: list[Clip] = []
    seen: set[Path] = set()
    with open(labels, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in reader.fieldnames or []]
        file_col = next((c for c in ("file", "midi", "path") if c in cols), None)
        if file_col is None:
            raise DataError(f"{labels}: missing a file column (file, midi or path); columns are {', '.join(cols) or 'none'}")
        if not ({"quadrant", "4Q", "label"} & set(cols) or {"valence", "arousal"} <= set(cols)):
            raise DataError(f"{labels}: missing a quadrant column or valence and arousal columns")
        for lineno, row in enumerate(reader, start=2):
            where = f"{labels}:{lineno}"
            rel = (row.get(file_col) or "").strip()
            if not rel:
                raise DataError(f"{where}: empty file name")
            path = (labels.parent / rel).resolve()
            if not path.is_relative_to(root):
                raise DataError(f"{where}: path {rel!r} escapes the dataset folder {src}")
            if not path.is_file():
                raise DataError(f"{where}: file {rel!r} does not exist")
            if path in seen:
                continue
            seen.add(path)
            stem = path.stem
            song = re.sub(r"_\d+$", "", stem)
            clips.append(Clip(path, stem, song, _quadrant_from_row(row, where)))
    if not clips:
        raise DataError(f"{labels}: no labelled files")
    return clips


def _assign_song_splits(clips: list[Clip], cfg: MusicPrepConfig) -> None:
    """Seeded split by song for clips with no given split: all clips of a song land together."""
    songs = sorted({c.song for c in clips if c.split < 0})
    if not songs:
        return
    rng = np.random.default_rng(cfg.seed)
    order = [songs[i] for i in rng.permutation(len(songs))]
    n_test = int(round(cfg.test_fraction * len(order)))
    n_val = int(round(cfg.val_fraction * len(order)))
    which = {s: (2 if i < n_test else 1 if i < n_test + n_val else 0) for i, s in enumerate(order)}
    for c in clips:
        if c.split < 0:
            c.split = which[c.song]


def clip_to_bars(pm: Any, grid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One clip → (pitch (B,16) int8, onset (B,16) uint8, chord (B,) int8, info)."""
    from .beats import find_beat_grid
    from .chords import estimate_chord

    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise InputError("no notes")
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    pitches = np.array([n.pitch for n in notes])
    if grid == "nominal":
        s = np.round(np.array([pm.time_to_tick(t) for t in starts]) / pm.resolution * 4).astype(int)
        e = np.round(np.array([pm.time_to_tick(t) for t in ends]) / pm.resolution * 4).astype(int)
        info: dict[str, Any] = {"grid": "nominal", "bpm": float(pm.estimate_tempo()) if len(notes) > 2 else 0.0}
    else:
        bg = find_beat_grid(pm)
        s = bg.time_to_step(starts).astype(int)
        e = bg.time_to_step(ends).astype(int)
        info = {"grid": bg.method, "bpm": round(float(bg.bpm), 2)}
    e = np.maximum(e, s + 1)
    keep = s >= 0
    s, e, pitches = s[keep], e[keep], pitches[keep]
    if len(s) == 0:
        raise InputError("no notes after the first downbeat")
    n_bars = int(e.max()) // STEPS_PER_BAR
    if n_bars < 1:
        raise InputError("shorter than one bar")
    total = n_bars * STEPS_PER_BAR
    pitch, onset = skyline(s, e, pitches, total)
    chords = np.zeros(n_bars, dtype=np.int8)
    for b in range(n_bars):
        lo, hi = b * STEPS_PER_BAR, (b + 1) * STEPS_PER_BAR
        overlap = np.clip(np.minimum(e, hi) - np.maximum(s, lo), 0, None)
        hist = np.bincount(pitches % 12, weights=overlap, minlength=12)
        chords[b] = estimate_chord(hist)
    info["bars"] = n_bars
    return pitch.reshape(n_bars, STEPS_PER_BAR), onset.reshape(n_bars, STEPS_PER_BAR), chords, info


def skyline(s: np.ndarray, e: np.ndarray, pitches: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Melody columns and onsets per step from polyphonic notes on the step grid.

    At each onset step the highest new note (at or above MIN_MELODY_PITCH) takes over the
    melody unless a higher melody note is still held and began less than MAX_HOLD steps ago
    and the new note is more than a fourth below it; transcribed piano notes ring long under the
    pedal, and a plain "highest sounding note" skyline would keep them and hide the tune.
    """
    pitch = np.full(total, -1, dtype=np.int8)
    onset = np.zeros(total, dtype=np.uint8)
    ok = (pitches >= MIN_MELODY_PITCH) & (s < total)
    cur_pitch, cur_start, cur_end = -1, 0, 0
    for t in np.unique(s[ok]):
        at = ok & (s == t)
        k = np.flatnonzero(at)[int(np.argmax(pitches[at]))]
        p_new = int(pitches[k])
        held = t < cur_end and t - cur_start < MAX_HOLD
        if held and p_new < cur_pitch - 5:
            continue
        end = int(min(e[k], t + MAX_HOLD, total))
        if t < cur_end:
            pitch[t:cur_end] = -1
        pitch[t:end] = fold_pitch(p_new) - LOW_PITCH
        onset[t] = 1
        cur_pitch, cur_start, cur_end = p_new, int(t), end
    return pitch, onset


def transpose_pitch(pitch: np.ndarray, semitones: int) -> np.ndarray:
    """Move melody columns by `semitones`, folding by octaves to stay in the register."""
    out = pitch.astype(np.int16)
    sounding = out >= 0
    moved = out[sounding] + semitones
    moved = np.where(moved < 0, moved + 12, moved)
    moved = np.where(moved >= N_PITCHES, moved - 12, moved)
    out[sounding] = moved
    return out.astype(np.int8)


def prepare_music(src: str | Path, out: str | Path, cfg: MusicPrepConfig = MusicPrepConfig(), *, labels: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Build the music cache; returns the manifest. A rerun on unchanged input does nothing."""
    import pretty_midi

    from .chords import transpose_chord

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"{src}: not a folder")
    labels_path = Path(labels) if labels else None
    is_emopia = (src / "midis").is_dir() and labels_path is None
    fp = fingerprint(src) + (fingerprint(labels_path) if labels_path else "")
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()} | {"labels": str(labels_path or "")}
    if not force and (old := cache_is_current(out, fp, options, "music", MUSIC_CACHE_VERSION)):
        console.info(f"{out}: cache is up to date, nothing to do")
        return old | {"up_to_date": True}
    clips = find_emopia(src) if is_emopia else find_labelled(src, labels_path)
    _assign_song_splits(clips, cfg)
    grid = cfg.grid if cfg.grid != "auto" else ("tracked" if is_emopia else "nominal")
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    clip_info: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    n_rows = 0
    with console.progress() as prog:
        task = prog.add_task("reading MIDI", total=len(clips))
        for ci, clip in enumerate(clips):
            prog.advance(task)
            try:
                pm = pretty_midi.PrettyMIDI(str(clip.path))
                pitch, onset, chords, info = clip_to_bars(pm, grid)
            except InputError as exc:
                skipped.append({"file": str(clip.path), "error": str(exc)})
                continue
            except Exception as exc:  # pretty_midi/mido raise many types for damaged files
                skipped.append({"file": str(clip.path), "error": f"not a readable MIDI file ({type(exc).__name__})"})
                continue
            n_bars = len(chords)
            if n_bars < cfg.min_bars:
                skipped.append({"file": str(clip.path), "error": f"only {n_bars} bar(s)"})
                continue
            shifts = cfg.transpositions if clip.split == 0 else (0,)
            for t in shifts:
                rows["pitch"].append(transpose_pitch(pitch, t))
                rows["onset"].append(onset)
                rows["chord"].append(np.array([transpose_chord(int(c), t) for c in chords], dtype=np.int8))
                rows["quadrant"].append(np.full(n_bars, clip.quadrant, np.int8))
                rows["prev"].append(np.concatenate([[-1], np.arange(n_rows, n_rows + n_bars - 1)]).astype(np.int32))
                rows["split"].append(np.full(n_bars, clip.split, np.int8))
                rows["clip"].append(np.full(n_bars, ci, np.int32))
                rows["transpose"].append(np.full(n_bars, t, np.int8))
                n_rows += n_bars
            clip_info.append({"name": clip.name, "song": clip.song, "quadrant": QUADRANTS[clip.quadrant], "split": SPLIT_NAMES[clip.split], **info})
    if not clip_info:
        raise DataError(f"{src}: no usable MIDI clips ({len(skipped)} skipped)")
    arrays = {k: np.concatenate(v) for k, v in rows.items()}
    write_arrays(out, arrays)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for s_i, s_name in enumerate(SPLIT_NAMES):
        base = (arrays["split"] == s_i) & (arrays["transpose"] == 0)
        counts[s_name] = {
            q: {"clips": sum(1 for c in clip_info if c["split"] == s_name and c["quadrant"] == q), "bars": int((base & (arrays["quadrant"] == qi)).sum())}
            for qi, q in enumerate(QUADRANTS)
        }
    manifest = {
        "format_version": MUSIC_CACHE_VERSION,
        "kind": "music",
        "source": str(src.resolve()),
        "layout": "emopia" if is_emopia else "labelled folder",
        "grid": grid,
        "fingerprint": fp,
        "options": options,
        "register": [LOW_PITCH, LOW_PITCH + N_PITCHES - 1],
        "rows": int(len(arrays["chord"])),
        "counts": counts,
        "skipped": skipped,
        "clips": clip_info,
    }
    write_manifest(out, manifest)
    return manifest


def load_music_cache(cache: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return read_cache(cache, "music", MUSIC_CACHE_VERSION, ARRAYS)
