from __future__ import annotations

import numpy as np
import pytest

from facetune.music.form import FORMS, MOTIF_VARIATION, PRIMED_VARIATION, cadence_bars, choose_form, fit_form, form_name, parse_form, plan_bars


def test_parse_form_links_each_restatement_to_the_latest_phrase_of_its_letter():
    phrases = parse_form("AABA")
    assert [p.restates for p in phrases] == [None, 0, None, 1]
    primed = parse_form("AA'BA")
    assert primed[1].label == "A'" and primed[1].variation == PRIMED_VARIATION > primed[3].variation > 0
    assert [p.restates for p in parse_form("ABAB'")] == [None, None, 0, 1]
    assert form_name(parse_form("a a b a")) == "AABA"
    assert form_name(parse_form("A'B'AB'")) == "ABAB'"  # a first phrase is no variation


@pytest.mark.parametrize("bad", ["", "A1BA", "AB?A", "'A"])
def test_malformed_forms_are_refused(bad):
    with pytest.raises(ValueError, match="form"):
        parse_form(bad)


def test_fit_form_gives_one_phrase_per_four_bars():
    assert form_name(fit_form("AABA", 8)) == "AA"
    assert form_name(fit_form("AB", 16)) == "ABAB"
    assert len(fit_form("AABA", 18)) == 5


def test_plan_restates_and_answers_motifs():
    plans = plan_bars(parse_form("AABA"), 16)
    # bar 3 of a new phrase answers bar 1: it starts from bar 1's noise, varied
    assert plans[2].latent_from == 0 and plans[2].variation == MOTIF_VARIATION and plans[2].ref == 0
    assert plans[10].latent_from == 8 and plans[10].ref == 8
    assert plan_bars(parse_form("AABA"), 16, motif_reference=False)[2].ref == -1
    # the second A restates the first, bar by bar, except its bar 3, which answers its own bar 1
    # (the verse varies there); the last A restates the second the same way
    assert [p.ref for p in plans[4:8]] == [0, 1, 4, 3]
    assert [p.ref for p in plans[12:16]] == [4, 5, 12, 7]
    assert plans[6].latent_from == 4 and plans[6].variation == MOTIF_VARIATION
    assert [p.ref for p in plan_bars(parse_form("AABA"), 16, motif_reference=False)[4:8]] == [0, 1, 2, 3]
    assert [p.ref for p in plans[8:12]] == [-1, -1, 8, -1]
    assert [p.pos for p in plans[:8]] == [0, 1, 2, 3] * 2
    # a breath at every phrase's fourth bar, as in the training data (never a fourth bar without one)
    assert [b for b, p in enumerate(plans) if p.phrase_end] == [3, 7, 11, 15]
    # a song that stops inside a phrase still ends on a breath
    assert [b for b, p in enumerate(plan_bars(parse_form("AABA"), 10)) if p.phrase_end] == [3, 7, 9]


def test_cadences_fall_in_the_middle_and_at_the_end():
    assert cadence_bars(16) == {7: "half", 15: "full"}
    assert cadence_bars(4) == {3: "full"}


def test_every_seedable_form_has_a_contrasting_phrase():
    seen = {choose_form(np.random.default_rng(s)) for s in range(40)}
    assert seen == set(FORMS)
    for f in FORMS:
        assert len({p.letter for p in parse_form(f)}) >= 2


def test_a_primed_phrase_draws_its_ending_afresh():
    plans = plan_bars(parse_form("AA'BA"), 16)
    assert [p.fresh_draws for p in plans[4:8]] == [False, False, True, True]
    assert [p.ref for p in plans[4:8]] == [0, 1, -1, -1]
    assert not any(p.fresh_draws for p in plans[12:16])


def test_a_form_asked_for_must_fit_the_bars():
    import pytest

    with pytest.raises(ValueError, match="3 phrase.*16 bar.*make 4"):
        fit_form("XYZ", 16, strict=True)
    with pytest.raises(ValueError, match="--bars 32"):
        fit_form("ABCDEFGH", 16, strict=True)
    assert form_name(fit_form("AABA", 16, strict=True)) == "AABA"


@pytest.mark.parametrize("n_bars", [4, 6, 8, 12, 16, 20, 32])
@pytest.mark.parametrize("form", FORMS)
def test_every_fourth_bar_of_a_phrase_is_a_phrase_end(form, n_bars):
    # the training data never shows a phrase's fourth bar that runs on, so the composer never asks for one;
    # the song's last bar always ends a phrase too
    plans = plan_bars(fit_form(form, n_bars), n_bars)
    assert all(p.phrase_end for p in plans if p.pos == 3)
    assert plans[-1].phrase_end
