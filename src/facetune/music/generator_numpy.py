"""The melody generator's scores in plain numpy, so composing needs no torch.

Composing only ever calls `Generator.logits` in eval mode: BatchNorm then is a fixed affine map,
and there is no sampling. `export_generator` (which does need torch) folds every BatchNorm into
the layer before it and writes the weights as matrices to an `.npz`; `load_numpy_generator`
reads them back without torch and without pickle, and `NumpyGenerator.logits` computes the same
scores as the torch module.

Every feature map of the network is one column wide after the conditioner's first layer, so
inside `NumpyGenerator` a map is held channel-last as (B, steps, channels) and each layer is one
matrix product: a (2, 1) stride-2 convolution reads two steps side by side as one row, a (2, 1)
stride-2 transposed convolution writes one row as two steps, and the (1, width) layers read or
write a whole bar row. The exported matrices are already in that layout.

The network runs in float32 (`PRODUCT_DTYPE`): its matrices, biases and feature maps, as it was
trained; only its scores come out in float64 (the copy path is added to them in float64). Why:
the products were about a third of composing, and single-threaded OpenBLAS runs them about
twice as fast in float32 (and they read half the bytes); what samples a note sees float64 scores.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import atomic_write_bytes
from ..errors import CheckpointError
from .blas import PRODUCT_DTYPE
from .pianoroll import ONSET, REST

#: Version of the `.npz` layout; bump it when the arrays or their meaning change.
NPZ_FORMAT_VERSION = 1
#: Copies of `gan.PHRASE_BARS` and `gan.UNKNOWN_EMOTION` (importing `gan` imports torch); a test checks they agree.
PHRASE_BARS = 4
UNKNOWN_EMOTION = 4
#: Matrix layers of the network, in the order `logits` uses them.
_CONDITIONER = ("squash", "down0", "down1", "down2")
_UPS = ("up0", "up1", "up2")


@dataclass(frozen=True)
class NumpyDims:
    """The fields of `gan.GanDims`, without importing torch; a test checks the fields agree."""

    z_dim: int
    width: int
    steps: int
    n_emotions: int
    n_chords: int
    n_keys: int
    n_form: int
    n_controls: int
    reference: bool
    copy_mode: str
    prev_bars: int
    g_hidden: int
    g_channels: int
    cond_channels: int
    d_fm_channels: int
    d_channels: int
    d_hidden: int
    note_head: int = 0

    @property
    def y_dim(self) -> int:
        return self.n_emotions + self.n_chords + self.n_keys + self.n_form + self.n_controls

    @property
    def cond_inputs(self) -> int:
        """Bars the conditioner reads: the previous ones, plus the reference bar if the network has one."""
        return self.prev_bars + int(self.reference)


def _one_hot(index: Any, n: int) -> np.ndarray:
    """float32 one-hot rows; out-of-range indices raise, as `F.one_hot` does, instead of wrapping."""
    idx = np.asarray(index, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"class index out of range [0, {n}): {idx.min()}..{idx.max()}")
    return np.eye(n, dtype=np.float32)[idx]


def condition_np(emotion: Any, chord: Any, dims: Any, key: Any = None, form: Any = None, controls: Any = None) -> np.ndarray:
    """`gan.condition` in numpy: emotion, chord and key one-hots, the (B, n_form) form features and
    the (B, n_controls) song controls joined into y."""
    chord = np.asarray(chord, dtype=np.int64)
    parts = [_one_hot(emotion, dims.n_emotions), _one_hot(chord, dims.n_chords)]
    if dims.n_keys:
        parts.append(_one_hot(key if key is not None else np.zeros_like(chord), dims.n_keys))
    if dims.n_form:
        parts.append(np.asarray(form, dtype=np.float32) if form is not None else np.zeros((len(chord), dims.n_form), np.float32))
    if dims.n_controls:
        parts.append(np.asarray(controls, dtype=np.float32) if controls is not None else np.zeros((len(chord), dims.n_controls), np.float32))
    return np.concatenate(parts, 1).astype(np.float32)


#: Centres and scales of the song controls (`song_controls`): about POP909's median and spread.
REGISTER_CENTER, REGISTER_SCALE = 70.0, 6.0
DENSITY_CENTER, DENSITY_SCALE = 5.5, 2.0
#: POP909's melodies lean from -0.22 (minor) to +0.29 (major) from the 5th to the 95th percentile
#: of songs (major-key songs' median +0.14, minor-key songs' -0.085), median +0.04, spread 0.16.
LEAN_CENTER, LEAN_SCALE = 0.04, 0.16


def song_controls(mean_pitch: Any, onsets_per_bar: Any, lean: Any = LEAN_CENTER) -> np.ndarray:
    """(B, 3) controls the network is conditioned on: the song's mean melody pitch (MIDI), its
    onsets per bar and its melody's major/minor lean (`chords.mode_score` of its sounding steps'
    pitch classes), centred and scaled. Training reads them off each song; the composer sets
    them from the emotion (sad low, sparse and minor; happy high, busy and major), so the tune
    itself carries register, pace and mode instead of leaving them to the accompaniment. A
    generator trained with fewer controls reads the first `n_controls` columns."""
    register = (np.asarray(mean_pitch, dtype=np.float64) - REGISTER_CENTER) / REGISTER_SCALE
    density = (np.asarray(onsets_per_bar, dtype=np.float64) - DENSITY_CENTER) / DENSITY_SCALE
    mode = (np.broadcast_to(np.asarray(lean, dtype=np.float64), register.shape) - LEAN_CENTER) / LEAN_SCALE
    return np.stack([register, density, mode], -1).astype(np.float32)


def form_features_np(pos: Any, phrase_end: Any, restate: Any) -> np.ndarray:
    """`gan.form_features` in numpy: phrase position one-hot (all zero where unknown, -1), phrase end, restatement."""
    pos = np.asarray(pos, dtype=np.int64)
    onehot = _one_hot(np.maximum(pos, 0), PHRASE_BARS) * (pos >= 0).astype(np.float32)[:, None]
    extra = [np.asarray(v, dtype=np.float32)[:, None] for v in (phrase_end, restate)]
    return np.concatenate([onehot, *extra], 1)


def _expected_shapes(d: NumpyDims) -> dict[str, tuple[int, ...]]:
    """The shape of every exported array for dimensions `d` (rows: inputs, columns: outputs)."""
    ch, c, joined = d.g_channels, d.cond_channels, d.g_channels + d.y_dim + d.cond_channels
    shapes: dict[str, tuple[int, ...]] = {
        "fc1_w": (d.z_dim + d.y_dim, d.g_hidden), "fc1_b": (d.g_hidden,),
        "fc2_w": (d.g_hidden + d.y_dim, 2 * ch), "fc2_b": (2 * ch,),
        "squash_w": (d.cond_inputs * d.width, c), "squash_b": (c,),
        "out_w": (joined, d.width), "out_b": (d.width,),
    }
    for name in _CONDITIONER[1:]:
        shapes |= {f"{name}_w": (2 * c, c), f"{name}_b": (c,)}
    for name in _UPS:
        shapes |= {f"{name}_w": (joined, 2 * ch), f"{name}_b": (2 * ch,)}
    if d.reference:
        shapes["copy"] = (3,)
    if d.note_head:
        from .note_head import N_CATEGORY_ROWS, N_DENSE, N_OUT

        h = d.note_head
        shapes |= {
            "head.embed": (N_CATEGORY_ROWS, h), "head.dense": (N_DENSE, h), "head.b1": (h,),
            "head.w2": (h, h), "head.b2": (h,), "head.w3": (h, N_OUT), "head.b3": (N_OUT,),
        }
    return shapes


@dataclass(frozen=True)
class SongTerms:
    """`NumpyGenerator.song_terms` for some rows: the fully connected layers' output (rows, 2,
    g_channels) and, per joined layer (`up0`..`up2`, `out`), its y term with the bias (rows, outputs)."""

    hidden: np.ndarray
    per_sample: tuple[np.ndarray, ...]

    def rows(self, index: Any) -> "SongTerms":
        """The terms of the rows at `index` (a slice: views, no copy)."""
        return SongTerms(self.hidden[index], tuple(p[index] for p in self.per_sample))


class NumpyGenerator:
    """`Generator.logits` in eval mode, from folded weights; `.dims` and `.info` as on `MelodyGenerator`."""

    def __init__(self, weights: dict[str, np.ndarray], dims: NumpyDims, info: dict[str, Any]) -> None:
        self.dims = dims
        self.info = info
        # matrices and biases in the products' dtype, the copy weights (applied to the scores) in float64
        self._w = {k: np.ascontiguousarray(v, dtype=np.float64 if k == "copy" else PRODUCT_DTYPE) for k, v in weights.items()}
        # Joined layers read [h, y, conditioner]; y is the same at every step, so its rows are
        # applied once per sample and the h and conditioner rows are stacked for one product.
        ch, yd = dims.g_channels, dims.y_dim
        self._joined: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in (*_UPS, "out"):
            w = self._w[f"{name}_w"]
            self._joined[name] = (np.ascontiguousarray(np.concatenate([w[:ch], w[ch + yd :]])), np.ascontiguousarray(w[ch : ch + yd]))
        #: The note head (`note_head`), when the network has one: it draws the notes from these scores.
        self.head = None
        if dims.note_head:
            from .note_head import NumpyNoteHead

            self.head = NumpyNoteHead(weights)

    def logits(self, z: np.ndarray, y: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Raw scores (B, 1, 16, width) for z (B, z_dim), y (B, y_dim) and prev (B, cond_inputs, 16, width)."""
        return self.logits_from(self.song_terms(z, y), prev)

    def song_terms(self, z: np.ndarray, y: np.ndarray) -> "SongTerms":
        """What the network reads of z and y alone, per row: the fully connected layers' output
        and each joined layer's y term. Why apart: they do not depend on the bars before, so a
        song's rows for every bar can be computed in one product (`generate.generate_many`)."""
        z, y = (np.asarray(a, dtype=PRODUCT_DTYPE) for a in (z, y))
        w = self._w
        h = np.maximum(_affine(np.concatenate([z, y], 1), w["fc1_w"], w["fc1_b"]), 0)
        h = np.maximum(_affine(np.concatenate([h, y], 1), w["fc2_w"], w["fc2_b"]), 0)
        h = h.reshape(len(h), self.dims.g_channels, 2).transpose(0, 2, 1)
        return SongTerms(h, tuple(_affine(y, self._joined[name][1], w[f"{name}_b"]) for name in (*_UPS, "out")))

    def logits_from(self, terms: "SongTerms", prev: np.ndarray) -> np.ndarray:
        """`logits` from the rows' `song_terms` and their conditioner bars `prev`."""
        prev = np.asarray(prev, dtype=np.float64)
        conds = self._conditioner(prev)
        ch = self.dims.g_channels
        x = np.concatenate([terms.hidden, conds[0]], 2)
        for name, cond, per_sample in zip(_UPS, conds[1:], terms.per_sample):
            h = _dense(x, self._joined[name][0])
            h += per_sample[:, None, :]
            # the next layer's input [relu(h) as twice the steps, cond], written in place rather than joined
            x = np.empty((len(h), 2 * h.shape[1], ch + cond.shape[2]), h.dtype)
            np.maximum(h.reshape(len(h), 2 * h.shape[1], ch), 0, out=x[:, :, :ch])
            x[:, :, ch:] = cond
        out = _dense(x, self._joined["out"][0])
        out += terms.per_sample[-1][:, None, :]
        out = out.astype(np.float64)[:, None]  # the scores, in float64 from here
        if self.dims.reference:
            out += self._copy_path(prev[:, -1:])
        return out

    def _conditioner(self, prev: np.ndarray) -> list[np.ndarray]:
        """The conditioner's features at 2, 4, 8 and 16 steps, each (B, steps, cond_channels)."""
        b, n_in, steps, width = prev.shape
        h = prev.transpose(0, 2, 1, 3).reshape(b, steps, n_in * width)
        feats = []
        for name in _CONDITIONER:
            if feats:
                h = h.reshape(b, h.shape[1] // 2, 2 * h.shape[2])
            h = _dense(h, self._w[f"{name}_w"])
            h += self._w[f"{name}_b"]
            h = np.maximum(h, 0.2 * h, out=h)
            feats.append(h)
        return feats[::-1]

    def _copy_path(self, ref: np.ndarray) -> np.ndarray:
        """What the learned copy path adds to the scores for the reference bar `ref` (B, 1, 16, width)."""
        w = self._w["copy"]
        if self.dims.copy_mode == "signed":
            rest = ref[..., REST : REST + 1]
            onset = (2 * ref[..., ONSET:] - 1) * (1 - rest) * w[2]
            return np.concatenate([ref[..., :REST] * w[0], rest * w[1], onset], -1)
        return ref * np.concatenate([np.full(REST, w[0]), w[1:]])


def _dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, steps, in) @ (in, out) as one 2-D product in `w`'s dtype (`x` cast to it): numpy's
    stacked matmul runs one small product per sample."""
    return (x.reshape(-1, x.shape[-1]).astype(w.dtype, copy=False) @ w).reshape(*x.shape[:-1], w.shape[1])


def _affine(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x @ w + b in `w`'s dtype (`x` cast to it)."""
    out = x.astype(w.dtype, copy=False) @ w
    out += b
    return out


def load_numpy_generator(npz_path: str | Path, checkpoint_path: str | Path | None = None) -> NumpyGenerator:
    """Load exported weights without torch; with `checkpoint_path`, refuse weights exported from another version of it."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise CheckpointError(f"{npz_path}: numpy generator weights not found (export them with export_generator)")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{npz_path}: not readable numpy generator weights ({type(exc).__name__}); re-export them") from None
    if meta.get("format_version") != NPZ_FORMAT_VERSION:
        raise CheckpointError(f"{npz_path}: numpy weights format {meta.get('format_version')} is not {NPZ_FORMAT_VERSION}; re-export them")
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        _check_source(npz_path, Path(checkpoint_path), meta.get("checkpoint_sha256"))
    dims = _dims(npz_path, meta.get("dims", {}))
    _check_shapes(npz_path, arrays, dims)
    return NumpyGenerator(arrays, dims, meta.get("info", {}))


def _check_source(npz_path: Path, checkpoint_path: Path, expected: str | None) -> None:
    """The weights must come from this very checkpoint, or compose would play an old network."""
    if file_sha256(checkpoint_path) != expected:
        raise CheckpointError(
            f"{npz_path}: was exported from another version of {checkpoint_path} (sha256 differs); re-export it with export_generator"
        )


def _dims(npz_path: Path, raw: dict[str, Any]) -> NumpyDims:
    """Dimensions from the metadata; a field this code does not know means weights it cannot run."""
    names = {f.name for f in fields(NumpyDims)}
    raw = {"n_controls": 0, "note_head": 0} | dict(raw)  # exports made before the song controls or the note head have none
    if set(raw) != names:
        raise CheckpointError(f"{npz_path}: dimensions {sorted(set(raw) ^ names)} do not match this facetune; re-export it")
    return NumpyDims(**raw)


def _check_shapes(npz_path: Path, arrays: dict[str, np.ndarray], dims: NumpyDims) -> None:
    """Every array the dimensions call for is there, with its shape."""
    for name, shape in _expected_shapes(dims).items():
        got = arrays[name].shape if name in arrays else None
        if got != shape:
            raise CheckpointError(f"{npz_path}: array {name} has shape {got}, expected {shape}; re-export it")


def file_sha256(path: Path) -> str:
    """A file's SHA-256: what binds an export, or a head's training run, to its checkpoint."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_generator(checkpoint_path: str | Path, out_path: str | Path) -> Path:
    """Fold the torch generator checkpoint into numpy matrices and write them atomically to `out_path` (.npz)."""
    from .gan import load_generator_module

    checkpoint_path, out_path = Path(checkpoint_path), Path(out_path)
    sha = file_sha256(checkpoint_path)
    model, dims, payload = load_generator_module(checkpoint_path)
    info = _jsonable({k: v for k, v in payload.items() if k != "state_dict"})
    meta = {"format_version": NPZ_FORMAT_VERSION, "dims": asdict(dims), "info": info, "checkpoint_sha256": sha}
    arrays = _folded_arrays(model)
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write_bytes(out_path, buf.getvalue())
    return out_path


def _folded_arrays(model: Any) -> dict[str, np.ndarray]:
    """Every layer as a (inputs, outputs) matrix and a bias, BatchNorm folded in; the copy weights pre-scaled."""
    from .gan import COPY_SCALE

    arrays = {"fc1": _linear(*model.fc1[:2]), "fc2": _linear(*model.fc2[:2]), "squash": _conv(*model.conditioner.squash[:2])}
    arrays |= {f"down{i}": _conv(*stage[:2]) for i, stage in enumerate(model.conditioner.down)}
    arrays |= {f"up{i}": _conv_transpose(*stage[:2]) for i, stage in enumerate(model.up)}
    arrays["out"] = _conv_transpose(model.out, None)
    out = {f"{name}_{part}": a for name, (w, b) in arrays.items() for part, a in (("w", w), ("b", b))}
    if model.d.reference:
        copy = _np(model.copy) * (COPY_SCALE if model.d.copy_mode == "signed" else 1.0)
        out["copy"] = copy.astype(np.float64)
    if model.d.note_head:
        out |= head_arrays(model.head)
    return out


def head_arrays(head: Any) -> dict[str, np.ndarray]:
    """The note head's weights (`gan.NoteHeadNet`) as the matrices `note_head.NumpyNoteHead` reads."""
    return {
        "head.embed": _np(head.embed), "head.dense": _np(head.dense.weight).T, "head.b1": _np(head.dense.bias),
        "head.w2": _np(head.fc2.weight).T, "head.b2": _np(head.fc2.bias), "head.w3": _np(head.fc3.weight).T, "head.b3": _np(head.fc3.bias),
    }


def _np(t: Any) -> np.ndarray:
    """A torch tensor as float64: the BatchNorms are folded and exported in float64, and rounded to
    `PRODUCT_DTYPE` once, when `NumpyGenerator` loads them."""
    return t.detach().cpu().double().numpy()


def _bn_affine(bn: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as x * scale + shift (identity when there is none)."""
    if bn is None:
        return np.ones(n), np.zeros(n)
    if bn.running_mean is None:
        raise CheckpointError("generator BatchNorm keeps no running statistics; it cannot be folded")
    scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
    return scale, _np(bn.bias) - _np(bn.running_mean) * scale


def _linear(layer: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """Linear (out, in) + BatchNorm1d → (in, out) matrix and bias."""
    scale, shift = _bn_affine(bn, layer.out_features)
    w = _np(layer.weight) * scale[:, None]
    return w.T.astype(np.float64), _np(layer.bias) * scale + shift


def _conv(layer: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """Conv2d with a (1, width) or (2, 1) kernel + BatchNorm2d → (kh·in·kw, out) matrix: a row of the
    input holds one step's channels and columns (kernel (1, width)) or two steps' channels (kernel (2, 1))."""
    scale, shift = _bn_affine(bn, layer.out_channels)
    w = _np(layer.weight) * scale[:, None, None, None]
    kh, kw = layer.kernel_size
    matrix = w.transpose(2, 1, 3, 0).reshape(kh * layer.in_channels * kw, layer.out_channels)
    return matrix.astype(np.float64), _np(layer.bias) * scale + shift


def _conv_transpose(layer: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """ConvTranspose2d with a (2, 1) or (1, width) kernel and stride equal to it (+ BatchNorm2d) →
    (in, kh·kw·out) matrix: one input step becomes kh steps (or kw columns) of `out` channels."""
    scale, shift = _bn_affine(bn, layer.out_channels)
    w = _np(layer.weight) * scale[None, :, None, None]
    kh, kw = layer.kernel_size
    matrix = w.transpose(0, 2, 3, 1).reshape(layer.in_channels, kh * kw * layer.out_channels)
    bias = np.tile(_np(layer.bias) * scale + shift, kh * kw)
    return matrix.astype(np.float64), bias.astype(np.float64)


def _jsonable(value: Any) -> Any:
    """`value` with only what JSON can hold: tensors and arrays as lists, anything else unknown left out."""
    if isinstance(value, dict):
        pairs = ((str(k), _jsonable(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not _SKIP}
    if isinstance(value, (list, tuple)):
        return [v for v in map(_jsonable, value) if v is not _SKIP]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return _SKIP


_SKIP = object()
