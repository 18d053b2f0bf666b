"""Exceptions that the CLI turns into one-line messages and exit codes."""
from __future__ import annotations

from pathlib import Path


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
