"""The scaffolding both trainers share: device names, resume and per-epoch checkpoints."""
from __future__ import annotations

import pytest

from facetune.checkpoints import load_checkpoint, save_checkpoint
from facetune.errors import FacetuneError
from facetune.training.distributed import DistInfo
from facetune.training.run import data_parallel, resolve_device, resume_checkpoint, save_epoch


def test_resolve_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("CPU").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(FacetuneError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(FacetuneError, match="cuda:99"):
        resolve_device("cuda:99")


def test_resume_checkpoint(tmp_path):
    last = tmp_path / "last.pt"
    assert resume_checkpoint(last, "gan-training", resume=True) == {}
    save_checkpoint(last, {"kind": "gan-training", "epoch": 3})
    assert resume_checkpoint(last, "gan-training", resume=False) == {}
    assert resume_checkpoint(last, "gan-training", resume=True)["epoch"] == 3


def test_save_epoch_writes_every_file_on_the_main_process_only(tmp_path):
    files = {tmp_path / "a.pt": {"kind": "x", "n": 1}, tmp_path / "b.pt": {"kind": "x", "n": 2}}
    save_epoch(DistInfo(rank=0, world=1), lambda: files)
    assert [load_checkpoint(p)["n"] for p in files] == [1, 2]
    called = []
    save_epoch(DistInfo(rank=1, world=1), lambda: called.append(1) or {})
    assert called == []


def test_data_parallel_is_the_model_itself_in_one_process():
    model = object()
    assert data_parallel(model, DistInfo(), None) is model
