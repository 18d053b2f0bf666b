from __future__ import annotations

import os
import pickle

import pytest
import torch

from facetune.checkpoints import FORMAT_VERSION, load_checkpoint, save_checkpoint
from facetune.errors import CheckpointError


def test_round_trip(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"kind": "generator", "state_dict": {"w": torch.ones(2)}, "meta": {"a": [1, 2]}})
    ck = load_checkpoint(tmp_path / "c.pt", "generator")
    assert ck["format_version"] == FORMAT_VERSION and torch.equal(ck["state_dict"]["w"], torch.ones(2))
    assert not list(tmp_path.glob(".*.tmp"))


def test_truncated_and_wrong_kind(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"kind": "generator", "state_dict": {"w": torch.ones(1000)}})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt"):
        load_checkpoint(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="expected a classifier"):
        load_checkpoint(tmp_path / "c.pt", "classifier")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_SENTINEL']}",))


def test_pickle_with_code_is_not_run(tmp_path, monkeypatch):
    sentinel = tmp_path / "PWNED"
    monkeypatch.setenv("EVIL_SENTINEL", str(sentinel))
    torch.save({"kind": "classifier", "format_version": FORMAT_VERSION, "x": Evil()}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Evil(), fh)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(CheckpointError, match="refused|not a readable"):
            load_checkpoint(tmp_path / name)
    assert not sentinel.exists()


def test_other_format_version_refused(tmp_path):
    torch.save({"kind": "generator", "format_version": 99}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v.pt")


def _without_tensors(value):
    if isinstance(value, torch.Tensor):
        return "<tensor>"
    if isinstance(value, dict):
        return {k: _without_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_tensors(v) for v in value)
    return value


def test_metadata_reads_everything_but_the_tensors(tmp_path):
    from facetune.checkpoints import read_metadata
    from facetune.registry import WEIGHTS_DIR

    save_checkpoint(tmp_path / "c.pt", {"kind": "generator", "state_dict": {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.long)}, "dims": {"z_dim": 4}, "metrics": {"a": 0.5}})
    for path in (tmp_path / "c.pt", WEIGHTS_DIR / "generator.pt", WEIGHTS_DIR / "classifier.pt"):
        meta = read_metadata(path)
        full = _without_tensors(load_checkpoint(path))
        assert {k: _without_tensors(v) if k != "state_dict" else None for k, v in meta.items() if k != "state_dict"} == {k: v for k, v in full.items() if k != "state_dict"}
        assert repr(meta["state_dict"]["w" if path.parent == tmp_path else next(iter(meta["state_dict"]))]) == "<tensor>"


def test_metadata_reader_runs_no_code_and_names_bad_files(tmp_path, monkeypatch):
    from facetune.checkpoints import read_metadata

    sentinel = tmp_path / "PWNED"
    monkeypatch.setenv("EVIL_SENTINEL", str(sentinel))
    torch.save({"kind": "classifier", "format_version": FORMAT_VERSION, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        read_metadata(tmp_path / "evil.pt")
    assert not sentinel.exists()
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_metadata(tmp_path / "junk.pt")
    torch.save({"kind": "generator", "format_version": 99}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        read_metadata(tmp_path / "v.pt")
