"""Look and listen: piano-roll PNG, terminal preview and WAV of a composition."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from facetune.music.composer import compose_emotion, load_generator
from facetune.music.render import CHORD_RGB, MELODY_RGB, piano_roll_png, render_wav, terminal_preview


@pytest.fixture(scope="module")
def comp(tiny_generator):
    return compose_emotion("happy", load_generator(str(tiny_generator)), seed=1, bars=4)


def _count(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((img.reshape(-1, 3) == rgb).all(1).sum())


def test_piano_roll_png_draws_melody_and_chords_only_when_asked(comp, tmp_path):
    with_chords = np.asarray(Image.open(piano_roll_png(comp, tmp_path / "a.png")).convert("RGB"))
    melody_only = np.asarray(Image.open(piano_roll_png(comp, tmp_path / "b.png", chords=False)).convert("RGB"))
    assert _count(with_chords, MELODY_RGB) > 0 and _count(melody_only, MELODY_RGB) > 0
    assert _count(with_chords, CHORD_RGB) > _count(melody_only, CHORD_RGB)  # chord names stay, chord notes go


def test_terminal_preview_has_a_title_and_one_row_per_pitch(comp):
    text = terminal_preview(comp).plain
    lines = text.rstrip("\n").split("\n")
    assert lines[0].startswith("happy (Q1)") and f"seed {comp.seed}" in lines[0]
    pitches = [n.pitch for n in comp.melody + comp.accompaniment]
    assert len(lines) - 1 == max(pitches) - min(pitches) + 1
    assert "█" in text and all(line.count("│") == comp.bars for line in lines[1:])


def test_render_wav_falls_back_to_the_piano_like_synth_and_says_how_to_get_fluidsynth(comp, tmp_path, monkeypatch, capsys):
    from facetune.music import audio

    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    used = render_wav(comp, tmp_path / "a.wav")
    assert used.startswith(audio.FALLBACK_NAME)
    assert "fluidsynth" in capsys.readouterr().err
    samples, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 44100 and len(samples) == pytest.approx((audio.midi_end_seconds(audio.audio_midi(comp)) + audio.TAIL_SECONDS) * rate, abs=rate * 0.05)
    assert np.abs(samples).max() > 0.5
