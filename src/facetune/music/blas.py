"""One OpenBLAS thread while the generator writes songs.

Why: the generator's products are small (a few thousand rows of a few hundred columns), and
OpenBLAS splits them over every core. On a busy machine, and beside the classification thread
of a batch compose, its threads wait for each other: over 1,000 songs on 2 shared cores
(load 2) the forward passes took 17 s on two BLAS threads and 1.3 s on one, and the whole batch
33 s against 7.5 s (benchmarks/compose_profile.py). One thread also makes the scores the same
bits on any number of cores (two threads round some sums differently, by about 1e-15).

numpy's wheels ship OpenBLAS as `numpy.libs/*openblas*` (`numpy/.dylibs` on macOS); where none
is found (numpy built on another BLAS) this does nothing.

`PRODUCT_DTYPE` is the dtype the generator's and the note head's layers run their products in.
"""
from __future__ import annotations

import contextlib
import ctypes
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

#: The dtype of the generator's and the note head's weights, hidden layers and products: single-
#: threaded OpenBLAS runs their small products (a few thousand rows of 16 to 1,086 columns) about
#: twice as fast in float32 as in float64, and what the products feed is scored and drawn in float64.
PRODUCT_DTYPE = np.float32

#: (get, set) thread-count functions, by the names numpy's OpenBLAS builds have used.
_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_LOCK = threading.Lock()
_STATE = {"depth": 0, "before": 1}


@lru_cache(maxsize=1)
def _openblas() -> tuple[Callable[[], int], Callable[[int], Any]] | None:
    """numpy's own OpenBLAS thread-count functions, or None."""
    root = Path(np.__file__).parent
    for path in sorted([*root.parent.glob("numpy.libs/*openblas*"), *root.glob(".dylibs/*openblas*")]):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for get, put in _SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, put):
                return getattr(lib, get), getattr(lib, put)
    return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """OpenBLAS on one thread inside the block, restored after the last of any nested or
    concurrent blocks ends (a count under a lock, so threads composing side by side agree)."""
    funcs = _openblas()
    if funcs is None:
        yield
        return
    get, put = funcs
    with _LOCK:
        if _STATE["depth"] == 0:
            _STATE["before"] = int(get())
            put(1)
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0 and _STATE["before"] != 1:
                put(_STATE["before"])
