"""Packaging: the licences a user sees (LICENSE, the package metadata, the README) agree (issue 23)."""
from __future__ import annotations

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_licence_metadata_states_the_weights_terms():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["license"] == "MIT AND LicenseRef-FER2013-research-only"  # an SPDX expression: no setuptools deprecation warning
    assert all((REPO / f).is_file() for f in project["license-files"])
    assert any(r.replace(" ", "") == "setuptools>=77" for r in meta["build-system"]["requires"])  # PEP 639 expressions
    assert project["urls"] and all(u.startswith("https://") for u in project["urls"].values())
    text = (REPO / "LICENSE").read_text()
    assert "MIT License" in text and "research use only" in text.lower() and "POP909" in text


def test_readme_states_the_input_limits_the_code_applies():
    from PIL import Image

    from facetune.faces.photos import DEFAULT_MAX_BYTES

    readme = " ".join((REPO / "README.md").read_text().split())
    assert DEFAULT_MAX_BYTES == 64 * 2**20 and "(default 64M" in readme
    assert f"{Image.MAX_IMAGE_PIXELS:,} pixels" in readme
