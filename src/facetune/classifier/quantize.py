"""The classifier's ONNX export in int8: static, per-channel quantisation calibrated on training crops.

Why: on CPUs with int8 dot-product instructions (AVX-512 VNNI here) ONNX Runtime runs the int8
convolutions several times as fast as float ones, and classification is most of what `classify`
and batch `compose` spend. The float export stays the reference (`--engine onnx`); the int8 file
sits beside it as `<name>.int8.onnx`, records the same checkpoint SHA-256 (so it is used only while
it matches the checkpoint) and how it was calibrated. Calibration reads the *training* crops, never
test images, and includes their mirror images, since the flip test-time augmentation feeds those.
Making the file needs the `onnx` package; running it needs only `onnxruntime`.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import atomic_write_bytes
from ..errors import DataError, FacetuneError, refuse_overwrite


@dataclass(frozen=True)
class QuantizeSettings:
    """How the int8 graph is calibrated: 300 crops a class (7 classes, with their flips: 4,200
    crops), MinMax ranges (`method`: minmax, percentile or entropy); `seed` picks the crops."""

    per_class: int = 300
    seed: int = 0
    method: str = "minmax"
    batch: int = 128


def int8_path_for(checkpoint: str | Path) -> Path:
    """Where a checkpoint's int8 export lives: beside it, `<name>.int8.onnx`."""
    return Path(checkpoint).with_suffix(".int8.onnx")


def calibration_crops(train_dir: str | Path, size: int, settings: QuantizeSettings = QuantizeSettings()) -> np.ndarray:
    """`settings.per_class` crops from each class folder of `train_dir` (seeded pick), gray and
    `size` px as `classify` makes them, followed by their mirror images."""
    from ..faces.photos import IMAGE_SUFFIXES, load_image, whole_image_crop

    root = Path(train_dir)
    classes = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if not classes:
        raise DataError(f"{root}: expected a folder of training face crops with one sub-folder per class")
    rng = np.random.default_rng(settings.seed)
    crops = []
    for d in classes:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for i in rng.permutation(len(files))[: settings.per_class]:
            crops.append(whole_image_crop(load_image(files[i]), size))
    if not crops:
        raise DataError(f"{root}: no images in its class folders")
    x = np.stack(crops)
    return np.concatenate([x, x[:, :, ::-1]])


def quantize_checkpoint(checkpoint: str | Path, train_dir: str | Path, out: str | Path | None = None, *, settings: QuantizeSettings = QuantizeSettings(), force: bool = False) -> Path:
    """The int8 export of a checkpoint (default: `<name>.int8.onnx` beside it), made from its
    current float export, which must exist (`facetune export-onnx CHECKPOINT`)."""
    from ..errors import CheckpointError
    from .onnx_engine import load_onnx_classifier, onnx_path_for

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found")
    if load_onnx_classifier(checkpoint) is None:
        raise FacetuneError(f"{checkpoint}: no current float ONNX export beside it to quantise (make one first with: facetune export-onnx {checkpoint})")
    return quantize_onnx(onnx_path_for(checkpoint), train_dir, out or int8_path_for(checkpoint), settings=settings, force=force)


def quantize_onnx(float_graph: str | Path, train_dir: str | Path, out: str | Path | None = None, *, settings: QuantizeSettings = QuantizeSettings(), force: bool = False) -> Path:
    """Write the int8 twin of a facetune float ONNX export, calibrated on `train_dir`'s crops.

    Convolutions (with their ReLU6 fused), additions and pooling run in int8 (activations uint8,
    weights int8 per output channel, QDQ format); the uint8 → [-1, 1] scaling, the resize, the
    stem convolution (on the gray channel, `fold_gray_stem`) and the head stay in float. The export's description is carried over, with the calibration.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx_engine import META_KEY, _open

    float_graph = Path(float_graph)
    out = Path(out) if out else float_graph.with_suffix(".int8.onnx")
    refuse_overwrite(out, force)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    if settings.method not in methods:
        raise FacetuneError(f"unknown calibration method {settings.method!r} ({', '.join(methods)})")
    _, meta = _open(float_graph)
    if meta is None or "quantization" in meta:
        raise FacetuneError(f"{float_graph}: not a float facetune classifier export")
    crop = int(meta["payload"].get("preprocessing", {}).get("crop_size", 48))
    x = calibration_crops(train_dir, crop, settings)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(x):
                return None
            batch = np.ascontiguousarray(x[self.start : self.start + settings.batch])
            self.start += settings.batch
            return {"crops": batch}

    with tempfile.TemporaryDirectory() as tmp:
        gray, pre, q = Path(tmp) / "gray.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        fold_gray_stem(float_graph, gray)
        quant_pre_process(str(gray), str(pre), skip_symbolic_shape=True)
        keep_float = _float_nodes(pre)
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[settings.method], nodes_to_exclude=keep_float)
        data = _describe(q, meta | {"quantization": asdict(settings) | {"calibration": str(train_dir), "crops": int(len(x)), "format": "QDQ, per-channel int8 weights, uint8 activations"}}, META_KEY)
    atomic_write_bytes(out, data)
    return out


def fold_gray_stem(float_graph: Path, out: Path) -> None:
    """Write the float graph with the gray → 3-channel repeat folded into the stem convolution.

    Why: the three input channels are copies, so convolving them equals convolving the gray
    channel with the stem's weights summed over its input channels (equal to float rounding,
    about 1e-6 in the logits). The stem then does a third of the work and the repeat is gone;
    the int8 graph ran about 7 % more crops per CPU-second (classifier model card). Graphs
    without that repeat in front of the stem are written unchanged.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(float_graph))
    graph = model.graph
    expand = next((n for n in graph.node if n.op_type == "Expand"), None)
    users = [n for n in graph.node if expand is not None and expand.output[0] in n.input]
    stem = next((n for n in graph.node if n.op_type == "Conv"), None)
    chain = [u for u in users if u.op_type == "Pad" and stem is not None and u.output[0] in stem.input] or [u for u in users if u is stem]
    if expand is None or stem is None or len(users) != 1 or not chain:
        onnx.save(model, str(out))
        return
    makers = {o: n for n in graph.node for o in n.output}
    weight_name = stem.input[1]
    source = makers[weight_name].input[0] if weight_name in makers and makers[weight_name].op_type == "Cast" else weight_name
    weight = numpy_helper.to_array(next(i for i in graph.initializer if i.name == source)).astype(np.float32)
    summed = numpy_helper.from_array(weight.sum(axis=1, keepdims=True), f"{weight_name}.gray")
    graph.initializer.append(summed)
    stem.input[1] = summed.name
    chain[0].input[list(chain[0].input).index(expand.output[0])] = expand.input[0]
    _drop_dead(graph)
    onnx.save(model, str(out))


def _drop_dead(graph: Any) -> None:
    """Remove the nodes and initializers no graph output depends on any more."""
    live = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in live for o in node.output):
            kept.append(node)
            live.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in live]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _float_nodes(graph_file: Path) -> list[str]:
    """The nodes left in float: the resize (int8 would round the interpolated pixels twice), the
    stem convolution and the classifier head: quantising those two too cost 0.3 points of angry
    recall on the test crops (classifier model card)."""
    import onnx

    nodes = onnx.load(str(graph_file)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    return [n.name for n in nodes if n.op_type in ("Resize", "Gemm")] + convs[:1]


def _describe(graph_file: Path, meta: dict[str, Any], key: str) -> bytes:
    """The quantised graph's bytes with facetune's description in its metadata (the
    quantiser drops the float export's)."""
    import onnx

    model = onnx.load(str(graph_file))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = key, json.dumps(meta, default=str)
    return model.SerializeToString()
