"""Chords, keys and emotion-specific progressions.

Chord indices: 0–11 major triads on roots C..B, 12–23 minor triads, 24 = no chord.
Key indices follow pretty_midi's key numbers: 0–11 major, 12–23 minor.

Names are spelled as a musician reads them: each key by its usual signature (Db major, not C#
major; G# minor, not Ab minor), and each chord in a key by that key's scale, so F# major has
G#m and Eb minor has Cb (`chord_name(chord, key)`, `spell_root`).

Progressions per quadrant (Roman numerals relative to the tonic; each phrase letter of the
song's form takes one, the middle of the song ends on V and the end on the tonic):

| quadrant | mode | progressions |
|---|---|---|
| Q1 happy | major | I–V–vi–IV · I–IV–V–I · I–V–IV–V · I–ii–V–I · I–IV–I–V |
| Q2 angry | minor | i–iv–V–i · i–bII–V–i · i–VI–V–i · i–iv–i–V · i–VII–VI–V |
| Q3 sad | minor | i–iv–i–V · i–VI–iv–V · i–v–iv–i · i–iv–VI–V · i–iv–v–i |
| Q4 calm | major | I–IV–I–IV · I–iii–IV–I · I–ii–IV–I · I–IV–V–I · I–V–IV–I |

Minor progressions return to i often and lean on iv and V: progressions built mostly of the
relative major's chords (i–VI–III–VII) make a melody over them read as major. Happy ones lean on
I, IV and V the same way: when four of the five passed through vi or iii (I–vi–IV–V,
IV–V–iii–vi and I–IV–vi–V beside I–V–vi–IV), a happy tune alone leaned major by only 0.05
(Krumhansl–Kessler; POP909's major melodies 0.125) and a third of them read as E or A minor;
over these, 0.08.
Calm's the same: over I–vi–ii–V and IV–I–ii–I calm tunes leaned minor (−0.04 and −0.06, 40
songs each); over I–ii–IV–I and I–IV–V–I, which replaced them, +0.12 and +0.04.
"""
from __future__ import annotations

import numpy as np

#: A pitch class's name where no key says otherwise.
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
N_CHORDS = 25
NO_CHORD = 24
#: Each key's tonic as it is written, by pitch class: the spelling with the fewer accidentals
#: (F# major and Eb minor, six either way, as they are most often written).
MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
KEY_NAMES = tuple(f"{p} major" for p in MAJOR_TONICS) + tuple(f"{p} minor" for p in MINOR_TONICS)
LETTERS = "CDEFGAB"
NATURAL_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ACCIDENTALS = {0: "", 1: "#", 2: "##", 11: "b", 10: "bb"}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
#: Natural minor: melodies stay in it; only the accompaniment's V chord raises the 7th.
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
#: Krumhansl & Kessler (1982) probe-tone profiles.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: A bar whose best triad explains less than this share of its (weighted) notes has no chord.
MIN_CHORD_FIT = 0.5

_M, _m = "maj", "min"
PROGRESSIONS: dict[str, list[list[tuple[int, str]]]] = {
    "Q1": [
        [(0, _M), (7, _M), (9, _m), (5, _M)],
        [(0, _M), (5, _M), (7, _M), (0, _M)],
        [(0, _M), (7, _M), (5, _M), (7, _M)],
        [(0, _M), (2, _m), (7, _M), (0, _M)],
        [(0, _M), (5, _M), (0, _M), (7, _M)],
    ],
    "Q2": [
        [(0, _m), (5, _m), (7, _M), (0, _m)],
        [(0, _m), (1, _M), (7, _M), (0, _m)],
        [(0, _m), (8, _M), (7, _M), (0, _m)],
        [(0, _m), (5, _m), (0, _m), (7, _M)],
        [(0, _m), (10, _M), (8, _M), (7, _M)],
    ],
    "Q3": [
        [(0, _m), (5, _m), (0, _m), (7, _M)],
        [(0, _m), (8, _M), (5, _m), (7, _M)],
        [(0, _m), (7, _m), (5, _m), (0, _m)],
        [(0, _m), (5, _m), (8, _M), (7, _M)],
        [(0, _m), (5, _m), (7, _m), (0, _m)],
    ],
    "Q4": [
        [(0, _M), (5, _M), (0, _M), (5, _M)],
        [(0, _M), (4, _m), (5, _M), (0, _M)],
        [(0, _M), (2, _m), (5, _M), (0, _M)],
        [(0, _M), (5, _M), (7, _M), (0, _M)],
        [(0, _M), (7, _M), (5, _M), (0, _M)],
    ],
}


def chord_index(root: int, quality: str) -> int:
    return root % 12 + (12 if quality == _m else 0)


def key_signature(key: int) -> int:
    """Sharps (> 0) or flats (< 0) in the key's signature, as written by `KEY_NAMES`."""
    name = KEY_NAMES[key].split()[0]
    major_tonic = (pitch_class(name) + (3 if key >= 12 else 0)) % 12
    fifths = (major_tonic * 7) % 12
    fifths = fifths - 12 if fifths > 6 else fifths
    if fifths == 6 and ("b" in name or key >= 12 and name == "Eb"):
        return -6
    return fifths


def pitch_class(name: str) -> int:
    """'C#' → 1, 'Cb' → 11, 'Fb' → 4, 'E#' → 5: a letter and any accidentals."""
    if not name or name[0] not in NATURAL_PITCH_CLASS or set(name[1:]) - {"#", "b"}:
        raise ValueError(f"unknown pitch name {name!r}")
    return (NATURAL_PITCH_CLASS[name[0]] + name.count("#") - name.count("b")) % 12


def _spelled(pc: int, letter: str) -> str:
    return letter + ACCIDENTALS[(pc - NATURAL_PITCH_CLASS[letter]) % 12]


def spell_root(pc: int, key: int) -> str:
    """A chord root named in a key, as its Roman numeral reads: a scale degree by the scale's
    letter (Cb in Eb minor, G# in E major); a chromatic root as the lowered degree above it (the
    Neapolitan bII is Db in C minor, not C#), except the raised 4th and, in minor, the raised
    6th and 7th, which are the degree below raised (F# in C major, G# in A minor); never a double
    accidental where a single one will do."""
    tonic = KEY_NAMES[key].split()[0]
    first = LETTERS.index(tonic[0])
    scale = scale_pitch_classes(key)
    pc %= 12
    if pc in scale:
        return _spelled(pc, LETTERS[(first + scale.index(pc)) % 7])
    offset = (pc - key) % 12
    raised = _spelled(pc, LETTERS[(first + scale.index((pc - 1) % 12)) % 7])
    lowered = _spelled(pc, LETTERS[(first + scale.index((pc + 1) % 12)) % 7])
    preferred, other = (raised, lowered) if offset == 6 or (key >= 12 and offset in (9, 11)) else (lowered, raised)
    return other if len(preferred) > 2 and len(other) <= 2 else preferred


def chord_name(i: int, key: int | None = None) -> str:
    """'Am', 'F#', 'N.C.'; with a key, the root is spelled in that key ('G#m' in E major, 'Cb' in Eb minor)."""
    if i == NO_CHORD:
        return "N.C."
    root = PITCH_CLASSES[i % 12] if key is None else spell_root(i % 12, key)
    return root + ("m" if i >= 12 else "")


def chord_pitch_classes(i: int) -> tuple[int, ...]:
    if i == NO_CHORD:
        return ()
    root = i % 12
    third = 3 if i >= 12 else 4
    return (root, (root + third) % 12, (root + 7) % 12)


def transpose_chord(i: int, semitones: int) -> int:
    if i == NO_CHORD:
        return NO_CHORD
    return (i % 12 + semitones) % 12 + (12 if i >= 12 else 0)


def _templates() -> np.ndarray:
    t = np.zeros((24, 12))
    for i in range(24):
        for k, pc in enumerate(chord_pitch_classes(i)):
            t[i, pc] = (1.0, 0.8, 0.9)[k]
    return t


_TEMPLATES = _templates()


def estimate_chord(pc_weights: np.ndarray) -> int:
    """The triad that best explains a bar's duration-weighted pitch classes, or NO_CHORD.

    Score = weight on the triad's tones (root 1.0, fifth 0.9, third 0.8) minus half the weight
    outside it; ties go to the lower index. A bar whose chord tones hold less than
    MIN_CHORD_FIT of its weight is NO_CHORD.
    """
    w = np.asarray(pc_weights, dtype=np.float64)
    total = w.sum()
    if total <= 1e-9:
        return NO_CHORD
    w = w / total
    inside = (_TEMPLATES > 0).astype(np.float64)
    scores = _TEMPLATES @ w - 0.5 * ((1 - inside) @ w)
    best = int(np.argmax(scores))
    if float(inside[best] @ w) < MIN_CHORD_FIT:
        return NO_CHORD
    return best


def scale_pitch_classes(key: int) -> tuple[int, ...]:
    root = key % 12
    steps = MAJOR_SCALE if key < 12 else MINOR_SCALE
    return tuple((root + s) % 12 for s in steps)


def key_correlations(pc_hist: np.ndarray) -> np.ndarray:
    """Pearson correlation of a pitch-class histogram with the 24 rotated KK profiles."""
    h = np.asarray(pc_hist, dtype=np.float64)
    out = np.zeros(24)
    if h.std() == 0:
        return out
    for k in range(12):
        out[k] = np.corrcoef(h, np.roll(KK_MAJOR, k))[0, 1]
        out[12 + k] = np.corrcoef(h, np.roll(KK_MINOR, k))[0, 1]
    return out


def estimate_key(pc_hist: np.ndarray) -> tuple[int, float]:
    c = key_correlations(pc_hist)
    k = int(np.argmax(c))
    return k, float(c[k])


def mode_score(pc_hist: np.ndarray) -> float:
    """Best major correlation minus best minor correlation: positive leans major."""
    c = key_correlations(pc_hist)
    return float(c[:12].max() - c[12:].max())


def mode_scores(pc_hists: np.ndarray) -> np.ndarray:
    """`mode_score` of each row of an (N, 12) array at once, as one matrix product: a music cache
    has thousands of songs, and one `mode_score` each took 12 s over POP909's."""
    h = np.asarray(pc_hists, dtype=np.float64)
    profiles = np.array([np.roll(p, k) for p in (KK_MAJOR, KK_MINOR) for k in range(12)])
    hc, pc = h - h.mean(1, keepdims=True), profiles - profiles.mean(1, keepdims=True)
    norm = np.sqrt((hc * hc).sum(1))
    c = (hc @ pc.T) / np.where(norm > 0, norm, 1.0)[:, None] / np.sqrt((pc * pc).sum(1))[None, :]
    return np.where(norm > 0, c[:, :12].max(1) - c[:, 12:].max(1), 0.0)


def quadrant_mode(quadrant: str) -> str:
    return "major" if quadrant in ("Q1", "Q4") else "minor"


def key_index(root: int, mode: str) -> int:
    return root % 12 + (12 if mode == "minor" else 0)


def progression(quadrant: str, key_root: int, letters: list[str], n_bars: int, rng: np.random.Generator, cadences: dict[int, str] | None = None) -> list[int]:
    """One chord per bar: each phrase letter of the form gets one of the quadrant's progressions
    (different letters, different progressions), and the cadence bars get V (half) or the tonic (full)."""
    table = PROGRESSIONS[quadrant]
    distinct = list(dict.fromkeys(letters))
    picks = rng.choice(len(table), size=min(len(distinct), len(table)), replace=False)
    chosen = {letter: table[int(picks[i % len(picks)])] for i, letter in enumerate(distinct)}
    chords = [chord_index(key_root + off, q) for b in range(n_bars) for off, q in [chosen[letters[b // 4]][b % 4]]]
    tonic = chord_index(key_root, "maj" if quadrant_mode(quadrant) == "major" else _m)
    for bar, kind in (cadences or {n_bars - 1: "full"}).items():
        chords[bar] = tonic if kind == "full" else chord_index(key_root + 7, _M)
    return chords


def allowed_pitch_mask(key: int, low: int, n: int) -> np.ndarray:
    scale = set(scale_pitch_classes(key))
    return np.array([(low + i) % 12 in scale for i in range(n)], dtype=bool)


def chord_tone_mask(chord: int, low: int, n: int) -> np.ndarray:
    tones = set(chord_pitch_classes(chord))
    return np.array([(low + i) % 12 in tones for i in range(n)], dtype=bool)

