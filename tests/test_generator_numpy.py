"""The numpy generator gives the torch generator's scores, checks its source checkpoint, and needs no torch."""
from __future__ import annotations

import copy

import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facetune.checkpoints import save_checkpoint
from facetune.errors import CheckpointError
from facetune.music import gan
from facetune.music import generator_numpy as gn
from facetune.music.pianoroll import BAR_WIDTH, ONSET, REST, STEPS_PER_BAR
from facetune.music.train import GanConfig, generator_payload

SHIPPED = Path(gn.__file__).resolve().parents[1] / "weights" / "generator.pt"  # where the package is installed

DIMS = {
    "signed": gan.tiny_dims(),
    "plain": replace(gan.tiny_dims(), copy_mode="plain"),
    "no-reference": replace(gan.tiny_dims(), reference=False),
    "legacy": gan.dims_from_dict({k: v for k, v in vars(gan.tiny_dims()).items() if k not in gan._LEGACY}),
}


def _randomised_generator(dims: gan.GanDims, seed: int = 0) -> gan.Generator:
    """A generator whose BatchNorms are far from identity, so folding them is really tested."""
    torch.manual_seed(seed)
    g = gan.Generator(dims)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
        if dims.reference:
            g.copy.normal_(0.0, 0.5)
    return g.eval()


def _save(g: gan.Generator, dims: gan.GanDims, path: Path) -> Path:
    save_checkpoint(path, generator_payload(g, dims, GanConfig(tiny=True), {"provenance": {"command": "test"}}))
    return path


def _inputs(dims: gan.GanDims, b: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise, a condition with every part set, and previous bars shaped like real rolls (one-hot plus onsets)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((b, dims.z_dim)).astype(np.float32)
    form = gn.form_features_np(rng.integers(-1, gan.PHRASE_BARS, b), rng.integers(0, 2, b), rng.integers(0, 2, b))
    y = gn.condition_np(rng.integers(0, dims.n_emotions, b), rng.integers(0, dims.n_chords, b), dims, rng.integers(0, max(dims.n_keys, 1), b), form[:, : dims.n_form])
    cols = rng.integers(0, REST + 1, (b, dims.cond_inputs, STEPS_PER_BAR))
    prev = np.eye(BAR_WIDTH, dtype=np.float32)[cols]
    prev[..., ONSET] = (rng.random(cols.shape) < 0.4) & (cols != REST)
    return z, y, prev


def _torch_logits(g: gan.Generator, z: np.ndarray, y: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """The torch module's scores as the torch engine computes them: in float32, handed out in float64."""
    g32 = copy.deepcopy(g).float().eval()
    with torch.inference_mode():
        return g32.logits(*(torch.from_numpy(np.asarray(a, np.float32)) for a in (z, y, prev))).numpy().astype(np.float64)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    # both run in float32 (the numpy engine with its BatchNorms folded): they agree to float32 rounding
    assert got.shape == want.shape and got.dtype == np.float64
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize("variant", sorted(DIMS))
def test_numpy_logits_match_torch(tmp_path, variant):
    dims = DIMS[variant]
    g = _randomised_generator(dims)
    pt = _save(g, dims, tmp_path / "generator.pt")
    ng = gn.load_numpy_generator(gn.export_generator(pt, tmp_path / "generator.npz"), pt)
    assert (ng.dims.y_dim, ng.dims.cond_inputs, ng.dims.copy_mode) == (dims.y_dim, dims.cond_inputs, dims.copy_mode)
    for b in (1, 7):
        z, y, prev = _inputs(dims, b, seed=b)
        _assert_close(ng.logits(z, y, prev), _torch_logits(g, z, y, prev))


def test_numpy_logits_match_torch_on_arbitrary_previous_bars(tmp_path):
    """The copy path's formula, not only its one-hot special case: fractional references too."""
    dims = DIMS["signed"]
    g = _randomised_generator(dims, seed=3)
    ng = gn.load_numpy_generator(gn.export_generator(_save(g, dims, tmp_path / "g.pt"), tmp_path / "g.npz"))
    z, y, _ = _inputs(dims, 5, seed=0)
    prev = np.random.default_rng(1).random((5, dims.cond_inputs, STEPS_PER_BAR, BAR_WIDTH)).astype(np.float32)
    _assert_close(ng.logits(z, y, prev), _torch_logits(g, z, y, prev))


@pytest.mark.parametrize("variant", ["signed", "legacy"])
def test_condition_and_form_features_match_torch(variant):
    dims = DIMS[variant]
    pos, end, restate = np.array([-1, 0, 1, 2, 3]), np.array([0, 1, 0, 1, 1]), np.array([1, 0, 0, 1, 0])
    want_form = gan.form_features(torch.from_numpy(pos), torch.from_numpy(end), torch.from_numpy(restate)).numpy()
    np.testing.assert_array_equal(gn.form_features_np(pos, end, restate), want_form)
    emotion, chord, key = np.array([0, 1, 2, 3, 4]) % dims.n_emotions, np.array([0, 5, 11, 20, 24]), np.array([0, 3, 7, 12, 23])
    t = torch.from_numpy
    for k, f in ((None, None), (key, want_form[:, : dims.n_form])):
        want = gan.condition(t(emotion), t(chord), dims, None if k is None else t(k), None if f is None else t(f)).numpy()
        got = gn.condition_np(emotion, chord, dims, k, f)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_out_of_range_indices_raise_like_one_hot():
    with pytest.raises(ValueError):
        gn.condition_np([5], [0], DIMS["signed"])
    with pytest.raises(ValueError):
        gn.form_features_np([4], [0], [0])


def test_copied_constants_and_dims_agree_with_gan():
    assert (gn.PHRASE_BARS, gn.UNKNOWN_EMOTION) == (gan.PHRASE_BARS, gan.UNKNOWN_EMOTION)
    assert [f.name for f in fields(gn.NumpyDims)] == [f.name for f in fields(gan.GanDims)]


def test_export_writes_plain_arrays_and_metadata(tmp_path):
    dims = DIMS["signed"]
    pt = _save(_randomised_generator(dims), dims, tmp_path / "generator.pt")
    out = gn.export_generator(pt, tmp_path / "generator.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.npz", "generator.pt"]  # no temporary left behind
    with np.load(out, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        meta = json.loads(str(data["meta"]))
    assert meta["format_version"] == gn.NPZ_FORMAT_VERSION
    assert meta["dims"] == vars(dims)
    assert meta["info"]["kind"] == "generator" and meta["info"]["provenance"] == {"command": "test"}
    assert "state_dict" not in meta["info"]
    assert len(meta["checkpoint_sha256"]) == 64
    assert gn.load_numpy_generator(out).info == meta["info"]


def test_changed_checkpoint_is_refused(tmp_path):
    dims = DIMS["signed"]
    pt = _save(_randomised_generator(dims), dims, tmp_path / "generator.pt")
    out = gn.export_generator(pt, tmp_path / "generator.npz")
    gn.load_numpy_generator(out, pt)
    gn.load_numpy_generator(out, tmp_path / "missing.pt")  # no checkpoint to compare: the export stands
    pt.write_bytes(pt.read_bytes() + b"\0")
    with pytest.raises(CheckpointError) as err:
        gn.load_numpy_generator(out, pt)
    msg = str(err.value)
    assert "generator.pt" in msg and "re-export" in msg and "\n" not in msg


def test_unreadable_weights_are_a_checkpoint_error(tmp_path):
    bad = tmp_path / "generator.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="generator.npz"):
        gn.load_numpy_generator(bad)
    with pytest.raises(CheckpointError, match="not found"):
        gn.load_numpy_generator(tmp_path / "missing.npz")


def test_loading_and_running_needs_no_torch(tmp_path):
    dims = DIMS["signed"]
    pt = _save(_randomised_generator(dims), dims, tmp_path / "generator.pt")
    out = gn.export_generator(pt, tmp_path / "generator.npz")
    code = (
        "import sys, numpy as np, facetune.music.generator_numpy as g\n"
        f"m = g.load_numpy_generator({str(out)!r}, {str(pt)!r})\n"
        "d = m.dims\n"
        "y = g.condition_np([0], [3], d, [2], g.form_features_np([1], [0], [1]))\n"
        "lg = m.logits(np.zeros((1, d.z_dim), np.float32), y, np.zeros((1, d.cond_inputs, 16, d.width), np.float32))\n"
        "assert lg.shape == (1, 1, 16, d.width)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_shipped_weights_match_torch(tmp_path):
    from facetune.music.generate import load_generator

    torch_gen = load_generator(engine="torch")
    shipped = Path(torch_gen.path)
    assert shipped.resolve() == SHIPPED
    ng = gn.load_numpy_generator(gn.export_generator(shipped, tmp_path / "generator.npz"), shipped)
    assert ng.dims == gn.NumpyDims(**vars(torch_gen.dims))
    z, y, prev = _inputs(torch_gen.dims, 4, seed=11)
    _assert_close(ng.logits(z, y, prev), _torch_logits(torch_gen.scores.model, z, y, prev))
