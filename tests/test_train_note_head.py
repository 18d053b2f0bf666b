"""`train note-head`: the note head trained on a frozen generator, its files, resume and CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facetune.checkpoints import load_checkpoint
from facetune.music.train_note_head import NoteHeadConfig, train_note_head

CFG = NoteHeadConfig(hidden=16, epochs=2, steps_per_epoch=4, batch_size=16, lr=1e-2, seed=3, val_bars=64)


@pytest.fixture(scope="module")
def head_run(music_cache, tiny_generator, tmp_path_factory):
    """Two short epochs of a head on the tiny generator: the run folder."""
    out = tmp_path_factory.mktemp("head_run")
    train_note_head(music_cache, tiny_generator, out, CFG, command="test")
    return out


def test_a_run_writes_the_generator_with_its_head_and_the_resumable_state(head_run, tiny_generator):
    last = load_checkpoint(head_run / "last.pt", "note-head-training")
    assert last["epoch"] == 2 and last["config"]["hidden"] == 16 and len(last["history"]) == 2
    gen = load_checkpoint(head_run / "generator.pt", "generator")
    assert gen["dims"]["note_head"] == 16 and any(k.startswith("head.") for k in gen["state_dict"])
    record = gen["note_head_training"]
    assert record["command"] == "test" and record["config"]["epochs"] == 2 and "provenance" in record
    assert record["generator_sha256"] == last["generator_sha256"]
    # the GAN is frozen: its weights and BatchNorm statistics are the generator's as given
    before = load_checkpoint(tiny_generator, "generator")["state_dict"]
    assert all(torch.equal(gen["state_dict"][k], v) for k, v in before.items())
    assert (head_run / "generator.npz").is_file()


def test_the_head_learns_what_the_gan_alone_leaves_out(head_run):
    history = load_checkpoint(head_run / "last.pt")["history"]
    for h in history:
        assert {"train_ce", "train_bce", "val_ce", "val_bce", "val_gan_ce", "seconds"} <= set(h)
        assert all(np.isfinite(h[k]) for k in ("train_ce", "train_bce", "val_ce", "val_bce", "val_gan_ce"))
    assert history[0]["val_gan_ce"] == history[1]["val_gan_ce"]  # fixed bars and noise: epochs compare
    assert history[-1]["val_ce"] < history[-1]["val_gan_ce"]


def test_both_engines_compose_the_same_song_with_the_head(head_run):
    from facetune.music.generate import DecodeSettings, SongRequest, load_generator

    numpy_gen = load_generator(str(head_run / "generator.pt"), engine="numpy")
    torch_gen = load_generator(str(head_run / "generator.pt"), engine="torch")
    assert numpy_gen.engine == "numpy" and torch_gen.engine == "torch"
    assert numpy_gen.dims.note_head == 16 and torch_gen.dims.note_head == 16
    chords = [0, 5, 7, 0]
    a, _ = numpy_gen.generate("Q1", chords, 0, seed=7)
    b, _ = torch_gen.generate("Q1", chords, 0, seed=7)
    assert np.array_equal(a, b)
    requests = [SongRequest("Q3", chords, 21, seed) for seed in (1, 2)]
    many_a = numpy_gen.generate_many(requests, DecodeSettings())
    many_b = torch_gen.generate_many(requests, DecodeSettings())
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(many_a, many_b))


def test_resume_equals_uninterrupted(music_cache, tiny_generator, head_run, tmp_path):
    train_note_head(music_cache, tiny_generator, tmp_path, CFG, max_epochs_this_run=1)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    train_note_head(music_cache, tiny_generator, tmp_path, CFG, resume=True)
    a = load_checkpoint(head_run / "last.pt")["head"]
    b = load_checkpoint(tmp_path / "last.pt")["head"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_another_generator_on_resume_and_an_existing_run_without_it(music_cache, tiny_generator, tmp_path):
    import shutil

    from facetune.errors import CheckpointError, FacetuneError

    gen = tmp_path / "g.pt"
    shutil.copy(tiny_generator, gen)
    cfg = NoteHeadConfig(hidden=8, epochs=2, steps_per_epoch=1, batch_size=16, val_bars=16)
    train_note_head(music_cache, gen, tmp_path / "run", cfg, max_epochs_this_run=1)
    with pytest.raises(FacetuneError, match="--resume"):
        train_note_head(music_cache, gen, tmp_path / "run", cfg)
    gen.write_bytes(gen.read_bytes() + b"\0")  # another version of the file
    with pytest.raises(CheckpointError, match="sha256"):
        train_note_head(music_cache, gen, tmp_path / "run", cfg, resume=True)


def test_a_generator_with_a_head_trains_a_fresh_head_on_its_gan(music_cache, head_run, tmp_path):
    cfg = NoteHeadConfig(hidden=8, epochs=1, steps_per_epoch=1, batch_size=16, val_bars=16)
    train_note_head(music_cache, head_run / "generator.pt", tmp_path, cfg)
    assert load_checkpoint(tmp_path / "generator.pt")["dims"]["note_head"] == 8


def test_the_torch_head_equals_the_numpy_head():
    from facetune.music import note_head as nh
    from facetune.music.gan import NoteHeadNet
    from facetune.music.generator_numpy import head_arrays
    from facetune.music.pianoroll import BAR_WIDTH, N_PITCHES, REST

    torch.manual_seed(0)
    net = NoteHeadNet(12).double()
    torch.nn.init.normal_(net.fc3.weight, 0.0, 0.5)
    torch.nn.init.normal_(net.fc3.bias, 0.0, 0.5)
    rng = np.random.default_rng(0)
    n = 64
    cats = np.stack([rng.integers(0, size, n) for _, size in nh.CATEGORIES], 1) + nh.OFFSETS
    dense = rng.normal(size=(n, nh.N_DENSE))
    scores = rng.normal(size=(n, BAR_WIDTH)) * 3
    state = nh.HeadState(n)
    state.last = rng.integers(-1, N_PITCHES, n)
    state.held = np.where(rng.random(n) < 0.3, REST, rng.integers(0, N_PITCHES, n))
    out_np = nh.NumpyNoteHead(head_arrays(net))(cats, dense)
    z_np, strike_np = nh.head_logits(out_np, scores, state)
    with torch.no_grad():
        out_t = net(torch.from_numpy(cats), torch.from_numpy(dense))
        z_t, strike_t = NoteHeadNet.logits(out_t, torch.from_numpy(scores), torch.from_numpy(state.last), torch.from_numpy(state.held))
    assert np.abs(out_np).max() > 0.1  # the last layer is not the zero it starts at
    assert (out_np[:, nh.N_OUT:] == 0).all()  # the numpy head's extra column: "no note yet" reads zero
    # the numpy head runs its hidden layers in float32 (`blas.PRODUCT_DTYPE`): the same to float32 rounding
    np.testing.assert_allclose(out_t.numpy(), out_np[:, : nh.N_OUT], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z_t.numpy(), z_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(strike_t.numpy(), strike_np, rtol=1e-5, atol=1e-5)


def test_cli_trains_and_reports_errors_in_one_line(music_cache, tiny_generator, tmp_path):
    from facetune.cli import main

    run = lambda *a: CliRunner().invoke(main, ["train", "note-head", *map(str, a)])  # noqa: E731
    args = ("--data", music_cache, "--generator", tiny_generator, "--out", tmp_path / "h", "--epochs", 1, "--steps-per-epoch", 1, "--batch-size", 16, "--hidden", 8, "--seed", 1)
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "h" / "generator.pt")["note_head_training"]["config"]["seed"] == 1
    assert run(*args).exit_code == 1  # an existing run is not overwritten without --resume
    r = run(*args, "--resume", "--epochs", 2)
    assert r.exit_code == 0 and load_checkpoint(tmp_path / "h" / "last.pt")["epoch"] == 2
    assert run("--data", music_cache, "--generator", tiny_generator).exit_code == 2  # --out missing
    assert run(*args, "--hidden", 0).exit_code == 2
    r = run("--data", music_cache, "--generator", tmp_path / "missing.pt", "--out", tmp_path / "m")
    assert r.exit_code == 1 and "missing.pt" in r.stderr and len(r.stderr.strip().splitlines()) == 1
