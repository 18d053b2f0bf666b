from __future__ import annotations

import torch

from facetune.music.gan import Discriminator, GanDims, Generator, condition, dims_from_dict, form_features, init_weights, tiny_dims
from facetune.music.pianoroll import BAR_WIDTH, ONSET, REST, STEPS_PER_BAR


def _batch(d: GanDims, b: int = 6):
    torch.manual_seed(0)
    z = torch.randn(b, d.z_dim)
    y = condition(torch.randint(0, 4, (b,)), torch.randint(0, 25, (b,)), d)
    prev = torch.zeros(b, d.cond_inputs, STEPS_PER_BAR, BAR_WIDTH)
    return z, y, prev


def test_generator_writes_hard_one_hot_bars():
    d = tiny_dims()
    g = Generator(d)
    init_weights(g)
    z, y, prev = _batch(d)
    bar = g(z, y, prev)
    assert bar.shape == (6, 1, STEPS_PER_BAR, BAR_WIDTH)
    assert torch.allclose(bar[..., : REST + 1].sum(-1), torch.ones(6, 1, STEPS_PER_BAR))
    assert set(bar[..., ONSET].unique().tolist()) <= {0.0, 1.0}
    assert (bar[..., ONSET] * bar[..., REST] == 0).all()  # no onset on a rest


def test_gradients_reach_every_generator_layer():
    d = tiny_dims()
    g, disc = Generator(d), Discriminator(d)
    init_weights(g)
    init_weights(disc)
    z, y, prev = _batch(d)
    cols = torch.randint(0, REST + 1, (6, d.cond_inputs, STEPS_PER_BAR))
    prev = torch.nn.functional.one_hot(cols, BAR_WIDTH).float()
    logit, fm = disc(g(z, y, prev), y, prev[:, -1:])
    assert logit.shape == (6,) and fm.shape[0] == 6
    logit.sum().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_batchnorm_is_registered_and_saved():
    g = Generator(GanDims())
    keys = g.state_dict().keys()
    assert any(k.endswith("running_mean") for k in keys)
    assert sum(1 for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)) >= 4


def test_discriminator_scores_differ_per_sample_not_per_batch():
    """The read-out must not be batch-normalised: two batches get different mean scores."""
    d = tiny_dims()
    disc = Discriminator(d)
    init_weights(disc)
    torch.manual_seed(1)
    z, y, _ = _batch(d)
    a = torch.zeros(6, 1, STEPS_PER_BAR, BAR_WIDTH)
    a[..., REST] = 1
    b = torch.zeros(6, 1, STEPS_PER_BAR, BAR_WIDTH)
    b[..., 5] = 1
    disc.train()
    assert abs(disc(a, y)[0].mean() - disc(b, y)[0].mean()) > 1e-4


def test_condition_joins_emotion_chord_key_and_form():
    d = tiny_dims()
    form = form_features(torch.tensor([2, -1]), torch.tensor([1, 0]), torch.tensor([1, 0]))
    assert form.tolist() == [[0, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0]]
    y = condition(torch.tensor([4, 0]), torch.tensor([24, 3]), d, torch.tensor([23, 0]), form)
    assert y.shape == (2, d.y_dim) and y.sum(1).tolist() == [6.0, 3.0]
    assert y[0, 4] == 1 and y[0, d.n_emotions + 24] == 1 and y[0, d.n_emotions + d.n_chords + 23] == 1
    assert (y[:, -d.n_controls :] == 0).all()  # no controls given: the data's centre


def test_song_controls_are_the_last_columns_of_y_in_both_engines():
    import numpy as np

    from facetune.music.generator_numpy import condition_np, form_features_np, song_controls

    d = tiny_dims()
    ctrl = song_controls([76.0, 64.0], [7.5, 3.5], [0.2, -0.12])
    assert np.allclose(ctrl, [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])  # 70 ± 6 semitones, 5.5 ± 2 onsets per bar, lean 0.04 ± 0.16
    form = form_features_np(np.array([0, 3]), np.array([0, 1]), np.array([0, 0]))
    y_np = condition_np([0, 2], [3, 4], d, [0, 12], form, ctrl)
    y_t = condition(torch.tensor([0, 2]), torch.tensor([3, 4]), d, torch.tensor([0, 12]), torch.from_numpy(form), torch.from_numpy(ctrl))
    assert np.array_equal(y_np, y_t.numpy()) and y_np[:, -3:].tolist() == ctrl.tolist()
    assert np.allclose(song_controls([76.0], [7.5])[:, 2], 0.0)  # no lean asked: the data's centre


def test_copy_path_makes_the_reference_bar_win():
    """With a large copy weight, the generator's most likely pitch at each step is the reference bar's."""
    d = tiny_dims()
    g = Generator(d)
    init_weights(g)
    g.eval()
    z, y, prev = _batch(d, 2)
    cols = torch.randint(0, REST, (2, STEPS_PER_BAR))
    prev[:, -1] = torch.nn.functional.one_hot(cols, BAR_WIDTH).float()
    with torch.no_grad():
        g.copy.fill_(10.0)
        lg = g.logits(z, y, prev)[:, 0]
    assert (lg[..., : REST + 1].argmax(-1) == cols).all()


def test_old_checkpoints_keep_their_meaning():
    d = dims_from_dict({"z_dim": 8, "prev_bars": 2})
    assert (d.n_emotions, d.n_keys, d.n_form, d.reference, d.copy_mode) == (4, 0, 0, False, "plain")
    assert dims_from_dict({"reference": True}).copy_mode == "plain"  # the first form-aware networks
    assert d.y_dim == 4 + 25 and d.cond_inputs == 2 and d.n_controls == 0
