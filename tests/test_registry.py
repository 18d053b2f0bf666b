"""Where models live: shipped weights and $FACETUNE_HOME, listing and lookup by name."""
from __future__ import annotations

import shutil

import pytest

from facetune.errors import FacetuneError
from facetune.registry import WEIGHTS_DIR, _figures, list_models, model_dirs, resolve_model


def test_model_dirs_follow_facetune_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FACETUNE_HOME", raising=False)
    assert model_dirs() == [("shipped", WEIGHTS_DIR)]
    monkeypatch.setenv("FACETUNE_HOME", str(tmp_path))
    assert model_dirs()[-1] == ("FACETUNE_HOME", tmp_path)


def test_list_models_describes_each_and_flags_unreadable_files(tmp_path, monkeypatch, tiny_classifier):
    shutil.copy(tiny_classifier, tmp_path / "mine.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("FACETUNE_HOME", str(tmp_path))
    home = {m["name"]: m for m in list_models() if m["origin"] == "FACETUNE_HOME"}
    assert home["mine.pt"]["kind"] == "classifier" and "happy, sad, angry" in home["mine.pt"]["describes"]
    assert home["mine.pt"]["figures"].startswith("val acc")
    assert home["broken.pt"]["kind"] == "unreadable"
    shipped = {m["name"] for m in list_models() if m["origin"] == "shipped"}
    assert {"classifier.pt", "generator.pt"} <= shipped


def test_figures_prefer_metrics_then_validation_then_training():
    assert _figures({"metrics": {"acc": 0.8}, "training": {"epochs_run": 3}}) == "acc 0.8"
    assert _figures({"validation": {"ensemble": {"val_accuracy": 0.81234}}, "members": [1, 2]}) == "val acc 0.8123 (2 members)"
    assert _figures({"training": {"best_val_acc": 0.7, "best_epoch": 4}}) == "val acc 0.7000 (epoch 4)"
    assert _figures({"training": {"epochs_run": 3}}) == "3 epochs"
    assert _figures({}) == ""


def test_resolve_model_by_path_by_name_and_default(tmp_path, monkeypatch):
    monkeypatch.delenv("FACETUNE_HOME", raising=False)
    assert resolve_model(None, "classifier") is None
    ck = tmp_path / "classifier.pt"
    ck.write_bytes(b"x")
    assert resolve_model(str(ck), "classifier") == str(ck)
    with pytest.raises(FacetuneError, match="no such classifier checkpoint"):
        resolve_model("classifier.pt", "classifier")
    monkeypatch.setenv("FACETUNE_HOME", str(tmp_path))
    assert resolve_model("classifier.pt", "classifier") == str(ck)
    assert resolve_model(None, "classifier") == str(ck)
    assert resolve_model(None, "generator") is None


@pytest.mark.slow
def test_listing_models_and_a_compose_rerun_import_no_torch_and_no_network(tmp_path):
    import subprocess
    import sys

    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.mid").write_bytes(b"")  # already composed: the rerun skips it
    (tmp_path / "a.png").write_bytes(b"")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from facetune.cli import main\n"
        "r = CliRunner().invoke(main, ['models', '--format', 'json'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(main, ['compose', {str(tmp_path / 'a.png')!r}, '--out-dir', {str(songs)!r}, '--format', 'json'])\n"
        "assert r.exit_code == 0 and 'skipped' in r.output, r.output\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime') or m.endswith(('generator_numpy', 'onnx_engine'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
