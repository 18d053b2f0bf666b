from __future__ import annotations

import torch

from facetune.checkpoints import load_checkpoint
from facetune.music.train import GanConfig, train_gan


def test_train_checkpoints_and_describes_itself(tiny_generator):
    ck = load_checkpoint(tiny_generator, "generator")
    assert ck["dims"]["z_dim"] == 16 and ck["quadrants"] == ["Q1", "Q2", "Q3", "Q4"]
    assert ck["hyperparameters"]["batch_size"] == 16 and "provenance" in ck
    assert any(k.endswith("running_var") for k in ck["state_dict"])
    hist = ck["training"]["history"][0]
    assert {"d_loss", "g_loss", "d_x", "d_gz", "val_onsets_real"} <= set(hist)


def test_resume_equals_uninterrupted(music_cache, tmp_path):
    cfg = GanConfig(tiny=True, epochs=2, batch_size=16, steps_per_epoch=3, seed=5)
    train_gan(music_cache, tmp_path / "full", cfg, device="cpu")
    train_gan(music_cache, tmp_path / "cut", cfg, device="cpu", max_epochs_this_run=1)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    train_gan(music_cache, tmp_path / "cut", cfg, device="cpu", resume=True)
    a = load_checkpoint(tmp_path / "full" / "generator.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "cut" / "generator.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _bars(cols, onsets):
    import torch.nn.functional as F

    from facetune.music.pianoroll import BAR_WIDTH, ONSET

    x = F.one_hot(torch.tensor(cols), BAR_WIDTH).float()
    x[..., ONSET] = torch.tensor(onsets, dtype=torch.float)
    return x[:, None]


def test_bar_stats_are_relative_to_the_key():
    from facetune.music.pianoroll import REST
    from facetune.music.train import bar_stats

    # a bar of C (column 12 = MIDI 60) in C major and the same bar moved up to D, in D major
    c = [[12] * 8 + [REST] * 8]
    d = [[14] * 8 + [REST] * 8]
    on = [[1] + [0] * 15]
    sc, sd = bar_stats(_bars(c, on), torch.tensor([0])), bar_stats(_bars(d, on), torch.tensor([2]))
    assert torch.allclose(sc[:, :12], sd[:, :12]) and sc[0, 0] == 1.0  # all on the tonic, in both keys
    assert sc[0, 13] == 0.5 and sc[0, 14] == 1 / 16  # half rests, one onset
    assert sd[0, 12] > sc[0, 12]  # higher register


def test_conditional_stats_loss_compares_within_each_emotion():
    from facetune.music.train import conditional_stats_loss

    a = _bars([[12] * 16, [12] * 16, [16] * 16, [16] * 16], [[1] + [0] * 15] * 4)
    swapped = _bars([[16] * 16, [16] * 16, [12] * 16, [12] * 16], [[1] + [0] * 15] * 4)
    key = torch.tensor([0, 0, 0, 0])
    same_emotion = torch.tensor([0, 0, 0, 0])
    two_emotions = torch.tensor([0, 0, 2, 2])
    assert conditional_stats_loss(a, a, key, two_emotions) == 0
    assert conditional_stats_loss(swapped, a, key, same_emotion) == 0  # the batch means agree
    assert conditional_stats_loss(swapped, a, key, two_emotions) > 0  # but each emotion's do not


def test_data_nll_is_low_where_the_scores_predict_the_bar():
    from facetune.music.pianoroll import ONSET, REST
    from facetune.music.train import data_nll

    real = _bars([[12] * 8 + [REST] * 8], [[1] + [0] * 15])
    sure = (real * 40 - 20).clone()
    sure[..., ONSET] = torch.where(real[..., ONSET] > 0, 20.0, -20.0)
    assert data_nll(sure, real) < 1e-3
    assert data_nll(torch.zeros_like(real), real) > 1.0


def test_interval_stats_measure_the_line_across_the_bar_line():
    from facetune.music.pianoroll import REST
    from facetune.music.train import interval_stats

    before = _bars([[12] * 16], [[1] + [0] * 15])  # C4 (MIDI 60) held
    # D4, E4, then a leap up to A5 (+17), each on an onset, then rests: intervals 2, 2, 17
    bar = _bars([[14] * 4 + [16] * 4 + [33] * 4 + [REST] * 4], [[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]])
    mean_octaves, steps, leaps, octave_leaps = interval_stats(bar, before[:, 0])[0].tolist()
    assert abs(mean_octaves - 21 / 3 / 12) < 1e-6 and abs(steps - 2 / 3) < 1e-6
    assert abs(leaps - 1 / 3) < 1e-6 and abs(octave_leaps - 1 / 3) < 1e-6


def test_song_controls_and_mode_pace_labels_from_the_cache():
    import numpy as np

    from facetune.music.dataset import UNKNOWN
    from facetune.music.generator_numpy import song_controls
    from facetune.music.train import add_song_controls, label_by_mode_and_pace

    # two songs of two bars: a busy one in C major at 120 BPM, a sparse one in A minor at 60 BPM
    pitch = np.full((4, 16), -1, np.int8)
    onset = np.zeros((4, 16), np.uint8)
    pitch[0:2, :] = 24  # MIDI 72, eight notes a bar
    onset[0:2, ::2] = 1
    pitch[2:4, :4] = 12  # MIDI 60, one note a bar
    onset[2:4, 0] = 1
    arrays = {
        "pitch": pitch, "onset": onset, "prev": np.array([-1, 0, -1, 2]), "pos": np.full(4, -1, np.int8),
        "quadrant": np.full(4, UNKNOWN, np.int8), "transpose": np.zeros(4, np.int8), "clip": np.array([0, 0, 1, 1]),
        "key": np.array([0, 0, 21, 21], np.int8),
    }
    counts = label_by_mode_and_pace(arrays, {"clips": [{"bpm": 120}, {"bpm": 60}]})
    assert arrays["quadrant"].tolist() == [0, 0, 2, 2] and counts == {"Q1": 1, "Q2": 0, "Q3": 1, "Q4": 0, "unknown": 0}
    add_song_controls(arrays)
    assert np.allclose(arrays["controls"][:2, :2], song_controls(72.0, 8.0)[:2]) and np.allclose(arrays["controls"][2:, :2], song_controls(60.0, 1.0)[:2])


def test_melody_lean_hears_major_and_minor_tunes():
    """A tune on C–E–G leans major, one resting on A with C and E leans minor; the lean is read per
    song, over its melodic bars, and weighs each note by how long it sounds."""
    import numpy as np

    from facetune.music.pianoroll import LOW_PITCH
    from facetune.music.train import melody_lean

    def col(midi: int) -> int:
        return midi - LOW_PITCH

    pitch = np.full((3, 16), -1, np.int8)
    pitch[0, :8], pitch[0, 8:12], pitch[0, 12:] = col(72), col(76), col(79)  # C E G
    pitch[1, :10], pitch[1, 10:13], pitch[1, 13:] = col(69), col(72), col(76)  # A (long) C E
    pitch[2, :] = col(71)  # a third song with only non-melodic bars: no sounding step counted
    lean = melody_lean({"pitch": pitch}, np.array([0, 1, 2]), np.array([True, True, False]))
    assert lean[0] > 0.1 and lean[1] < -0.1 and lean[2] == 0.0


def test_lean_pace_labels_hear_the_mode_in_the_tune():
    import numpy as np

    from facetune.music.dataset import UNKNOWN
    from facetune.music.train import label_by_mode_and_pace

    # an A-minor arpeggio (A C E, MIDI 69 72 76) in a song annotated C major, and a C-major one in A minor
    pitch = np.full((2, 16), -1, np.int8)
    onset = np.zeros((2, 16), np.uint8)
    pitch[0, :] = np.repeat(np.array([69, 72, 76, 69]) - 48, 4)
    pitch[1, :] = np.repeat(np.array([60, 64, 67, 72]) - 48, 4)
    onset[:, ::4] = 1
    arrays = {
        "pitch": pitch, "onset": onset, "prev": np.array([-1, -1]), "pos": np.full(2, -1, np.int8),
        "quadrant": np.full(2, UNKNOWN, np.int8), "transpose": np.zeros(2, np.int8), "clip": np.array([0, 1]),
        "key": np.array([0, 21], np.int8),
    }
    label_by_mode_and_pace(arrays, {"clips": [{"bpm": 100}, {"bpm": 100}]}, lean_margin=0.04)
    assert arrays["quadrant"].tolist() == [1, 0]  # minor tune → negative valence, whatever the key says


def test_a_lean_control_generator_reads_the_lean_the_composer_asks_for(music_cache, tmp_path):
    """`--lean-control` trains a network with a third song control, and both engines compose with
    it, given the lean of the emotion's style: a different lean is a different song."""
    from dataclasses import replace

    from facetune.music import composer
    from facetune.music.composer import STYLES, compose_emotion
    from facetune.music.generate import load_generator
    from facetune.music.train import GanConfig, train_gan

    train_gan(music_cache, tmp_path, GanConfig(tiny=True, epochs=1, batch_size=16, steps_per_epoch=2, lean_control=True), device="cpu")
    numpy_gen = load_generator(str(tmp_path / "generator.pt"), engine="numpy")
    torch_gen = load_generator(str(tmp_path / "generator.pt"), engine="torch")
    assert numpy_gen.dims.n_controls == 3 and torch_gen.dims.n_controls == 3
    songs = [compose_emotion(e, g, bars=4, seed=3) for e in ("happy", "sad") for g in (numpy_gen, torch_gen)]
    assert songs[0].midi_bytes() == songs[1].midi_bytes() and songs[2].midi_bytes() == songs[3].midi_bytes()
    original = STYLES["Q3"]
    try:
        composer.STYLES["Q3"] = replace(original, lean=original.lean + 1.0)
        leaned = compose_emotion("sad", numpy_gen, bars=4, seed=3)
    finally:
        composer.STYLES["Q3"] = original
    assert leaned.midi_bytes() != songs[2].midi_bytes()


def test_interval_histogram_bins_each_move_by_its_signed_size():
    from facetune.music.pianoroll import REST
    from facetune.music.train import interval_histogram, interval_shape_loss

    before = _bars([[12] * 16], [[1] + [0] * 15])  # C4 held
    # D4 (+2), C4 (−2), C4 again (0), then A3 (−3) after a rest (not a move: it follows silence)
    bar = _bars([[14] * 4 + [12] * 4 + [12] * 2 + [REST] * 2 + [9] * 4], [[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]])
    counts = interval_histogram(bar, before[:, 0])[0].tolist()
    assert counts == [0, 0, 1, 0, 1, 0, 1, 0, 0]
    emotion, two = torch.tensor([0, 0]), torch.cat([before, before])[:, 0]
    assert interval_shape_loss(torch.cat([bar, bar]), torch.cat([bar, bar]), emotion, two) == 0
    leap = _bars([[30] * 16] * 2, [[1] + [0] * 15] * 2)  # one move of +18 a bar
    assert interval_shape_loss(leap, torch.cat([bar, bar]), emotion, two) > 0.5


def test_init_fine_tunes_from_a_generator_after_a_discriminator_warmup(music_cache, tiny_generator, tmp_path):
    """`--init` starts from a generator's weights; during `--d-warmup` only the discriminator
    learns, so one warm-up step leaves the generator exactly as it was given."""
    from facetune.errors import FacetuneError

    start = load_checkpoint(tiny_generator, "generator")
    cfg = GanConfig(tiny=True, epochs=1, batch_size=16, steps_per_epoch=1, seed=5, init=str(tiny_generator), d_warmup=1, interval_weight=50.0)
    train_gan(music_cache, tmp_path / "warm", cfg, device="cpu")
    after = load_checkpoint(tmp_path / "warm" / "generator.pt")["state_dict"]
    weights = [k for k in after if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(after[k], start["state_dict"][k]) for k in weights)
    train_gan(music_cache, tmp_path / "tuned", GanConfig(tiny=True, epochs=1, batch_size=16, steps_per_epoch=1, seed=5, init=str(tiny_generator), interval_weight=50.0), device="cpu")
    tuned = load_checkpoint(tmp_path / "tuned" / "generator.pt")["state_dict"]
    assert any(not torch.equal(tuned[k], start["state_dict"][k]) for k in weights)
    try:
        train_gan(music_cache, tmp_path / "bad", GanConfig(epochs=1, batch_size=16, steps_per_epoch=1, init=str(tiny_generator)), device="cpu")
    except FacetuneError as e:
        assert "do not fit" in str(e)
    else:
        raise AssertionError("a full-size run accepted a tiny generator")


def test_move_pairs_count_runs_neighbours_and_repeated_strikes():
    from facetune.music.pianoroll import REST
    from facetune.music.train import move_pairs, pair_shape_loss

    before = _bars([[REST] * 16], [[0] * 16])
    # 16ths C D E (a run up), then 8ths G A G (a step and back), then a rest
    run = _bars([[12, 14, 16] + [REST] + [19, 19, 21, 21, 19, 19] + [REST] * 6], [[1, 1, 1, 0, 1, 0, 1, 0, 1, 0] + [0] * 6])
    counts = move_pairs(run, before[:, 0])[0].tolist()
    assert counts == [2, 1, 1, 0]
    strikes = _bars([[12] * 4 + [REST] * 12], [[1, 1, 1, 1] + [0] * 12])  # C struck four times in 16ths
    assert move_pairs(strikes, before[:, 0])[0].tolist() == [2, 0, 0, 2]
    emotion, two = torch.tensor([0, 0]), torch.cat([before, before])[:, 0]
    assert pair_shape_loss(torch.cat([run, run]), torch.cat([run, run]), emotion, two) == 0
    assert pair_shape_loss(torch.cat([strikes, strikes]), torch.cat([run, run]), emotion, two) > 0.5
