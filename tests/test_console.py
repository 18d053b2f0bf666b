"""Console output: training progress in a log file, and the result writers."""
from __future__ import annotations

import json

import pytest

from facetune import console


def _run_training_display(steps: int) -> None:
    with console.progress(metrics=True) as prog:
        task = prog.add_task("training", total=steps, metrics="")
        for i in range(steps):
            prog.update(task, advance=1, metrics=f"loss {i}")


@pytest.fixture
def log_file_env(monkeypatch):
    monkeypatch.delenv("FACETUNE_NO_PROGRESS", raising=False)
    console.set_verbosity()
    yield monkeypatch
    console.set_verbosity()


def test_training_off_a_terminal_logs_plain_lines(log_file_env, capsys):
    log_file_env.setenv("FACETUNE_LOG_EVERY", "0")
    _run_training_display(4)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training: step")]
    assert len(lines) == 4
    assert "step 4/4" in lines[-1] and "ETA" in lines[-1] and lines[-1].endswith("loss 3")
    assert "\x1b" not in "".join(lines)


def test_log_lines_wait_for_their_interval(log_file_env, capsys):
    log_file_env.setenv("FACETUNE_LOG_EVERY", "3600")
    _run_training_display(4)
    assert "training: step" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["quiet", "no-progress"])
def test_quiet_runs_log_no_progress(log_file_env, capsys, how):
    log_file_env.setenv("FACETUNE_LOG_EVERY", "0")
    if how == "quiet":
        console.set_verbosity(quiet=True)
    else:
        log_file_env.setenv("FACETUNE_NO_PROGRESS", "1")
    _run_training_display(3)
    assert "training: step" not in capsys.readouterr().err


def test_result_writers_agree_on_one_record():
    rec = {"input": "a.png", "face": [1, 2, 3, 4], "emotion": "sad", "probabilities": {"happy": 0.1, "sad": 0.9}, "quadrant": "Q3", "error": None}
    failed = {"input": "b.png", "face": None, "emotion": None, "probabilities": {}, "quadrant": None, "error": "no face"}
    assert console.records_text([rec], "json", ["happy", "sad"]) == json.dumps(rec) + "\n"
    rows = console.records_text([rec, failed], "csv", ["happy", "sad"]).splitlines()
    assert rows == ["input,face,emotion,p_happy,p_sad,quadrant,error", "a.png,1 2 3 4,sad,0.1,0.9,Q3,", "b.png,,,,,,no face"]
    table = console.classify_table([rec, failed], ["happy", "sad"])
    assert table.row_count == 2 and [c.header for c in table.columns][-2:] == ["happy", "sad"]


def test_refuse_overwrite(tmp_path):
    from facetune.errors import FacetuneError, refuse_overwrite

    f = tmp_path / "out.txt"
    refuse_overwrite(f, force=False)
    f.write_text("x")
    refuse_overwrite(f, force=True)
    with pytest.raises(FacetuneError, match="already exists"):
        refuse_overwrite(f, force=False)
