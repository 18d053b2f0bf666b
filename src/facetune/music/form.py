"""Song form: which 4-bar phrases restate which, where motifs return, and where cadences fall.

A 16-bar song is four 4-bar phrases labelled like a lead sheet: `AABA`, `AA'BA`, `ABAB'`,
`AABB`. A letter seen before restates the most recent phrase with that letter: each of its bars
is written by the generator again, conditioned on the bar it restates (the network learned from
POP909's human phrase labels how real songs restate a phrase) and started from the same noise,
mixed with fresh noise by the phrase's variation, with the same uniforms for its onset draws
(the rhythm comes back) and fresh ones for its pitch draws, so the pitches change in the places
where the network itself is unsure, as a singer varies a verse; where the chord differs, the bar it
restates is first moved along the scale to the new chord (see `composer`). Its third bar answers its
own first bar instead, so the verse also changes in one place of its own. A primed letter,
`A'`, writes its second half anew, from fresh draws and without a bar to restate, the way a
restated phrase often changes its ending. A new
phrase answers its first bar with its third (bar 3 reuses bar 1's noise, varied) — the
motif that makes a phrase hang together. The second phrase ends on a half cadence (V) and the
last on the tonic; both are marked as phrase ends, which the network also learned.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PHRASE_BARS = 4
#: Forms chosen per seed: the common pop and jazz forms of four phrases, none with all four alike.
FORMS: tuple[str, ...] = ("AABA", "AA'BA", "ABAB'", "AABB")
#: Share of fresh noise when a phrase restates an earlier one: a plain letter restates closely,
#: a primed one (A') is a variation.
RESTATE_VARIATION = 0.15
PRIMED_VARIATION = 0.5
#: Share of fresh noise when bar 3 of a phrase answers bar 1.
MOTIF_VARIATION = 0.35
_TOKEN = re.compile(r"([A-Za-z])('*)")


@dataclass(frozen=True)
class Phrase:
    """One phrase of the form: its label (`A`, `A'`), the phrase it restates (index) and how freely."""

    label: str
    letter: str
    restates: int | None
    variation: float


@dataclass(frozen=True)
class BarPlan:
    """What the generator is told about one bar, and which earlier bar's noise it starts from."""

    phrase: int
    pos: int
    phrase_end: bool
    ref: int
    latent_from: int
    variation: float
    fresh_draws: bool = False


def parse_form(spec: str) -> list[Phrase]:
    """`AABA`, `AA'BA`, `A A B A` or `ABAB'` → phrases; ValueError (a usage error) for anything else."""
    text = spec.replace(" ", "").replace("-", "")
    tokens = _TOKEN.findall(text)
    if not text or "".join(l + p for l, p in tokens) != text:
        raise ValueError(f"form {spec!r} is not a string of phrase letters such as AABA or AA'BA")
    phrases: list[Phrase] = []
    last: dict[str, int] = {}
    for letter, primes in tokens:
        letter = letter.upper()
        earlier = last.get(letter)
        if earlier is None:
            primes = ""  # a variation of nothing: the first phrase of a letter is the theme itself
        variation = (PRIMED_VARIATION if primes else RESTATE_VARIATION) if earlier is not None else 0.0
        phrases.append(Phrase(letter + primes, letter, earlier, variation))
        last[letter] = len(phrases) - 1
    return phrases


def form_name(phrases: list[Phrase]) -> str:
    return "".join(p.label for p in phrases)


def choose_form(rng: np.random.Generator) -> str:
    return FORMS[int(rng.integers(len(FORMS)))]


def fit_form(spec: str, n_bars: int, strict: bool = False) -> list[Phrase]:
    """The form's phrases for a piece of `n_bars` (one phrase per 4 bars, the last may be shorter).

    A form with fewer phrases than the piece needs is repeated; one with more is cut. With
    `strict` (a form the user asked for) a form of the wrong length is a ValueError instead, so a
    request is never changed without a word.
    """
    phrases = parse_form(spec)
    need = max(1, -(-n_bars // PHRASE_BARS))
    if strict and len(phrases) != need:
        raise ValueError(
            f"form {spec!r} has {len(phrases)} phrase(s), but {n_bars} bar(s) make {need} (one per {PHRASE_BARS} bars); "
            f"give {need} letters or --bars {len(phrases) * PHRASE_BARS}"
        )
    labels = [phrases[i % len(phrases)].label for i in range(need)]
    return parse_form("".join(labels))


def plan_bars(phrases: list[Phrase], n_bars: int, motif_reference: bool = True) -> list[BarPlan]:
    """One plan per bar: phrase position, phrase end, the bar it restates and the bar whose noise it reuses.

    With `motif_reference`, bar 3 of a new phrase is also conditioned on bar 1 as the bar it
    restates, so the network brings the motif back (over its own chord) instead of only
    starting from the same noise. In a restated phrase, bar 3 answers that phrase's own bar 1
    the same way rather than restating the earlier phrase's bar 3: the verse keeps its motif but
    changes in that place (with all four bars restated, a quarter of the restated bars came back
    note for note, more than POP909's 17 %).

    A phrase end, where the network breathes and ends on a long note, is marked at the last bar of
    every 4-bar phrase, and at the cadences (`cadence_bars`) of a song whose length is not a whole
    number of phrases. In the training data the fourth bar of a phrase is always an end, so a
    fourth bar not marked as one is a condition the network never saw: marked only at the two
    cadences (until 2026-12-04), bars 4 and 12 came out the busiest of a song (happy 8.4 and 8.9
    notes, angry 10.0 and 9.8), where POP909's fourth bars are its sparsest (4.0 notes against
    5.4-6.5). The breaths leave more beats empty; `DecodeSettings.rest_penalty` keeps them short.
    """
    plans: list[BarPlan] = []
    breaths = cadence_bars(n_bars)
    for b in range(n_bars):
        p, pos = divmod(b, PHRASE_BARS)
        phrase = phrases[p]
        end = pos == PHRASE_BARS - 1 or b in breaths
        if phrase.restates is not None:
            src = phrase.restates * PHRASE_BARS + pos
            varied_ending = phrase.variation >= PRIMED_VARIATION and pos >= PHRASE_BARS // 2
            if pos == 2 and motif_reference and not varied_ending:
                plans.append(BarPlan(p, pos, end, b - 2, b - 2, MOTIF_VARIATION))
            else:
                plans.append(BarPlan(p, pos, end, -1 if varied_ending else src, src, phrase.variation, fresh_draws=varied_ending))
        elif pos == 2:
            plans.append(BarPlan(p, pos, end, b - 2 if motif_reference else -1, b - 2, MOTIF_VARIATION))
        else:
            plans.append(BarPlan(p, pos, end, -1, -1, 0.0))
    return plans


def cadence_bars(n_bars: int) -> dict[int, str]:
    """Bars that end on a cadence: the middle (end of the second phrase) half, the last bar full."""
    out = {n_bars - 1: "full"}
    n_phrases = -(-n_bars // PHRASE_BARS)
    if n_phrases >= 3:
        out[(n_phrases // 2) * PHRASE_BARS - 1] = "half"
    return out
