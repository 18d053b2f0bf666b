"""Two processes with the gloo backend on the CPU, started by torchrun, as a GPU cluster would be."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from facetune.checkpoints import load_checkpoint
from facetune.training.distributed import DistInfo, GlobalBatchSampler, micro_batch_size
from facetune.errors import FacetuneError

ENV = {**os.environ, "FACETUNE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
TOLERANCE = 1e-6  # float summation order may differ between all-reduce and local accumulation


def train(cache, out, *extra, nproc: int = 1):
    base = ["train", "classifier", "--data", str(cache), "--out", str(out), "--tiny", "--init", "random", "--epochs", "2", "--batch-size", "16", "--input-size", "48", "--seed", "1", *extra]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "29731", "-m", "facetune", *base]
    else:
        cmd = [sys.executable, "-m", "facetune", *base]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_the_same_global_batch(faces_cache, tmp_path):
    r2 = train(faces_cache, tmp_path / "two", nproc=2)
    train(faces_cache, tmp_path / "one", "--micro-batch", "8")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "last.pt", "model.onnx", "model.pt"]
    assert r2.stderr.count("epoch 2/2") == 1  # only rank 0 logs
    two, one = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert load_checkpoint(tmp_path / "two" / "best.pt")["provenance"]["world_size"] == 2
    diffs = [(two["state_dict"][k].float() - one["state_dict"][k].float()).abs().max().item() for k in one["state_dict"] if not re.search("running_|num_batches", k)]
    assert max(diffs) <= TOLERANCE


@pytest.mark.slow
def test_resume_with_another_world_size(faces_cache, tmp_path):
    out = tmp_path / "run"
    train(faces_cache, out, "--epochs", "1", nproc=2)
    r = train(faces_cache, out, "--epochs", "2", "--resume")
    assert "after epoch 1" in r.stderr and load_checkpoint(out / "last.pt")["epoch"] == 2


def test_sampler_hands_out_the_same_micro_batches_for_any_world_size():
    one = [m for _, mine, _ in GlobalBatchSampler(50, 8, 2, DistInfo(0, 1), 3) for m in mine]
    two = sorted([m for r in range(2) for _, mine, _ in GlobalBatchSampler(50, 8, 2, DistInfo(r, 2), 3) for m in mine], key=lambda m: m[0])
    assert [i for i, _ in one] == [i for i, _ in two] and all((a == b).all() for (_, a), (_, b) in zip(one, two))
    assert len(one) == 6 * 4  # 50 // 8 full global batches of 4 micro-batches


def test_batch_must_split_evenly():
    assert micro_batch_size(16, 0, 2) == (8, 1) and micro_batch_size(16, 4, 2) == (4, 2)
    with pytest.raises(FacetuneError, match="multiple"):
        micro_batch_size(10, 4, 2)


@pytest.mark.slow
def test_gan_trains_under_torchrun(music_cache, tmp_path):
    out = tmp_path / "gan"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29733", "-m", "facetune", "train", "gan", "--data", str(music_cache), "--out", str(out), "--tiny", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "8"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["generator.npz", "generator.pt", "last.pt"]
    assert r.stderr.count("epoch 1/1") == 1
    assert load_checkpoint(out / "generator.pt", "generator")["provenance"]["world_size"] == 2
