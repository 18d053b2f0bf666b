"""Make examples/video/astronaut.mp4 from the example photos: 8 s slowly zooming in on the astronaut
(one smiling face), then 4 s of the cat (no human face: the music holds the last emotion).

    python examples/make_video.py examples/video/astronaut.mp4
    facetune soundtrack examples/video/astronaut.mp4 -o examples/video/astronaut_scored.mp4 \\
        --timeline examples/video/astronaut.json --png examples/video/astronaut.png \\
        --midi examples/video/astronaut.mid --seed 1
"""
from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

PHOTOS = Path(__file__).parent / "photos"
SIZE, RATE = (480, 270), 15


def frames() -> list[tuple[Image.Image, float]]:
    """(photo, zoom) per frame: the astronaut zooming from the whole picture to 1.5×, then the cat."""
    astronaut = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    cat = Image.open(PHOTOS / "chelsea.png").convert("RGB")
    n = 8 * RATE
    return [(astronaut, 1.0 + 0.5 * i / n) for i in range(n)] + [(cat, 1.0)] * (4 * RATE)


def shot(photo: Image.Image, zoom: float) -> np.ndarray:
    """The photo cropped to 16:9 around its upper middle, zoomed, at the video's size."""
    w, h = photo.size
    cw = w / zoom
    ch = cw * SIZE[1] / SIZE[0]
    x0, y0 = (w - cw) / 2, max(0.0, min(h - ch, h * 0.3 - ch / 2))
    return np.asarray(photo.resize(SIZE, Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch)))


def main(out: Path) -> None:
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=RATE, options={"crf": "28"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for photo, zoom in frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(shot(photo, zoom), format="rgb24")))
        container.mux(stream.encode(None))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
