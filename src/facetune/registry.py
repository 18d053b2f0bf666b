"""Where models live: the shipped weights, and any in $FACETUNE_HOME."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import FacetuneError

WEIGHTS_DIR = Path(__file__).parent / "weights"


def model_dirs() -> list[tuple[str, Path]]:
    dirs = [("shipped", WEIGHTS_DIR)]
    home = os.environ.get("FACETUNE_HOME")
    if home:
        dirs.append(("FACETUNE_HOME", Path(home)))
    return dirs


def _figures(payload: dict[str, Any]) -> str:
    metrics = payload.get("metrics") or {}
    if metrics:
        return ", ".join(f"{k} {v}" for k, v in metrics.items() if isinstance(v, (int, float, str)))
    validation = (payload.get("validation") or {}).get("ensemble")
    if validation:
        return f"val acc {validation['val_accuracy']:.4f} ({len(payload.get('members', []))} members)"
    training = payload.get("training") or {}
    if "best_val_acc" in training:
        return f"val acc {training['best_val_acc']:.4f} (epoch {training.get('best_epoch')})"
    if "epochs_run" in training:
        return f"{training['epochs_run']} epochs"
    return ""


def list_models() -> list[dict[str, str]]:
    """Every readable facetune model checkpoint in the model folders, with what it describes
    (read without torch and without the tensors: `checkpoints.read_metadata`)."""
    from .checkpoints import read_metadata

    out = []
    for origin, folder in model_dirs():
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.pt")):
            try:
                payload = read_metadata(f)
            except FacetuneError as exc:
                out.append({"kind": "unreadable", "name": f.name, "describes": str(exc), "figures": "", "path": str(f), "origin": origin})
                continue
            if payload["kind"] == "classifier":
                sizes = payload["input_size"] if isinstance(payload["input_size"], list) else [payload["input_size"]]
                shape = f"ensemble of {len(sizes)}, " if payload.get("arch") == "ensemble" else ""
                describes = f"{', '.join(payload['classes'])} (default: {', '.join(payload['default_classes'])}), {shape}{'/'.join(map(str, sizes))} px"
            elif payload["kind"] == "generator":
                dims = payload.get("dims", {})
                aware = ", conditioned on key and song form" if dims.get("n_form") else ""
                aware += " and on register and density" if dims.get("n_controls") else ""
                aware += ", notes drawn step by step by a note head" if dims.get("note_head") else ""
                describes = f"quadrants {', '.join(payload.get('quadrants', []))}{aware}, {payload.get('steps_per_bar')} steps/bar"
            else:
                continue
            out.append({"kind": payload["kind"], "name": f.name, "describes": describes, "figures": _figures(payload), "path": str(f), "origin": origin})
            if payload["kind"] == "classifier":
                out.extend(_exports(f, origin))
    return out


def _exports(checkpoint: Path, origin: str) -> list[dict[str, str]]:
    """A classifier's ONNX exports beside it, float and int8, each with the engine that runs it
    and whether it is current (made from this very checkpoint file); read without onnxruntime."""
    import json

    from .classifier.onnx_metadata import file_sha256, read_onnx_metadata

    rows = []
    source = None
    for f, engine, what in ((checkpoint.with_suffix(".onnx"), "onnx", "float"), (checkpoint.with_suffix(".int8.onnx"), "int8", "int8")):
        if not f.is_file():
            continue
        try:
            meta = json.loads(read_onnx_metadata(f).get("facetune", "{}"))
        except (ValueError, OSError):  # not a readable graph: listed as unused
            meta = {}
        source = source or file_sha256(checkpoint)  # read once, for the first export found
        current = meta.get("source_sha256") == source and ("quantization" in meta) == (engine == "int8")
        cascade = " (mirror pass only where unsure, near-ties rerun in the float export)" if engine == "int8" else ""
        state = f"{what} ONNX export of {checkpoint.name}, --engine {engine}{cascade}" if current else f"{what} ONNX export, not of the current {checkpoint.name} (unused)"
        figures = f"{f.stat().st_size / 1e6:.1f} MB; accuracy and speed per engine: {checkpoint.with_suffix('.md').name}"
        rows.append({"kind": "classifier", "name": f.name, "describes": state, "figures": figures, "path": str(f), "origin": origin})
    return rows


def resolve_model(name: str | None, kind: str) -> str | None:
    """A model given by path, or by file name inside $FACETUNE_HOME; None means the shipped default."""
    if not name:
        home = os.environ.get("FACETUNE_HOME")
        default = Path(home) / f"{kind}.pt" if home else None
        return str(default) if default and default.is_file() else None
    p = Path(name)
    if p.is_file():
        return str(p)
    home = os.environ.get("FACETUNE_HOME")
    if home and (Path(home) / name).is_file():
        return str(Path(home) / name)
    raise FacetuneError(f"{name}: no such {kind} checkpoint")
