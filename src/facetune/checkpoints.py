"""Self-describing checkpoints, saved atomically and loaded without running pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(weights_only=True)` can read it. Every file records what it is
(`kind`), the format version, the model's dimensions and preprocessing, the
hyperparameters and where it came from, so `load_*` can rebuild the model from
the file alone (as whisper's `load_model` does).
"""
from __future__ import annotations

import os
import pickle
import platform
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import CheckpointError

FORMAT_VERSION = 1


def provenance(command: str | None = None) -> dict[str, Any]:
    """Who made a checkpoint, when, with what software: for the model card and debugging."""
    import torch

    from . import __version__

    return {
        "facetune_version": __version__,
        "torch_version": str(torch.__version__),
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or "",
    }


#: Temporary files being written right now: what a signal's last-resort exit removes (`cli.signals`).
PENDING_TEMPS: set[str] = set()


def _create_temporary(tmp: str) -> int:
    """A new file, never an existing one; the umask applies, as for any file the user makes."""
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`, so readers and
    interrupted runs only ever see a complete file. `durable` also fsyncs before the rename
    (checkpoints and caches); per-song outputs of a batch skip it, as a rerun remakes them.

    Any failure (a full disk, a read-only or forbidden folder, a file where a folder should be)
    removes the temporary file and raises `OutputError`: the path and the reason in one line."""
    from .errors import OutputError

    import secrets

    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # named and registered before it exists, so an interruption at any point finds it to remove
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        PENDING_TEMPS.add(tmp)
        fd = _create_temporary(tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(path, exc) from None
        raise
    finally:
        if tmp is not None:
            PENDING_TEMPS.discard(tmp)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save `payload` (which must have a `kind`) atomically, stamping the format version."""
    import io

    import torch

    if "kind" not in payload:
        raise ValueError("checkpoint payload needs a 'kind'")
    payload = {**payload, "format_version": FORMAT_VERSION}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


class _Tensor:
    """Where a checkpoint holds a tensor: `read_metadata` never reads tensor data."""

    def __repr__(self) -> str:
        return "<tensor>"


class _MetadataUnpickler(pickle.Unpickler):
    """Reads a torch checkpoint's plain-data skeleton without torch: tensors become `_Tensor`
    markers, and any class other than the few torch's own format uses is refused, so no code runs."""

    _ALLOWED = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        if (module, name) in self._ALLOWED or (module == "torch" and name.endswith("Storage")):
            return lambda *args, **kwargs: _Tensor()
        raise pickle.UnpicklingError(f"Unsupported global: {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return _Tensor()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A checkpoint's description (kind, dimensions, classes, metrics, provenance) without torch
    and without its tensors, for listing models; the same checks as `load_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                raise CheckpointError(f"{path}: not a readable checkpoint (no data.pkl inside)")
            payload = _MetadataUnpickler(z.open(name)).load()
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: the file holds code or objects, not plain data ({str(exc)[:160]})") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {type(exc).__name__})") from None
    return _check_payload(path, payload, None)


def _check_payload(path: Path, payload: Any, kind: str | None) -> dict[str, Any]:
    """A facetune checkpoint of a supported version (and of `kind`, when given), or CheckpointError."""
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path}: not a facetune checkpoint (no 'kind' field)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported (this facetune reads {FORMAT_VERSION})"
        )
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path}: this is a {payload['kind']} checkpoint, expected a {kind} checkpoint")
    return payload


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely and check it is the expected kind and a supported version."""
    from .errors import need_training_package

    torch = need_training_package("torch", f"reading the tensors of {path}")

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "unsafe content")
        raise CheckpointError(f"{path}: refused to load: the file holds code or objects, not plain data ({detail[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {msg[:120]})") from None
    except Exception as exc:  # any other failure inside torch's unpickler is still a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    return _check_payload(path, payload, kind)
