"""Loading a classifier for inference: choosing the engine, ensembles, and scoring on arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import load_checkpoint, provenance, save_checkpoint
from ..errors import FacetuneError, refuse_overwrite
from .network import member_specs
from .preprocess import CROP_SIZE
from .onnx_engine import CascadeSettings, export_beside, load_onnx_classifier, open_onnx_file
from .torch_engine import Classifier, classifier_from_payload

DEFAULT_WEIGHTS = Path(__file__).parent.parent / "weights" / "classifier.pt"


ENGINES = ("auto", "int8", "onnx", "torch")


def load_classifier(path: str | Path | None = None, device: str = "cpu", engine: str = "auto", cascade: CascadeSettings = CascadeSettings()) -> Classifier:
    """Rebuild a classifier from a checkpoint (the shipped default when `path` is None).

    `engine`: "torch" runs the checkpoint's networks in PyTorch; "onnx" runs the float ONNX
    export beside the checkpoint in ONNX Runtime (`onnx_engine`), on the CPU only; "int8" runs
    its int8 twin (`quantize`), the fastest on the CPU, with its near-ties run again in float per
    `cascade` (`onnx_engine.CascadeSettings`); "auto" takes, on the CPU, the int8
    export, else the float one, when one made from this very file exists, and PyTorch otherwise.
    A `.onnx` path is an export given on its own: ONNX Runtime.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if engine not in ENGINES:
        raise FacetuneError(f"unknown engine {engine!r} ({', '.join(ENGINES[:-1])} or {ENGINES[-1]})")
    if device == "auto" and engine != "torch" and not accelerator_present():
        device = "cpu"  # what "auto" would pick, without the seconds torch takes to import and find nothing
    if path.suffix == ".onnx":
        if engine == "torch" or device != "cpu":
            raise FacetuneError(f"{path}: an ONNX export runs only in ONNX Runtime on the CPU; give its .pt checkpoint for PyTorch or another device")
        return open_onnx_file(path, cascade)
    if engine != "torch" and device == "cpu":
        for int8 in {"auto": (True, False), "int8": (True,), "onnx": (False,)}[engine]:
            fast = load_onnx_classifier(path, int8=int8, cascade=cascade)
            if fast is not None:
                return fast
    if engine == "int8":
        raise FacetuneError(f"{path}: no int8 export of this checkpoint beside it for the CPU (make one with: facetune export-onnx {path} --int8 TRAIN_DIR)")
    if engine == "onnx":
        raise FacetuneError(f"{path}: no ONNX export of this checkpoint beside it for the CPU (make one with: facetune export-onnx {path})")
    return classifier_from_payload(load_checkpoint(path, "classifier"), device, str(path))


def accelerator_present() -> bool:
    """Whether this machine may have a device that `--device auto` would pick over the CPU: an
    NVIDIA driver (CUDA) or an Apple-silicon Mac (MPS). A cheap look that imports nothing; when it
    says no, "auto" is the CPU for certain."""
    import os
    import platform

    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def ensemble_payload(paths: list[str | Path], command: str = "", half: bool = True) -> dict[str, Any]:
    """One checkpoint from several trained classifiers over the same classes and face preprocessing.

    Each member keeps its own architecture, input size, hyperparameters and training record;
    members that are themselves ensembles are flattened.
    """
    if len(paths) < 2:
        raise FacetuneError("an ensemble needs at least two classifier checkpoints")
    loaded = [(Path(p), load_checkpoint(p, "classifier")) for p in paths]
    first_path, first = loaded[0]
    crop = first.get("preprocessing", {}).get("crop_size", CROP_SIZE)
    members: list[dict[str, Any]] = []
    for p, payload in loaded:
        if payload["classes"] != first["classes"]:
            raise FacetuneError(f"{p}: classes {payload['classes']} differ from {first_path}'s {first['classes']}")
        if payload.get("preprocessing", {}).get("crop_size", CROP_SIZE) != crop:
            raise FacetuneError(f"{p}: face crops of a different size than {first_path}'s ({crop} px)")
        for spec in member_specs(payload):
            state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in spec["state_dict"].items()}
            keep = ("arch", "tiny", "input_size", "hyperparameters", "data", "training", "provenance")
            members.append({k: spec[k] for k in keep if k in spec} | {"source": str(p), "state_dict": state})
    sizes = [m["input_size"] for m in members]
    return {
        "kind": "classifier",
        "arch": "ensemble",
        "classes": list(first["classes"]),
        "default_classes": list(first["default_classes"]),
        "input_size": sizes,
        "preprocessing": {**first.get("preprocessing", {}), "resize": " and ".join(f"bilinear {crop}->{s}" for s in sizes) + " (one per member)"},
        "combine": "mean over members of the log-softmax over all classes, then softmax over the active classes",
        "members": members,
        "provenance": provenance(command),
    }


def make_ensemble(paths: list[str | Path], out: str | Path, *, data: str | Path | None = None, command: str = "", force: bool = False) -> dict[str, Any]:
    """Write an ensemble checkpoint; with `data`, score every member and the ensemble on its validation split.

    The validation figures are stored in the checkpoint, so the choice of members can be made
    (and checked later) without touching the test split.
    """
    out = Path(out)
    refuse_overwrite(out, force)
    payload = ensemble_payload(paths, command)
    report: dict[str, Any] = {"members": [], "ensemble": None}
    if data is not None:
        from ..faces.data import load_faces_cache

        manifest, splits = load_faces_cache(data)
        x, y = splits["val"]
        names = [manifest["classes"][int(i)] for i in y]
        wanted = [c for c in payload["default_classes"] if c in manifest["classes"]]
        keep = np.array([n in wanted for n in names], dtype=bool)
        x, names = x[keep], [n for n, k in zip(names, keep) if k]
        for p in paths:
            figures = evaluate_arrays(load_classifier(p), x, names, wanted)
            report["members"].append({"path": str(p), "val_accuracy": figures["accuracy"]})
        figures = evaluate_arrays(classifier_from_payload(payload), x, names, wanted)
        report["ensemble"] = {"val_accuracy": figures["accuracy"], "classes": wanted, "n": figures["n"], "networks": len(payload["members"]), "data": str(data)}
        payload["validation"] = report
    save_checkpoint(out, payload)
    export_beside(out)
    return report


def evaluate_arrays(clf: Classifier, x: np.ndarray, y_names: list[str], classes: list[str], tta: bool = True) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows true, columns predicted)."""
    probs = clf.predict(x, classes, tta=tta)
    pred = probs.argmax(1)
    true = np.array([classes.index(n) for n in y_names])
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4), "f1": round(float(f1), 4), "support": int(cm[i].sum())}
    return {
        "n": int(len(true)),
        "accuracy": round(float((pred == true).mean()) if len(true) else 0.0, 4),
        "macro_f1": round(float(np.mean([v["f1"] for v in per_class.values()])), 4),
        "classes": classes,
        "per_class": per_class,
        "confusion": cm.tolist(),
    }
