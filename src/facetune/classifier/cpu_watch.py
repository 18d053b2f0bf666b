"""Readings of how busy the machine's CPUs are (/proc/stat), to watch them from.

A module of its own, light to import, so that the `facetune` program can take a reading as it
starts, before its heavy imports (`cli`): the decisions that need a watch of the CPUs (whether a
second process pays, `music.parallel`; how many classifier runs go at once,
`classifier.onnx_engine._lanes`) then find one already long enough, instead of each waiting out
its window on the way to the first song (0.15 s and about 0.1 s of a batch compose's start).
"""
from __future__ import annotations

from typing import Callable

#: When a watch started: the monotonic clock and `cpu_times` then.
CpuMark = tuple[float, tuple[float, float, float]]

#: The reading the `facetune` program takes as it starts (`mark_program_start`); None in any
#: other process that imports facetune.
program_start: CpuMark | None = None


def cpu_times() -> tuple[float, float, float] | None:
    """(busy, total) clock ticks of all CPUs from /proc/stat and this process's own CPU time (all
    its threads) in the same ticks; None where there is no /proc (not Linux).

    Why the own time from `time.process_time` (nanoseconds) rather than /proc/self/stat: that
    one counts whole ticks (10 ms) per thread, and over the 50 ms watch used before (10 ticks on
    two CPUs) one tick of rounding is 0.2 of a CPU, against a threshold of 0.5 for a second lane."""
    import os
    import time

    try:
        with open("/proc/stat") as fh:
            ticks = [float(v) for v in fh.readline().split()[1:9]]
        hz = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, AttributeError):
        return None
    if len(ticks) < 8:
        return None
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks), time.process_time() * hz


def cpu_mark(read: Callable[[], tuple[float, float, float] | None] = cpu_times) -> CpuMark | None:
    """Where a watch of the CPUs starts: the monotonic clock and the reading (`read`) now."""
    import time

    times = read()
    return None if times is None else (time.monotonic(), times)


def mark_program_start() -> None:
    """Take `program_start` (the `facetune` program, first thing)."""
    global program_start
    program_start = cpu_mark()
