"""facetune: a face in, music out.

Public API (torch is imported only when a model is used, so `import facetune` is fast)::

    import facetune
    result = facetune.classify("photo.jpg")[0]
    song = facetune.compose("photo.jpg", "song.mid", seed=1)
    for record in facetune.compose_many(items, "songs/", facetune.ComposeSettings(seed=1)):
        ...
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("classify", "compose", "compose_many", "ComposeSettings", "load_classifier", "load_generator")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'facetune' has no attribute {name!r}")
