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
