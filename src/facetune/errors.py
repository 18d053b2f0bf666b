"""Exceptions that the CLI turns into one-line messages and exit codes."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class FacetuneError(Exception):
    """A problem the user can fix; the CLI prints it as one line, without a traceback."""


class InputError(FacetuneError):
    """An input file (image, MIDI, CSV) could not be used."""


class NoFaceError(InputError):
    """A real photo in which no face was found."""


class CheckpointError(FacetuneError):
    """A checkpoint is missing, damaged, of the wrong kind or an unsupported version."""


class DataError(FacetuneError):
    """A dataset or prepared cache is malformed or out of date."""


class OutputError(FacetuneError, OSError):
    """An output could not be written: the path and the reason in one line. It is also an OSError
    (with the `errno` of the failure), so code that handles OSError still does."""

    #: Failures that no later output of the same run can escape.
    FATAL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

    def __init__(self, path: Path | str, exc: OSError | None = None, reason: str | None = None) -> None:
        super().__init__(f"{path}: cannot write ({reason or _reason(exc)})")
        self.errno = exc.errno if exc is not None else None
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.args[0])


def _reason(exc: OSError | None) -> str:
    """An OSError in a few words, the way `ls` or `cp` would say it."""
    words = {
        errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied", errno.EPERM: "operation not permitted", errno.ENOTDIR: "a folder in its path is a file",
        errno.EISDIR: "it is a folder", errno.EEXIST: "a file is in the way of a folder", errno.ENAMETOOLONG: "file name too long",
    }
    if exc is None:
        return "unknown reason"
    return words.get(exc.errno or -1, exc.strerror or str(exc))


def refuse_overwrite(path: Path, force: bool) -> None:
    """The one rule for every output file: an existing one is replaced only with --force, and a
    folder never (not even with --force)."""
    if path.is_dir():
        raise OutputError(path, reason="it is a folder; give a file name")
    if path.exists() and not force:
        raise FacetuneError(f"{path}: already exists (use --force to overwrite)")


#: The one line that tells a user of the light install how to get the training packages.
TRAIN_EXTRA = "pip install 'facetune[train]'"


def need_training_package(module: str, purpose: str) -> Any:
    """Import one of the training packages (torch, efficientnet_pytorch, onnx) or say, in one line,
    how to install them: the default install runs classify and compose without them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FacetuneError(f"{purpose} needs {module}, one of the training packages: {TRAIN_EXTRA} (for a CPU-only or CUDA torch, see PyTorch's install selector)") from None
