"""The generator network → melody rolls: engines, batching, decoding and the seed rules."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from facetune.errors import CheckpointError
from facetune.music.composer import compose_emotion, compose_emotions
from facetune.music.generate import DecodeSettings, _draw_rows, load_generator
from facetune.music.pianoroll import BAR_WIDTH, STEPS_PER_BAR

EMOTIONS = ("happy", "sad", "angry", "calm")


@pytest.fixture(scope="module")
def gen(tiny_generator):
    return load_generator(str(tiny_generator))


def _scalar_draw(scores: np.ndarray, u: float, top_p: float = 1.0) -> int:
    """The one-row draw the batched one must reproduce: inverse CDF of softmax(scores), nucleus-cut."""
    p = np.exp(scores - scores.max())
    p = p / p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
        cut = np.zeros_like(p)
        cut[keep] = p[keep]
        p = cut / cut.sum()
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, u * c[-1], side="right"), len(c) - 1))


@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.5])
def test_row_draws_match_one_draw_per_row(top_p):
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 3, (200, 51))
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # a scale mask
    u = rng.random(200)
    assert _draw_rows(scores, u, top_p).tolist() == [_scalar_draw(s, x, top_p) for s, x in zip(scores, u)]


@pytest.mark.parametrize("top_p", [0.9, 0.5, 0.2])
def test_row_draws_keep_tied_choices_in_column_order(top_p):
    """Tied probabilities at the nucleus' edge are kept in column order, as a stable sort keeps them."""
    rng = np.random.default_rng(1)
    scores = rng.integers(-2, 2, (300, 51)).astype(np.float64)
    u = rng.random(300)
    assert _draw_rows(scores, u, top_p).tolist() == [_scalar_draw(s, x, top_p) for s, x in zip(scores, u)]


def test_one_blas_thread_inside_and_restored_after():
    """Songs are written on one OpenBLAS thread (see `music.blas`); the count comes back after, nested or not."""
    from facetune.music import blas

    funcs = blas._openblas()
    if funcs is None:
        pytest.skip("numpy without its own OpenBLAS")
    get, put = funcs
    before = get()
    put(2)
    try:
        with blas.one_thread():
            with blas.one_thread():
                assert get() == 1
            assert get() == 1
        assert get() == 2
    finally:
        put(before)


def _draft(walk: float):
    from facetune.music.generate import SongRequest, _Draft
    from facetune.music.gan import tiny_dims

    return _Draft(tiny_dims(), SongRequest("Q1", [0] * 4, 0, 0), DecodeSettings(pitch_walk=walk))


def test_pitch_walk_keeps_each_draw_uniform_and_moves_in_small_steps():
    """The walk's uniforms are still uniform on [0, 1] (so every note is the network's own draw),
    successive ones differ by about the walk's size, and the walk carries on across bars."""
    rng = np.random.default_rng(0)
    draft = _draft(0.2)
    bars = [draft.pitch_uniforms(rng.random(), rng.standard_normal(STEPS_PER_BAR) * 0.2) for _ in range(4000)]
    u = np.concatenate(bars)
    assert u.min() >= 0.0 and u.max() <= 1.0
    assert np.abs(np.histogram(u, bins=10, range=(0, 1))[0] / len(u) - 0.1).max() < 0.01
    steps = np.abs(np.diff(u))
    assert 0.1 < np.median(steps) < 0.2 and np.median(steps) < np.median(np.abs(np.diff(rng.random(len(u))))) / 2
    assert abs(bars[1][0] - bars[0][-1]) < 1.0  # the next bar starts where the last one stopped, not afresh


def test_without_a_walk_the_pitch_uniforms_are_the_bars_own(gen):
    d0, d1 = _draft(0.0), _draft(0.3)
    assert np.array_equal(d0.inputs(0)[0], d1.inputs(0)[0])  # the noise is untouched
    assert not np.array_equal(d0.latents[0][1][1], d1.latents[0][1][1])
    assert np.array_equal(d0.latents[0][1][0], d1.latents[0][1][0])  # the onset uniforms too


def test_the_shipped_generator_runs_in_numpy_by_default():
    gen = load_generator()
    assert gen.engine == "numpy"
    assert load_generator(engine="torch").engine == "torch"


def test_a_batch_gives_each_song_byte_identical_to_composing_it_alone(gen):
    songs = [(EMOTIONS[i % 4], 100 + i) for i in range(9)]
    batch = compose_emotions(songs, gen)
    for (emotion, seed), comp in zip(songs, batch):
        assert comp.midi_bytes() == compose_emotion(emotion, gen, seed=seed).midi_bytes()


def test_numpy_and_torch_engines_write_the_same_songs(tiny_generator):
    numpy_gen = load_generator(str(tiny_generator), engine="numpy")
    torch_gen = load_generator(str(tiny_generator), engine="torch")
    songs = [(e, s) for e in EMOTIONS for s in range(3)]
    guided = DecodeSettings(guidance=1.5, top_p=0.9)
    for settings in (None, guided, DecodeSettings(pitch_walk=0.2)):
        a = compose_emotions(songs, numpy_gen, settings=settings)
        b = compose_emotions(songs, torch_gen, settings=settings)
        assert [c.midi_bytes() for c in a] == [c.midi_bytes() for c in b]


@pytest.mark.slow
def test_shipped_engines_agree_on_many_songs():
    songs = [(e, s) for e in EMOTIONS for s in range(25)]
    a = compose_emotions(songs, load_generator(engine="numpy"))
    b = compose_emotions(songs, load_generator(engine="torch"))
    assert [c.midi_bytes() for c in a] == [c.midi_bytes() for c in b]


@pytest.mark.slow
def test_shipped_songs_are_the_same_alone_and_in_a_batch():
    """With the note head a song alone takes its own path (`_head_bar_solo`); it must write the bytes the batch does."""
    gen = load_generator()
    songs = [(e, s) for e in EMOTIONS for s in range(25)]
    together = compose_emotions(songs, gen)
    assert [c.midi_bytes() for c in together] == [compose_emotion(e, gen, seed=s).midi_bytes() for e, s in songs]


def test_songs_of_different_lengths_share_a_batch(gen):
    long, short = compose_emotions([("sad", 1)], gen, bars=8)[0], compose_emotions([("sad", 1)], gen, bars=3)[0]
    assert long.rolls.shape == (8, STEPS_PER_BAR, BAR_WIDTH) and short.rolls.shape == (3, STEPS_PER_BAR, BAR_WIDTH)
    from facetune.music.generate import SongRequest

    # without cadences (which depend on where a song ends), a song's first bars do not depend on how long it goes on
    a, b = gen.generate_many([SongRequest("Q3", [0] * 8, 12, 5), SongRequest("Q3", [0] * 3, 12, 5)], DecodeSettings(cadences=False))
    assert a[0].shape[0] == 8 and b[0].shape[0] == 3
    np.testing.assert_array_equal(a[0][:3], b[0])


def test_a_stale_export_is_ignored_and_torch_used(tiny_generator, tmp_path):
    pt = tmp_path / "g.pt"
    shutil.copy(tiny_generator, pt)
    shutil.copy(tiny_generator.with_suffix(".npz"), tmp_path / "g.npz")
    assert load_generator(str(pt)).engine == "numpy"
    pt.write_bytes(pt.read_bytes() + b"\0")  # the checkpoint changed after the export
    with pytest.raises(CheckpointError, match="g.npz"):
        load_generator(str(pt), engine="numpy")


def test_numpy_engine_needs_an_export(tiny_generator, tmp_path):
    pt = tmp_path / "alone.pt"
    shutil.copy(tiny_generator, pt)
    with pytest.raises(CheckpointError, match="export-generator"):
        load_generator(str(pt), engine="numpy")
    assert load_generator(str(pt)).engine == "torch"


@pytest.mark.slow
def test_composing_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from facetune.music.composer import compose_emotion, write_midi\n"
        f"write_midi(compose_emotion('sad', seed=4), {str(tmp_path / 'x.mid')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_restated_bar_follows_its_new_chord_along_the_scale():
    import numpy as np

    from facetune.music.generate import _follow_chord
    from facetune.music.chords import chord_index, key_index
    from facetune.music.pianoroll import LOW_PITCH, REST

    bar = np.zeros((STEPS_PER_BAR, BAR_WIDTH), np.float32)
    for t, p in enumerate([60, 64, 67, 72] * 4):
        bar[t, p - LOW_PITCH] = 1
    c_major = key_index(0, "major")
    over_f = _follow_chord(bar, chord_index(0, "maj"), chord_index(5, "maj"), c_major)
    assert [int(c) + LOW_PITCH for c in over_f[:4, : REST + 1].argmax(1)] == [65, 69, 72, 77]  # a sequence up a fourth
    over_g = _follow_chord(bar, chord_index(0, "maj"), chord_index(7, "maj"), c_major)
    assert [int(c) + LOW_PITCH for c in over_g[:4, : REST + 1].argmax(1)] == [55, 59, 62, 67]  # the nearer way: down
    assert _follow_chord(bar, chord_index(0, "maj"), chord_index(0, "min"), c_major) is bar


def test_follow_chord_keeps_the_octave_where_the_scale_wraps_past_c():
    import numpy as np

    from facetune.music.chords import chord_index, key_index
    from facetune.music.generate import _follow_chord
    from facetune.music.pianoroll import BAR_WIDTH, LOW_PITCH, REST

    g_major = key_index(7, "major")
    bar = np.zeros((16, BAR_WIDTH), np.float32)
    bar[:8, 71 - LOW_PITCH] = 1  # B4 over G, then a rest
    bar[8:, REST] = 1
    moved = _follow_chord(bar, chord_index(7, "maj"), chord_index(9, "min"), g_major)  # I → ii: one step up
    assert moved[0, : REST + 1].argmax() + LOW_PITCH == 72  # C5, not C4 an octave below


def test_an_empty_final_bar_ends_near_the_last_note():
    import numpy as np

    from facetune.music.generate import _end_on_chord_tone
    from facetune.music.pianoroll import BAR_WIDTH, N_PITCHES, REST

    bar = np.zeros((16, BAR_WIDTH), np.float32)
    bar[:, REST] = 1
    tones = np.zeros(N_PITCHES, bool)
    tones[[0, 12, 24, 36]] = True  # the Cs of the register
    assert _end_on_chord_tone(bar, tones, hold=True, near=10) == 1
    assert bar[0, : REST + 1].argmax() == 12 and (bar[:, 12] == 1).all()


def test_a_walking_draw_decides_the_rest_on_its_own_uniform():
    """With rest uniforms the draw keeps the network's distribution (rest and pitches alike), and the
    pitch uniform orders only the pitches: moving it never lands on the rest."""
    from facetune.music.generate import _draw_rows

    rng = np.random.default_rng(0)
    scores = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))  # three pitches, then the rest (p 0.4)
    n = 200_000
    picks = _draw_rows(np.repeat(scores, n, 0), rng.random(n), 1.0, rng.random(n))
    assert np.abs(np.bincount(picks, minlength=4) / n - [0.1, 0.2, 0.3, 0.4]).max() < 0.005
    u = np.linspace(0, 1, 50)
    sounding = _draw_rows(np.repeat(scores, 50, 0), u, 1.0, np.ones(50))
    assert (sounding < 3).all() and (np.diff(sounding) >= 0).all()
    assert (_draw_rows(np.repeat(scores, 50, 0), u, 1.0, np.zeros(50)) == 3).all()
    assert np.array_equal(_draw_rows(np.repeat(scores, 50, 0), u), np.minimum((np.cumsum([0.1, 0.2, 0.3, 0.4]) <= u[:, None]).sum(1), 3))


def test_noise_only_layers_in_groups_of_bars_write_the_same_songs(monkeypatch):
    """`generate_many` runs the layers that read only the noise and condition for a few bars at a
    time when a batch is large (`TERM_ROWS`): songs of different lengths come out the same in
    groups of one or two bars as all at once, with and without guidance."""
    from facetune.music import generate
    from facetune.music.generate import SongRequest

    shipped = load_generator()
    requests = [SongRequest(q, [0, 5, 7, 0, 9, 2, 7][:n], k, s) for q, n, k, s in (("Q1", 7, 0, 1), ("Q3", 3, 21, 2), ("Q2", 5, 14, 3))]
    for settings in (DecodeSettings(), DecodeSettings(guidance=1.5)):
        together = shipped.generate_many(requests, settings)
        for rows in (3, 6):
            monkeypatch.setattr(generate, "TERM_ROWS", rows)
            grouped = shipped.generate_many(requests, settings)
            assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(together, grouped))
        monkeypatch.undo()
