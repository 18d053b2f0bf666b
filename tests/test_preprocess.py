"""Crops → network input: one definition for the PyTorch engine, the ONNX graph and training."""
from __future__ import annotations

import numpy as np
import torch

from facetune.classifier.preprocess import CROP_SIZE, FACE_MARGIN, describe, fit, network_input, normalise

CROPS = np.array([np.zeros((48, 48)), np.full((48, 48), 255)], dtype=np.uint8)


def test_range_and_shape():
    x = network_input(CROPS, 64)
    assert tuple(x.shape) == (2, 3, 64, 64) and float(x.min()) == -1 and float(x.max()) == 1


def test_numpy_and_torch_crops_normalise_alike():
    assert torch.equal(normalise(CROPS), normalise(torch.from_numpy(CROPS)))
    assert torch.equal(normalise(CROPS)[:, 0, 0, 0], torch.tensor([-1.0, 1.0]))


def test_same_size_is_not_resized_and_forced_resize_is_an_identity():
    x = normalise(np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8))
    assert torch.equal(fit(x, 48), x.expand(-1, 3, -1, -1))
    assert torch.allclose(fit(x, 48, always_resize=True), fit(x, 48), atol=1e-6)
    assert tuple(fit(x, 32).shape) == (3, 3, 32, 32)


def test_the_checkpoint_describes_its_preprocessing():
    d = describe(64)
    assert d["crop_size"] == CROP_SIZE and d["face_margin"] == FACE_MARGIN
    assert d["resize"] == f"bilinear {CROP_SIZE}->64" and d["normalize"] == "x / 127.5 - 1"
