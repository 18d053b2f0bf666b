"""The classifier as an ONNX graph, run by ONNX Runtime instead of PyTorch.

Why: on the 2-core CPUs here ONNX Runtime runs the EfficientNet with flip TTA about 2.1× as fast
as eager PyTorch, and a `classify` run that never imports torch starts about 1.4 s sooner
(`benchmarks/classify_throughput.py`). The `.pt` checkpoint stays the source of truth, for
training, resuming and distillation; `export_onnx` writes the same networks beside it as
`<name>.onnx`, with the checkpoint's fp16 weights stored as they are (ONNX Runtime widens them and
folds BatchNorm into the convolutions when it loads the graph), so the file is no larger. The
export records the checkpoint's SHA-256, so an export that no longer matches its checkpoint is
never used, and the checkpoint's description (classes, preprocessing, hyperparameters,
provenance), so the graph describes itself too.
"""
from __future__ import annotations

import io
import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import console
from ..checkpoints import atomic_write_bytes, load_checkpoint
from ..errors import CheckpointError, FacetuneError, refuse_overwrite
from . import cpu_watch
from .cpu_watch import CpuMark
from .cpu_watch import cpu_times as _cpu_times
from .network import build_model, member_specs
from .onnx_metadata import file_sha256
from .preprocess import fit, normalise
from .torch_engine import Classifier, log_softmax

META_KEY = "facetune"
BATCH_ROWS = 64  # rows per ORT call (crops and their flips): 64 beat 32, 128 and 256 here


@dataclass(frozen=True)
class CascadeSettings:
    """How the int8 engine spends its passes: the mirrored crop (flip TTA) only where the plain
    pass is unsure, and the float graph only for near-ties.

    `flip_margin`: with flip TTA, the int8 graph runs a crop's mirror image only when the plain
    pass's two most probable classes (over the active classes) are closer than this; 1 or more
    mirrors every crop (the int8 engine before 2026-12-04). Why: the mirror pass was half of the
    engine's time, and a confident plain pass rarely changes its mind mirrored. 0.4 is the
    smallest value (steps of 0.1) at which the engine, cascade included, still agreed with the
    float engine on at least 99.5 % of the 2,870 validation images and of 6,000 training images
    (99.55 % and 99.63 %, mirroring 38 % and 35 % of them; 99.69 % and 99.72 % mirroring all;
    classifier model card). `margin`: crops whose two most probable classes (after the flip
    pass) are closer than this in int8 are run again in float, with full flip TTA, and take its
    answer; 0 turns the cascade off (int8 alone).

    Why the cascade: int8 and float disagree almost only on such near-ties, so rerunning the few of
    them brings the int8 engine's answers to the float engine's at a small cost. 0.03 is the
    smallest margin (steps of 0.005) at which the engines agreed on at least 99.5 % of the 2,870
    validation images and of 6,000 training images (99.69 % and 99.72 %, rerunning 4.8 % and
    3.8 % of them; classifier model card); test crops took no part in either choice.
    """

    margin: float = 0.03
    flip_margin: float = 0.4


def near_ties(probs: np.ndarray, margin: float) -> np.ndarray:
    """Rows of `probs` whose largest two probabilities are closer than `margin` (none with fewer than two classes)."""
    if probs.ndim != 2 or probs.shape[1] < 2 or margin <= 0:
        return np.zeros(len(probs), dtype=bool)
    top = np.partition(probs, -2, axis=1)
    return (top[:, -1] - top[:, -2]) < margin


def float_twin_path(graph_file: str | Path) -> Path:
    """Where an int8 export's float twin lies: `<name>.onnx` beside `<name>.int8.onnx`."""
    graph_file = Path(graph_file)
    return graph_file.with_suffix("").with_suffix(".onnx") if graph_file.name.endswith(".int8.onnx") else graph_file


def onnx_path_for(checkpoint: str | Path) -> Path:
    """Where a checkpoint's ONNX export lives: beside it, same name, `.onnx`."""
    return Path(checkpoint).with_suffix(".onnx")


def _graph_module(payload: dict[str, Any]) -> Any:
    """A torch module from uint8 crops (N, H, W) to every member's logits (N, members, classes).

    Normalisation, the resize to each member's input size and the gray→3-channel repeat are in
    the graph, so the ONNX path needs nothing but numpy around it. The resize is always there
    (an identity when the sizes agree), so crops of any size work, as they do in PyTorch.
    """
    import torch
    from torch import nn

    nets, sizes = [], []
    for spec in member_specs(payload):
        model = build_model(len(payload["classes"]), spec["arch"], tiny=bool(spec.get("tiny", False)))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in spec["state_dict"].items()})
        nets.append(model.eval())
        sizes.append(int(spec["input_size"]))

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nets = nn.ModuleList(nets)

        def forward(self, crops: Any) -> Any:
            x = normalise(crops)
            outs = [net(fit(x, size, always_resize=True)) for net, size in zip(self.nets, sizes)]
            return torch.stack(outs, dim=1)

    return Graph().eval(), sizes


def export_onnx(checkpoint: str | Path, out: str | Path | None = None, *, force: bool = True) -> Path:
    """Export a classifier checkpoint (one network or an ensemble) to ONNX beside it.

    Needs the `onnx` package (in facetune's `train` and `test` extras); running the export
    needs only `onnxruntime`. The written graph is checked against PyTorch before it is kept.
    """
    import torch

    checkpoint = Path(checkpoint)
    out = Path(out) if out else onnx_path_for(checkpoint)
    refuse_overwrite(out, force)
    payload = load_checkpoint(checkpoint, "classifier")
    graph, sizes = _graph_module(payload)
    crop = int(payload.get("preprocessing", {}).get("crop_size", 48))
    info = {k: v for k, v in payload.items() if k not in ("state_dict", "members")}
    if "members" in payload:
        info["members"] = [{k: v for k, v in m.items() if k != "state_dict"} for m in payload["members"]]
    meta = {"source_sha256": file_sha256(checkpoint), "source_name": checkpoint.name, "input_sizes": sizes, "payload": info}
    sample = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, crop, crop), dtype=np.uint8))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (sample,), buf, dynamo=False, input_names=["crops"], output_names=["logits"], dynamic_axes={"crops": {0: "n", 1: "h", 2: "w"}, "logits": {0: "n"}}, opset_version=17, training=torch.onnx.TrainingMode.PRESERVE)
    except ImportError as exc:
        raise FacetuneError(f"{checkpoint}: exporting to ONNX needs the 'onnx' package (pip install onnx): {exc}") from None
    except torch.onnx.OnnxExporterError as exc:
        raise FacetuneError(f"{checkpoint}: ONNX export failed ({str(exc).splitlines()[0][:120]}; pip install onnx if it is missing)") from None
    import onnx

    model = _store_half(onnx.load_from_string(buf.getvalue()))
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, default=str)
    data = model.SerializeToString()
    with torch.no_grad():
        expected = graph(sample).numpy()
    got = _session(data).run(None, {"crops": sample.numpy()})[0]
    if not np.allclose(got, expected, atol=1e-3, rtol=1e-3):
        raise FacetuneError(f"{checkpoint}: the ONNX export disagrees with PyTorch (max difference {np.abs(got - expected).max():.2g})")
    atomic_write_bytes(out, data)
    return out


def export_beside(checkpoint: str | Path) -> Path | None:
    """After training: write the checkpoint's ONNX twin, so `classify` runs it fast.

    A failed export never fails the training run that made the checkpoint: without the `onnx`
    package, or if the export disagrees with PyTorch, a warning says so and the checkpoint is
    run in PyTorch.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        console.warn(f"{checkpoint}: no ONNX export written (pip install onnx, then: facetune export-onnx {checkpoint}); classify will run it in PyTorch")
        return None
    try:
        out = export_onnx(checkpoint)
    except FacetuneError as exc:
        console.warn(f"no ONNX export written: {exc}; classify will run {checkpoint} in PyTorch")
        return None
    console.info(f"ONNX export for fast CPU inference written to {out}")
    return out


def _store_half(model: Any) -> Any:
    """Store each float32 weight that fp16 holds exactly (all of an fp16 checkpoint's) as fp16
    behind a Cast, halving the file; ONNX Runtime folds the casts away at load time."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits, casts = [], []
    for init in graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size >= 16 and np.array_equal(a.astype(np.float16).astype(np.float32), a):
            half = numpy_helper.from_array(a.astype(np.float16), f"{init.name}.fp16")
            inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            inits.append(init)
    nodes = casts + list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _session(model: bytes | str) -> Any:
    """An ONNX Runtime CPU session on one thread that sleeps rather than spins when idle;
    OMP_NUM_THREADS, when set, gives it that many threads instead, as it caps torch's.

    Why one thread: `classify` decodes the next crops in a second thread meanwhile
    (`api.iter_classify`), and on the shared 2-core machines here a second ORT thread (spinning,
    the default) ran the int8 graph at 576 crops/s in memory against 1,223 for one thread
    without spinning, alternated in one run under load (classifier model card)."""
    import os

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    opts.intra_op_num_threads = int(threads) if threads.isdigit() and int(threads) > 0 else 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


#: How long `_others_busy` watches the CPUs at least (s), once per classifier before its first
#: batch of more than one chunk (so a one-crop run never waits for it). The watch starts when the
#: `facetune` program started (`cpu_watch.program_start`) or, in a library user's process, when
#: the classifier was made (`cpu_mark`), so the program's imports or the decoding of the first
#: batch usually fill the window; a mark older than `BUSY_STALE` s says nothing about now, and a
#: fresh watch starts instead.
BUSY_WINDOW = 0.15
BUSY_STALE = 2.0


def _lanes(start: CpuMark | None = None) -> int:
    """How many ONNX Runtime runs go at once: one per CPU this process may use that other
    processes leave idle (`_others_busy`, watched since `start`; where that cannot be read, the CPU
    count less the 1-minute load average), rounded, at least one; one when OMP_NUM_THREADS sets
    the threads of each run (`_session`).

    Why only idle CPUs: a second run gains only on a free core; on the shared 2-core machine
    under load 4 two runs at once took 7–20 % more CPU and 7–21 % more wall time over the 3,812
    test crops than one (three alternated `classify` runs each; classifier model card). Why not
    the load average alone: it counts this process's own work and, for a minute, the run before
    it, so back-to-back runs on an idle machine kept to one thread (int8/peer 0.73 against 0.84
    with two, `benchmarks/classify_vs_peer.py --repeats 5`)."""
    import os

    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    others = _others_busy(start=start)
    if others is None:
        others = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cpus, int(cpus - others + 0.5)))


def cpu_mark() -> CpuMark | None:
    """Where a watch of the CPUs starts: the monotonic clock and `_cpu_times` now."""
    return cpu_watch.cpu_mark(_cpu_times)


def _others_busy(window: float = BUSY_WINDOW, start: CpuMark | None = None) -> float | None:
    """How many CPUs other processes kept busy since `start` or the program's start, the older of
    them under `BUSY_STALE` s old (else from now), waiting until `window` seconds have passed: the
    machine's busy ticks less this process's own, as a share of the ticks that passed times the
    CPU count."""
    import os
    import time

    now = time.monotonic()
    fresh = [m for m in (start, cpu_watch.program_start) if m is not None and 0 <= now - m[0] <= BUSY_STALE]
    start = min(fresh, key=lambda m: m[0]) if fresh else cpu_mark()  # the longest watch there is
    if start is None:
        return None
    time.sleep(max(0.0, window - (time.monotonic() - start[0])))
    first, second = start[1], _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    busy, total, own = (b - a for a, b in zip(first, second))
    cpus = os.cpu_count() or 1
    return max(0.0, (busy - own) / total * cpus)


def _open(graph_file: Path) -> tuple[Any, dict[str, Any] | None]:
    """An ONNX Runtime session on a graph file and the facetune description in its metadata.

    Raises whatever onnxruntime raises for a file it cannot read.
    """
    sess = _session(str(graph_file))
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    return sess, (json.loads(raw) if raw else None)


def load_onnx_classifier(checkpoint: str | Path, int8: bool = False, cascade: CascadeSettings = CascadeSettings()) -> "OnnxClassifier | None":
    """The checkpoint's ONNX twin (`int8`: its int8 twin, `<name>.int8.onnx`, which hands near-ties
    to the float export per `cascade`), ready to run, or None when there is no usable one.

    None when no such file sits beside the checkpoint, when onnxruntime is not installed, or when
    the export was made from a different checkpoint file (its SHA-256 differs).
    """
    checkpoint = Path(checkpoint)
    graph_file = checkpoint.with_suffix(".int8.onnx") if int8 else onnx_path_for(checkpoint)
    if not graph_file.is_file() or not checkpoint.is_file():
        return None
    try:
        sess, meta = _open(graph_file)
    except Exception:  # no onnxruntime, or a truncated or foreign file: fall back to the checkpoint
        return None
    if meta is None or meta.get("source_sha256") != file_sha256(checkpoint):
        return None
    return OnnxClassifier(sess, meta, str(checkpoint), float_twin_path(graph_file), cascade)


def open_onnx_file(graph_file: str | Path, cascade: CascadeSettings = CascadeSettings()) -> "OnnxClassifier":
    """A facetune ONNX export given directly (`--classifier model.onnx`), without its checkpoint.

    The export describes itself, so it runs on its own; there is no checkpoint to compare with.
    An int8 export hands near-ties to the float export beside it (`float_twin_path`) when that
    was made from the same checkpoint.
    """
    graph_file = Path(graph_file)
    if not graph_file.is_file():
        raise CheckpointError(f"{graph_file}: checkpoint not found")
    try:
        sess, meta = _open(graph_file)
    except ImportError:
        raise FacetuneError(f"{graph_file}: running an ONNX export needs onnxruntime (pip install onnxruntime)") from None
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        detail = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{graph_file}: not a readable ONNX graph ({detail})") from None
    if meta is None:
        raise CheckpointError(f"{graph_file}: an ONNX graph, but not a facetune classifier export (no description in its metadata)")
    return OnnxClassifier(sess, meta, str(graph_file), float_twin_path(graph_file), cascade)


class OnnxClassifier(Classifier):
    """A `Classifier` whose networks run in ONNX Runtime; same inputs, same probabilities.

    An int8 one mirrors only the crops it is unsure of and, given a float twin (`twin`: the float
    export of the same checkpoint), runs near-ties again in float (`cascade`, `predict`);
    `flipped` and `rerun` count the crops it did each for.
    """

    engine = "onnx"

    def __init__(self, session: Any, meta: dict[str, Any], path: str, twin: Path | None = None, cascade: CascadeSettings = CascadeSettings()) -> None:
        super().__init__([], meta["payload"], None, path)
        self.session = session
        self.engine = "int8" if "quantization" in meta else "onnx"
        self.source_sha256 = meta.get("source_sha256")
        self.input_sizes = [int(s) for s in meta["input_sizes"]]
        self.lanes: int | None = None  # found by `_lanes` before the first batch of several chunks
        self._mark = cpu_mark()  # where that watch of the CPUs starts
        self._workers: tuple[int, Any] | None = None
        self.cascade = cascade
        self._twin_file = twin if self.engine == "int8" and twin is not None and twin.is_file() and cascade.margin > 0 else None
        self._twin: OnnxClassifier | None = None
        self._twin_lock = threading.Lock()
        self.rerun = 0
        self.flipped = 0

    def predict(self, crops: np.ndarray, classes: list[str] | None = None, tta: bool = True) -> np.ndarray:
        """Probabilities over the active classes. An int8 engine mirrors only the crops its plain
        pass is unsure of and, given a float twin, takes the float graph's probabilities for the
        near-ties (`CascadeSettings`), each chunk's on the lane that ran it (so the reruns share
        the CPUs too).

        Only `predict` does this (the margins are over the active classes): `log_probs` stays the
        graph's own, every crop mirrored."""
        if self.engine != "int8":
            return super().predict(crops, classes, tta)
        cols = [self.classes.index(c) for c in self.active(classes)]
        parts = self._map_chunks(self._checked(crops), tta, lambda xb: self._int8_chunk(xb, cols, classes, tta))
        if not parts:
            return np.zeros((0, len(cols)), np.float32)
        self.flipped += sum(f for _, f, _ in parts)
        self.rerun += sum(n for _, _, n in parts)
        return np.concatenate([p for p, _, _ in parts])

    def _int8_chunk(self, xb: np.ndarray, cols: list[int], classes: list[str] | None, tta: bool) -> tuple[np.ndarray, int, int]:
        """One chunk's probabilities over the active classes (`cols`): the plain pass, the mirror
        pass for its unsure crops, the float twin for the near-ties; and how many were mirrored
        and rerun."""
        logits = self.session.run(None, {"crops": xb})[0]
        flip = near_ties(active_probs(logits, cols), self.cascade.flip_margin) if tta else np.zeros(len(xb), bool)
        if flip.any():
            mirrored = self.session.run(None, {"crops": np.ascontiguousarray(xb[flip][:, :, ::-1])})[0]
            logits[flip] = (logits[flip] + mirrored) / 2
        probs = active_probs(logits, cols)
        unsure = near_ties(probs, self.cascade.margin)
        twin = self.float_twin() if unsure.any() else None
        if twin is None:
            return probs, int(flip.sum()), 0
        probs[unsure] = twin.predict(xb[unsure], classes, tta)
        return probs, int(flip.sum()), int(unsure.sum())

    def float_twin(self) -> "OnnxClassifier | None":
        """The float export the cascade asks, opened on first use (most batches need it, one-crop
        runs often not); None, with a warning once, when it is unreadable or made from another
        checkpoint."""
        with self._twin_lock:
            if self._twin is None and self._twin_file is not None:
                try:
                    sess, meta = _open(self._twin_file)
                except Exception:  # onnxruntime raises its own exception types for unreadable graphs
                    meta = None
                if meta is None or "quantization" in meta or meta.get("source_sha256") != self.source_sha256:
                    console.warn(f"{self._twin_file}: not the float export of the int8 graph's checkpoint; near-ties stay with int8")
                    self._twin_file = None
                    return None
                self._twin = OnnxClassifier(sess, meta, str(self._twin_file))
            return self._twin

    def log_probs(self, crops: np.ndarray, tta: bool = True) -> np.ndarray:
        """Log-probabilities over all classes: flip-averaged logits per member, members averaged."""
        parts = self._map_chunks(self._checked(crops), tta, lambda xb: self._run(xb, tta))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)

    def _checked(self, crops: np.ndarray) -> np.ndarray:
        """The crops as one contiguous uint8 array (N, H, W), or a CheckpointError saying what came."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 3:
            raise CheckpointError(f"{self.path}: expected crops shaped (N, H, W), got {crops.shape}")
        return crops

    def _map_chunks(self, crops: np.ndarray, tta: bool, fn: Callable[[np.ndarray], Any]) -> list[Any]:
        """`fn` of each chunk of `BATCH_ROWS` rows (crops and, with `tta`, their flips), in order.

        The chunks run on `self.lanes` threads at once (this one and pool threads), each taking
        the next chunk as it finishes one: ONNX Runtime releases the GIL and a session may run
        from several threads, so each single-threaded run keeps its own core busy, and a lane
        slowed by another process's work takes fewer chunks instead of holding the batch up.
        """
        step = BATCH_ROWS // 2 if tta else BATCH_ROWS
        chunks = [crops[s : s + step] for s in range(0, len(crops), step)]
        if self.lanes is None and len(chunks) > 1:
            self.lanes = _lanes(self._mark)
        lanes = min(self.lanes or 1, len(chunks))
        if lanes <= 1:
            return [fn(xb) for xb in chunks]
        out: list[Any] = [None] * len(chunks)
        order = iter(range(len(chunks)))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    k = next(order, None)
                if k is None:
                    return
                out[k] = fn(chunks[k])

        futures = [self._pool(lanes - 1).submit(work) for _ in range(lanes - 1)]
        work()
        for f in futures:
            f.result()
        return out

    def _run(self, xb: np.ndarray, tta: bool) -> np.ndarray:
        """One chunk's log-probabilities, its flips (with `tta`) in the same ONNX Runtime call."""
        if tta:
            both = self.session.run(None, {"crops": np.concatenate([xb, xb[:, :, ::-1]])})[0]
            logits = (both[: len(xb)] + both[len(xb) :]) / 2
        else:
            logits = self.session.run(None, {"crops": xb})[0]
        return member_log_probs(logits)

    def _pool(self, workers: int) -> Any:
        """The helper threads of `_map_chunks` (for `log_probs` and the cascade's `predict`), made on
        first use (a one-crop call never starts one)."""
        if self._workers is None or self._workers[0] < workers:
            from concurrent.futures import ThreadPoolExecutor

            self._workers = (workers, ThreadPoolExecutor(workers, thread_name_prefix="facetune-onnx"))
        return self._workers[1]


def member_log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over all classes from a graph's logits (N, members, classes): each
    member's, members averaged."""
    return log_softmax(logits.astype(np.float32)).mean(axis=1)


def active_probs(logits: np.ndarray, cols: list[int]) -> np.ndarray:
    """Probabilities over the active classes (`cols`) from a graph's logits (N, members, classes)."""
    return np.exp(log_softmax(member_log_probs(logits)[:, cols])).astype(np.float32)
