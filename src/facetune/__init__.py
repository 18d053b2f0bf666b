"""facetune: a face in, music out.

Public API (torch is imported only when a model is used, so `import facetune` is fast)::

    import facetune
    result = facetune.classify("photo.jpg")[0]
    song = facetune.compose("photo.jpg", "song.mid", seed=1)
    for record in facetune.compose_many(items, "songs/", facetune.ComposeSettings(seed=1)):
        ...
    scored = facetune.soundtrack("clip.mp4", "scored.mp4", seed=1)   # needs facetune[video]
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("classify", "compose", "compose_many", "ComposeSettings", "load_classifier", "load_generator")
_VIDEO_API = ("soundtrack", "soundtrack_many", "SoundtrackSettings")
__all__ = ["__version__", *_API, *_VIDEO_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _VIDEO_API:
        from .video import soundtrack

        return getattr(soundtrack, name)
    raise AttributeError(f"module 'facetune' has no attribute {name!r}")
