from __future__ import annotations

import numpy as np
import pretty_midi

from facetune.music.beats import find_beat_grid


def performance(beat_times: np.ndarray, first_downbeat: int) -> pretty_midi.PrettyMIDI:
    """Piano at given beat times: bass + chord change on downbeats, melody eighths, saved at a fake 120 BPM."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    chords = [(48, 52, 55), (53, 57, 60), (55, 59, 62), (45, 48, 52)]
    for i, t in enumerate(beat_times[:-1]):
        ibi = beat_times[i + 1] - t
        bar, pos = divmod(i - first_downbeat, 4)
        if pos == 0:
            for p in chords[bar % 4]:
                inst.notes.append(pretty_midi.Note(95, p - 12 if p == chords[bar % 4][0] else p, t, t + 4 * ibi * 0.95))
        inst.notes.append(pretty_midi.Note(70, 72 + (i * 5) % 9, t, t + ibi * 0.45))
        inst.notes.append(pretty_midi.Note(55, 74 + (i * 3) % 7, t + ibi / 2, t + ibi * 0.95))
    pm.instruments.append(inst)
    return pm


def test_steady_tempo_with_pickup():
    beats = 0.3 + np.arange(60) * 60 / 96
    grid = find_beat_grid(performance(beats, first_downbeat=1))
    assert grid.method == "tracked" and abs(grid.bpm - 96) / 96 < 0.03
    found = grid.beats[grid.downbeat :]
    truth = beats[1:]
    k = np.argmin(np.abs(truth - found[0]))
    assert k % 4 == 0  # bars start on a true downbeat
    n = min(len(found), len(truth) - k) - 1
    assert np.max(np.abs(found[:n] - truth[k : k + n])) < 0.03


def test_follows_slow_acceleration():
    bpm = np.linspace(96, 104, 64)
    beats = 0.2 + np.concatenate([[0], np.cumsum(60 / bpm[:-1])])
    grid = find_beat_grid(performance(beats, first_downbeat=0))
    inner = [t for t in beats[4:-4]]
    err = [np.min(np.abs(grid.beats - t)) for t in inner]
    assert max(err) < 0.05


def test_too_few_notes_fall_back_to_the_file_grid():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, 60 + i, i * 0.5, i * 0.5 + 0.4) for i in range(3)]
    pm.instruments.append(inst)
    grid = find_beat_grid(pm)
    assert grid.method == "nominal" and grid.downbeat == 0
    assert list(grid.time_to_step(np.array([0.0, 0.5, 0.125]))) == [0, 4, 1]
