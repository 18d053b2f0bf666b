"""Ctrl-C and SIGTERM: exit 130 and 143 within a second, at any phase, and never an abort.

Inside a command, the first signal raises KeyboardInterrupt in the main thread, so `with` blocks
and `finally` clauses unwind (temporary files are removed, the progress bar is closed); then
`handle_errors` flushes stdout and stderr and leaves with `os._exit(128 + signal)`. `os._exit`
skips the interpreter's teardown, where a C++ thread still running (ONNX Runtime's pool, the
classify thread inside it) would otherwise end the process with "terminate called without an
active exception" (exit 134).

A watchdog thread is woken by the signal itself (through `signal.set_wakeup_fd`, written by
Python's C-level handler even while the main thread is busy in C code); if the main thread has
not finished unwinding within `GRACE_SECONDS`, it removes the temporary files being written and
exits with the same code. Outside a command (parsing, imports) and on a second signal the exit
is immediate. Everything here is undone when the command ends, so `CliRunner` tests and the
Python API keep their own signal handling.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable

#: How long the main thread has to unwind after a signal before the watchdog exits for it.
GRACE_SECONDS = 0.5
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state: dict[str, Any] = {"signum": None, "in_command": False, "installed": False}


def exit_code() -> int:
    """128 + the signal that came (130 for Ctrl-C, 143 for SIGTERM); 130 when none did."""
    return 128 + (_state["signum"] or signal.SIGINT)


def received() -> bool:
    return _state["signum"] is not None


def _last_resort(code: int) -> None:
    """Remove what is being written, flush what was said, and leave now."""
    from ..checkpoints import PENDING_TEMPS

    for tmp in list(PENDING_TEMPS):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  (a closed pipe must not stop the exit)
            pass
    os._exit(code)


def finish(code: int) -> None:
    """The end of an interrupted command: without teardown when a real signal came."""
    if received():
        _last_resort(code)
    sys.exit(code)


def _handler(signum: int, frame: Any) -> None:
    first = _state["signum"] is None
    _state["signum"] = signum
    if first and _state["in_command"]:
        raise KeyboardInterrupt
    _last_resort(128 + signum)


def _watch(read_fd: int) -> None:
    """Woken by each signal's byte on the wakeup pipe; exits for a main thread that is too slow."""
    while True:
        try:
            data = os.read(read_fd, 1)
        except OSError:
            return
        if not data:
            return
        if data[0] in SIGNALS:
            threading.Event().wait(GRACE_SECONDS)
            if _state["installed"]:
                _last_resort(128 + data[0])


def install() -> Callable[[], None]:
    """Install the handlers and the watchdog (main thread only; once); returns what undoes it."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return lambda: None
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.update(installed=True, signum=None)
    threading.Thread(target=_watch, args=(read_fd,), name="facetune-signals", daemon=True).start()

    def restore() -> None:
        _state["installed"] = False
        for s, h in old.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(old_fd)
        os.close(write_fd)  # the watchdog reads end-of-file and stops

    return restore


def command(active: bool) -> None:
    """Mark the span in which a signal unwinds the command rather than exiting at once."""
    _state["in_command"] = active
