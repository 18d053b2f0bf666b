"""Cache folders shared by both `prepare-data` paths (faces and music).

A cache is a folder of `.npy` arrays plus `manifest.json`, written last so that a cache with a
manifest is complete; the manifest's fingerprint of the source and options make a rerun a no-op.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import atomic_write_bytes
from ..errors import DataError


def fingerprint(src: Path) -> str:
    """A cheap signature of a file or folder (names, sizes, mtimes): unchanged input ⇒ rerun is a no-op."""
    h = hashlib.sha256()
    if src.is_file():
        st = src.stat()
        h.update(f"{src.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(src)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def write_arrays(out: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write each array atomically as `name.npy`; the manifest goes last, so a cache with a manifest is complete."""
    import io

    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(out / f"{name}.npy", buf.getvalue())


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def cache_is_current(out: Path, fp: str, options: dict[str, Any], kind: str, version: int) -> dict[str, Any] | None:
    """The existing manifest if `out` already holds this exact cache, else None."""
    try:
        old = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = old.get("fingerprint") == fp and old.get("options") == options and old.get("kind") == kind
    return old if same and old.get("format_version") == version else None


def read_cache(cache: str | Path, kind: str, version: int, names: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a cache's manifest and arrays, refusing another kind or a cache made by another format version."""
    cache = Path(cache)
    manifest_path = cache / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{cache}: not a prepared {kind} cache (no manifest.json); run `facetune prepare-data {kind}` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{manifest_path}: damaged manifest; rerun `facetune prepare-data {kind} --force`") from None
    if manifest.get("kind") != kind:
        raise DataError(f"{cache}: this is a {manifest.get('kind')!r} cache, not a {kind} cache")
    if manifest.get("format_version") != version:
        raise DataError(
            f"{cache}: cache format {manifest.get('format_version')} was made by another facetune version; "
            f"rerun `facetune prepare-data {kind} --force`"
        )
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(cache / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{cache}: cannot read {name}.npy ({exc}); rerun `facetune prepare-data {kind} --force`") from None
    return manifest, arrays
