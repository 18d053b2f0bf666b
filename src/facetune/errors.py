"""Exceptions that the CLI turns into one-line messages and exit codes."""
from __future__ import annotations


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
