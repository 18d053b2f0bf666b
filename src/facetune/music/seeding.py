"""The state `np.random.PCG64([seed, bar, 7])` starts from, worked out for many bars at once.

Why: every bar of a song draws its noise and uniforms from a generator seeded by the song's seed
and the bar (`generate._Draft.draw`). Building that generator the ordinary way (a SeedSequence,
then a PCG64 and a Generator) cost about 10 µs a bar, a tenth of a batch's generation, nearly all
of it in per-call overhead. Here NumPy's SeedSequence hash (whose output NumPy keeps stable from
release to release, NEP 19) runs on arrays, one row per bar, and PCG64's own seeding step on
Python ints; one reused generator then takes each bar's state (`reseed`), about 1 µs. A test
checks the states against NumPy's own for seeds of every length.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# NumPy's SeedSequence constants (numpy/random/bit_generator.pyx) and its pool of four words.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _POOL = 0xCA01F9DD, 0x4973F715, 16, 4
_MASK32 = 0xFFFFFFFF
#: PCG64's 128-bit LCG multiplier (pcg64.h, PCG_DEFAULT_MULTIPLIER_128).
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_MASK128 = (1 << 128) - 1


def _words(n: int) -> list[int]:
    """An entropy int as SeedSequence reads it: its 32-bit words, least significant first ([0] for 0)."""
    if n < 0:
        raise ValueError("expected a non-negative integer")
    out = [n & _MASK32]
    n >>= 32
    while n:
        out.append(n & _MASK32)
        n >>= 32
    return out


def _hashmix(value: np.ndarray, const: list[int]) -> np.ndarray:
    """SeedSequence's `hashmix` on a column of words; `const` is the running hash constant (updated)."""
    value = value ^ np.uint32(const[0])
    const[0] = (const[0] * _MULT_A) & _MASK32
    value = value * np.uint32(const[0])
    return value ^ (value >> np.uint32(_XSHIFT))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
    return result ^ (result >> np.uint32(_XSHIFT))


def _pools(entropy: np.ndarray) -> list[np.ndarray]:
    """SeedSequence's `mix_entropy` for rows of equally long entropy (n, k): the pool's four words, each a column."""
    const = [_INIT_A]
    with np.errstate(over="ignore"):
        pool = [_hashmix(entropy[:, i] if i < entropy.shape[1] else np.zeros(len(entropy), np.uint32), const) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], _hashmix(pool[src], const))
        for src in range(_POOL, entropy.shape[1]):
            for dst in range(_POOL):
                pool[dst] = _mix(pool[dst], _hashmix(entropy[:, src], const))
    return pool


def _seed_words(pool: list[np.ndarray]) -> np.ndarray:
    """SeedSequence's `generate_state(4, np.uint64)` from the pools: (n, 4) uint64."""
    const = _INIT_B
    out = []
    with np.errstate(over="ignore"):
        for i in range(8):
            value = pool[i % _POOL] ^ np.uint32(const)
            const = (const * _MULT_B) & _MASK32
            value = value * np.uint32(const)
            out.append((value ^ (value >> np.uint32(_XSHIFT))).astype(np.uint64))
    return np.stack([out[2 * j] | (out[2 * j + 1] << np.uint64(32)) for j in range(4)], 1)


def bar_states(seeds: Sequence[int], n_bars: int) -> list[list[tuple[int, int]]]:
    """Per seed, per bar b in range(`n_bars`), the (state, increment) that
    `np.random.PCG64([seed, b, 7])` starts from (seeds non-negative)."""
    words = [_words(int(s)) for s in seeds]
    out: list[list[tuple[int, int]]] = [[] for _ in seeds]
    bars = np.arange(n_bars, dtype=np.uint32)
    for k in sorted({len(w) for w in words}):
        rows = [i for i, w in enumerate(words) if len(w) == k]
        entropy = np.empty((len(rows), n_bars, k + 2), np.uint32)
        entropy[:, :, :k] = np.array([words[i] for i in rows], np.uint32)[:, None, :]
        entropy[:, :, k] = bars
        entropy[:, :, k + 1] = 7
        got = _seed_words(_pools(entropy.reshape(-1, k + 2))).reshape(len(rows), n_bars, 4).tolist()
        for i, per_bar in zip(rows, got):
            out[i] = [_pcg64_seeded(*s) for s in per_bar]
    return out


def _pcg64_seeded(s0: int, s1: int, s2: int, s3: int) -> tuple[int, int]:
    """PCG64's `pcg64_set_seed` from SeedSequence's four words: state 0, two LCG steps, the seed added between them."""
    inc = (((s2 << 64) | s3) << 1 | 1) & _MASK128
    return ((inc + ((s0 << 64) | s1)) * _PCG_MULT + inc) & _MASK128, inc


def reseed(rng: np.random.Generator, state: tuple[int, int]) -> np.random.Generator:
    """`rng` (a PCG64 Generator) set to a state from `bar_states`, as freshly seeded (no buffered half-word)."""
    rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": state[0], "inc": state[1]}, "has_uint32": 0, "uinteger": 0}
    return rng
