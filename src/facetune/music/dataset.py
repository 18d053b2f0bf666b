"""`prepare-data music`: melodies (POP909, EMOPIA, labelled MIDI) → a compact cache of bars with chords, keys, form and emotions.

POP909 songs (either layout, see `pop909`) come with their sung melody, bars, chords and key,
and in the structure-analysis layout with human phrase labels, from which each bar gets its
place in a 4-bar phrase, whether it ends a phrase, and the bar of an earlier phrase it restates.
Their emotion is a pseudo-label or "unknown" (see `pseudo_labels`).

For every EMOPIA or labelled clip: find the real beat grid and downbeat (EMOPIA clips are audio
transcriptions whose MIDI bar lines fall anywhere, see `beats`), quantise notes to
16 steps per 4/4 bar, take the melody as the skyline (the highest sounding note
above MIN_MELODY_PITCH at each step), label each bar with the triad (or no chord)
that best matches all its notes, and store every training bar in 12 transpositions,
melody and chord moved together. Splits are by song, never by segment.

Cache arrays (row = one bar of one clip in one transposition):
`pitch` int8 (N, 16) melody column per step (-1 = rest) · `onset` uint8 (N, 16) ·
`chord` int8 · `quadrant` int8 (0..3, 4 = unknown) · `key` int8 (0..23) · `pos` int8 (place in
a 4-bar phrase, -1 unknown) · `phrase_end` uint8 · `ref` int32 (row of the bar this one restates,
-1 none) · `prev` int32 (row of the previous bar of the
same clip and transposition, -1 for the first) · `split` int8 (0 train, 1 val, 2 test) ·
`clip` int32 · `transpose` int8 · `source` int8 (which source folder).
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import console
from ..training.cache import cache_is_current, fingerprint, read_cache, write_arrays, write_manifest
from ..emotions import QUADRANTS
from ..errors import DataError, InputError
from .pianoroll import LOW_PITCH, N_PITCHES, STEPS_PER_BAR, fold_pitch

MUSIC_CACHE_VERSION = 2
MIN_MELODY_PITCH = 52
MAX_HOLD = 8
SPLIT_NAMES = ("train", "val", "test")
ARRAYS = ["pitch", "onset", "chord", "quadrant", "key", "pos", "phrase_end", "ref", "prev", "split", "clip", "transpose", "source"]
#: The quadrant index of a bar whose emotion is not known (POP909 without a confident pseudo-label).
UNKNOWN = 4


@dataclass(frozen=True)
class MusicPrepConfig:
    grid: str = "auto"  # auto | tracked | nominal
    transpositions: tuple[int, ...] = tuple(range(-5, 7))
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    min_bars: int = 2
    pseudo_label_margin: float = 0.15


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
    info["key"] = _clip_key(s, e, pitches)
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


def _clip_key(s: np.ndarray, e: np.ndarray, pitches: np.ndarray) -> int:
    """The clip's key (Krumhansl–Kessler) from all its notes, weighted by duration."""
    from .chords import estimate_key

    return estimate_key(np.bincount(pitches % 12, weights=np.maximum(e - s, 1), minlength=12))[0]


def _form_rows(phrases: list[tuple[str, int, int]], n_bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bar: position in its 4-bar unit (-1 outside a melodic phrase), phrase end, and the bar it restates.

    Melodic phrases are the upper-case letters of a POP909 form label. A 4-bar unit ends at every fourth
    bar of a phrase and at the phrase's last bar. A bar restates the bar at the same place in the most
    recent earlier phrase with the same letter, when that phrase is long enough.
    """
    pos = np.full(n_bars, -1, np.int8)
    end = np.zeros(n_bars, np.uint8)
    ref = np.full(n_bars, -1, np.int32)
    seen: dict[str, tuple[int, int]] = {}
    for letter, start, length in phrases:
        if not letter.isupper() or letter in "X":
            continue
        earlier = seen.get(letter)
        for i in range(length):
            b = start + i
            if b >= n_bars:
                break
            pos[b] = i % 4
            end[b] = int(i % 4 == 3 or i == length - 1)
            if earlier and i < earlier[1] and earlier[0] + i < n_bars:
                ref[b] = earlier[0] + i
        seen[letter] = (start, length)
    return pos, end, ref


def _read_source(src: Path, labels: Path | None, cfg: MusicPrepConfig) -> tuple[str, list[Clip]]:
    from .pop909 import find_songs

    if labels is None and (src / "midis").is_dir():
        return "emopia", find_emopia(src)
    if labels is None and not list(src.glob("*.csv")):
        songs = find_songs(src)
        return "pop909", [Clip(f, f.name, f"pop909/{f.name}", UNKNOWN) for f in songs]
    return "labelled folder", find_labelled(src, labels)


def _load_clip(clip: Clip, layout: str, grid: str) -> dict[str, Any]:
    """One clip or song → its bars, chords, key, tempo and form (see `ARRAYS`)."""
    import pretty_midi

    from .pop909 import read_song

    if layout == "pop909":
        song = read_song(clip.path)
        pos, end, ref = _form_rows(song.phrases, len(song.chords))
        return {"pitch": song.pitch, "onset": song.onset, "chord": song.chords, "key": int(song.key), "pos": pos, "phrase_end": end, "ref": ref, "info": {"grid": "bars", "bpm": float(song.tempo), "bars": int(len(song.chords)), "form": "".join(f"{l}{n}" for l, _, n in song.phrases)}}
    from .midi_guard import check_midi_file

    check_midi_file(clip.path)  # damaged or hostile MIDI: an InputError with its reason, before pretty_midi reads it
    try:
        pm = pretty_midi.PrettyMIDI(str(clip.path))
    except Exception as exc:  # pretty_midi/mido raise many types for damaged files
        raise InputError(f"not a readable MIDI file ({type(exc).__name__})") from None
    pitch, onset, chords, info = clip_to_bars(pm, grid)
    n = len(chords)
    return {"pitch": pitch, "onset": onset, "chord": chords, "key": int(info.pop("key")), "pos": np.full(n, -1, np.int8), "phrase_end": np.zeros(n, np.uint8), "ref": np.full(n, -1, np.int32), "info": info}


def _load_clips(work: list[tuple[int, str, Clip]], grids: list[str], cfg: MusicPrepConfig) -> tuple[list[tuple[int, Clip, dict[str, Any]]], list[dict[str, str]]]:
    """Read every clip on its source's grid: (source index, clip, bars) for the usable ones, and what was skipped and why."""
    loaded: list[tuple[int, Clip, dict[str, Any]]] = []
    skipped: list[dict[str, str]] = []
    with console.progress() as prog:
        task = prog.add_task("reading songs", total=len(work))
        for si, layout, clip in work:
            prog.advance(task)
            try:
                item = _load_clip(clip, layout, grids[si])
            except InputError as exc:
                skipped.append({"file": str(clip.path), "error": str(exc)})
                continue
            if len(item["chord"]) < cfg.min_bars:
                skipped.append({"file": str(clip.path), "error": f"only {len(item['chord'])} bar(s)"})
                continue
            item["source"] = si
            loaded.append((si, clip, item))
    return loaded, skipped


def _bar_rows(loaded: list[tuple[int, Clip, dict[str, Any]]], sources: list[Path], cfg: MusicPrepConfig) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The cache's arrays, one row per bar per transposition (training clips in every one of
    `cfg.transpositions`, the others untransposed), and one description per clip."""
    from .chords import transpose_chord

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    clip_info: list[dict[str, Any]] = []
    n_rows = 0
    for ci, (si, clip, item) in enumerate(loaded):
        n_bars = len(item["chord"])
        shifts = cfg.transpositions if clip.split == 0 else (0,)
        for t in shifts:
            key = int(item["key"])
            rows["pitch"].append(transpose_pitch(item["pitch"], t))
            rows["onset"].append(item["onset"])
            rows["chord"].append(np.array([transpose_chord(int(c), t) for c in item["chord"]], dtype=np.int8))
            rows["quadrant"].append(np.full(n_bars, clip.quadrant, np.int8))
            rows["key"].append(np.full(n_bars, (key % 12 + t) % 12 + 12 * (key >= 12), np.int8))
            rows["pos"].append(item["pos"])
            rows["phrase_end"].append(item["phrase_end"])
            rows["ref"].append(np.where(item["ref"] >= 0, item["ref"] + n_rows, -1).astype(np.int32))
            rows["prev"].append(np.concatenate([[-1], np.arange(n_rows, n_rows + n_bars - 1)]).astype(np.int32))
            rows["split"].append(np.full(n_bars, clip.split, np.int8))
            rows["clip"].append(np.full(n_bars, ci, np.int32))
            rows["transpose"].append(np.full(n_bars, t, np.int8))
            rows["source"].append(np.full(n_bars, si, np.int8))
            n_rows += n_bars
        quadrant = QUADRANTS[clip.quadrant] if clip.quadrant < len(QUADRANTS) else "unknown"
        clip_info.append({"name": clip.name, "song": clip.song, "source": str(sources[si]), "quadrant": quadrant, "split": SPLIT_NAMES[clip.split], **item["info"]})
    arrays = {k: np.concatenate(v) for k, v in rows.items()}
    return arrays, clip_info


def prepare_music(src: str | Path | Sequence[str | Path], out: str | Path, cfg: MusicPrepConfig = MusicPrepConfig(), *, labels: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Build the music cache from one or more sources; returns the manifest. A rerun on unchanged input does nothing.

    Sources: EMOPIA (midis/ + split/), POP909 (raw or structure-analysis layout: melodies with
    bars, chords, keys and, in the latter, human phrase labels), or a labelled MIDI folder
    (`labels` applies to those). POP909 has no emotion labels: its songs get pseudo-labels from a
    small emotion model fitted on the labelled sources' training clips, and "unknown" where that
    model is unsure (see `pseudo_labels`).
    """
    from .pseudo_labels import label_songs

    sources = [Path(p) for p in ([src] if isinstance(src, (str, Path)) else src)]
    out = Path(out)
    for s in sources:
        if not s.is_dir():
            raise DataError(f"{s}: not a folder")
    labels_path = Path(labels) if labels else None
    fp = "".join(fingerprint(s) for s in sources) + (fingerprint(labels_path) if labels_path else "")
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()} | {"labels": str(labels_path or "")}
    if not force and (old := cache_is_current(out, fp, options, "music", MUSIC_CACHE_VERSION)):
        console.info(f"{out}: cache is up to date, nothing to do")
        return old | {"up_to_date": True}
    work: list[tuple[int, str, Clip]] = []
    layouts: list[str] = []
    for si, s in enumerate(sources):
        layout, clips = _read_source(s, labels_path, cfg)
        _assign_song_splits(clips, cfg)
        layouts.append(layout)
        work += [(si, layout, c) for c in clips]
    grids = [cfg.grid if cfg.grid != "auto" else {"emopia": "tracked", "pop909": "bars"}.get(lay, "nominal") for lay in layouts]
    loaded, skipped = _load_clips(work, grids, cfg)
    if not loaded:
        first = f"; first: {skipped[0]['error']}" if skipped else ""
        raise DataError(f"{', '.join(map(str, sources))}: no usable songs ({len(skipped)} skipped{first})")
    labeller = label_songs([(c, item) for _, c, item in loaded], cfg.pseudo_label_margin)
    arrays, clip_info = _bar_rows(loaded, sources, cfg)
    write_arrays(out, arrays)
    groups = (*QUADRANTS, "unknown")
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for s_i, s_name in enumerate(SPLIT_NAMES):
        base = (arrays["split"] == s_i) & (arrays["transpose"] == 0)
        counts[s_name] = {
            q: {"clips": sum(1 for c in clip_info if c["split"] == s_name and c["quadrant"] == q), "bars": int((base & (arrays["quadrant"] == qi)).sum())}
            for qi, q in enumerate(groups)
        }
    manifest = {
        "format_version": MUSIC_CACHE_VERSION,
        "kind": "music",
        "source": str(sources[0].resolve()) if len(sources) == 1 else [str(s.resolve()) for s in sources],
        "sources": [{"path": str(s.resolve()), "layout": lay, "grid": g} for s, lay, g in zip(sources, layouts, grids)],
        "layout": layouts[0] if len(set(layouts)) == 1 else "mixed",
        "grid": grids[0] if len(set(grids)) == 1 else "mixed",
        "fingerprint": fp,
        "options": options,
        "register": [LOW_PITCH, LOW_PITCH + N_PITCHES - 1],
        "rows": int(len(arrays["chord"])),
        "counts": counts,
        "pseudo_labels": labeller,
        "skipped": skipped,
        "clips": clip_info,
    }
    write_manifest(out, manifest)
    return manifest


def load_music_cache(cache: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return read_cache(cache, "music", MUSIC_CACHE_VERSION, ARRAYS)
