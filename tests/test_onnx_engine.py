from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facetune.checkpoints import save_checkpoint
from facetune.classifier.inference import load_classifier, make_ensemble
from facetune.classifier.network import build_model
from facetune.classifier.train import ClassifierConfig, model_payload
from facetune.cli import main
from facetune.errors import FacetuneError
from facetune.classifier.onnx_engine import OnnxClassifier, export_onnx, file_sha256, onnx_path_for

from conftest import REPO

pytest.importorskip("onnx")


def _crops(n: int = 70, seed: int = 0) -> np.ndarray:
    """Varied, left-right asymmetric images (uniform noise would pool to one feature vector)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, 48)
    out = [np.clip(rng.uniform(40, 215) + rng.uniform(-90, 90) * ramp[None, :] + rng.uniform(-90, 90) * ramp[:, None] + rng.normal(0, 20, (48, 48)), 0, 255) for _ in range(n)]
    return np.array(out, dtype=np.uint8)


CROPS = _crops()


def _tiny(path, seed: int, input_size: int = 48, classes=("happy", "sad", "angry")):
    """A tiny network whose BatchNorm statistics come from real batches, so its outputs vary."""
    from facetune.classifier.preprocess import network_input

    torch.manual_seed(seed)
    model = build_model(len(classes), tiny=True)
    with torch.no_grad():
        model._fc.weight.normal_(0, 0.05)
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        model(network_input(_crops(64, seed), input_size))
    save_checkpoint(path, model_payload(model.eval(), list(classes), ClassifierConfig(tiny=True, input_size=input_size), {}, half=True))
    return path


def test_export_gives_the_same_probabilities_and_describes_itself(tmp_path):
    ck = _tiny(tmp_path / "m.pt", 1, input_size=64)
    out = export_onnx(ck)
    assert out == onnx_path_for(ck) == tmp_path / "m.onnx"
    fast, slow = load_classifier(ck), load_classifier(ck, engine="torch")
    assert isinstance(fast, OnnxClassifier) and fast.engine == "onnx" and slow.engine == "torch"
    assert fast.classes == slow.classes and fast.input_sizes == slow.input_sizes == [64]
    assert fast.crop_size == slow.crop_size and fast.face_margin == slow.face_margin
    for tta in (True, False):
        assert np.allclose(fast.predict(CROPS, tta=tta), slow.predict(CROPS, tta=tta), atol=1e-4)
    assert np.allclose(fast.predict(CROPS, ["sad", "angry"]), slow.predict(CROPS, ["sad", "angry"]), atol=1e-4)
    assert not np.allclose(fast.predict(CROPS, tta=True), fast.predict(CROPS, tta=False), atol=1e-4)
    assert fast.predict(CROPS[:0]).shape == (0, 3)
    other = np.array([np.kron(c, np.ones((2, 2), np.uint8))[:80, :80] for c in CROPS[:5]])
    assert np.allclose(fast.predict(other), slow.predict(other), atol=1e-4)
    import onnx

    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["facetune"])
    assert meta["source_sha256"] == file_sha256(ck) and meta["payload"]["classes"] == ["happy", "sad", "angry"]
    assert meta["payload"]["hyperparameters"]["input_size"] == 64 and meta["payload"]["preprocessing"]["crop_size"] == 48
    assert out.stat().st_size < 0.6 * sum(p.numel() * 4 for p in build_model(3, tiny=True).state_dict().values())


def test_ensemble_export_averages_members_like_torch(tmp_path):
    a, b = _tiny(tmp_path / "a.pt", 1, 48), _tiny(tmp_path / "b.pt", 2, 64)
    make_ensemble([a, b], tmp_path / "ens.pt")
    assert (tmp_path / "ens.onnx").is_file()
    fast, slow = load_classifier(tmp_path / "ens.pt"), load_classifier(tmp_path / "ens.pt", engine="torch")
    assert fast.engine == "onnx" and fast.input_sizes == [48, 64]
    assert np.allclose(fast.predict(CROPS), slow.predict(CROPS), atol=1e-4)
    assert np.allclose(fast.log_probs(CROPS), slow.log_probs(CROPS), atol=1e-4)


def test_stale_or_broken_export_is_never_used(tmp_path):
    ck = _tiny(tmp_path / "m.pt", 1)
    export_onnx(ck)
    _tiny(ck, 2)
    assert load_classifier(ck).engine == "torch"
    with pytest.raises(FacetuneError, match="export-onnx"):
        load_classifier(ck, engine="onnx")
    onnx_path_for(ck).write_bytes(b"not a graph")
    assert load_classifier(ck).engine == "torch"
    assert load_classifier(ck, device="cpu", engine="torch").engine == "torch"
    with pytest.raises(FacetuneError, match="engine"):
        load_classifier(ck, engine="tensorrt")


def test_export_onnx_cli(tmp_path):
    ck = _tiny(tmp_path / "m.pt", 3)
    runner = CliRunner()
    r = runner.invoke(main, ["export-onnx", str(ck)])
    assert r.exit_code == 0 and (tmp_path / "m.onnx").is_file()
    r = runner.invoke(main, ["export-onnx", str(ck)])
    assert r.exit_code == 1 and "already exists" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(main, ["export-onnx", str(ck), "-o", str(tmp_path / "other.onnx")])
    assert r.exit_code == 0 and (tmp_path / "other.onnx").is_file()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    r = runner.invoke(main, ["export-onnx", str(tmp_path / "junk.pt")])
    assert r.exit_code == 1 and "junk.pt" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_classify_engines_agree_through_the_cli(tmp_path):
    from PIL import Image

    ck = _tiny(tmp_path / "m.pt", 4)
    export_onnx(ck)
    for i in range(3):
        Image.fromarray(CROPS[i]).save(tmp_path / f"c{i}.png")
    runner = CliRunner()
    outs = {}
    for engine in ("onnx", "torch"):
        r = runner.invoke(main, ["classify", *(str(tmp_path / f"c{i}.png") for i in range(3)), "--classifier", str(ck), "--format", "json", "--engine", engine])
        assert r.exit_code == 0, r.output
        outs[engine] = [json.loads(line) for line in r.stdout.splitlines()]
    for a, b in zip(outs["onnx"], outs["torch"]):
        assert a["emotion"] == b["emotion"] and all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-3 for k in a["probabilities"])


@pytest.mark.slow
def test_shipped_classifier_runs_without_importing_torch():
    """The cold-start path: the shipped int8 export is current, chosen first, and classify never imports torch."""
    code = (
        "import sys; from facetune.api import classify, load_classifier; "
        "r = classify('examples/photos/astronaut.png'); "
        "print(load_classifier().engine, r[0].emotion, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["int8", "happy", "False"]


def test_training_export_only_warns_when_it_cannot_export(tmp_path, monkeypatch, capsys):
    from facetune.classifier import onnx_engine

    ck = _tiny(tmp_path / "m.pt", 5)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert onnx_engine.export_beside(ck) is None and not onnx_path_for(ck).exists()
    assert "pip install onnx" in capsys.readouterr().err
    monkeypatch.undo()

    def disagree(*args, **kwargs):
        raise FacetuneError(f"{ck}: the ONNX export disagrees with PyTorch")

    monkeypatch.setattr(onnx_engine, "export_onnx", disagree)
    assert onnx_engine.export_beside(ck) is None
    assert "disagrees" in capsys.readouterr().err
    assert load_classifier(ck).engine == "torch"


def test_an_export_runs_on_its_own(tmp_path):
    ck = _tiny(tmp_path / "m.pt", 6)
    out = export_onnx(ck, tmp_path / "deploy" / "emotions.onnx")
    ck.unlink()
    alone = load_classifier(out)
    assert alone.engine == "onnx" and alone.classes == ["happy", "sad", "angry"] and alone.predict(CROPS).shape == (70, 3)
    with pytest.raises(FacetuneError, match="only in ONNX Runtime"):
        load_classifier(out, engine="torch")
    with pytest.raises(FacetuneError, match="not a facetune classifier export"):
        load_classifier(REPO / "src/facetune/weights/mtcnn/onet.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(FacetuneError, match="not a readable ONNX graph"):
        load_classifier(tmp_path / "junk.onnx")
    r = CliRunner().invoke(main, ["classify", str(REPO / "examples/photos/astronaut.png"), "--classifier", str(tmp_path / "junk.onnx")])
    assert r.exit_code == 1 and "junk.onnx" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_runs_on_several_threads_give_the_same_answers(tmp_path):
    """`log_probs` spreads its chunks over threads; the answer is the single-thread one, in order."""
    ck = _tiny(tmp_path / "m.pt", 4, input_size=64)
    export_onnx(ck)
    clf = load_classifier(ck, engine="onnx")
    many = np.concatenate([CROPS, CROPS[::-1, :, ::-1]])  # 140 crops: five chunks of 32 or fewer
    clf.lanes = 1
    one = clf.log_probs(many)
    for lanes in (2, 3):
        clf.lanes = lanes
        assert np.array_equal(clf.log_probs(many), one)
    assert clf._workers is not None and clf._workers[0] == 2
    assert np.array_equal(clf.log_probs(many[:5]), one[:5])  # one chunk: this thread alone


def test_runs_go_on_idle_cpus_only(monkeypatch):
    import os

    from facetune.classifier import onnx_engine
    from facetune.classifier.onnx_engine import _lanes

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for busy, lanes in ((0.0, 4), (1.4, 3), (3.6, 1), (9.0, 1)):
        monkeypatch.setattr(onnx_engine, "_others_busy", lambda busy=busy, **_: busy)
        monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # not read when the CPUs can be
        assert _lanes() == lanes
    monkeypatch.setattr(onnx_engine, "_others_busy", lambda **_: None)  # no /proc: the load average
    for load, lanes in ((0.0, 4), (1.4, 3), (3.6, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert _lanes() == lanes
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _lanes() == 1


def test_others_busy_leaves_out_this_process(monkeypatch):
    """The machine's busy ticks less this process's own, over the ticks that passed: a process
    whose own threads kept both CPUs busy sees them idle for its runs."""
    import os

    from facetune.classifier import onnx_engine

    readings = iter([(100.0, 1000.0, 50.0), (300.0, 1200.0, 230.0)])  # 200 busy ticks of 200, 180 ours
    monkeypatch.setattr(onnx_engine, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert abs(onnx_engine._others_busy(window=0.0) - 0.2) < 1e-9
    monkeypatch.setattr(onnx_engine, "_cpu_times", lambda: None)
    assert onnx_engine._others_busy(window=0.0) is None


def test_others_busy_watches_from_the_classifiers_mark(monkeypatch):
    """A recent mark (the classifier's load) starts the watch, so only one more reading is taken;
    a mark older than BUSY_STALE seconds is ignored and the watch starts afresh."""
    import os
    import time

    from facetune.classifier import onnx_engine

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    readings = iter([(300.0, 1200.0, 230.0)])
    monkeypatch.setattr(onnx_engine, "_cpu_times", lambda: next(readings))
    mark = (time.monotonic(), (100.0, 1000.0, 50.0))
    assert abs(onnx_engine._others_busy(window=0.0, start=mark) - 0.2) < 1e-9
    readings = iter([(100.0, 1000.0, 50.0), (120.0, 1200.0, 60.0)])
    stale = (time.monotonic() - onnx_engine.BUSY_STALE - 1, (0.0, 0.0, 0.0))
    assert abs(onnx_engine._others_busy(window=0.0, start=stale) - 0.1) < 1e-9


def test_others_busy_watches_from_the_programs_start_without_waiting(monkeypatch):
    """The `facetune` program's start (`cpu_watch.program_start`), when it is the older fresh mark,
    starts the watch: a decision that comes after the program's imports waits for nothing."""
    import os
    import time

    from facetune.classifier import cpu_watch, onnx_engine

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_watch, "program_start", (time.monotonic() - 1.0, (100.0, 1000.0, 50.0)))
    readings = iter([(300.0, 1200.0, 230.0)])
    monkeypatch.setattr(onnx_engine, "_cpu_times", lambda: next(readings))
    began = time.monotonic()
    classifier_mark = (time.monotonic(), (250.0, 1100.0, 200.0))
    assert abs(onnx_engine._others_busy(window=0.5, start=classifier_mark) - 0.2) < 1e-9
    assert time.monotonic() - began < 0.25  # no wait: the program's watch is a second long already
    monkeypatch.setattr(cpu_watch, "program_start", (time.monotonic() - onnx_engine.BUSY_STALE - 1, (0.0, 0.0, 0.0)))
    readings = iter([(300.0, 1200.0, 230.0)])
    assert abs(onnx_engine._others_busy(window=0.0, start=(time.monotonic(), (100.0, 1000.0, 50.0))) - 0.2) < 1e-9  # a stale program mark is passed over


def test_cpu_times_reads_proc_where_there_is_one():
    from pathlib import Path

    from facetune.classifier.onnx_engine import _cpu_times

    times = _cpu_times()
    if not Path("/proc/stat").exists():
        assert times is None
        return
    busy, total, own = times
    assert 0 <= busy <= total and own >= 0
