"""The bar generators' states worked out in bulk are exactly those NumPy's own seeding gives."""
from __future__ import annotations

import numpy as np
import pytest

from facetune.music.seeding import bar_states, reseed


def test_bar_states_match_numpy_for_seeds_of_every_length():
    rng = np.random.default_rng(3)
    seeds = [0, 1, 7, 2**31 - 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 2**96 + 5, 2**200 + 11]
    seeds += [int(rng.integers(2**bits)) for bits in (8, 31, 33, 62) for _ in range(5)]
    states = bar_states(seeds, 18)
    for seed, per_bar in zip(seeds, states):
        for b, got in enumerate(per_bar):
            want = np.random.PCG64([seed, b, 7]).state["state"]
            assert got == (want["state"], want["inc"]), (seed, b)


def test_a_reseeded_generator_draws_what_a_fresh_one_draws():
    rng = np.random.Generator(np.random.PCG64(0))
    rng.random(3)
    rng.integers(0, 5, dtype=np.uint32)  # leaves half a word buffered, which reseeding must drop
    [[state]] = bar_states([123456789], 1)
    fresh = np.random.Generator(np.random.PCG64([123456789, 0, 7]))
    reseed(rng, state)
    assert (rng.standard_normal(100) == fresh.standard_normal(100)).all()
    assert rng.integers(0, 2**31, dtype=np.uint32) == fresh.integers(0, 2**31, dtype=np.uint32)
    assert (rng.random((3, 16)) == fresh.random((3, 16))).all()


def test_bar_states_edges():
    assert bar_states([], 16) == []
    assert bar_states([5], 0) == [[]]
    with pytest.raises(ValueError):
        bar_states([-1], 1)
