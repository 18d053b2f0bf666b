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
