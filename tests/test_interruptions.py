"""Interruptions and determinism across processes: real subprocesses, real signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
from PIL import Image

from facetune.checkpoints import load_checkpoint

from conftest import face_image

pytestmark = pytest.mark.slow  # every test here starts facetune in subprocesses

ENV = {**os.environ, "FACETUNE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    # a shell's background job (`cmd &`) starts with SIGINT ignored, and Python keeps it so; the
    # child gets the default, as a foreground command would, so Ctrl-C can be tested anywhere
    signal.signal(signal.SIGINT, signal.default_int_handler)


def facetune(*args: object, **kw) -> subprocess.Popen:
    kw.setdefault("env", ENV)
    return subprocess.Popen([sys.executable, "-m", "facetune", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint, **kw)


def wait_for(cond, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def faces_folder(tmp_path, n: int, seed: int):
    """A folder of `n` synthetic face crops (the three classes in turn)."""
    src = tmp_path / "faces"
    src.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(face_image(i % 3, rng)).save(src / f"f{i:03d}.png")
    return src


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_batch_compose_leaves_only_complete_files(tmp_path, tiny_classifier, tiny_generator, sig):
    src = faces_folder(tmp_path, 300, seed=0)
    out = tmp_path / "songs"
    args = ["compose", src, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--batch-size", "8", "--png"]
    proc = facetune(*args)
    wait_for(lambda: len(list(out.glob("*.mid"))) >= 3)
    sent = time.monotonic()
    proc.send_signal(sig)
    proc.wait(60)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode()
    assert proc.returncode == 128 + sig and took < 1.5, (proc.returncode, took, err)
    assert "Traceback" not in err and "terminate called" not in err and "Aborted" not in err
    done = list(out.glob("*.mid"))
    assert 3 <= len(done) < 300, "the run should have been cut short"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    for p in done:
        assert pretty_midi.PrettyMIDI(str(p)).instruments
    proc = facetune(*args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert len(list(out.glob("*.mid"))) == 300
    clean = tmp_path / "clean"
    proc = facetune(*[clean if a == out else a for a in args])
    assert proc.wait(600) == 0
    tree = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))}  # noqa: E731
    assert tree(out) == tree(clean), "the resumed run differs from an uninterrupted one"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.5, 1.0, 3.0])
def test_signal_at_any_phase_exits_130_or_143_within_a_second(tmp_path, tiny_classifier, tiny_generator, sig, delay):
    """Starting up, loading models, reading, composing: the exit code is 128 + the signal, within a
    second, with no traceback and no abort ("terminate called without an active exception")."""
    src = faces_folder(tmp_path, 400, seed=1)
    out = tmp_path / "songs"
    proc = facetune("compose", src, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--batch-size", "8", "--png")
    time.sleep(delay)
    sent = time.monotonic()
    proc.send_signal(sig)
    proc.wait(60)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode()
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal")
    assert proc.returncode == 128 + sig and took < 1.5, (proc.returncode, took, err)
    assert "Traceback" not in err and "terminate called" not in err
    assert not out.exists() or not [p for p in out.rglob(".*")], "temporary files left behind"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_signal_with_the_song_worker_leaves_no_process_and_only_complete_files(tmp_path, tiny_classifier, tiny_generator, sig, group):
    """A batch with its song worker (music.parallel), cut by Ctrl-C (to the whole process group,
    as a terminal sends it) or SIGTERM (to the main process only): the usual exit code within a
    second, no traceback, no temporary file, no worker left running; the rerun completes the
    batch byte for byte as an uninterrupted one."""
    src = faces_folder(tmp_path, 300, seed=2)
    out = tmp_path / "songs"
    args = ["compose", src, "--out-dir", out, "--classifier", tiny_classifier, "--generator", tiny_generator, "--batch-size", "8"]
    env = {**ENV, "FACETUNE_SONG_WORKER": "1"}
    proc = facetune(*args, env=env, start_new_session=group)
    wait_for(lambda: len(list(out.glob("*.mid"))) >= 3)
    workers = _children(proc.pid)
    assert workers, "the song worker should be running"
    sent = time.monotonic()
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    proc.wait(60)
    took = time.monotonic() - sent
    err = proc.stderr.read().decode()
    assert proc.returncode == 128 + sig and took < 1.5, (proc.returncode, took, err)
    assert "Traceback" not in err and "terminate called" not in err
    wait_for(lambda: all(_gone(pid) for pid in workers), timeout=5)
    assert 3 <= len(list(out.glob("*.mid"))) < 300, "the run should have been cut short"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert facetune(*args, env=env).wait(600) == 0
    clean = tmp_path / "clean"
    assert facetune(*[clean if a == out else a for a in args], env={**ENV, "FACETUNE_SONG_WORKER": "0"}).wait(600) == 0
    tree = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))}  # noqa: E731
    assert tree(out) == tree(clean), "the resumed run with the worker differs from an uninterrupted one without"


def test_kill_9_during_training_then_resume(tmp_path, faces_cache):
    args = ["train", "classifier", "--data", faces_cache, "--tiny", "--init", "random", "--epochs", "4", "--batch-size", "8", "--input-size", "48", "--seed", "2"]
    ref = facetune(*args, "--out", tmp_path / "ref")
    assert ref.wait(600) == 0
    run = tmp_path / "cut"
    proc = facetune(*args, "--out", run)
    wait_for(lambda: (run / "last.pt").exists() and load_checkpoint(run / "last.pt")["epoch"] >= 2, timeout=600)
    proc.kill()
    proc.wait(60)
    killed_at = load_checkpoint(run / "last.pt")["epoch"]
    assert killed_at < 4
    proc = facetune(*args, "--out", run, "--resume")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and f"after epoch {killed_at}" in err.decode()
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert [h["val_acc"] for h in a["history"]] == [h["val_acc"] for h in b["history"]]


def test_same_seed_same_bytes_across_processes(tmp_path, tiny_generator):
    outs = []
    for i in range(2):
        p = facetune("compose", "--emotion", "angry", "--seed", "11", "-o", tmp_path / f"{i}.mid", "--generator", tiny_generator)
        assert p.wait(120) == 0
        outs.append((tmp_path / f"{i}.mid").read_bytes())
    assert outs[0] == outs[1]
