"""facetune soundtrack: synthetic videos made here with PyAV from real FER2013 faces (tests/fixtures/faces)
with known emotion segments; the timeline, the length, the sync, the copied video stream, the seams and bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

av = pytest.importorskip("av")

from facetune.cli import main  # noqa: E402
from facetune.music.audio import midi_onsets, onsets_from_audio  # noqa: E402
from facetune.music.midi_file import read_back  # noqa: E402
from facetune.video.soundtrack import SoundtrackSettings, soundtrack  # noqa: E402

FACES = Path(__file__).parent / "fixtures" / "faces"
REPO = Path(__file__).resolve().parents[1]
#: happy 0–8 s, sad 8–20 s, angry 20–30 s; an angry flicker of 0.2 s at 4.0 s and 1 s without a face at 12 s.
PLAN = [("happy", 0.0, 4.0), ("angry", 4.0, 4.2), ("happy", 4.2, 8.0), ("sad", 8.0, 12.0), (None, 12.0, 13.0), ("sad", 13.0, 20.0), ("angry", 20.0, 30.0)]
TRUTH = [("happy", 0.0, 8.0), ("sad", 8.0, 20.0), ("angry", 20.0, 30.0)]
W, H, RATE = 320, 180, 10


def frame_of(name: str | None, size: tuple[int, int] = (W, H)) -> np.ndarray:
    from PIL import Image

    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    if name is not None:
        face = Image.open(FACES / f"{name}.jpg").convert("RGB").resize((112, 112), Image.BICUBIC)
        y, x = (size[1] - 112) // 2, (size[0] - 112) // 2
        frame[y : y + 112, x : x + 112] = np.asarray(face)
    return frame


def make_video(path: Path, plan=PLAN, *, tone: bool = False, rotate: int = 0) -> Path:
    """An H.264 video of the plan's faces at 10 fps (and a 440 Hz tone as its sound with `tone`)."""
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=RATE)
    video.width, video.height = (H, W) if rotate else (W, H)
    video.pix_fmt = "yuv420p"
    audio = out.add_stream("aac", rate=44100) if tone else None
    frames = []
    for name, start, end in plan:
        frames += [name] * round((end - start) * RATE)
    for i, name in enumerate(frames):
        image = frame_of(name)
        if rotate:
            image = np.ascontiguousarray(np.rot90(image, 1))  # stored turned; the display matrix turns it back
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts = i
        out.mux(video.encode(vf))
    out.mux(video.encode(None))
    if audio is not None:
        t = np.arange(round(len(frames) / RATE * 44100)) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(samples), 1024):
            af = av.AudioFrame.from_ndarray(samples[None, k : k + 1024].copy(), format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, k
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    out.close()
    if rotate:
        _turn_display_matrix(path)
    return path


def _turn_display_matrix(path: Path) -> None:
    """Write a phone's portrait display matrix (show the picture turned 90° clockwise) into the MP4's
    track header, as a phone filming upright does; PyAV cannot write one."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd")
    start = at + 4 + (32 if data[at + 4] == 1 else 24) + 16
    data[start : start + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    d = tmp_path_factory.mktemp("soundtrack")
    video = make_video(d / "clip.mp4", tone=True)
    res = soundtrack(video, d / "scored.mp4", midi=d / "clip.mid", timeline=d / "clip.json", png=d / "clip.png", seed=1, renderer="fallback", mix=0.0)
    return d, video, res


def _covered(segments, emotion, start, end):
    return sum(max(0.0, min(s["end"], end) - max(s["start"], start)) for s in segments if s["emotion"] == emotion)


def test_timeline_finds_the_changes_within_a_second_and_the_emotion_for_90_percent(scored):
    d, _, res = scored
    timeline = json.loads((d / "clip.json").read_text())
    segs = timeline["segments"]
    assert [s["emotion"] for s in segs] == ["happy", "sad", "angry"]
    assert abs(segs[1]["start"] - 8.0) <= 1.0 and abs(segs[2]["start"] - 20.0) <= 1.0
    right = sum(_covered(segs, e, a, b) for e, a, b in TRUTH)
    assert right / 30.0 >= 0.9
    flicker = [f for f in timeline["frames"] if 4.0 <= f["time"] < 4.2]
    assert flicker and max(flicker[0]["probabilities"], key=flicker[0]["probabilities"].get) == "angry"  # seen, and ignored
    blank = [f for f in timeline["frames"] if 12.0 <= f["time"] < 13.0]
    assert blank and all(f["face"] is None for f in blank)
    face = timeline["frames"][0]["face"]
    assert len(face) == 4 and 80 <= face[0] + face[2] / 2 <= 240


def test_scored_video_copies_the_video_stream_packet_for_packet(scored):
    d, video, _ = scored
    with av.open(str(video)) as a, av.open(str(d / "scored.mp4")) as b:
        pa = [(bytes(p), p.pts * p.time_base, p.is_keyframe) for p in a.demux(a.streams.video[0]) if p.size]
        pb = [(bytes(p), p.pts * p.time_base, p.is_keyframe) for p in b.demux(b.streams.video[0]) if p.size]
    assert len(pa) == 300 and pa == pb


def _decoded_audio(path: Path) -> tuple[np.ndarray, int, float]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        chunks, first = [], None
        for frame in c.decode(stream):
            first = float(frame.pts * frame.time_base) if first is None else first
            chunks.append(frame.to_ndarray().mean(0))
        return np.concatenate(chunks), stream.sample_rate, first


def test_sound_lasts_the_video_and_stays_in_sync(scored):
    d, _, res = scored
    samples, rate, first = _decoded_audio(d / "scored.mp4")
    assert abs(first) < 0.001
    assert abs(len(samples) / rate - 30.0) <= 0.05
    heard = onsets_from_audio(samples, rate)
    written = midi_onsets(read_back((d / "clip.mid").read_bytes()))
    for lo, hi in ((0.0, 4.0), (26.0, 30.0)):
        offsets = [heard[np.argmin(np.abs(heard - t))] - t for t in written if lo <= t < hi]
        close = [o for o in offsets if abs(o) < 0.05]
        assert len(close) >= 0.7 * len(offsets) and abs(float(np.median(close))) <= 0.02


def test_the_music_changes_on_bar_lines_near_the_faces(scored):
    d, _, res = scored
    midi = read_back((d / "clip.mid").read_bytes())
    tpb = 4 * midi.ticks_per_beat
    assert all(t % tpb == 0 for t, _ in midi.key_map) and len(midi.key_map) == 3
    for seg, music in zip(res.segments[1:], res.score.segments[1:]):
        assert abs(music.start - seg.start) <= 240.0 / min(music.tempo, res.score.segments[res.score.segments.index(music) - 1].tempo)
    assert abs(res.score.duration - 30.0) < 0.05


def test_picture_and_outputs(scored):
    from PIL import Image

    d, _, res = scored
    assert Image.open(d / "clip.png").size == (1600, 520)
    assert set(res.outputs) == {"video", "midi", "timeline", "png"}
    assert not list(d.glob(".*tmp*"))


def test_same_seed_same_bytes(scored, tmp_path):
    d, video, _ = scored
    soundtrack(video, tmp_path / "again.mid", seed=1)
    assert (tmp_path / "again.mid").read_bytes() == (d / "clip.mid").read_bytes()
    short = make_video(tmp_path / "short.mp4", [("sad", 0.0, 3.0)])
    for name in ("one", "two"):
        soundtrack(short, tmp_path / f"{name}.mp4", seed=2, renderer="fallback")
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()


def test_original_sound_kept_under_the_music_or_replaced(scored, tmp_path):
    d, video, res = scored
    short = make_video(tmp_path / "short.mp4", [("happy", 0.0, 4.0)], tone=True)
    soundtrack(short, tmp_path / "mixed.mp4", seed=1, renderer="fallback", mix=1.0)
    soundtrack(short, tmp_path / "music.mp4", seed=1, renderer="fallback", replace_audio=True)

    def tone_level(path):
        samples, rate, _ = _decoded_audio(path)
        spectrum = np.abs(np.fft.rfft(samples[: 4 * rate]))
        freqs = np.fft.rfftfreq(4 * rate, 1 / rate)
        return spectrum[np.abs(freqs - 440) < 3].max() / spectrum.mean()

    assert tone_level(tmp_path / "mixed.mp4") > 3 * tone_level(tmp_path / "music.mp4")


def test_rotation_is_honoured(tmp_path):
    from facetune.video.frames import sample_frames

    video = make_video(tmp_path / "turned.mp4", [("happy", 0.0, 1.0)], rotate=90)
    [first, *_] = sample_frames(video, fps=2)
    assert first.image.shape[:2] == (H, W)  # shown upright, landscape, though coded portrait
    assert np.abs(first.image.astype(int) - frame_of("happy")).mean() < 12  # and the right way up


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def bad_videos(d: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    faststart = d / "faststart.mp4"
    with av.open(str(faststart), "w", options={"movflags": "faststart"}) as out:  # the index first: the cut loses pictures, not the index
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(frame_of("happy" if i < 30 else "sad"), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = faststart.read_bytes()
    (d / "cut_faststart.mp4").write_bytes(data[: int(len(data) * 0.6)])
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("just some text, not a video\n")
    out = av.open(str(d / "audio.mp4"), "w")
    stream = out.add_stream("aac", rate=44100)
    for k in range(20):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, k * 1024
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    make_video(d / "noface.mp4", [(None, 0.0, 2.0)])
    return {n: d / n for n in ("truncated.mp4", "cut_faststart.mp4", "zero.mp4", "text.mp4", "audio.mp4", "noface.mp4")}


@pytest.mark.parametrize("name", ["truncated.mp4", "cut_faststart.mp4", "zero.mp4", "text.mp4", "audio.mp4", "noface.mp4"])
def test_bad_video_is_one_line_and_exit_1(scored, tmp_path, name):
    _, good, _ = scored
    path = bad_videos(tmp_path, good)[name]
    r = invoke("soundtrack", path, "-o", tmp_path / "out.mp4", "--timeline", tmp_path / "out.json")
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and lines[0].startswith("error:"), r.stderr
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.json").exists()


def test_cli_refuses_to_overwrite_without_force(scored, tmp_path):
    d, video, _ = scored
    target = tmp_path / "song.mid"
    target.write_bytes(b"old")
    r = invoke("soundtrack", video, "-o", target)
    assert r.exit_code == 1 and "already exists (use --force to overwrite)" in r.stderr and target.read_bytes() == b"old"
    r = invoke("soundtrack", video, "-o", target, "--force", "--seed", "1", "--format", "json")
    assert r.exit_code == 0 and target.read_bytes() == (d / "clip.mid").read_bytes()
    assert [s["emotion"] for s in json.loads(r.stdout)["segments"]] == ["happy", "sad", "angry"]


@pytest.mark.parametrize("args, message", [
    ([], "say what to write"),
    (["-o", "a.mp4", "--out-dir", "x"], "not both"),
    (["-o", "a.xyz"], "unknown output type"),
    (["--out-dir", "x", "--midi", "a.mid"], "--midi name one file"),
    (["-o", "a.webm"], "a WebM file cannot hold"),
])
def test_cli_usage_errors(scored, tmp_path, args, message):
    _, video, _ = scored
    r = CliRunner().invoke(main, ["soundtrack", str(video), *[str(tmp_path / a) if a.endswith((".mp4", ".mid", ".xyz", ".webm")) or a == "x" else a for a in args]])
    assert r.exit_code in (1, 2) and message in r.output + r.stderr


def test_batch_over_a_folder(scored, tmp_path):
    _, video, _ = scored
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_video(folder / "sub" / "a.mp4", [("sad", 0.0, 3.0)])
    (folder / "broken.mp4").write_bytes(b"nope")
    out = tmp_path / "out"
    r = invoke("soundtrack", folder, "--out-dir", out, "--format", "json")
    records = {json.loads(line)["input"]: json.loads(line) for line in r.stdout.splitlines()}
    assert r.exit_code == 1
    assert records[str(folder / "sub" / "a.mp4")]["status"] == "done"
    assert records[str(folder / "broken.mp4")]["status"] == "failed"
    assert (out / "sub" / "a.mp4").exists() and (out / "sub" / "a.mid").exists() and (out / "sub" / "a.json").exists()
    r = invoke("soundtrack", folder / "sub", "--out-dir", out / "sub", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "skipped"


def test_missing_pyav_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_av(name, *a, **k):
        if name == "av":
            raise ImportError("no av")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_av)
    r = CliRunner().invoke(main, ["soundtrack", "x.mp4", "-o", "y.mid"])
    assert r.exit_code == 1 and "pip install 'facetune[video]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_variable_frame_rate_and_odd_sizes_are_sampled_by_time(tmp_path):
    """Frames 50 ms apart, then 300 ms apart, at 321×181 (4:4:4, so odd sizes can be coded)."""
    from fractions import Fraction

    from facetune.video.frames import sample_frames

    path = tmp_path / "vfr.mkv"
    times = [i * 0.05 for i in range(40)] + [2.0 + i * 0.3 for i in range(10)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 321, 181, "yuv444p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_of("sad" if t < 2.0 else "happy", (321, 181)), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    samples = list(sample_frames(path, fps=2))
    got = [round(s.time, 2) for s in samples]
    assert got[:4] == [0.0, 0.5, 1.0, 1.5] and 2.0 in got and all(b > a for a, b in zip(got, got[1:]))
    assert all(abs(g - t) <= 0.3 for g, t in zip(got, [0.0, 0.5, 1.0, 1.5, 2.0, 2.6, 3.2, 3.8, 4.4]))
    assert samples[0].image.shape[1] == 320 and samples[0].image.shape[0] in (180, 182)
    res = soundtrack(path, tmp_path / "vfr.json", seed=1, min_bars=0.0)
    assert [s.emotion for s in res.segments] == ["sad", "happy"]


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_other_containers_copy_the_video_too(tmp_path, suffix):
    short = make_video(tmp_path / "short.mp4", [("happy", 0.0, 3.0)])
    out = tmp_path / f"scored{suffix}"
    soundtrack(short, out, seed=1, renderer="fallback")
    with av.open(str(short)) as a, av.open(str(out)) as b:
        assert [bytes(p) for p in a.demux(a.streams.video[0]) if p.size] == [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
        assert b.streams.audio[0].codec_context.name == "aac"
