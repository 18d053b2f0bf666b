"""Face crops → network input, the one definition both engines and training use.

A crop is a uint8 gray square (`CROP_SIZE` px, cut with `FACE_MARGIN` around the face). The
network sees it scaled to [-1, 1] as EfficientNet-Lite expects, resized bilinearly to its input
size and repeated to three channels so ImageNet-initialised stems apply. `describe` writes the
same steps into every checkpoint, so a checkpoint says how its inputs are made.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FACE_MARGIN = 0.12
CROP_SIZE = 48


def describe(input_size: int) -> dict[str, Any]:
    """The checkpoint's `preprocessing` entry for a network of `input_size` px."""
    return {
        "color": "gray (ITU-R 601 luma), repeated to 3 channels",
        "crop_size": CROP_SIZE,
        "face_margin": FACE_MARGIN,
        "resize": f"bilinear {CROP_SIZE}->{input_size}",
        "normalize": "x / 127.5 - 1",
    }


def normalise(crops: Any) -> Any:
    """uint8 crops (N, H, W), numpy or torch → float tensor (N, 1, H, W) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    return x.float().div(127.5).sub(1.0).unsqueeze(1)


def fit(x: Any, size: int, always_resize: bool = False) -> Any:
    """Normalised (N, C, H, W) → (N, 3, size, size): bilinear resize when the size differs, gray → 3 channels.

    `always_resize` keeps the resize even when sizes agree (an identity), for a traced graph
    that must accept crops of any size.
    """
    import torch.nn.functional as F

    if always_resize or x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1)


def network_input(crops: Any, size: int) -> Any:
    """uint8 crops (N, H, W) → the network's input (N, 3, size, size)."""
    return fit(normalise(crops), size)
