"""Exceptions that the CLI turns into one-line messages and exit codes."""
from __future__ import annotations

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


def refuse_overwrite(path: Path, force: bool) -> None:
    """The one rule for every output file: an existing one is replaced only with --force."""
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
