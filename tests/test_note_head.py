"""The note head: its state, its scores, and composing with it (seeds, batches, the rest penalty)."""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from facetune.checkpoints import load_checkpoint, save_checkpoint
from facetune.music import note_head as nh
from facetune.music.generate import DecodeSettings, SongRequest, _draw_move, load_generator
from facetune.music.pianoroll import BAR_WIDTH, ONSET, REST, STEPS_PER_BAR


@pytest.fixture(scope="module")
def head_generator(tiny_generator, tmp_path_factory):
    """The tiny generator with an untrained head whose last layer is random (not zero), so the
    head really moves the scores, and that likes to rest; the numpy export beside it."""
    from facetune.music.gan import Generator, dims_from_dict
    from facetune.music.generator_numpy import export_generator

    payload = dict(load_checkpoint(tiny_generator, "generator"))
    dims = replace(dims_from_dict(payload["dims"]), note_head=12)
    torch.manual_seed(0)
    g = Generator(dims)
    g.load_state_dict(payload["state_dict"], strict=False)
    with torch.no_grad():
        g.head.fc3.weight.normal_(0, 0.3)
        g.head.fc3.bias.normal_(0, 0.3)
        g.head.fc3.bias[nh.REST_BIAS] = 4.0  # silences long enough for the rest penalty to shorten
    payload |= {"dims": asdict(dims), "state_dict": {k: v.clone() for k, v in g.state_dict().items()}}
    path = tmp_path_factory.mktemp("head_gen") / "generator.pt"
    save_checkpoint(path, payload)
    export_generator(path, path.with_suffix(".npz"))
    return path


def test_the_state_follows_notes_rests_and_restrikes():
    s = nh.HeadState(1)
    assert s.held[0] == REST and s.last[0] == -1 and s.interval[0] == 99
    played = [(10, True), (10, False), (12, True), (12, True), (REST, False), (REST, False), (5, True)]
    seen = []
    for col, on in played:
        s.advance(np.array([col]), np.array([on]))
        seen.append((int(s.held[0]), int(s.last[0]), int(s.interval[0]), int(s.since[0])))
    assert seen == [(10, 10, 99, 0), (10, 10, 99, 1), (12, 12, 2, 0), (12, 12, 0, 0), (REST, 12, 0, 0), (REST, 12, 0, 1), (5, 5, -7, 0)]


def test_a_head_that_outputs_zero_plays_the_gan_scores_as_they_are():
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 2, (5, BAR_WIDTH))
    s = nh.HeadState(5)
    s.advance(np.array([3, 7, REST, 20, 40]), np.ones(5, bool))
    z, strike = nh.head_logits(np.zeros((5, nh.N_OUT)), scores, s)
    assert np.allclose(z, scores[:, : REST + 1], rtol=1e-4) and np.allclose(strike, scores[:, ONSET])


def test_interval_biases_move_with_the_last_note():
    """The same output scores an interval the same wherever the last note is: transposition-free."""
    out = np.zeros((2, nh.N_OUT))
    out[:, nh.SPAN + 2] = 5.0  # a whole step up
    s = nh.HeadState(2)
    s.advance(np.array([10, 30]), np.ones(2, bool))
    z, _ = nh.head_logits(out, np.zeros((2, BAR_WIDTH)), s)
    assert z[0].argmax() == 12 and z[1].argmax() == 32


def test_teacher_forcing_reads_the_notes_before_each_step():
    rng = np.random.default_rng(1)
    pitch = rng.integers(-1, 20, (3, STEPS_PER_BAR))
    onset = rng.random((3, STEPS_PER_BAR)) < 0.5
    history = (rng.integers(-1, 20, (3, 32)), rng.random((3, 32)) < 0.5)
    tf = nh.teacher_forced(pitch, onset, history, rng.normal(size=(3, STEPS_PER_BAR, BAR_WIDTH)), np.zeros(3, int), np.zeros(3, int), np.zeros(3, int), np.zeros(3, int), np.zeros((3, 3)), np.full((3, STEPS_PER_BAR), 5))
    cols = np.where(pitch < 0, REST, pitch)
    assert np.array_equal(tf["held"][:, 1:], cols[:, :-1])
    assert np.array_equal(tf["held"][:, 0], np.where(history[0][:, -1] < 0, REST, history[0][:, -1]))
    assert np.array_equal(tf["restrike_at"], (cols == tf["held"]) & (cols != REST))
    assert tf["cats"].shape == (3, STEPS_PER_BAR, len(nh.CATEGORIES)) and tf["dense"].shape == (3, STEPS_PER_BAR, nh.N_DENSE)
    assert tf["cats"].max() < nh.N_CATEGORY_ROWS


def test_the_per_bar_sums_equal_the_step_by_step_features(head_generator):
    """`bar_inputs` + `step` (what composing runs) equal `features` + the forward pass (what training reads)."""
    head = load_generator(str(head_generator)).scores.head
    rng = np.random.default_rng(3)
    n = 5
    scores = rng.normal(0, 2, (n, STEPS_PER_BAR, BAR_WIDTH))
    emotion, pos, end, key = rng.integers(0, 5, n), rng.integers(-1, 4, n), rng.integers(0, 2, n), rng.integers(0, 24, n)
    controls, echoes = rng.normal(size=(n, 3)), rng.integers(0, 6, (n, STEPS_PER_BAR))
    per_step, logp = head.bar_inputs(scores, emotion, pos, end, controls, echoes)
    state = nh.HeadState(n)
    for t in range(STEPS_PER_BAR):
        fast = head.step(per_step[:, t], logp[:, t], state, key)
        slow = head(*state.features(t, scores[:, t], emotion, pos, end, key, controls, echoes))
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-10)
        state.advance(rng.integers(0, REST + 1, n), rng.random(n) < 0.5)


def test_the_echo_reads_the_bar_before_and_the_restated_bar():
    prev = np.zeros((2, 3, STEPS_PER_BAR, BAR_WIDTH))
    prev[:, 0, [0, 4], ONSET] = 1  # the bar before: notes start on beats 1 and 2
    prev[:, -1, [0, 8], ONSET] = 1  # the restated bar: on beats 1 and 3
    e = nh.echo(prev, np.array([True, False]))
    assert e[0, :9].tolist() == [4, 0, 0, 0, 3, 0, 0, 0, 1] and e[1, :9].tolist() == [5, 2, 2, 2, 5, 2, 2, 2, 2]


def test_a_move_never_stays_and_a_hold_stays_exactly_under_its_probability():
    rng = np.random.default_rng(2)
    scores = rng.normal(0, 2, (400, REST + 1))
    held = rng.integers(0, REST + 1, 400)
    u_hold, u_pick = rng.random(400), rng.random(400)
    col = _draw_move(scores, held, u_hold, u_pick, 1.0)
    p = np.exp(scores - scores.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    stay = u_hold < p[np.arange(400), held]
    assert np.array_equal(col == held, stay)


def test_songs_are_the_same_alone_or_in_a_batch_and_engines_agree(head_generator):
    gen = load_generator(str(head_generator))
    assert gen.engine == "numpy" and gen.dims.note_head == 12
    requests = [SongRequest("Q1", [0, 5, 7, 0, 9, 5], 0, 3), SongRequest("Q3", [21, 17, 21, 19], 21, 4), SongRequest("Q2", [21] * 8, 21, 5)]
    together = gen.generate_many(requests, DecodeSettings())
    for request, (rolls, changed) in zip(requests, together):
        alone, changed_alone = gen.generate_many([request], DecodeSettings())[0]
        assert np.array_equal(rolls, alone) and changed == changed_alone
        assert rolls.shape == (len(request.chords), STEPS_PER_BAR, BAR_WIDTH)
        assert (rolls[..., : REST + 1].sum(-1) == 1).all()  # one column per step: monophonic
    torch_gen = load_generator(str(head_generator), engine="torch")
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(together, torch_gen.generate_many(requests, DecodeSettings())))


def test_the_rest_penalty_ends_silences_and_counts_what_it_changed(head_generator):
    gen = load_generator(str(head_generator))
    requests = [SongRequest("Q4", [0, 5, 7, 0] * 2, 0, seed) for seed in range(6)]
    off = gen.generate_many(requests, DecodeSettings(rest_penalty=0.0, count_changes=True))
    on = gen.generate_many(requests, DecodeSettings(rest_penalty=3.0, count_changes=True))
    assert all(c["rest"] == 0 for _, c in off)
    rests = lambda songs: sum(int(r[..., REST].sum()) for r, _ in songs)  # noqa: E731
    assert rests(on) < rests(off) and sum(c["rest"] for _, c in on) > 0
    # counting observes, it does not play: the same notes without it
    uncounted = gen.generate_many(requests, DecodeSettings(rest_penalty=3.0))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(on, uncounted)) and all(c["rest"] == 0 and c["scale"] == 0 for _, c in uncounted)


def test_a_song_carries_on_from_the_bars_written_before_it(head_generator):
    """A soundtrack's next segment: the head reads the bars before it, so they change how it starts."""
    gen = load_generator(str(head_generator))
    before = gen.generate("Q1", [0, 5], 0, seed=1)[0]
    plain = gen.generate_many([SongRequest("Q3", [21, 17], 21, 2)], DecodeSettings())[0][0]
    after = gen.generate_many([SongRequest("Q3", [21, 17], 21, 2, before=list(before))], DecodeSettings())[0][0]
    assert after.shape == plain.shape and not np.array_equal(after, plain)


@pytest.mark.parametrize("top_p", [0.9, 0.5, 0.2])
def test_one_row_nucleus_keeps_what_the_batch_one_keeps(top_p):
    from facetune.music.generate import _nucleus, _nucleus_one

    rng = np.random.default_rng(4)
    for scores in (rng.normal(0, 2, (200, REST + 1)), rng.integers(-2, 2, (200, REST + 1)).astype(float)):  # ties too
        p = np.exp(scores)
        p /= p.sum(1, keepdims=True)
        assert all(np.array_equal(_nucleus_one(row, top_p), keep) for row, keep in zip(p, _nucleus(p, top_p)))
