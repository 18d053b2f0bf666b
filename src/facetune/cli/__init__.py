"""The `facetune` command: parse, validate, call the Python API, print. Nothing else lives here.

`common` holds the top-level group and what the commands share; each other module adds one
family of commands to it when imported.
"""
from . import evaluation, inference, training  # noqa: F401  (registers the commands)
from .common import main

__all__ = ["main"]
