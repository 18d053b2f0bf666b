from __future__ import annotations

import pytest

from facetune.emotions import DEFAULT_CLASSES, FER_CLASSES, QUADRANTS, normalize_emotion, parse_classes, quadrant_of


@pytest.mark.parametrize("name, q", [("happy", "Q1"), ("angry", "Q2"), ("sad", "Q3"), ("calm", "Q4"), ("neutral", "Q4"), ("Surprise", "Q1"), ("fear", "Q2"), ("q3", "Q3")])
def test_quadrants(name, q):
    assert quadrant_of(name) == q


def test_index_and_unknown():
    assert QUADRANTS.index(quadrant_of("sad")) == 2
    with pytest.raises(ValueError, match="bored"):
        normalize_emotion("bored")


def test_parse_classes():
    assert parse_classes(None) == DEFAULT_CLASSES
    assert parse_classes("all") == FER_CLASSES
    assert parse_classes(" Sad, happy ") == ("sad", "happy")
    for bad in ("happy,joy", "happy,happy", "happy"):
        with pytest.raises(ValueError):
            parse_classes(bad)
