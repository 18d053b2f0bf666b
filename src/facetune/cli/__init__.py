"""The `facetune` command: parse, validate, call the Python API, print. Nothing else lives here.

`common` holds the top-level group and what the commands share; each other module adds one
family of commands to it when imported.
"""
import os as _os
import sys as _sys

from ..classifier import cpu_watch
from . import signals

if _os.path.basename(_sys.argv[0]) in ("facetune", "__main__.py"):  # the program itself, not a library user
    cpu_watch.mark_program_start()  # the CPUs are watched from here (see `cpu_watch`)
    signals.install()  # from here on, Ctrl-C or SIGTERM while importing ends at once with 130 or 143
from . import evaluation, inference, training, video  # noqa: E402,F401  (registers the commands)
from .common import main

__all__ = ["main"]
