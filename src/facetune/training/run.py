"""One training run's life cycle, the same for every trainer: device, processes, resume, epoch end."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .. import console
from ..checkpoints import load_checkpoint, save_checkpoint
from ..errors import FacetuneError
from .distributed import DistInfo, barrier, init_distributed


def resolve_device(name: str) -> Any:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device that is absent is a clear error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FacetuneError(f"--device {name}: no CUDA GPU is available (this torch build: {torch.__version__})")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise FacetuneError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise FacetuneError("--device mps: Apple MPS is not available on this machine")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise FacetuneError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")


def start_processes(device: str) -> tuple[DistInfo, Any]:
    """Join torchrun's process group (if any) on the resolved device; only rank 0 talks."""
    info, dev = init_distributed(resolve_device(device))
    if not info.is_main:
        console.set_verbosity(quiet=True)
    return info, dev


def resume_checkpoint(last_path: Path, kind: str, resume: bool) -> dict[str, Any]:
    """The training checkpoint to resume from, or {} for a new run (with a warning if one was asked for)."""
    if resume and last_path.exists():
        return load_checkpoint(last_path, kind)
    if resume:
        console.warn(f"{last_path} not found: starting a new run")
    return {}


def data_parallel(model: Any, info: DistInfo, dev: Any) -> Any:
    """The module to train through: DistributedDataParallel under torchrun, else the model itself."""
    if not info.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def save_epoch(info: DistInfo, files: Callable[[], dict[Path, dict[str, Any]]]) -> None:
    """Rank 0 writes the epoch's checkpoints ({path: payload}, in order); every rank waits, so none runs ahead of a file."""
    if info.is_main:
        for path, payload in files().items():
            save_checkpoint(path, payload)
    barrier(info)
