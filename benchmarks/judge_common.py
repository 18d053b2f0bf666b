"""Shared plumbing for the emotion judges (benchmarks/emotion_judge*.py): data sets, the CLI,
collecting facetune's compositions (or existing MIDI files), and the report.

Nothing here depends on facetune's music code, so a judge keeps hearing the same way while the
composer is rewritten; only `compose_emotion` / `load_generator` are imported, and only when
compositions are asked for.

Data: EMOPIA (`shared/data/emopia`, song-level splits from `split/*_SL.csv`) and VGMIDI's
labelled phrases (`shared/data/vgmidi`, split here by *game*, so no game is in two splits).

Melody mode (`--melody-only`, or `--train-on-melody` with full MIDI): a judge trained on whole
piano textures hears a lone sung line out of its domain (one voice, no chords, a narrow range
it never saw with a label). So in melody mode each judge is trained and tested on the *top line*
of the labelled pieces (`skyline`: at each onset the highest note starting there, cut at the next
onset, so monophonic) and hears the top line of what it judges too: a tune as a tune.
`--melody-only` implies it; `--texture-judge` keeps the texture-trained judge for the melody track
(the earlier, out-of-domain reading, for comparison).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from facetune.music.chords import key_correlations  # noqa: F401  (the judges' major/minor features)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CACHE_DIR = REPO / "runs" / "judges"
EMOTIONS = (("happy", 1), ("angry", 2), ("sad", 3), ("calm", 4))
#: Quadrant -> (valence, arousal) as signs: Q1 +,+  Q2 -,+  Q3 -,-  Q4 +,-.
VA = {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}

def quadrant_of_va(valence: int, arousal: int) -> int:
    return {(1, 1): 1, (-1, 1): 2, (-1, -1): 3, (1, -1): 4}[(int(np.sign(valence)), int(np.sign(arousal)))]


def emopia_clips(root: Path | None = None) -> list[tuple[Path, int, str, str]]:
    """(path, quadrant, split, song) for every EMOPIA clip; split from the song-level lists."""
    root = Path(root or DATA / "emopia")
    song_split = {}
    for s in ("train", "val", "test"):
        with open(root / "split" / f"{s}_SL.csv") as fh:
            for row in csv.DictReader(fh):
                song_split[row["songID"]] = s
    out = []
    for f in sorted((root / "midis").glob("Q*.mid")):
        song = f.stem[3:].rsplit("_", 1)[0]
        out.append((f, int(f.name[1]), song_split[song], song))
    return out


def vgmidi_split(game: str) -> str:
    """A fixed split by game (hash of its name): about 70% train, 15% val, 15% test of games."""
    h = int(hashlib.sha1(game.encode()).hexdigest(), 16) % 100
    return "test" if h < 15 else "val" if h < 30 else "train"


def vgmidi_phrases(root: Path | None = None) -> list[tuple[Path, int, str, str]]:
    """(path, quadrant, split, game) for every labelled VGMIDI phrase. SOURCE.md: valence and
    arousal are in {-1, +1}; Q1 = v+a+, Q2 = v-a+, Q3 = v-a-, Q4 = v+a- (same as EMOPIA)."""
    root = Path(root or DATA / "vgmidi")
    out = []
    with open(root / "vgmidi_labelled.csv") as fh:
        for row in csv.DictReader(fh):
            q = quadrant_of_va(int(row["valence"]), int(row["arousal"]))
            out.append((root / row["midi"], q, vgmidi_split(row["game"]), row["game"]))
    return out


def read_midi(src):
    import pretty_midi

    return pretty_midi.PrettyMIDI(io.BytesIO(src) if isinstance(src, bytes) else str(src))


#: Onsets closer than this (seconds) are one onset for the skyline (EMOPIA is transcribed audio,
#: so a chord's notes do not start at exactly the same time).
SKYLINE_TOLERANCE = 0.03


def skyline(pm, tolerance: float = SKYLINE_TOLERANCE):
    """The top line of a piece as a one-track PrettyMIDI: onsets (any non-drum track) within
    `tolerance` of a group's first one are grouped, the highest note of each group is kept and cut
    at the next group's onset, so the line is monophonic. Times stay in seconds, velocities as played."""
    import pretty_midi

    notes = sorted((n for i in pm.instruments if not i.is_drum for n in i.notes), key=lambda n: (n.start, -n.pitch))
    groups: list[list] = []
    for n in notes:
        if groups and n.start - groups[-1][0].start <= tolerance:
            groups[-1].append(n)
        else:
            groups.append([n])
    tops = [max(g, key=lambda n: n.pitch) for g in groups]
    out = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0, name="skyline")
    for k, n in enumerate(tops):
        end = min(n.end, groups[k + 1][0].start) if k + 1 < len(groups) else n.end
        inst.notes.append(pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=n.start, end=max(end, n.start + 1e-3)))
    out.instruments.append(inst)
    return out


def melody_mode(args) -> bool:
    """Train and judge on top lines: asked for, implied by --melody-only (unless --texture-judge),
    and always for --pop909 (a lone sung line)."""
    return bool(getattr(args, "train_on_melody", False) or getattr(args, "pop909", False) or (getattr(args, "melody_only", False) and not getattr(args, "texture_judge", False)))


def heard_as(features, melody: bool):
    """The judge's feature function, on the top line in melody mode."""
    return (lambda pm: features(skyline(pm))) if melody else features


def feature_matrix(items, features, cache_name: str | None = None, version: str = "", refresh: bool = False) -> np.ndarray:
    """Features of many MIDI files (paths), cached in runs/judges/<cache_name>.npz keyed by the
    file list and `version` (bump it when the features change)."""
    paths = [str(p) for p in items]
    key = hashlib.sha1(("\n".join(paths) + version).encode()).hexdigest()
    if cache_name:
        f = CACHE_DIR / f"{cache_name}.npz"
        if f.exists() and not refresh:
            z = np.load(f)
            if str(z["key"]) == key:
                return z["x"]
    x = np.array([features(read_midi(p)) for p in paths], dtype=np.float64)
    if cache_name:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(CACHE_DIR / f"{cache_name}.npz", x=x, key=key)
    return x


def decode_overrides(pairs: list[str]) -> dict:
    """`--set FIELD=VALUE` pairs as DecodeSettings fields, each value parsed as its field's type."""
    from dataclasses import fields

    from facetune.music.composer import DecodeSettings

    types = {f.name: type(f.default) for f in fields(DecodeSettings)}
    out: dict = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types:
            raise SystemExit(f"--set {pair}: no decode setting {name!r} (one of {', '.join(types)})")
        out[name] = value.lower() in ("1", "true", "yes") if types[name] is bool else types[name](value)
    return out


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="compositions per emotion (seeds 0..n-1)")
    ap.add_argument("--generator", default=None, help="generator checkpoint (default: the shipped one)")
    ap.add_argument("--midi-dir", default=None, help="judge <emotion>_<seed>.mid files here instead of composing")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--retrain", action="store_true", help="ignore the cached model and features")
    ap.add_argument("--melody-only", action="store_true", help="judge the melody track alone (no chord track), as a judge that hears only the tune would; implies --train-on-melody")
    ap.add_argument("--train-on-melody", action="store_true", help="train and test the judge on the top line (skyline) of the labelled pieces, and judge the top line of the compositions")
    ap.add_argument("--texture-judge", action="store_true", help="with --melody-only: keep the judge trained on whole textures (out of its domain on a lone line; for comparison)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a decode setting (DecodeSettings field), e.g. --set pitch_walk=0.2; repeatable")
    ap.add_argument("--network-emotion", default=None, help="ablation: tell the network this emotion in every song, keeping each song's own key, chords and style")
    ap.add_argument("--pop909", action="store_true", help="judge POP909's own sung melodies instead (--n per emotion, labelled by the generator's training rule; see pop909_songs)")
    return ap


def pop909_songs(n: int, root: Path | None = None, seed: int = 0) -> dict[str, list]:
    """emotion -> up to n of POP909's sung melodies as (song id, PrettyMIDI), for the question
    "what do the judges hear in the tunes the generator learns from?". Each song gets the emotion
    the generator's training labels give it (`train gan --label-rule mode-pace`): valence from its
    annotated key's mode, arousal from its melody's onsets per second (over its bars with a note,
    at its own tempo) above or below the median song's. Each melody is taken as the judged
    compositions are: its first 16 bars from the first bar with a note, played at its tempo, one
    instrument, velocity 80 (no judge reads velocity on a lone line). The n per emotion are drawn
    with `seed` from all the songs of that emotion."""
    import pretty_midi

    from facetune.errors import InputError
    from facetune.music.evaluate import window_notes
    from facetune.music.melody_line import pop909_ids, pop909_melody
    from facetune.music.pop909 import read_structure_song

    root = Path(root or DATA / "pop909-structure")
    rows = []
    for sid in pop909_ids(root):
        try:
            song = read_structure_song(root / sid)
            notes, bars = pop909_melody(root / sid)
        except InputError:
            continue
        sounding = song.pitch >= 0
        if not sounding.any():
            continue
        onsets = float((song.onset * sounding).sum(1)[sounding.any(1)].mean())
        rows.append((sid, song.key >= 12, onsets * song.tempo / 240.0, song.tempo, window_notes(notes, bars)))
    median = float(np.median([r[2] for r in rows]))
    name = {(False, True): "happy", (True, True): "angry", (True, False): "sad", (False, False): "calm"}
    groups: dict[str, list] = {e: [] for e, _ in EMOTIONS}
    for sid, minor, pace, tempo, notes in rows:
        groups[name[(minor, pace > median)]].append((sid, tempo, notes))
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for emotion, items in groups.items():
        chosen = sorted(rng.permutation(len(items))[:n])
        out[emotion] = []
        for i in chosen:
            sid, tempo, notes = items[i]
            step = 60.0 / tempo / 4
            pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
            inst = pretty_midi.Instrument(0, name="melody")
            inst.notes = [pretty_midi.Note(velocity=80, pitch=x.pitch, start=x.start * step, end=x.end * step) for x in notes]
            pm.instruments.append(inst)
            out[emotion].append((sid, pm))
    return out


def compositions(args) -> dict[str, list]:
    """emotion -> list of (seed or file name, PrettyMIDI) for the four emotions."""
    if getattr(args, "pop909", False):
        return pop909_songs(args.n)
    out: dict[str, list] = {}
    if args.midi_dir:
        d = Path(args.midi_dir)
        for emotion, _ in EMOTIONS:
            files = sorted(d.glob(f"{emotion}_*.mid"), key=lambda p: (len(p.stem), p.stem))
            out[emotion] = [(f.name, read_midi(f)) for f in files]
        return out
    from facetune.music.composer import compose_emotion, load_generator

    gen = load_generator(args.generator)
    settings = replace(gen.default_settings(), **decode_overrides(getattr(args, "set", [])))
    for emotion, _ in EMOTIONS:
        net = getattr(args, "network_emotion", None)
        songs = (compose_emotion(emotion, gen, bars=16, seed=seed, network_emotion=net, settings=settings) for seed in range(args.n))
        out[emotion] = [(c.seed, read_midi(c.midi_bytes(chords=not getattr(args, "melody_only", False)))) for c in songs]
    return out


def source_line(args) -> str:
    """What was judged, in words: the files, or the compositions and which tracks of them."""
    if args.midi_dir:
        return f"MIDI files in {args.midi_dir}"
    if getattr(args, "pop909", False):
        return f"POP909's sung melodies, {args.n} per emotion by the training rule (mode of the key, pace), first 16 bars at each song's tempo, judged by a judge trained on top lines"
    tracks = "melody track only" if args.melody_only else "full MIDI (melody + chords)"
    if melody_mode(args):
        tracks += ", its top line, judged by a judge trained on top lines"
    net = f", network told '{args.network_emotion}' in every song" if args.network_emotion else ""
    net += f", decode {' '.join(args.set)}" if getattr(args, "set", []) else ""
    return f"compose_emotion(..., bars=16, seed=0..{args.n - 1}), generator {args.generator or 'shipped'}, {tracks}{net}"


def held_out_scores(q_true: np.ndarray, q_pred: np.ndarray) -> dict:
    """Valence, arousal and 4-quadrant accuracy, and recall per quadrant."""
    v = lambda q: np.isin(q, [1, 4])  # noqa: E731
    a = lambda q: np.isin(q, [1, 2])  # noqa: E731
    return {
        "n": int(len(q_true)),
        "valence": float(np.mean(v(q_true) == v(q_pred))),
        "arousal": float(np.mean(a(q_true) == a(q_pred))),
        "quadrant": float(np.mean(q_true == q_pred)),
        "per_quadrant_recall": {f"Q{k}": float(np.mean(q_pred[q_true == k] == k)) if np.any(q_true == k) else None for k in (1, 2, 3, 4)},
        "confusion": [[int(np.sum((q_true == i) & (q_pred == j))) for j in (1, 2, 3, 4)] for i in (1, 2, 3, 4)],
    }


def print_held_out(name: str, s: dict) -> None:
    pq = "  ".join(f"Q{k} {s['per_quadrant_recall'][f'Q{k}']:.2f}" for k in (1, 2, 3, 4))
    print(f"  {name:28s} n={s['n']:4d}  valence {s['valence']:.3f}  arousal {s['arousal']:.3f}  quadrant {s['quadrant']:.3f}  (recall {pq})")


def verdicts(preds: dict[str, np.ndarray]) -> dict:
    """preds: emotion -> predicted quadrants of its compositions."""
    out, hv, ha, tot = {}, 0, 0, 0
    for emotion, q in EMOTIONS:
        p = np.asarray(preds.get(emotion, []))
        if not len(p):
            continue
        v = float(np.mean(np.isin(p, [1, 4]) == (q in (1, 4))))
        a = float(np.mean(np.isin(p, [1, 2]) == (q in (1, 2))))
        out[emotion] = {
            "quadrant": f"Q{q}",
            "n": int(len(p)),
            "arousal_hit": a,
            "valence_hit": v,
            "quadrant_hit": float(np.mean(p == q)),
            "heard_as": {f"Q{k}": int(np.sum(p == k)) for k in (1, 2, 3, 4)},
        }
        hv, ha, tot = hv + v * len(p), ha + a * len(p), tot + len(p)
    out["overall"] = {"n": tot, "valence_hit": hv / max(tot, 1), "arousal_hit": ha / max(tot, 1)}
    return out


def print_verdicts(v: dict) -> None:
    print(f"  {'emotion':8s} {'Q':3s} {'n':>4s} {'arousal':>8s} {'valence':>8s} {'both':>6s}   heard as Q1/Q2/Q3/Q4")
    for emotion, q in EMOTIONS:
        if emotion not in v:
            continue
        r = v[emotion]
        h = "/".join(str(r["heard_as"][f"Q{k}"]) for k in (1, 2, 3, 4))
        print(f"  {emotion:8s} Q{q:<2d} {r['n']:4d} {r['arousal_hit']:8.2f} {r['valence_hit']:8.2f} {r['quadrant_hit']:6.2f}   {h}")
    o = v["overall"]
    print(f"  {'overall':8s} {'':3s} {o['n']:4d} {o['arousal_hit']:8.3f} {o['valence_hit']:8.3f}")


def report(args, preds: dict[str, np.ndarray], held: dict, description: str, source: str | None = None, **extra) -> dict:
    """Print the verdicts on what was judged (`source`, default `source_line(args)`) and the
    command, and write the JSON (`--json`): a judge's closing report. Returns the verdicts."""
    v = verdicts(preds)
    src = source or source_line(args)
    print(f"verdicts on {src}:")
    print_verdicts(v)
    print(f"command: {command_line()}")
    write_json(args.json, {"judge": description, **extra, "command": command_line(), "source": src, "held_out": held, "verdicts": v})
    return v


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
