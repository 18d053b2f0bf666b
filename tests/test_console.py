"""Console output: training progress in a log file."""
from __future__ import annotations

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
