"""The note head: a small network that reads the notes the melody has just played and turns the
GAN's scores for a bar into notes one step at a time.

Why: the GAN scores a whole bar at once, so each step's pitch was drawn on its own from that
step's distribution. Neighbouring notes were then independent draws among the likely pitches:
the line hopped between chord tones, struck the same pitch again where a singer would pass to
the next one, and a run of whole steps (POP909's commonest pair of moves after a repeat) came
out a quarter as often as in sung melodies. Teacher-forced, the GAN's scores already moved like
the data's; what was missing is a draw that knows the note before it. The head is that draw:
per step it reads the held note, the last interval, how long the note has sounded, the step in
the bar, the emotion, the phrase position, the scale degree of the last note and the song's
register, pace and major/minor lean, and gives biases over the *interval* to the next note (so it is the same in
every key), a bias to hold the note, a bias to rest, a weight on the GAN's own scores and a bias
to strike a held pitch again. It is trained on POP909's melodies by likelihood, with the GAN's
scores for the same conditions (a fresh noise each time) as its input, so it learns what the
GAN leaves out, not what it already says.

This module is numpy only (composing needs no torch); `gan.NoteHeadNet` is the same network in
torch for training. The state update and the features are shared by both, so the head is
trained on exactly the inputs it reads when it composes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .blas import PRODUCT_DTYPE
from .pianoroll import N_PITCHES, ONSET, REST

#: Intervals the head scores on their own (semitones either way); wider ones share the edge's bias.
SPAN = 24
N_REL = 2 * SPAN + 1
#: Output columns: the interval biases, then hold, rest, the weight on the GAN's scores (log) and restrike.
HOLD, REST_BIAS, SCALE, RESTRIKE = N_REL, N_REL + 1, N_REL + 2, N_REL + 3
N_OUT = N_REL + 4
#: The categorical inputs and their sizes; each picks one row of one embedding table.
CATEGORIES = (
    ("interval", 26),  # the last interval between two notes, -12..12 (clipped), 25: none yet
    ("since", 16),  # steps the held note (or rest) has lasted, 0..7, x sounding or resting
    ("step", 16),  # the step in the bar
    ("emotion", 5),  # Q1..Q4, unknown
    ("position", 5),  # the bar's place in its 4-bar phrase, 4: unknown
    ("phrase_end", 2),
    ("degree", 25),  # the last note's pitch class above the key's tonic, x major/minor; 24: no note yet
    ("echo", 6),  # a note started here in the bar before (0/1), x in the bar this one restates (0/1; 2: none)
)
OFFSETS = np.cumsum([0] + [n for _, n in CATEGORIES])[:-1]
N_CATEGORY_ROWS = int(sum(n for _, n in CATEGORIES))
#: Dense inputs: last pitch (octaves from the range's middle), the song controls (register,
#: density and major/minor lean, `generator_numpy.song_controls`), the GAN's log-probability of
#: the held column, of a rest, and its onset probability.
N_DENSE = 7


@dataclass(frozen=True)
class HeadDims:
    """The head's size, stored in the checkpoint beside the GAN's dimensions."""

    hidden: int = 128


class HeadState:
    """Per song of a batch: the held column (REST before the first note), the last sounding pitch
    column (-1: none yet), the last interval between two notes (99: none) and how many steps the
    held note or rest has lasted."""

    def __init__(self, n: int) -> None:
        self.held = np.full(n, REST, np.int64)
        self.last = np.full(n, -1, np.int64)
        self.interval = np.full(n, 99, np.int64)
        self.since = np.zeros(n, np.int64)

    def take(self, index: np.ndarray) -> "HeadState":
        """The songs at `index`, as a state of their own (a copy)."""
        out = HeadState(len(index))
        out.held, out.last, out.interval, out.since = self.held[index], self.last[index], self.interval[index], self.since[index]
        return out

    def copy(self) -> "HeadState":
        return self.take(np.arange(len(self.held)))

    def put(self, index: np.ndarray, other: "HeadState") -> None:
        """Write `other`'s songs back at `index`."""
        self.held[index], self.last[index], self.interval[index], self.since[index] = other.held, other.last, other.interval, other.since

    def advance(self, col: np.ndarray, onset: np.ndarray) -> None:
        """After a step: `col` the column played (REST for silence), `onset` whether a note starts there."""
        col = np.asarray(col, np.int64)
        sounding = col != REST
        new = sounding & (np.asarray(onset, bool) | (col != self.held))
        starts_rest = ~sounding & (self.held != REST)
        self.interval = np.where(new & (self.last >= 0), np.minimum(np.maximum(col - self.last, -12), 12), self.interval)
        self.last = np.where(new, col, self.last)
        self.since = np.where(new | starts_rest, 0, np.minimum(self.since + 1, 7))
        self.held = col

    def features(self, step: int, scores: np.ndarray, emotion: np.ndarray, position: np.ndarray, phrase_end: np.ndarray, key: np.ndarray, controls: np.ndarray, echoes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, len(CATEGORIES)) rows into the stacked embedding table and (n, N_DENSE) dense inputs,
        for the step about to be played; `scores` are the GAN's (n, BAR_WIDTH) scores at that step,
        `echoes` the bar's (n, 16) `echo` categories, `controls` the three song controls (register, density, lean), scaled as the GAN reads them.
        The lean is the head's own: the shipped GAN reads only the first two, and the head, which
        picks every pitch, is where the composer's request for a major or minor tune lands."""
        n = len(self.held)
        interval = np.where(self.interval == 99, 25, self.interval + 12)
        since = self.since + 8 * (self.held == REST)
        pos = np.where(np.asarray(position) < 0, 4, position)
        key = np.asarray(key, np.int64)
        degree = np.where(self.last < 0, 24, (self.last + 48 - key % 12) % 12 + 12 * (key >= 12))
        cats = np.stack([interval, since, np.full(n, step), emotion, pos, np.asarray(phrase_end, np.int64), degree, echoes[:, step]], 1) + OFFSETS
        logp = _log_softmax(scores[:, : REST + 1])
        dense = np.stack([
            np.where(self.last < 0, 0.0, (self.last - N_PITCHES / 2) / 12),
            controls[:, 0],
            controls[:, 1],
            controls[:, 2],
            logp[np.arange(n), self.held],
            logp[:, REST],
            1 / (1 + np.exp(-scores[:, ONSET])),
        ], 1)
        return cats, dense


def echo(prev: np.ndarray, has_reference: np.ndarray) -> np.ndarray:
    """Per step of a bar (B, 16), the "echo" category: whether a note started there in the bar
    before, and in the bar this one restates (2: it restates none), from the conditioner's input
    `prev` (B, bars, 16, BAR_WIDTH: the previous bars, most recent first, then the reference).
    Why: a sung line's rhythm comes back from bar to bar, and a restated bar keeps its model's,
    varied; without it the head saw rhythm only through the GAN's scores and wrote too few runs
    of even eighths (4.6 % of note-length pairs against POP909's 15.7 %)."""
    before = (np.asarray(prev)[:, 0, :, ONSET] > 0).astype(np.int64)
    ref = np.where(np.asarray(has_reference, bool)[:, None], np.asarray(prev)[:, -1, :, ONSET] > 0, 2).astype(np.int64)
    return before * 3 + ref


def history(prev: np.ndarray, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """The conditioner's previous bars (`prev`, (B, bars, 16, BAR_WIDTH), most recent first, zeros
    before a clip's start) as the history `teacher_forced` plays the state through, oldest first:
    (B, 16 n_bars) pitch columns (-1: rest or no bar) and onsets."""
    bars = np.asarray(prev)[:, :n_bars][:, ::-1].reshape(len(prev), -1, prev.shape[-1])
    pitch = np.where(bars[..., :REST].sum(-1) > 0, bars[..., :REST].argmax(-1), -1)
    return pitch, bars[..., ONSET] > 0


def head_logits(out: np.ndarray, scores: np.ndarray, state: HeadState) -> tuple[np.ndarray, np.ndarray]:
    """The step's pitch-or-rest scores (n, REST + 1) and restrike score (n,) from the head's outputs
    (n, N_OUT, or N_OUT + 1 with a zero column last, as `NumpyNoteHead` gives them) and the GAN's scores (n, BAR_WIDTH): the GAN's scores weighted, plus the bias of each
    pitch's interval from the last note, of holding the held note and of resting."""
    weight = np.logaddexp(0.0, out[:, SCALE] + 0.5413)  # softplus; 1.0000 (to 2e-5) at an output of 0
    z = weight[:, None] * scores[:, : REST + 1]
    if out.shape[1] == N_OUT:
        out = np.concatenate([out, np.zeros((len(out), 1))], 1)
    rows = np.arange(len(out))
    rel = np.ascontiguousarray(out).take(_RELATIVE[state.last] + (rows * out.shape[1])[:, None])  # out[rows, _RELATIVE[last]] row by row, as one flat take; last -1: the no-note row, the zero column
    z[:, :REST] += rel
    z[rows, state.held] += np.where(state.held != REST, out[:, HOLD], 0.0)
    z[:, REST] += out[:, REST_BIAS]
    return z, scores[:, ONSET] + out[:, RESTRIKE]


def _relative_columns() -> np.ndarray:
    """Per last pitch column (and, last row, for no note yet), the output column of each pitch's
    interval bias; the no-note row points past the outputs at a column of zeros."""
    table = np.clip(np.arange(N_PITCHES)[None, :] - np.arange(N_PITCHES)[:, None], -SPAN, SPAN) + SPAN
    return np.vstack([table, np.full((1, N_PITCHES), N_OUT)])


_RELATIVE = _relative_columns()


def _step_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `NumpyNoteHead.step` reads of the state, as tables (each a lookup rather than a few
    array operations a step): the embedding row of the last interval by `interval + 12` (99 + 12:
    none yet), of the last note's scale degree by key and `last + 1` (0: no note yet), and the
    last pitch's dense input by `last + 1`, each worked out as `features` works it out."""
    offsets = OFFSETS.tolist()
    interval = offsets[0] + np.append(np.arange(25), np.full(99 + 12 - 24, 25))
    key = np.arange(24)[:, None]
    last = np.arange(-1, N_PITCHES)[None, :]
    degree = offsets[6] + np.where(last >= 0, (last + 48 - key % 12) % 12 + 12 * (key >= 12), 24)
    pull = np.where(last[0] >= 0, (last[0] - N_PITCHES / 2) / 12, 0.0)
    return interval, degree, pull


_INTERVAL_ROWS, _DEGREE_ROWS, _PULL = _step_tables()


class NumpyNoteHead:
    """The head's forward pass in numpy, from the exported arrays `head.*`: the first layer's sum
    and the outputs in float64, the layers after the first in float32 (`blas.PRODUCT_DTYPE`:
    their products run about twice as fast)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.embed = weights["head.embed"].astype(np.float64)
        self.dense = weights["head.dense"].astype(np.float64)
        self.b1 = weights["head.b1"].astype(np.float64)
        self.w2, self.b2 = weights["head.w2"].astype(PRODUCT_DTYPE), weights["head.b2"].astype(PRODUCT_DTYPE)
        # one more output, always zero: the interval bias of "no note yet" (`head_logits`)
        self.w3 = np.hstack([weights["head.w3"], np.zeros((len(self.w2), 1))]).astype(PRODUCT_DTYPE)
        self.b3 = np.append(weights["head.b3"], 0.0).astype(PRODUCT_DTYPE)
        #: `_PULL` times the weight it meets in `step`: the same products, looked up once a step rather than made.
        self.pull_rows = _PULL[:, None] * self.dense[0]

    def __call__(self, cats: np.ndarray, dense: np.ndarray) -> np.ndarray:
        h = self.embed[cats].sum(1) + dense @ self.dense + self.b1
        return self._top(h)

    def _top(self, h: np.ndarray) -> np.ndarray:
        """The layers after the first, from its pre-activation `h` (float64), in the weights' dtype;
        the outputs in float64."""
        h = np.maximum(h, 0.0, out=np.empty(h.shape, self.w2.dtype)) @ self.w2
        h += self.b2
        out = np.maximum(h, 0.0, out=h) @ self.w3
        out += self.b3
        return out.astype(np.float64)

    def bar_inputs(self, scores: np.ndarray, emotion: np.ndarray, position: np.ndarray, phrase_end: np.ndarray, controls: np.ndarray, echoes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What `features` gives, for every step of a bar at once where it does not depend on the
        notes played: the first layer's sum of those inputs (n, 16, hidden), and the GAN's
        log-probabilities (n, 16, REST + 1). Why: composing reads the head 256 times a song, one
        step after another, and most of its inputs are fixed for the bar; summing them once per
        bar took a song from 88 ms to (see `step`) a fraction of that."""
        o, e, d = OFFSETS, self.embed, self.dense
        pos = np.where(np.asarray(position) < 0, 4, position)
        base = e[o[3] + np.asarray(emotion)] + e[o[4] + pos] + e[o[5] + np.asarray(phrase_end, np.int64)] + controls[:, :3] @ d[1:4] + self.b1
        logp = _log_softmax(scores[..., : REST + 1].reshape(-1, REST + 1)).reshape(len(scores), -1, REST + 1)
        p_on = 1 / (1 + np.exp(-scores[..., ONSET]))
        # the sum left to right, each term made in one reused buffer (these are a megabyte each for a batch)
        per_step = base[:, None, :] + e[o[2] : o[2] + scores.shape[1]][None]
        term = e.take(o[7] + echoes, axis=0)
        per_step += term
        per_step += np.multiply(logp[..., REST, None], d[5], out=term)
        per_step += np.multiply(p_on[..., None], d[6], out=term)
        return per_step, logp

    def step(self, per_step: np.ndarray, logp: np.ndarray, state: HeadState, key: np.ndarray) -> np.ndarray:
        """The head's outputs (n, N_OUT) for one step from `bar_inputs`' row for it and the state:
        the same as `features` and `__call__` (to rounding; a test checks it)."""
        e, held = self.embed, state.held
        after_last = state.last + 1
        h = e.take(_INTERVAL_ROWS[state.interval + 12], axis=0)
        h += per_step  # per_step + that row: one sum, whichever side (IEEE addition commutes)
        h += e.take(OFFSETS[1] + state.since + 8 * (held == REST), axis=0)
        h += e.take(_DEGREE_ROWS[key, after_last], axis=0)
        pull = self.pull_rows.take(after_last, axis=0)
        pull += np.multiply.outer(logp[np.arange(len(held)), held], self.dense[4])
        h += pull
        return self._top(h)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(1, keepdims=True)  # x - m - log(...) subtracts left to right: the same numbers
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


def teacher_forced(pitch: np.ndarray, onset: np.ndarray, history: tuple[np.ndarray, np.ndarray], scores: np.ndarray, emotion: np.ndarray, position: np.ndarray, phrase_end: np.ndarray, key: np.ndarray, controls: np.ndarray, echoes: np.ndarray) -> dict[str, Any]:
    """The head's inputs for every step of real bars, for training: `pitch`/`onset` (B, 16) the bars
    (pitch column, -1 for rest), `history` the same for the bars before them (B, H), played through
    the state first, `scores` the GAN's (B, 16, BAR_WIDTH) for them, `echoes` their `echo`. Returns the categorical and
    dense inputs (B, 16, ...), the state's last note and held column before each step, the target
    columns and where a restrike is the question (the real note keeps the held pitch)."""
    b = len(pitch)
    state = HeadState(b)
    hp, ho = history
    for t in range(hp.shape[1]):
        state.advance(np.where(hp[:, t] < 0, REST, hp[:, t]), ho[:, t])
    cols = np.where(pitch < 0, REST, pitch).astype(np.int64)
    cats, dense, last, held = [], [], [], []
    for t in range(pitch.shape[1]):
        c, d = state.features(t, scores[:, t], emotion, position, phrase_end, key, controls, echoes)
        cats.append(c)
        dense.append(d)
        last.append(state.last.copy())
        held.append(state.held.copy())
        state.advance(cols[:, t], onset[:, t])
    held_a = np.stack(held, 1)
    return {
        "cats": np.stack(cats, 1), "dense": np.stack(dense, 1), "last": np.stack(last, 1), "held": held_a,
        "target": cols, "restrike_at": (cols == held_a) & (cols != REST), "restrike": onset.astype(np.float64),
    }
