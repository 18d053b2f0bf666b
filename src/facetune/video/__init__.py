"""Video in, soundtrack out: read a video's frames, follow its main face's emotion over time, and
score it (`soundtrack`)."""
